"""Eagle pipeline: expert → TGPS prompt → MLLM; CAAS only in the band ``tau <= score < s_max``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from PIL import Image

from eagle_iad.errors import ConfigError
from eagle_iad.expert.patchcore import ExpertConfig, ExpertResult
from eagle_iad.expert.preprocess import CenterCrop
from eagle_iad.images import Geometry
from eagle_iad.mllm import CaasSettings, GenerateOptions, Reply
from eagle_iad.pipeline import Eagle, EagleConfig
from eagle_iad.tgps.prompt import ContentItem, ImageItem, TextItem
from eagle_iad.tgps.thresholds import Thresholds

pytestmark = pytest.mark.usefixtures("torch_single_thread")

TAU, S_MAX = 1.0, 2.0


class FakeExpert:
    """Just enough of :class:`Expert` for the pipeline: a fixed score and a one-blob anomaly map."""

    def __init__(self, score: float) -> None:
        self.score = score
        self.thresholds = Thresholds("fixed", TAU, S_MAX)
        config = ExpertConfig(preprocess="center-crop", region_rule="paper")
        # Training scores with mean 0.6 and standard deviation 0.5: the near-threshold margin is 0.5.
        self.model = SimpleNamespace(category="widget", calibration=None, config=config, coverage=None,
                                     train_scores=np.array([0.1, 1.1]))  # fmt: skip

    def near_margin(self) -> float | None:
        from eagle_iad.tgps.thresholds import near_margin

        return near_margin(self.model.train_scores)

    def inspect(self, rgb: np.ndarray) -> ExpertResult:
        height, width = rgb.shape[:2]
        anomaly_map = np.zeros((height, width), dtype=np.float32)
        anomaly_map[10:20, 30:40] = self.score
        return ExpertResult(
            score=self.score,
            is_anomalous=self.thresholds.is_anomalous(self.score),
            in_band=self.thresholds.in_band(self.score),
            patch_scores=np.zeros((2, 2), dtype=np.float32),
            crop_map=anomaly_map,
            anomaly_map=anomaly_map,
            geometry=CenterCrop(Geometry(height, width, height, width, 0, 0, min(height, width))),
        )


@dataclass
class FakeBackend:
    """Records what it was asked and replies with a fixed text."""

    text: str = "A"
    calls: list[tuple[list[ContentItem], dict[str, np.ndarray], GenerateOptions]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return "fake"

    def generate(
        self, items: Sequence[ContentItem], images: Mapping[str, np.ndarray], options: GenerateOptions
    ) -> Reply:
        self.calls.append((list(items), dict(images), options))
        return Reply(self.text, [1], {"total_s": 0.0}, caas_applied=options.caas is not None)


RGB = np.full((48, 64, 3), 128, dtype=np.uint8)


@pytest.mark.parametrize(
    ("score", "condition", "prior_text", "boxed", "caas"),
    [
        (0.5, "eagle", "predicted as normal", False, False),
        (1.0, "eagle", "predicted as anomalous", True, True),  # tau itself is in the band
        (1.5, "eagle", "predicted as anomalous", True, True),
        (2.0, "eagle", "predicted as anomalous", True, False),  # s_max is outside the band
        (3.0, "eagle", "predicted as anomalous", True, False),
        (1.5, "tgps", "predicted as anomalous", True, False),
        (1.5, "text-only", "predicted as anomalous", False, False),
        (1.5, "visual-only", None, True, False),
    ],
)
def test_prompt_and_caas_gating(score: float, condition: str, prior_text: str | None, boxed: bool, caas: bool) -> None:
    backend = FakeBackend()
    settings = CaasSettings(alpha=0.6, layers=(9, 10))
    eagle = Eagle(FakeExpert(score), backend, EagleConfig(condition=condition, caas=settings))  # type: ignore[arg-type]
    verdict = eagle.inspect(RGB, name="part_001.png")
    items, images, options = backend.calls[0]
    texts = " ".join(item.text for item in items if isinstance(item, TextItem))
    roles = [item.role for item in items if isinstance(item, ImageItem)]
    assert roles == (["query", "boxed"] if boxed else ["query"])
    if prior_text is None:
        assert "predicted as" not in texts and "Following is the query image:" in texts
    else:
        assert prior_text in texts
    assert options.caas == (settings if caas else None)
    assert verdict.caas_applied == caas
    assert verdict.in_band == (TAU <= score < S_MAX)
    assert verdict.score == score and verdict.tau == TAU and verdict.s_max == S_MAX
    assert verdict.answer == "A" and verdict.decision == "anomalous" and verdict.parse_method == "letter"
    assert set(images) == {"part_001.png"} | ({"part_001_box.png"} if boxed else set())
    if boxed:
        assert len(verdict.boxes) == 1
        boxed_rgb = images["part_001_box.png"]
        assert boxed_rgb.shape == RGB.shape and (boxed_rgb != RGB).any()
        assert {"type": "image", "role": "boxed", "ref": "part_001_box.png"} in verdict.prompt
    record = verdict.to_dict()
    assert record["prompt"][0]["type"] == "text" and record["reply"] == "A"


def test_baseline_without_expert_and_unparsable_reply(tmp_path: Any) -> None:
    from PIL import Image

    template = tmp_path / "good.png"
    Image.fromarray(RGB).save(template)
    backend = FakeBackend(text="I am not sure.")
    eagle = Eagle(None, backend, EagleConfig(condition="baseline", template_image=str(template)))
    verdict = eagle.inspect(RGB)
    items, images, options = backend.calls[0]
    assert [i.role for i in items if isinstance(i, ImageItem)] == ["template", "query"]
    assert set(images) == {"query.png", str(template)}
    assert options.caas is None and verdict.score is None and verdict.expert_decision is None
    assert verdict.answer == "unparsable" and verdict.decision == "unparsable"
    with pytest.raises(ConfigError, match="expert"):
        Eagle(None, backend, EagleConfig(condition="eagle"))
    with pytest.raises(ConfigError, match="condition"):
        EagleConfig(condition="expert")  # type: ignore[arg-type]


def test_eagle_with_tiny_hf_backend(hf_backends: Any) -> None:
    backend = hf_backends("qwen2_5_vl")
    config = EagleConfig(condition="eagle", max_new_tokens=2, capture_attention=True)
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (56, 56, 3), dtype=np.uint8)
    verdict = Eagle(FakeExpert(1.5), backend, config).inspect(rgb, name="cell.png")  # type: ignore[arg-type]
    assert verdict.caas_applied and verdict.caas_settings is not None
    assert verdict.caas_settings["layers"] == [1, 2] and verdict.caas_settings["alpha"] == 0.6
    spans = verdict.metadata["image_spans"]
    assert verdict.caas_settings["span"] == spans[0] and len(spans) == 2  # query, then boxed copy
    assert verdict.attention is not None and verdict.attention["grid"] == [1, 2, 2]
    assert verdict.answer in {"A", "B", "unparsable"}
    assert verdict.timings["total_s"] > 0


def test_record_fields_fill_every_record_field_a_verdict_decides() -> None:
    """One derivation: a new :class:`InspectionRecord` field must get its entry in ``record_fields``."""
    from dataclasses import fields

    from eagle_iad.pipeline import record_fields
    from eagle_iad.record import InspectionRecord
    from eagle_iad.verdict import make_verdict

    expert = FakeExpert(1.5)
    result = expert.inspect(RGB)
    by_caller = {
        "id",
        "time",
        "category",
        "image_name",
        "verdict",
        "pictures",
        "label",
        "label_time",
        "label_by",
        "label_note",
        "station",
        "source",
        "image_sha256",
        "model_version",
        "label_revision",
        "label_history",
        "warnings",
    }
    derived = record_fields(make_verdict(expert, "p.png", result))  # type: ignore[arg-type]
    assert set(derived) == {f.name for f in fields(InspectionRecord)} - by_caller
    assert derived == {"score": 1.5, "tau": TAU, "s_max": S_MAX, "decision": "anomalous", "in_band": True,
                       "answer": None, "caas_applied": False, "reference": None, "answered_by": None,
                       "near_threshold": False, "unrecognised": None}  # fmt: skip
    # near_threshold: |1.5 - 1.0| is not below the margin 0.5; unrecognised: the fake has no coverage


@pytest.mark.parametrize("score", [0.5, 0.8, 1.2, 1.5, 3.0])
def test_inspect_records_runs_the_expert_once_and_records_the_eagle_verdict(score: float) -> None:
    from eagle_iad.pipeline import inspect_records

    expert = FakeExpert(score)
    passes: list[int] = []

    def run_expert(rgbs: list[np.ndarray]) -> list[ExpertResult]:
        passes.append(len(rgbs))
        return [expert.inspect(rgb) for rgb in rgbs]

    backend = FakeBackend(text="B")
    eagle = Eagle(expert, backend, EagleConfig(caas=CaasSettings(alpha=0.6, layers=(9,))))  # type: ignore[arg-type]
    records = inspect_records(
        None, [RGB, RGB], category="widget", names=["a.png", "b.png"], ids=["1", "2"], when="t", eagle=eagle,
        run_expert=run_expert,
    )  # fmt: skip
    assert passes == [2] and len(backend.calls) == 2
    in_band = TAU <= score < S_MAX
    for record, name, id_ in zip(records, ["a.png", "b.png"], ["1", "2"], strict=True):
        assert (record.id, record.time, record.category, record.image_name) == (id_, "t", "widget", name)
        assert (record.score, record.tau, record.s_max, record.in_band) == (score, TAU, S_MAX, in_band)
        assert (record.decision, record.answer, record.caas_applied) == ("normal", "B", in_band)
        assert record.near_threshold is (score in (0.8, 1.2))  # 0.5 and 1.5 are exactly the margin 0.5 away
        assert record.answered_by == {"backend": "fake", "route": "single",
                                      "caas": "applied" if in_band else "not needed (outside the band)"}  # fmt: skip
        assert record.verdict["reply"] == "B" and record.verdict["image"] == name and record.pictures == {}


def test_the_near_threshold_margin_is_one_standard_deviation_of_the_training_scores() -> None:
    from eagle_iad.tgps.thresholds import is_near, near_margin

    scores = np.array([1.0, 2.0, 3.0, 4.0, np.nan])  # a non-finite score is left out
    assert near_margin(scores) == pytest.approx(np.std([1.0, 2.0, 3.0, 4.0]))  # 1.118...
    assert near_margin(np.array([2.0, 2.0])) is None and near_margin(np.empty(0)) is None  # no spread to judge by
    assert [is_near(s, 5.0, 1.118) for s in (3.8, 3.9, 5.0, 6.1, 6.2)] == [False, True, True, True, False]
    assert is_near(None, 5.0, 1.0) is None and is_near(4.0, 5.0, None) is None


def test_inspect_records_baseline_needs_no_expert() -> None:
    from eagle_iad.pipeline import inspect_records

    eagle = Eagle(None, FakeBackend(), EagleConfig(condition="baseline"))
    (record,) = inspect_records(None, [RGB], category="", eagle=eagle)
    assert record.score is None and record.decision == "anomalous" and record.image_name == "upload.png"
    assert record.image_sha256 is None  # a decoded frame has no file bytes to name it by


def test_a_record_names_its_image_file_by_the_sha256_of_its_bytes(tmp_path: Path) -> None:
    import hashlib

    from eagle_iad.pipeline import inspect_records

    path = tmp_path / "cell.png"
    Image.fromarray(RGB).save(path)
    data = path.read_bytes()
    eagle = Eagle(None, FakeBackend(), EagleConfig(condition="baseline"))
    on_disk, uploaded, frame = inspect_records(None, [path, data, RGB], category="", eagle=eagle)
    assert on_disk.image_sha256 == uploaded.image_sha256 == hashlib.sha256(data).hexdigest()
    assert frame.image_sha256 is None


def test_inspect_records_baseline_refuses_without_an_expert_when_one_is_needed() -> None:
    from eagle_iad.pipeline import inspect_records

    with pytest.raises(ConfigError, match="needs a fitted expert"):
        inspect_records(None, [RGB], category="")
