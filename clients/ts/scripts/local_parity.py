"""The Python half of the local runtime's end-to-end parity test (clients/ts/test/local-parity.test.ts).

``python local_parity.py WORK``: fits small experts with the ``eagle`` CLI on real images (elpv solar
cells, whole-frame resize and tiles; the MVTec 3D-AD tire in the paper's centre-crop mode when
``../shared/data/mvtec3d-tire`` is there), and more fitted and inspected on JPEG copies (a camera that saves
JPEG: the elpv cells in false colour, and the tire), exports each with ``eagle export --format onnx``,
inspects test images with ``eagle inspect --runtime onnx --json`` and with the fitted model itself
(``--runtime torch``), and writes ``WORK/parity.json``: per model the export folder, the images and the
verdicts Python printed under each runtime; and, under ``encoded``, JPEG copies of the first model's images
(fitted on PNGs) with what ``eagle inspect --runtime onnx --json`` printed for them, warnings included;
under ``coloured``, a tinted (colour) copy of its first image, fitted on greyscale cells, with what it printed; under
``exposed``, a washed-out and a nearly black copy of it, with what it printed. The
TypeScript test runs the same images through the same export in Node and compares (the boxes' patch scores
with torch's too: the number a person reads on a box).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from eagle_iad.data import get_layout

REPO = Path(__file__).resolve().parents[3]
TIRE = REPO.parent / "shared" / "data" / "mvtec3d-tire"


def eagle(*args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "eagle_iad.cli", *args], capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"`eagle {' '.join(args)}` failed (exit {result.returncode}): {result.stderr.strip()}")
    return result.stdout


def pick(layout: str, root: Path | None, category: str, per_label: int) -> list[str]:
    samples = sorted(get_layout(layout).samples(root, category, "test"), key=lambda s: str(s.path))
    normal = [s for s in samples if s.label == 0][:per_label]
    defective = [s for s in samples if s.label == 1][:per_label]
    return [str(s.path) for s in normal + defective]


def model_case(work: Path, name: str, data: list[str], fit: list[str], images: list[str]) -> dict[str, Any]:
    model = work / f"{name}-model"
    export = work / f"{name}-export"
    eagle("fit", *data, "--out", str(model), "--quiet", *fit)
    eagle("export", "--model", str(model), "--format", "onnx", "--out", str(export))
    verdicts = json.loads(eagle("inspect", "--runtime", "onnx", "--model", str(export), "--json", "--quiet", *images))
    torch = json.loads(eagle("inspect", "--model", str(model), "--json", "--quiet", *images))
    return {"name": name, "export": str(export), "images": images, "verdicts": verdicts, "torch": torch}


def encoded_case(work: Path, case: dict[str, Any]) -> dict[str, Any]:
    """JPEG copies (quality 95 4:2:0, 75 4:4:4, 90 grey) of a PNG-fitted export's images, and Python's verdicts on
    them under ONNX Runtime: each warns that its encoding is not the training images' (expert/encodings.py)."""
    folder = work / "encoded"
    folder.mkdir(parents=True, exist_ok=True)
    images = []
    for index, (quality, subsampling, mode) in enumerate(((95, 2, "RGB"), (75, 0, "RGB"), (90, -1, "L"))):
        source = case["images"][index % len(case["images"])]
        path = folder / f"{Path(source).stem}-q{quality}.jpg"
        with Image.open(source) as image:
            image.convert(mode).save(path, quality=quality, subsampling=subsampling)
        images.append(str(path))
    export = case["export"]
    verdicts = json.loads(eagle("inspect", "--runtime", "onnx", "--model", export, "--json", "--quiet", *images))
    return {"export": export, "images": images, "verdicts": verdicts}


def false_colour(image: Image.Image) -> Image.Image:
    """A grey cell in colour whose hue changes with brightness, so its JPEG has chroma detail everywhere (the
    chroma upsampling of an approximate decoder shows there, as on a colour camera's frames)."""
    grey = np.asarray(image.convert("L"), dtype=np.float64)
    rgb = np.stack([grey, 128 + 100 * np.sin(grey / 18), 255 - grey], axis=-1)
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))


def jpeg_case(
    work: Path,
    name: str,
    layout: str,
    root: Path | None,
    category: str,
    train: int,
    per_label: int,
    fit: list[str],
    colour: bool,
) -> dict[str, Any]:
    """A model fitted on JPEGs (quality 95, 4:2:0: a camera that saves JPEG) and inspected on JPEGs: the case
    where the local runtime once changed verdicts, its JPEG decoder not being libjpeg's."""
    data = work / f"{name}-data"
    good = data / category / "train" / "good"
    tests = work / f"{name}-test"
    good.mkdir(parents=True, exist_ok=True)
    tests.mkdir(parents=True, exist_ok=True)
    samples = sorted(get_layout(layout).samples(root, category, "train"), key=lambda s: str(s.path))[:train]

    def save(source: str | Path, path: Path) -> str:
        with Image.open(source) as image:
            (false_colour(image) if colour else image.convert("RGB")).save(path, quality=95, subsampling=2)
        return str(path)

    for index, sample in enumerate(samples):
        save(sample.path, good / f"{index:03d}.jpg")
    images = [
        save(source, tests / f"{index:02d}-{Path(source).stem}.jpg")
        for index, source in enumerate(pick(layout, root, category, per_label))
    ]
    return model_case(work, name, ["--layout", "folder", "--data", str(data), "--category", category], fit, images)


