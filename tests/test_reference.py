"""The nearest normal reference: which training image an inspection shows beside its verdict.

The fast search (and faiss) must name the same training image as a brute-force computation: the
nearest bank row (float64 distances to every row) of the patch with the largest nearest distance,
mapped through ``bank_image_ids``. Real tire images, the weight-free extractor (the search and the
bookkeeping are what is tested, not the backbone).
"""

from __future__ import annotations

import io
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from expert_fakes import FAKE_CONFIG, FakeExtractor, noise_pngs
from PIL import Image
from tire_data import TIRE, needs_tire

from eagle_iad.errors import ModelFormatError
from eagle_iad.expert import Expert, fit, load, save
from eagle_iad.expert import store as store_module
from eagle_iad.expert.preprocess import prepare
from eagle_iad.expert.references import REFERENCE_MAX_SIDE, thumbnail
from eagle_iad.expert.store import SCHEMA_VERSION
from eagle_iad.images import load_rgb
from eagle_iad.verdict import inspect_images, make_verdict, write_pictures

DATA = Path(__file__).parent / "data"
OLD_MODEL_MESSAGE = "no reference: model fitted before model schema 4; refit to get one"


def brute_force_reference(expert: Expert, rgb: np.ndarray) -> tuple[int, int]:
    """Training image and bank row nearest to the highest-scoring patch, by exhaustive float64 search."""
    tensor, _ = prepare(rgb, expert.model.config)
    patches = expert.embed(tensor).reshape(-1, expert.model.config.target_dim).double()
    distances = torch.cdist(patches, expert.model.bank.double())
    nearest, rows = distances.min(dim=1)
    row = int(rows[int(nearest.argmax())])
    return int(expert.model.bank_image_ids[row]), row


@pytest.fixture(scope="module")
def tire_paths() -> tuple[list[Path], list[Path]]:
    train = sorted((TIRE / "tire" / "train" / "good").glob("*.png"))[:8]
    test = [sorted((TIRE / "tire" / "test" / kind).glob("*.png"))[0] for kind in ("cut", "hole", "good", "combined")]
    return train, test


@needs_tire
@pytest.mark.parametrize(
    ("preprocess", "search"), [("resize", "torch"), ("tile", "torch"), ("resize", "faiss"), ("center-crop", "torch")]
)
def test_reference_is_the_brute_force_nearest_image_of_the_max_patch(
    tire_paths: tuple[list[Path], list[Path]], preprocess: str, search: str
) -> None:
    train, test = tire_paths
    config = replace(FAKE_CONFIG, preprocess=preprocess, size=128, tile=64, tile_overlap=16, search=search)
    expert = fit(train, "tire", config, extractor=FakeExtractor())
    rgbs = [load_rgb(path) for path in [*test, train[3]]]
    results = expert.inspect_many(rgbs)
    seen = set()
    for rgb, result in zip(rgbs, results, strict=True):
        assert (result.reference_image, result.reference_row) == brute_force_reference(expert, rgb)
        seen.add(result.reference_image)
        verdict = make_verdict(expert, "query.png", result)
        assert verdict.reference == {
            "index": result.reference_image,
            "image": expert.model.train_images[result.reference_image],
            "bank_row": result.reference_row,
            "unavailable": None,
        }
    assert all(0 <= index < len(train) for index in seen)


@pytest.fixture(scope="module")
def noise_expert(tmp_path_factory: pytest.TempPathFactory) -> Expert:
    root = tmp_path_factory.mktemp("reference")
    return fit(noise_pngs(root / "train", 5, seed=3, size=(600, 700)), "cat", FAKE_CONFIG, extractor=FakeExtractor())


def test_fit_keeps_a_downsized_jpeg_per_training_image(noise_expert: Expert) -> None:
    pictures = noise_expert.model.references
    assert pictures is not None and len(pictures) == len(noise_expert.model.train_images) == 5
    for data in pictures:
        with Image.open(io.BytesIO(data)) as image:
            assert image.format == "JPEG"
            assert image.size == (REFERENCE_MAX_SIDE, round(600 * REFERENCE_MAX_SIDE / 700))


def test_small_images_keep_their_size() -> None:
    with Image.open(io.BytesIO(thumbnail(np.zeros((40, 30, 3), dtype=np.uint8)))) as image:
        assert image.size == (30, 40)


def test_references_survive_save_and_load_and_are_written_beside_the_pictures(
    noise_expert: Expert, tmp_path: Path
) -> None:
    target = save(noise_expert.model, tmp_path / "model")
    manifest = json.loads((target / "model.json").read_text())
    assert manifest["schema_version"] == SCHEMA_VERSION == 12
    assert manifest["training"]["references"] == {"format": "jpeg", "max_side": 512, "count": 5}
    loaded = Expert(load(target), extractor=FakeExtractor())
    assert loaded.model.references == noise_expert.model.references
    query = noise_pngs(tmp_path / "query", 1, seed=9, size=(90, 80))[0]
    [verdict] = inspect_images(loaded, [query], tmp_path / "out")
    assert verdict.reference is not None and verdict.reference["unavailable"] is None
    written = Path(verdict.pictures["reference"])
    assert written == tmp_path / "out" / "noise_9_0_reference.jpg"
    assert written.read_bytes() == loaded.reference_picture(verdict.reference["index"])
    assert verdict.to_dict()["reference"]["image"] == f"noise_3_{verdict.reference['index']}.png"


def test_inconsistent_reference_offsets_are_refused(noise_expert: Expert, tmp_path: Path) -> None:
    model = replace(noise_expert.model, references=noise_expert.model.references[:4])  # type: ignore[index]
    target = tmp_path / "model"
    with pytest.raises(ModelFormatError) as info:  # a save validates as a load would: nothing is written
        save(model, target)
    assert str(info.value) == (
        f"{target}: the new model fails the checks every load makes, so it was not saved and the previous model is "
        f"unchanged ({target}: inconsistent model (reference pictures do not match the training images))"
    )
    assert sorted(tmp_path.iterdir()) == []
    target.mkdir()
    store_module._write_model(model, target)  # such a folder, written by something other than save()
    with pytest.raises(ModelFormatError) as info:
        load(target)
    assert str(info.value) == f"{target}: inconsistent model (reference pictures do not match the training images)"


def test_a_model_fitted_before_schema_4_loads_and_says_why_there_is_no_reference(tmp_path: Path) -> None:
    shutil.copytree(DATA / "schema1" / "model", tmp_path / "model")
    expert = Expert(load(tmp_path / "model"), extractor=FakeExtractor())
    assert expert.model.references is None
    rgb = load_rgb(DATA / "schema1" / "query0.png")
    result = expert.inspect(rgb)
    assert (result.reference_image, result.reference_row) == brute_force_reference(expert, rgb)
    verdict = make_verdict(expert, "query0.png", result)
    assert verdict.reference is not None
    assert verdict.reference["image"] == expert.model.train_images[result.reference_image]
    assert verdict.reference["unavailable"] == OLD_MODEL_MESSAGE
    write_pictures(verdict, rgb, result, tmp_path / "out", expert=expert)
    assert sorted(verdict.pictures) == ["box", "heatmap"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["query0_box.png", "query0_heatmap.png"]
