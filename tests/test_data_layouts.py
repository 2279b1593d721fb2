"""Dataset layouts: exact samples from small fake trees, the packaged elpv split and the real tire data.

The fake trees hold real (4x4) PNGs so nothing passes merely because a path string looks right,
and they include the clutter real downloads have (hidden files, text files, upper-case extensions,
missing masks) because that is where loaders go wrong.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tire_data import TIRE, needs_tire

from eagle_iad.data import Sample, get_layout, layout_names
from eagle_iad.data.elpv import SPLIT_SEED, TEST_FRACTION
from eagle_iad.errors import DataError


def png(path: Path, value: int = 0) -> Path:
    """Write a tiny grey PNG at ``path`` (creating folders) and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", (4, 4), value).save(path, format="PNG")
    return path


def rel(samples: list[Sample], root: Path) -> list[str]:
    return [s.path.relative_to(root).as_posix() for s in samples]


def summary(samples: list[Sample], root: Path) -> list[tuple[str, int, str, str | None]]:
    """(image, label, defect_type, mask) per sample, paths relative to ``root``."""
    return [
        (
            s.path.relative_to(root).as_posix(),
            s.label,
            s.defect_type,
            None if s.mask_path is None else s.mask_path.relative_to(root).as_posix(),
        )
        for s in samples
    ]


def test_all_layouts_registered_on_import() -> None:
    assert layout_names() == ["elpv", "folder", "mvtec", "mvtec3d", "visa"]
    assert [get_layout(n).name for n in layout_names()] == layout_names()


# --- mvtec -----------------------------------------------------------------------------------


@pytest.fixture
def mvtec_root(tmp_path: Path) -> Path:
    cat = tmp_path / "bottle"
    for name in ("000.png", "001.png", "002.png"):
        png(cat / "train" / "good" / name)
    png(cat / "train" / "good" / ".hidden.png")
    (cat / "train" / "good" / "notes.txt").write_text("not an image")
    png(cat / "validation" / "good" / "000.png")
    png(cat / "test" / "good" / "000.png")
    png(cat / "test" / "crack" / "000.png")
    png(cat / "test" / "crack" / "001.PNG")
    png(cat / "test" / "scratch" / "000.jpg")
    png(cat / "ground_truth" / "crack" / "000_mask.png", 255)
    png(cat / "ground_truth" / "scratch" / "000_mask.png", 255)
    (tmp_path / "license.txt").write_text("licence")
    (tmp_path / "docs").mkdir()
    return tmp_path


def test_mvtec_categories_skip_non_category_entries(mvtec_root: Path) -> None:
    assert get_layout("mvtec").categories(mvtec_root) == ["bottle"]


def test_mvtec_train_includes_validation_normals(mvtec_root: Path) -> None:
    train = get_layout("mvtec").samples(mvtec_root, "bottle", "train")
    assert rel(train, mvtec_root) == [
        "bottle/train/good/000.png",
        "bottle/train/good/001.png",
        "bottle/train/good/002.png",
        "bottle/validation/good/000.png",
    ]
    assert {(s.label, s.split, s.category, s.defect_type, s.mask_path) for s in train} == {
        (0, "train", "bottle", "good", None)
    }


def test_mvtec_test_labels_defects_and_masks(mvtec_root: Path) -> None:
    test = get_layout("mvtec").samples(mvtec_root, "bottle", "test")
    assert summary(test, mvtec_root) == [
        ("bottle/test/crack/000.png", 1, "crack", "bottle/ground_truth/crack/000_mask.png"),
        ("bottle/test/crack/001.PNG", 1, "crack", None),  # mask missing: kept, no error
        ("bottle/test/good/000.png", 0, "good", None),
        ("bottle/test/scratch/000.jpg", 1, "scratch", "bottle/ground_truth/scratch/000_mask.png"),
    ]
    assert {s.split for s in test} == {"test"}