def coloured_case(work: Path, case: dict[str, Any]) -> dict[str, Any]:
    """A tinted (colour) PNG copy of a greyscale-fitted export's first image, and Python's verdict on it under ONNX
    Runtime: it warns that the training images were greyscale (expert/encodings.py's colour_warning)."""
    import numpy as np

    folder = work / "coloured"
    folder.mkdir(parents=True, exist_ok=True)
    source = case["images"][0]
    path = folder / f"{Path(source).stem}-tinted.png"
    with Image.open(source) as image:
        rgb = np.asarray(image.convert("RGB")).copy()
    rgb[..., 0] = np.minimum(rgb[..., 0].astype(np.int16) + 12, 255).astype(np.uint8)
    Image.fromarray(rgb).save(path)
    export = case["export"]
    verdicts = json.loads(eagle("inspect", "--runtime", "onnx", "--model", export, "--json", "--quiet", str(path)))
    return {"export": export, "images": [str(path)], "verdicts": verdicts}


def exposed_case(work: Path, case: dict[str, Any]) -> dict[str, Any]:
    """Copies of the first model's first image under other light (washed out: a third of the contrast over a bright
    offset; nearly black: a tenth of the light), and Python's verdicts on them under ONNX Runtime: each warns that
    its exposure lies far outside the training images' (expert/lighting.py)."""
    folder = work / "exposed"
    folder.mkdir(parents=True, exist_ok=True)
    source = case["images"][0]
    with Image.open(source) as image:
        rgb = np.asarray(image.convert("RGB"), dtype=np.float64)
    images = []
    for name, pixels in (("washed", rgb * 0.3 + 190), ("black", rgb * 0.1)):
        path = folder / f"{Path(source).stem}-{name}.png"
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path)
        images.append(str(path))
    export = case["export"]
    verdicts = json.loads(eagle("inspect", "--runtime", "onnx", "--model", export, "--json", "--quiet", *images))
    return {"export": export, "images": images, "verdicts": verdicts}


def main() -> None:
    work = Path(sys.argv[1])
    work.mkdir(parents=True, exist_ok=True)
    cases = [
        model_case(
            work,
            "elpv",
            ["--layout", "elpv", "--category", "mono"],
            ["--limit-train", "6", "--size", "128"],
            pick("elpv", None, "mono", 3),
        ),
        # Tiles are cut and stitched inside the graph; the host resizes the whole frame as for resize.
        model_case(
            work,
            "elpv-tile",
            ["--layout", "elpv", "--category", "mono"],
            ["--limit-train", "4", "--preprocess", "tile", "--size", "192", "--tile", "128", "--tile-overlap", "32"],
            pick("elpv", None, "mono", 2),
        ),
    ]
    encoded = encoded_case(work, cases[0])
    coloured = coloured_case(work, cases[0])
    exposed = exposed_case(work, cases[0])
    cases.append(jpeg_case(work, "elpv-jpeg", "elpv", None, "mono", 6, 3, ["--size", "128"], colour=True))
    skipped = []
    if os.environ.get("EAGLE_NO_SHARED") == "1":
        skipped.append("tire: tire images hidden by EAGLE_NO_SHARED=1 (as in a fresh clone)")
    elif (TIRE / "tire").is_dir():
        cases.append(
            model_case(
                work,
                "tire",
                ["--layout", "mvtec", "--data", str(TIRE), "--category", "tire"],
                ["--limit-train", "4", "--preprocess", "center-crop", "--resize", "128", "--crop", "96"],
                pick("mvtec", TIRE, "tire", 2),
            )
        )
        # The tire is dark: the exposure step's gain (about 4.8) magnifies any decoding difference.
        fit = ["--preprocess", "center-crop", "--resize", "128", "--crop", "96"]
        cases.append(jpeg_case(work, "tire-jpeg", "mvtec", TIRE, "tire", 4, 3, fit, colour=False))
    else:
        skipped.append(f"tire: {TIRE} is not there")
    document = {"cases": cases, "encoded": encoded, "coloured": coloured, "exposed": exposed, "skipped": skipped}
    (work / "parity.json").write_text(json.dumps(document))


if __name__ == "__main__":
    main()
