"""The expert's verdict on one image, and the pictures that go with it.

This is the record the CLI prints, the service will return and the MLLM stage (TGPS) builds on:
score against tau and s_max, decision, low-confidence band flag, the merged defect boxes, and the
rendered heatmap overlay and boxed picture on the *original* image.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from eagle_iad.expert.patchcore import Expert, ExpertResult
from eagle_iad.images import ImageSource, load_rgb
from eagle_iad.naming import picture_stems
from eagle_iad.tgps.regions import Box, extract_regions
from eagle_iad.tgps.render import RenderStyle, heatmap_overlay, render, save_png


@dataclass
class ExpertVerdict:
    """What the expert says about one image (JSON-ready via :meth:`to_dict`)."""

    image: str
    category: str
    score: float
    tau: float
    s_max: float
    decision: str
    in_band: bool
    boxes: list[Box]
    width: int
    height: int
    pictures: dict[str, str] = field(default_factory=dict)

    @property
    def is_anomalous(self) -> bool:
        return self.decision == "anomalous"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["boxes"] = [box.to_dict() for box in self.boxes]
        return data


def make_verdict(expert: Expert, name: str, result: ExpertResult) -> ExpertVerdict:
    """Turn a raw expert result into a verdict with merged top-3 boxes in original coordinates."""
    thresholds = expert.thresholds
    return ExpertVerdict(
        image=name,
        category=expert.model.category,
        score=result.score,
        tau=thresholds.tau,
        s_max=thresholds.s_max,
        decision="anomalous" if result.is_anomalous else "normal",
        in_band=result.in_band,
        boxes=extract_regions(result.anomaly_map),
        width=result.geometry.width,
        height=result.geometry.height,
    )


def write_pictures(
    verdict: ExpertVerdict,
    rgb: np.ndarray,
    anomaly_map: np.ndarray,
    out_dir: Path,
    style: RenderStyle = "box",
    stem: str | None = None,
) -> None:
    """Write ``<stem>_heatmap.png`` and ``<stem>_<style>.png`` and record their paths in the verdict.

    ``stem`` defaults to the image's own; callers writing several images to one folder pass the
    unique stems of :func:`eagle_iad.naming.picture_stems`.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = Path(verdict.image).stem if stem is None else stem
    heatmap_path = out_dir / f"{stem}_heatmap.png"
    save_png(heatmap_path, heatmap_overlay(rgb, anomaly_map))
    prompt_path = out_dir / f"{stem}_{style}.png"
    save_png(prompt_path, render(rgb, anomaly_map, verdict.boxes, style))
    verdict.pictures = {"heatmap": str(heatmap_path), style: str(prompt_path)}


def inspect_images(
    expert: Expert,
    sources: list[ImageSource],
    out_dir: Path | None = None,
    style: RenderStyle = "box",
    show_progress: bool = False,
) -> list[ExpertVerdict]:
    """Score images and, with ``out_dir``, write their pictures (one unique name per input)."""
    rgbs = [load_rgb(source) for source in sources]
    results = expert.inspect_many(rgbs, show_progress=show_progress)
    verdicts = []
    names = ["upload.png" if isinstance(source, bytes) else str(source) for source in sources]
    for name, stem, rgb, result in zip(names, picture_stems(names), rgbs, results, strict=True):
        verdict = make_verdict(expert, name, result)
        if out_dir is not None:
            write_pictures(verdict, rgb, result.anomaly_map, out_dir, style, stem)
        verdicts.append(verdict)
    return verdicts