def test_mvtec_empty_train_folder_names_it(tmp_path: Path) -> None:
    (tmp_path / "cable" / "train" / "good").mkdir(parents=True)
    with pytest.raises(DataError, match=r"no training images in .*cable/train/good"):
        get_layout("mvtec").samples(tmp_path, "cable", "train")


def test_mvtec_missing_test_folder(tmp_path: Path) -> None:
    png(tmp_path / "cable" / "train" / "good" / "000.png")
    with pytest.raises(DataError, match=r"missing test folder .*cable/test"):
        get_layout("mvtec").samples(tmp_path, "cable", "test")


def test_missing_root_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    for name in ("mvtec", "mvtec3d", "folder", "visa"):
        with pytest.raises(DataError, match=re.escape(f"dataset root {missing} does not exist")):
            get_layout(name).samples(missing, "bottle", "train")
        with pytest.raises(DataError, match="does not exist"):
            get_layout(name).categories(missing)


def test_no_root_given(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="needs a dataset root"):
        get_layout("mvtec").categories(None)


def test_unknown_category_lists_known_ones(mvtec_root: Path) -> None:
    with pytest.raises(DataError, match=r"unknown category 'bottel'.*found: bottle"):
        get_layout("mvtec").samples(mvtec_root, "bottel", "train")


@pytest.mark.parametrize("bad", ["..", "../bottle", "bottle/../bottle", "a/b", "a\\b", "", "."])
@pytest.mark.parametrize("layout", ["mvtec", "mvtec3d", "folder", "visa", "elpv"])
def test_path_like_category_rejected(mvtec_root: Path, layout: str, bad: str) -> None:
    with pytest.raises(DataError, match="invalid category name"):
        get_layout(layout).samples(mvtec_root, bad, "train")


def test_bad_split_rejected(mvtec_root: Path) -> None:
    with pytest.raises(DataError, match="unknown split 'val'"):
        get_layout("mvtec").samples(mvtec_root, "bottle", "val")  # type: ignore[arg-type]


# --- mvtec3d ---------------------------------------------------------------------------------


@pytest.fixture
def mvtec3d_root(tmp_path: Path) -> Path:
    cat = tmp_path / "tire"
    png(cat / "train" / "good" / "rgb" / "000.png")
    png(cat / "train" / "good" / "rgb" / "001.png")
    (cat / "train" / "good" / "xyz").mkdir()
    png(cat / "validation" / "good" / "rgb" / "000.png")
    png(cat / "test" / "good" / "rgb" / "000.png")
    png(cat / "test" / "good" / "gt" / "000.png")  # all-black mask of a normal: not reported
    png(cat / "test" / "cut" / "rgb" / "000.png")
    png(cat / "test" / "cut" / "gt" / "000.png", 255)
    png(cat / "test" / "cut" / "rgb" / "001.png")  # no gt file
    png(cat / "test" / "hole" / "rgb" / "000.png")
    png(cat / "test" / "hole" / "gt" / "000.png", 255)
    return tmp_path


def test_mvtec3d_train_and_test(mvtec3d_root: Path) -> None:
    layout = get_layout("mvtec3d")
    assert layout.categories(mvtec3d_root) == ["tire"]
    train = layout.samples(mvtec3d_root, "tire", "train")
    assert summary(train, mvtec3d_root) == [
        ("tire/train/good/rgb/000.png", 0, "good", None),
        ("tire/train/good/rgb/001.png", 0, "good", None),
        ("tire/validation/good/rgb/000.png", 0, "good", None),
    ]
    test = layout.samples(mvtec3d_root, "tire", "test")
    assert summary(test, mvtec3d_root) == [
        ("tire/test/cut/rgb/000.png", 1, "cut", "tire/test/cut/gt/000.png"),
        ("tire/test/cut/rgb/001.png", 1, "cut", None),
        ("tire/test/good/rgb/000.png", 0, "good", None),
        ("tire/test/hole/rgb/000.png", 1, "hole", "tire/test/hole/gt/000.png"),
    ]


