"""Locally aware patch embeddings from two backbone stages (docs/METHOD.md §1).

A 3x3 neighbourhood average gives each patch some context (a scratch is a pattern, not a pixel);
bringing both stages to one grid and one width makes every patch a single vector that a plain
Euclidean nearest-neighbour search can compare.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def aggregate(
    shallow: torch.Tensor, deep: torch.Tensor, pretrain_dim: int = 1024, target_dim: int = 1024
) -> torch.Tensor:
    """Turn ``(B x C1 x H x W, B x C2 x H/2 x W/2)`` stage maps into ``B x (H*W) x target_dim`` patches.

    Steps (as PatchCore's reference code): 3x3 average pooling (stride 1, padding 1) per stage;
    the deep stage bilinearly upsampled to the shallow grid; each stage's channels adaptively
    average-pooled to ``pretrain_dim``; the two stage vectors concatenated and adaptively pooled
    to ``target_dim``, which averages the stages' information into one vector per patch.
    """
    batch, _, height, width = shallow.shape
    shallow = F.avg_pool2d(shallow, kernel_size=3, stride=1, padding=1)
    deep = F.avg_pool2d(deep, kernel_size=3, stride=1, padding=1)
    if deep.shape[-2:] != (height, width):
        deep = F.interpolate(deep, size=(height, width), mode="bilinear", align_corners=False)
    stages = []
    for stage in (shallow, deep):
        # (B, C, H, W) -> (B*H*W, 1, C): pool over channels per patch.
        flat = stage.permute(0, 2, 3, 1).reshape(-1, 1, stage.shape[1])
        stages.append(F.adaptive_avg_pool1d(flat, pretrain_dim).squeeze(1))
    stacked = torch.stack(stages, dim=1).reshape(-1, 1, 2 * pretrain_dim)
    patches = F.adaptive_avg_pool1d(stacked, target_dim).squeeze(1)
    return patches.reshape(batch, height * width, target_dim)
