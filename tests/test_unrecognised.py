""" "Not this product": an image unlike every training image is unrecognised, not a defect with a box around it.

A real elpv expert (16 mono cells, efficientnet_lite0) is shown a frame of noise, a black frame, a grey
frame, a checkerboard and (where ../shared has it) a tire: each must be unrecognised, with no box. Its
normal and defective test cells must not be: a defect changes part of a cell, not all of it. The
coverage is computed by hand from the fit's own leave-own-out patch distances and compared with the
model's (the farthest training patch), and it survives a save and load; a model saved before it existed
loads without it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tire_data import tire_root, tire_skip_reason

from eagle_iad.data import get_layout


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    import torch

    from eagle_iad.expert import fit, leave_own_out, load, save

    layout = get_layout("elpv")
    train = sorted(s.path for s in layout.samples(None, "mono", "train"))[:16]
    captured: dict[str, Any] = {}
    original = leave_own_out.leave_own_out

    def spy(*args: Any, **kwargs: Any) -> Any:
        captured["own_out"] = result = original(*args, **kwargs)
        return result

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    from eagle_iad.expert import fitting

    fitting.leave_own_out = spy  # type: ignore[assignment]
    try:
        expert = fit(train, "mono")
    finally:
        fitting.leave_own_out = original  # type: ignore[assignment]
        torch.set_num_threads(before)
    directory = tmp_path_factory.mktemp("unrecognised") / "mono"
    save(expert.model, directory)
    test = list(layout.samples(None, "mono", "test"))
    return {"expert": expert, "dir": directory, "own_out": captured["own_out"], "load": load, "test": test,
            "n": len(train)}  # fmt: skip


def _verdict(fitted: dict[str, Any], image: Any, name: str = "x.png") -> Any:
    from eagle_iad.verdict import make_verdict

    expert = fitted["expert"]
    return make_verdict(expert, name, expert.inspect(image))


def test_the_coverage_is_the_farthest_training_patch_and_survives_a_save(fitted: dict[str, Any]) -> None:
    coverage = fitted["expert"].model.coverage
    rows = fitted["own_out"].patch_scores.reshape(fitted["n"], -1)
    assert coverage.radius == float(rows[np.isfinite(rows)].max())  # every normal patch lies within it
    assert coverage.limit == 0.2
    assert fitted["load"](fitted["dir"]).coverage == coverage


def test_too_few_training_images_keep_no_coverage() -> None:
    from eagle_iad.expert.coverage import fit_coverage

    rows = np.arange(9 * 4, dtype=np.float32)
    assert fit_coverage(rows, 9) is None  # nine images: four elpv cells left normal cells 88% "foreign"
    assert fit_coverage(np.append(rows, [np.inf, 3.0]), 10).radius == 35.0  # ten: the farthest finite patch


@pytest.mark.parametrize("kind", ["noise", "black", "grey", "checkerboard"])
def test_an_image_of_something_else_is_unrecognised_without_boxes(fitted: dict[str, Any], kind: str) -> None:
    rng = np.random.default_rng(7)
    images = {
        "noise": rng.integers(0, 256, (300, 300, 3), dtype=np.uint8),  # a camera fault
        "black": np.zeros((300, 300, 3), dtype=np.uint8),  # a blocked lens, no light
        "grey": np.full((300, 300, 3), 128, dtype=np.uint8),  # a dirty, washed-out frame
        "checkerboard": (np.kron((np.indices((12, 12)).sum(axis=0) % 2), np.ones((25, 25))) * 255)
        .astype(np.uint8)[..., None]
        .repeat(3, axis=2),  # another product entirely
    }
    verdict = _verdict(fitted, images[kind])
    assert verdict.unrecognised is True and verdict.decision == "unrecognised"
    assert verdict.boxes == [] and verdict.candidates == [] and verdict.in_band is False
    assert verdict.foreign_share >= fitted["expert"].model.coverage.limit
    assert verdict.to_dict()["unrecognised"] is True


@pytest.mark.skipif(tire_root() is None, reason=tire_skip_reason())
def test_a_tire_is_not_a_solar_cell(fitted: dict[str, Any]) -> None:
    root = tire_root()
    assert root is not None
    tires = sorted((root / "tire" / "test" / "good").glob("*.png"))[:3]
    assert tires
    for path in tires:
        verdict = _verdict(fitted, path, path.name)
        assert (verdict.decision, verdict.boxes) == ("unrecognised", []), (path.name, verdict.foreign_share)


def test_normal_and_defective_cells_are_recognised(fitted: dict[str, Any]) -> None:
    """A defect changes a part of a cell: judged as this product, anomalous or not, never 'unrecognised'."""
    normal = [s.path for s in fitted["test"] if s.label == 0][:12]
    defective = [s.path for s in fitted["test"] if s.label == 1][:24]
    shares = []
    for path in [*normal, *defective]:
        verdict = _verdict(fitted, path, Path(path).name)
        assert verdict.unrecognised is False and verdict.decision in ("normal", "anomalous"), Path(path).name
        shares.append(verdict.foreign_share)
    assert max(shares) < fitted["expert"].model.coverage.limit


def test_a_model_saved_before_the_coverage_loads_without_it(fitted: dict[str, Any], tmp_path: Path) -> None:
    import shutil

    from eagle_iad.expert.manifest import manifest_checksum

    old = tmp_path / "old"
    shutil.copytree(fitted["dir"], old)
    manifest = json.loads((old / "model.json").read_text())
    del manifest["coverage"]
    manifest["checksum"] = manifest_checksum(manifest)
    (old / "model.json").write_text(json.dumps(manifest))
    model = fitted["load"](old)
    assert model.coverage is None
    from eagle_iad.expert import Expert
    from eagle_iad.verdict import make_verdict

    expert = Expert(model)
    noise = np.random.default_rng(7).integers(0, 256, (300, 300, 3), dtype=np.uint8)
    verdict = make_verdict(expert, "n.png", expert.inspect(noise))
    assert verdict.unrecognised is None and verdict.foreign_share is None
    assert verdict.decision == "anomalous"  # as before: judged as a defect of this product


def test_a_line_gate_reading_only_the_opc_ua_flag_does_not_pass_an_unrecognised_part() -> None:
    from eagle_iad.station.sinks.opcua import _values

    for decision, flag in (("anomalous", True), ("unrecognised", True), ("normal", False)):
        values = _values({"record": {"decision": decision, "score": 1.0, "tau": 2.0, "time": "t"}}, "k")
        assert (values["decision"], values["anomalous"]) == (decision, flag)