def test_mvtec3d_empty_train(tmp_path: Path) -> None:
    (tmp_path / "tire" / "train" / "good" / "rgb").mkdir(parents=True)
    with pytest.raises(DataError, match=r"no training images in .*tire/train/good/rgb"):
        get_layout("mvtec3d").samples(tmp_path, "tire", "train")


def test_each_mvtec_layout_names_the_other_where_the_images_lie_in_its_place(tmp_path: Path) -> None:
    # the MVTec 3D-AD tire shipped for the tests is re-packed in the MVTec AD tree: --layout mvtec3d on it said only
    # "missing training folder .../train/good/rgb" (a fresh user's first try), as if the download were incomplete
    png(tmp_path / "flat" / "tire" / "train" / "good" / "000.png")
    png(tmp_path / "nested" / "tire" / "train" / "good" / "rgb" / "000.png")
    flat, nested = tmp_path / "flat", tmp_path / "nested"
    with pytest.raises(DataError) as caught:
        get_layout("mvtec3d").samples(flat, "tire", "train")
    assert str(caught.value) == (f"missing training folder {flat}/tire/train/good/rgb; its images lie where the mvtec "
                                 "layout keeps them: use --layout mvtec")  # fmt: skip
    with pytest.raises(DataError) as caught:
        get_layout("mvtec").samples(nested, "tire", "train")
    assert str(caught.value) == (f"no training images in {nested}/tire/train/good; its images lie where the "
                                 "mvtec3d layout keeps them: use --layout mvtec3d")  # fmt: skip
    (tmp_path / "empty" / "tire" / "train" / "good").mkdir(parents=True)  # nothing in either place: no hint
    with pytest.raises(DataError) as caught:
        get_layout("mvtec3d").samples(tmp_path / "empty", "tire", "train")
    assert str(caught.value) == f"missing training folder {tmp_path}/empty/tire/train/good/rgb"


# --- visa ------------------------------------------------------------------------------------


def write_visa(root: Path, rows: list[dict[str, str]], header: tuple[str, ...] | None = None) -> Path:
    csv_path = root / "split_csv" / "1cls.csv"
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    with csv_path.open("w", newline="") as handle:
        fieldnames = list(header or ("object", "split", "label", "image", "mask"))
        writer = csv.DictWriter(handle, fieldnames=fieldnames)
        writer.writeheader()
        writer.writerows(rows)
    return csv_path


def visa_row(obj: str, split: str, label: str, image: str, mask: str = "") -> dict[str, str]:
    return {"object": obj, "split": split, "label": label, "image": image, "mask": mask}


@pytest.fixture
def visa_root(tmp_path: Path) -> Path:
    normal = "candle/Data/Images/Normal"
    anomaly = "candle/Data/Images/Anomaly"
    masks = "candle/Data/Masks/Anomaly"
    for i in range(3):
        png(tmp_path / normal / f"{i:04d}.JPG")
    png(tmp_path / anomaly / "000.JPG")
    png(tmp_path / anomaly / "001.JPG")
    png(tmp_path / masks / "000.png", 255)  # 001 has no mask file
    png(tmp_path / "pcb1/Data/Images/Normal/0000.JPG")
    write_visa(
        tmp_path,
        [
            visa_row("candle", "train", "normal", f"{normal}/0001.JPG"),
            visa_row("candle", "train", "normal", f"{normal}/0000.JPG"),
            visa_row("candle", "test", "normal", f"{normal}/0002.JPG"),
            visa_row("candle", "test", "anomaly", f"{anomaly}/000.JPG", f"{masks}/000.png"),
            visa_row("candle", "test", "anomaly", f"{anomaly}/001.JPG", f"{masks}/001.png"),
            visa_row("pcb1", "train", "normal", "pcb1/Data/Images/Normal/0000.JPG"),
        ],
    )
    return tmp_path


