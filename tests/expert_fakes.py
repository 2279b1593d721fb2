"""Shared test doubles for the expert: a weight-free feature extractor and noise images.

Only the backbone is replaced (pretrained weights would make the maths tests slow and opaque);
everything after it — aggregation, coreset, search, thresholds, store — is the real code.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from eagle_iad.expert import ExpertConfig
from eagle_iad.expert.backbones import BackboneId


class FakeExtractor:
    """Deterministic random convolutions giving stride-8 and stride-16 maps (no pretrained weights)."""

    ident = BackboneId("fake", "0" * 64)

    def __init__(self, seed: int = 0) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.conv8 = torch.nn.Conv2d(3, 12, kernel_size=8, stride=8)
        self.conv16 = torch.nn.Conv2d(12, 20, kernel_size=2, stride=2)
        with torch.no_grad():
            for conv in (self.conv8, self.conv16):
                assert conv.bias is not None
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen) * 0.2)
                conv.bias.copy_(torch.randn(conv.bias.shape, generator=gen) * 0.1)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f8 = torch.tanh(self.conv8(images))
        return f8, torch.tanh(self.conv16(f8))


#: The paper's centre crop keeps these tests' numbers as they were before whole-frame inspection, and
#: exposure ``none`` and ``native_up_to`` 0 as they were before issue 29 made them defaults (their own
#: tests set them).
FAKE_CONFIG = ExpertConfig(
    preprocess="center-crop",
    exposure="none",
    native_up_to=0,
    region_rule="paper",
    position_baseline=False,
    resize=72,
    crop=64,
    pretrain_dim=48,
    target_dim=32,
    coreset_ratio=0.25,
    batch_size=4,
)


def noise_pngs(directory: Path, count: int, seed: int, size: tuple[int, int] = (80, 96)) -> list[Path]:
    """``count`` seeded random-noise RGB PNGs in ``directory`` (created if missing)."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = directory / f"noise_{seed}_{i}.png"
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths
