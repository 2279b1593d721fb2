"""``benchmarks/evidence.py``: variants are checked against ExpertConfig before anything is fitted,
and the table is formatted from the rows as documented."""

from __future__ import annotations

from types import ModuleType

import pytest
from bench_scripts import load_benchmark


@pytest.fixture(scope="module")
def evidence() -> ModuleType:
    return load_benchmark("evidence")


def test_backbone_variants_override_only_the_backbone(evidence: ModuleType) -> None:
    from eagle_iad.expert import ExpertConfig

    config = evidence.variant_config("lite2")
    assert config.backbone == "efficientnet_lite2"
    assert config.to_dict() == {**ExpertConfig().to_dict(), "backbone": "efficientnet_lite2"}


def test_unknown_field_and_variant_are_refused_by_name(
    evidence: ModuleType, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(evidence.VARIANTS, "bogus", {"backbone": "efficientnet_lite0", "zoom": 2, "alpha": 1})
    with pytest.raises(evidence.VariantError, match=r"^variant 'bogus' sets alpha, zoom, which ExpertConfig does not"):
        evidence.variant_config("bogus")
    # The command line refuses before fitting anything (lite0 comes first and would take a minute).
    assert evidence.main(["--variants", "lite0,bogus", "--datasets", "elpv"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("evidence: error: variant 'bogus' sets alpha, zoom") and "[evidence] elpv" not in err
    with pytest.raises(evidence.VariantError, match=r"unknown variant 'nope'; known variants: default, paper"):
        evidence.variant_config("nope")


def test_table_cells_and_cost_ratios(evidence: ModuleType) -> None:
    def row(data: str, variant: str, fit_s: float, speed: float, ratio: float | None) -> dict[str, object]:
        return {"data": data, "variant": variant, "image_auroc": 0.8126, "pixel_auroc": None, "aupro": None,
                "recall": 0.5, "false_alarms": 1, "n_normal": 25, "balanced_accuracy": 0.73, "pointing_accuracy": 0.9,
                "mean_best_iou": 0.4, "median_area_ratio": ratio, "touch_rate": 1.0, "normal_boxes": 3,
                "normal_images_with_boxes": 2, "fit_s": fit_s, "images_per_s": speed}  # fmt: skip

    rows = [row("tire", "a", 10.0, 4.0, 2.26), row("tire", "b", 25.0, 2.0, None), row("elpv", "a", 5.0, 8.0, None)]
    evidence.add_ratios(rows)
    assert [(r["fit_ratio"], r["inspect_ratio"]) for r in rows] == [(1.0, 1.0), (2.5, 2.0), (1.0, 1.0)]
    lines = evidence.markdown(rows).splitlines()
    assert len(lines) == 5 and lines[0].startswith("| data | variant | image AUROC |")
    assert lines[3] == (
        "| tire | b | 0.813 | – | – | 0.500 | 1 of 25 | 0.730 | 0.900 | 0.400 | – | 1.000 | 3 on 2 of 25 | 25.0 | 2.0 "
        "| 2.50x | 2.00x |"
    )
    assert "| 0.400 | 2.3 | 1.000 |" in lines[2]  # median box/defect area, one decimal