def test_visa_categories_from_csv(visa_root: Path) -> None:
    assert get_layout("visa").categories(visa_root) == ["candle", "pcb1"]


def test_visa_samples(visa_root: Path) -> None:
    layout = get_layout("visa")
    train = layout.samples(visa_root, "candle", "train")
    assert summary(train, visa_root) == [
        ("candle/Data/Images/Normal/0000.JPG", 0, "good", None),
        ("candle/Data/Images/Normal/0001.JPG", 0, "good", None),
    ]
    test = layout.samples(visa_root, "candle", "test")
    assert summary(test, visa_root) == [
        ("candle/Data/Images/Anomaly/000.JPG", 1, "anomaly", "candle/Data/Masks/Anomaly/000.png"),
        ("candle/Data/Images/Anomaly/001.JPG", 1, "anomaly", None),
        ("candle/Data/Images/Normal/0002.JPG", 0, "good", None),
    ]
    assert len(layout.samples(visa_root, "pcb1", "train")) == 1
    with pytest.raises(DataError, match=r"no test images for 'pcb1'"):
        layout.samples(visa_root, "pcb1", "test")


def test_visa_unknown_category(visa_root: Path) -> None:
    with pytest.raises(DataError, match=r"unknown category 'fryum'.*found: candle, pcb1"):
        get_layout("visa").samples(visa_root, "fryum", "train")


def test_visa_csv_problems_are_named(tmp_path: Path) -> None:
    layout = get_layout("visa")
    with pytest.raises(DataError, match=r"missing VisA split file .*split_csv/1cls.csv"):
        layout.categories(tmp_path)
    write_visa(tmp_path, [], header=("object", "split", "image"))
    with pytest.raises(DataError, match=r"lacks column.*label, mask"):
        layout.categories(tmp_path)
    write_visa(tmp_path, [visa_row("candle", "train", "weird", "a.png")])
    with pytest.raises(DataError, match="line 2: label 'weird'"):
        layout.categories(tmp_path)
    write_visa(tmp_path, [visa_row("candle", "train", "normal", "../outside.png")])
    with pytest.raises(DataError, match=re.escape("line 2: path '../outside.png' must be relative")):
        layout.categories(tmp_path)
    write_visa(tmp_path, [visa_row("candle", "train", "normal", "candle/missing.png")])
    with pytest.raises(DataError, match=r"line 2: image .*candle/missing.png does not exist"):
        layout.samples(tmp_path, "candle", "train")


# --- folder ----------------------------------------------------------------------------------


def test_folder_split_form(tmp_path: Path) -> None:
    cat = tmp_path / "widget"
    png(cat / "train" / "good" / "a.png")
    png(cat / "train" / "good" / "b.bmp")
    png(cat / "test" / "good" / "c.png")
    png(cat / "test" / "dent" / "d1.png")
    png(cat / "test" / "dent" / "d2.png")
    png(cat / "test" / "dent" / "d3.tiff")
    png(cat / "masks" / "dent" / "d1.png", 255)
    png(cat / "masks" / "dent" / "d2_mask.png", 255)
    layout = get_layout("folder")
    assert layout.categories(tmp_path) == ["widget"]
    assert summary(layout.samples(tmp_path, "widget", "train"), tmp_path) == [
        ("widget/train/good/a.png", 0, "good", None),
        ("widget/train/good/b.bmp", 0, "good", None),
    ]
    assert summary(layout.samples(tmp_path, "widget", "test"), tmp_path) == [
        ("widget/test/dent/d1.png", 1, "dent", "widget/masks/dent/d1.png"),
        ("widget/test/dent/d2.png", 1, "dent", "widget/masks/dent/d2_mask.png"),
        ("widget/test/dent/d3.tiff", 1, "dent", None),
        ("widget/test/good/c.png", 0, "good", None),
    ]


