"""Locally aware patch embeddings from two backbone stages (docs/METHOD.md §1).

A 3x3 neighbourhood average gives each patch some context (a scratch is a pattern, not a pixel);
bringing both stages to one grid and one width makes every patch a single vector that a plain
Euclidean nearest-neighbour search can compare.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
import torch.nn.functional as F

#: Above this many channels (both stages), the dense product costs more than the poolings it replaces:
#: measured 3.6-5.4x faster at EfficientNet-Lite widths (64-152 channels), 1.2x slower at 1,536
#: (``benchmarks/expert.py --pooling``).
MATMUL_MAX_CHANNELS = 512


def aggregate(
    shallow: torch.Tensor, deep: torch.Tensor, pretrain_dim: int = 1024, target_dim: int = 1024
) -> torch.Tensor:
    """Turn ``(B x C1 x H x W, B x C2 x H/2 x W/2)`` stage maps into ``B x (H*W) x target_dim`` patches.

    Steps (as PatchCore's reference code): 3x3 average pooling (stride 1, padding 1) per stage;
    the deep stage bilinearly upsampled to the shallow grid; each stage's channels adaptively
    average-pooled to ``pretrain_dim``; the two stage vectors concatenated and adaptively pooled
    to ``target_dim``, which averages the stages' information into one vector per patch.

    The two channel poolings are linear, so for narrow stages (EfficientNet-Lite's 152 or 168
    channels) they are applied as one matrix product with their combined map
    (:func:`channel_pooling`): the same numbers up to float rounding, without the
    ``pretrain_dim``-wide intermediates per patch. Wide stages (WideResNet-50's 1,536 channels) keep
    the poolings, which are then cheaper than the dense product (:data:`MATMUL_MAX_CHANNELS`).
    :func:`aggregate_reference` is the literal sequence, the test's and the benchmark's reference.
    """
    if shallow.shape[1] + deep.shape[1] > MATMUL_MAX_CHANNELS:
        return aggregate_reference(shallow, deep, pretrain_dim, target_dim)
    shallow, deep = _neighbourhoods(shallow, deep)
    pooling = channel_pooling(shallow.shape[1], deep.shape[1], pretrain_dim, target_dim, shallow.dtype, shallow.device)
    # (B, C1 + C2, H, W) -> (B, H*W, C1 + C2): one row per patch, both stages' channels side by side.
    rows = torch.cat((shallow, deep), dim=1).flatten(2).transpose(1, 2)
    return torch.matmul(rows, pooling)


def aggregate_reference(
    shallow: torch.Tensor, deep: torch.Tensor, pretrain_dim: int = 1024, target_dim: int = 1024
) -> torch.Tensor:
    """:func:`aggregate` as PatchCore's reference code computes it, pooling after pooling."""
    batch, _, height, width = shallow.shape
    shallow, deep = _neighbourhoods(shallow, deep)
    stages = []
    for stage in (shallow, deep):
        # (B, C, H, W) -> (B*H*W, 1, C): pool over channels per patch.
        flat = stage.permute(0, 2, 3, 1).reshape(-1, 1, stage.shape[1])
        stages.append(F.adaptive_avg_pool1d(flat, pretrain_dim).squeeze(1))
    stacked = torch.stack(stages, dim=1).reshape(-1, 1, 2 * pretrain_dim)
    patches = F.adaptive_avg_pool1d(stacked, target_dim).squeeze(1)
    return patches.reshape(batch, height * width, target_dim)


def _neighbourhoods(shallow: torch.Tensor, deep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """3x3 neighbourhood averages of both stages, the deep one brought to the shallow grid."""
    height, width = shallow.shape[-2:]
    shallow = F.avg_pool2d(shallow, kernel_size=3, stride=1, padding=1)
    deep = F.avg_pool2d(deep, kernel_size=3, stride=1, padding=1)
    if deep.shape[-2:] != (height, width):
        deep = F.interpolate(deep, size=(height, width), mode="bilinear", align_corners=False)
    return shallow, deep


def channel_pooling(
    shallow_channels: int, deep_channels: int, pretrain_dim: int, target_dim: int, dtype: torch.dtype, device: Any
) -> torch.Tensor:
    """The ``(C1 + C2) x target_dim`` matrix of the reference's two channel poolings, in one map.

    Row ``c`` is what channel ``c`` contributes to each output feature. Built in numpy from
    ``adaptive_avg_pool1d``'s windows (output ``i`` of ``n`` from ``m`` inputs averages inputs
    ``floor(i m / n)`` to ``ceil((i + 1) m / n)``), so an exported graph holds it as one constant
    rather than the ops that made it; the test checks it against the poolings themselves.

    The numpy array is cached (a backbone has one pair of widths), never a CPU tensor: a tensor made
    while ``torch.export`` traces belongs to that trace, and a cached one made the process's next
    export fail its trace and fall back to a strict one that never finished.
    """
    if torch.device(device).type != "cpu":  # no export traces there; keep the copy on the device
        return _device_pooling(shallow_channels, deep_channels, pretrain_dim, target_dim, dtype, device)
    array = _pooling_array(shallow_channels, deep_channels, pretrain_dim, target_dim, dtype == torch.float32)
    return torch.from_numpy(array).to(dtype=dtype)


@functools.lru_cache(maxsize=8)
def _device_pooling(
    shallow_channels: int, deep_channels: int, pretrain_dim: int, target_dim: int, dtype: torch.dtype, device: Any
) -> torch.Tensor:
    """:func:`channel_pooling` on an accelerator, copied there once (on the CPU it costs nothing to rebuild)."""
    array = _pooling_array(shallow_channels, deep_channels, pretrain_dim, target_dim, dtype == torch.float32)
    return torch.from_numpy(array).to(dtype=dtype, device=device)


@functools.lru_cache(maxsize=32)
def _pooling_array(
    shallow_channels: int, deep_channels: int, pretrain_dim: int, target_dim: int, single: bool
) -> np.ndarray:
    """:func:`channel_pooling`'s matrix in float64, or rounded once to float32 when ``single``."""
    first = _adaptive_average(shallow_channels, pretrain_dim)
    second = _adaptive_average(deep_channels, pretrain_dim)
    stages = np.zeros((shallow_channels + deep_channels, 2 * pretrain_dim))
    stages[:shallow_channels, :pretrain_dim] = first
    stages[shallow_channels:, pretrain_dim:] = second
    combined = stages @ _adaptive_average(2 * pretrain_dim, target_dim)
    return np.ascontiguousarray(combined.astype(np.float32) if single else combined)


def _adaptive_average(inputs: int, outputs: int) -> np.ndarray:
    """``adaptive_avg_pool1d`` from ``inputs`` to ``outputs`` features as an ``inputs x outputs`` matrix."""
    matrix = np.zeros((inputs, outputs))
    for index in range(outputs):
        start, end = (index * inputs) // outputs, -(-((index + 1) * inputs) // outputs)
        matrix[start:end, index] = 1.0 / (end - start)
    return matrix


#: A range of a row file from which at most 1/SPARSE_SHARE of the rows are wanted is read row by row.
SPARSE_SHARE = 64


class RowFile:
    """A float32 row matrix in a raw scratch file, written in appended batches and read back in row ranges.

    Plain reads, not a memory map: a mapped file's touched pages count towards the process's
    resident memory until it is unmapped, so a map over all training patches made a fit's peak RSS
    grow with the training set (4.6 GiB at 1,000 elpv cells). Each range read here is an ordinary
    array that is freed when used, so memory holds one chunk at a time; the values are the same
    float32 numbers (docs/METHOD.md).
    """

    def __init__(self, path: Path, dim: int) -> None:
        self.path = path
        self.dim = dim
        self.rows = 0
        self._writer: BinaryIO | None = path.open("wb")

    @property
    def shape(self) -> tuple[int, int]:
        return (self.rows, self.dim)

    def append(self, rows: np.ndarray) -> None:
        assert self._writer is not None, "append after close()"
        block = np.ascontiguousarray(rows, dtype=np.float32).reshape(-1, self.dim)
        self._writer.write(block.tobytes())
        self.rows += block.shape[0]

    def close(self) -> None:
        """Finish writing (reads need the data flushed)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __getitem__(self, rows: slice) -> np.ndarray:
        start, stop, step = rows.indices(self.rows)
        if step != 1:
            raise ValueError("RowFile reads contiguous row ranges only")
        self.close()
        count = max(0, stop - start)
        data = np.fromfile(self.path, dtype=np.float32, count=count * self.dim, offset=start * self.dim * 4)
        return data.reshape(count, self.dim)

    def take(self, indices: np.ndarray, chunk_rows: int = 8192) -> np.ndarray:
        """The given rows (e.g. the coreset's picks) as one array, in the order given.

        Read range by range with plain reads, keeping only the wanted rows of each range: a memory
        map here (as before) had the kernel fault in the pages around every picked row, so a 10%
        coreset's gather mapped nearly the whole file (1.3 GiB of file-backed RSS at 200 cells of
        320 px). The bytes are the same either way.
        """
        self.close()
        wanted = np.asarray(indices, dtype=np.int64).reshape(-1)
        if wanted.size and (int(wanted.min()) < 0 or int(wanted.max()) >= self.rows):
            raise IndexError(f"row index out of range for {self.rows} rows")
        picked = np.empty((wanted.size, self.dim), dtype=np.float32)
        order = np.argsort(wanted, kind="stable")
        ordered = wanted[order]
        row_bytes = self.dim * 4
        with self.path.open("rb") as handle:
            for start in range(0, self.rows, chunk_rows):
                lo, hi = np.searchsorted(ordered, [start, start + chunk_rows])
                if lo == hi:
                    continue
                if hi - lo <= chunk_rows // SPARSE_SHARE:
                    # A few rows of the range (a fit's kept patches: 8 an image): read those rows alone,
                    # not the whole range, or gathering them would read the whole file once more.
                    for at in range(lo, hi):
                        data = os.pread(handle.fileno(), row_bytes, int(ordered[at]) * row_bytes)
                        picked[order[at]] = np.frombuffer(data, dtype=np.float32)
                    continue
                block = self[start : min(self.rows, start + chunk_rows)]
                picked[order[lo:hi]] = block[ordered[lo:hi] - start]
        return picked