def test_folder_flat_form_every_fourth_normal_is_test(tmp_path: Path) -> None:
    cat = tmp_path / "part"
    for i in range(9):
        png(cat / "good" / f"{i:02d}.png")
    png(cat / "good" / ".DS_Store.png")
    png(cat / "scratch" / "s0.webp")
    png(cat / "scratch" / "s1.jpeg")
    png(cat / "masks" / "scratch" / "s0.png", 255)
    layout = get_layout("folder")
    assert layout.categories(tmp_path) == ["part"]
    train = layout.samples(tmp_path, "part", "train")
    assert [s.path.stem for s in train] == ["00", "01", "02", "04", "05", "06", "08"]
    assert {(s.label, s.split) for s in train} == {(0, "train")}
    test = layout.samples(tmp_path, "part", "test")
    assert summary(test, tmp_path) == [
        ("part/good/03.png", 0, "good", None),
        ("part/good/07.png", 0, "good", None),
        ("part/scratch/s0.webp", 1, "scratch", "part/masks/scratch/s0.png"),
        ("part/scratch/s1.jpeg", 1, "scratch", None),
    ]


def test_folder_flat_form_empty_good(tmp_path: Path) -> None:
    (tmp_path / "part" / "good").mkdir(parents=True)
    with pytest.raises(DataError, match=r"no training images in .*part/good"):
        get_layout("folder").samples(tmp_path, "part", "train")


def test_folder_without_categories(tmp_path: Path) -> None:
    (tmp_path / "random").mkdir()
    with pytest.raises(DataError, match="no image-folder categories under"):
        get_layout("folder").categories(tmp_path)


# --- elpv ------------------------------------------------------------------------------------


def _package_labels() -> list[tuple[str, float, str]]:
    import elpv_dataset

    labels = Path(elpv_dataset.__file__).parent / "data" / "labels.csv"
    rows = [line.split() for line in labels.read_text().splitlines() if line.strip()]
    return [(path, float(prob), kind) for path, prob, kind in rows]


@pytest.mark.parametrize(("category", "n_normal", "n_defect"), [("mono", 588, 313), ("poly", 920, 402)])
def test_elpv_counts(category: str, n_normal: int, n_defect: int) -> None:
    layout = get_layout("elpv")
    assert layout.categories(None) == ["mono", "poly"]
    train = layout.samples(None, category, "train")
    test = layout.samples(None, category, "test")
    n_test_normal = round(0.25 * n_normal)
    assert len(train) == n_normal - n_test_normal
    assert Counter(s.label for s in test) == {0: n_test_normal, 1: n_defect}
    assert {s.defect_type for s in test if s.label == 1} == {"defective"}
    assert all(s.mask_path is None for s in train + test)
    assert not {s.path for s in train} & {s.path for s in test}
    assert all(s.path.is_file() for s in train + test)


def test_elpv_mono_exact_sizes() -> None:
    layout = get_layout("elpv")
    assert len(layout.samples(None, "mono", "train")) == 441
    assert sum(s.label == 0 for s in layout.samples(None, "mono", "test")) == 147


def test_elpv_split_is_deterministic_and_matches_recipe() -> None:
    layout = get_layout("elpv")
    first = layout.samples(None, "mono", "test")
    assert first == layout.samples(None, "mono", "test")
    # Recompute the documented recipe independently: sorted normals, seeded permutation, first 25%.
    normals = sorted(Path(p).name for p, prob, kind in _package_labels() if kind == "mono" and prob == 0.0)
    order = np.random.default_rng(SPLIT_SEED).permutation(len(normals))
    expected = sorted(normals[i] for i in order[: round(TEST_FRACTION * len(normals))])
    assert sorted(s.path.name for s in first if s.label == 0) == expected
    excluded = {Path(p).name for p, prob, kind in _package_labels() if 0.0 < prob < 1.0}
    everything = first + layout.samples(None, "mono", "train")
    assert not excluded & {s.path.name for s in everything}


def test_elpv_custom_labels_root(tmp_path: Path) -> None:
    lines = []
    for i in range(8):
        png(tmp_path / "images" / f"n{i}.png")
        lines.append(f"images/n{i}.png  0.0  mono")
    png(tmp_path / "images" / "d0.png", 255)
    png(tmp_path / "images" / "u0.png", 128)
    lines += ["images/d0.png  1.0  mono", "images/u0.png  0.3333333333333333  mono"]
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")
    layout = get_layout("elpv")
    assert layout.categories(tmp_path) == ["mono"]
    train = layout.samples(tmp_path, "mono", "train")
    test = layout.samples(tmp_path, "mono", "test")
    assert len(train) == 6
    assert Counter(s.label for s in test) == {0: 2, 1: 1}
    assert all(s.path.parent == tmp_path / "images" for s in train + test)
    assert "u0.png" not in {s.path.name for s in train + test}


def test_elpv_root_without_labels_uses_package(tmp_path: Path) -> None:
    assert len(get_layout("elpv").samples(tmp_path, "mono", "train")) == 441


def test_elpv_errors(tmp_path: Path) -> None:
    layout = get_layout("elpv")
    with pytest.raises(DataError, match=r"unknown category 'thin'.*found: mono, poly"):
        layout.samples(None, "thin", "test")
    (tmp_path / "labels.csv").write_text("images/a.png  zero  mono\n")
    with pytest.raises(DataError, match="line 1: probability 'zero' is not a number"):
        layout.categories(tmp_path)
    (tmp_path / "labels.csv").write_text("images/a.png  0.0  mono\n")
    with pytest.raises(DataError, match=r"image .*images/a.png listed in .*labels.csv does not exist"):
        layout.samples(tmp_path, "mono", "train")


# --- real data -------------------------------------------------------------------------------


@needs_tire
def test_real_tire_data() -> None:
    layout = get_layout("mvtec")
    assert layout.categories(TIRE) == ["tire"]
    train = layout.samples(TIRE, "tire", "train")
    assert len(train) == 210 + 29
    assert Counter(s.path.parent.parent.name for s in train) == {"train": 210, "validation": 29}
    test = layout.samples(TIRE, "tire", "test")
    assert Counter(s.defect_type for s in test) == {
        "good": 25,
        "combined": 5,
        "contamination": 28,
        "cut": 27,
        "hole": 27,
    }
    anomalous = [s for s in test if s.label == 1]
    assert len(anomalous) == 87
    assert all(s.mask_path is not None and s.mask_path.is_file() for s in anomalous)
    assert all(s.mask_path is not None and s.mask_path.name == f"{s.path.stem}_mask.png" for s in anomalous)
    assert all(s.mask_path is None for s in test if s.label == 0)
    assert [s.path for s in test] == sorted(s.path for s in test)


def test_a_gif_is_an_image_in_a_folder_as_it_is_alone(tmp_path: Path) -> None:
    """The one extension list includes ``.gif``: what ``eagle inspect`` decodes, a folder lists."""
    from eagle_iad.images import load_rgb

    good = tmp_path / "part" / "good"
    png(good / "0.png")
    for name in ("1.gif", "2.GIF"):
        Image.new("P", (16, 16), 3).save(good / name, format="GIF")
    train = get_layout("folder").samples(tmp_path, "part", "train")
    assert [s.path.name for s in train] == ["0.png", "1.gif", "2.GIF"]
    assert load_rgb(train[1].path).shape == (16, 16, 3)


def test_every_image_suffix_is_listed_by_a_folder_and_decoded_as_it_is_alone(tmp_path: Path) -> None:
    """One suffix list for every folder listing, naming what ``eagle inspect`` decodes: a camera's PGM, a JPEG 2000
    and JPEG's other names (``.jpe``, ``.jfif``) were read one at a time but silently left out of a fit's folder."""
    from eagle_iad.choices import IMAGE_SUFFIXES
    from eagle_iad.images import load_rgb

    formats = Image.registered_extensions()
    good = tmp_path / "part" / "train" / "good"
    good.mkdir(parents=True)
    for index, suffix in enumerate(IMAGE_SUFFIXES):
        mode = "1" if suffix == ".pbm" else "L" if suffix in (".pgm", ".pnm") else "RGB"
        Image.new(mode, (16, 16), 1).save(good / f"{index:02d}{suffix.upper() if index % 2 else suffix}",
                                          format=formats[suffix])  # fmt: skip
    train = get_layout("folder").samples(tmp_path, "part", "train")
    assert len(train) == len(IMAGE_SUFFIXES) and {".pgm", ".jp2", ".jpe", ".jfif"} <= set(IMAGE_SUFFIXES)
    assert all(load_rgb(sample.path).shape == (16, 16, 3) for sample in train)


def test_a_folder_says_which_files_it_skipped_and_why(tmp_path: Path) -> None:
    """A fit's folder passed over non-image names without a word; now one line counts them by kind and names them.
    A dot-file that is no image by name (``.DS_Store``) is nobody's business and is not said."""
    from eagle_iad.data import skipped_files

    good = tmp_path / "good"
    png(good / "0.png")
    for name in ("a.raw", "b.raw", "notes.txt", "Makefile", ".hidden.png", ".DS_Store"):
        (good / name).write_bytes(b"x")
    (good / "sub").mkdir()
    assert skipped_files([good, good]) == (
        "skipped 5 files that are not taken as images in the training folder (2 .raw, 1 .txt, 1 hidden, 1 no suffix): "
        ".hidden.png, Makefile, a.raw, b.raw, notes.txt; a folder's images are its visible files ending .png .jpg "
        ".jpeg .jpe .jfif .bmp .tif .tiff .gif .webp .pgm .ppm .pbm .pnm .jp2 .j2k (docs/USAGE.md, 'Images')"
    )
    assert skipped_files([tmp_path / "missing"]) is None
    for name in ("a.raw", "b.raw", "notes.txt", "Makefile", ".hidden.png"):
        (good / name).unlink()
    assert skipped_files([good]) is None


def test_a_recursive_listing_skips_hidden_folders_and_files(tmp_path: Path) -> None:
    """``eagle teach``'s folders and the service's server-side folders take what a fit's folder takes."""
    from eagle_iad.data import is_listed_image

    for name in ("a.png", "b.pgm", ".c.png", ".ipynb_checkpoints/d.png", "sub/e.JPE", "f.txt"):
        png(tmp_path / "x" / name) if not name.endswith(".txt") else (tmp_path / "x" / name).write_text("x")
    listed = sorted(p.relative_to(tmp_path / "x").as_posix() for p in (tmp_path / "x").rglob("*")
                    if is_listed_image(p, tmp_path / "x"))  # fmt: skip
    assert listed == ["a.png", "b.pgm", "sub/e.JPE"]


def test_the_console_takes_the_same_suffixes_from_a_dropped_folder() -> None:
    """The web console filters a dropped folder by name: by the same list, or a folder gives another set there."""
    from eagle_iad.choices import IMAGE_SUFFIXES

    page = (Path(__file__).resolve().parents[1] / "web" / "src" / "pages" / "InspectPage.tsx").read_text()
    found = re.search(r"const IMAGE_NAME = /(.+)/i;", page)
    assert found is not None
    pattern = re.compile(found.group(1), re.IGNORECASE)
    candidates = {*IMAGE_SUFFIXES, *Image.registered_extensions(), ".txt", ".raw", ".json"}
    assert {s for s in candidates if pattern.search(f"a{s}")} == set(IMAGE_SUFFIXES)
