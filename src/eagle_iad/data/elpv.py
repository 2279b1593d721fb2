"""The ELPV solar-cell images shipped by the ``elpv-dataset`` package (``--layout elpv``).

The package holds 2,624 300x300 electroluminescence images of PV cells in
``elpv_dataset/data/images/`` and ``elpv_dataset/data/labels.csv``: whitespace-separated
``path probability type`` per line, ``path`` relative to the csv, ``probability`` the experts'
defect probability (0, 1/3, 2/3 or 1) and ``type`` the cell technology (``mono`` or ``poly``).

``root`` is ignored (it may be None) so the data works with no download, unless it is a
directory holding its own ``labels.csv`` in the same format; then that file and the images next
to it are used instead (a copy, or a subset for quick runs).

Categories are the cell types. Only the certain labels are used: probability 0 is normal (0) and
probability 1 is anomalous (1, ``defect_type="defective"``); the 1/3 and 2/3 cells are left out
because the annotators were unsure of them, and counting them either way would blur both training
normals and evaluation labels. There are no pixel masks (``mask_path`` is always None).

ELPV has no train/test split, so one is made here, reproducibly: a category's normal cells are
sorted by file name, permuted with ``np.random.default_rng(SPLIT_SEED).permutation``, and the first
``round(TEST_FRACTION * n)`` of the permutation are test normals, the rest training normals.
The test split is those normals plus every probability-1 cell of the type. The draw is random so
the held-out normals do not depend on how the files happen to be numbered, and the fixed seed keeps
the split identical across runs and machines (mono: 441 train, 147 + 313 test; poly: 690 train,
230 + 402 test). Sorting first makes the result independent of the order of ``labels.csv``.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eagle_iad.data._common import check_category_name, check_split, require_samples
from eagle_iad.data.base import Sample, Split, register_layout
from eagle_iad.errors import DataError

#: Seed of the normal-cell permutation; changing it changes which normals are held out.
SPLIT_SEED = 0
#: Share of a category's normal cells held out for testing (rounded to the nearest cell).
TEST_FRACTION = 0.25
LABELS_FILE = "labels.csv"
DEFECT_TYPE = "defective"
NORMAL_PROBABILITY = 0.0
DEFECT_PROBABILITY = 1.0


@dataclass(frozen=True)
class _Cell:
    path: Path
    probability: float
    cell_type: str


def _package_labels() -> Path:
    """``labels.csv`` of the installed ``elpv-dataset`` package, found without importing it."""
    spec = importlib.util.find_spec("elpv_dataset")
    if spec is None or spec.origin is None:
        raise DataError("the elpv layout needs the 'elpv-dataset' package, which is not installed")
    labels = Path(spec.origin).parent / "data" / LABELS_FILE
    if not labels.is_file():
        raise DataError(f"the elpv-dataset package has no {labels}; reinstall it")
    return labels


def _labels_path(root: Path | None) -> Path:
    """``root/labels.csv`` when ``root`` holds one, else the packaged file."""
    if root is not None and (Path(root) / LABELS_FILE).is_file():
        return Path(root) / LABELS_FILE
    return _package_labels()


def _read_cells(labels: Path) -> list[_Cell]:
    """All lines of ``labels``, validated; errors name the file and line."""
    cells: list[_Cell] = []
    for number, line in enumerate(labels.read_text(encoding="utf-8").splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 3:
            raise DataError(f"{labels} line {number}: expected 'path probability type', got {line!r}")
        rel, prob_text, cell_type = fields
        try:
            probability = float(prob_text)
        except ValueError:
            raise DataError(f"{labels} line {number}: probability {prob_text!r} is not a number") from None
        if Path(rel).is_absolute() or ".." in Path(rel).parts:
            raise DataError(f"{labels} line {number}: path {rel!r} must be relative to {labels.parent}")
        cells.append(_Cell(path=labels.parent / rel, probability=probability, cell_type=cell_type))
    if not cells:
        raise DataError(f"{labels} lists no images")
    return cells


def split_normals(paths: list[Path]) -> tuple[list[Path], list[Path]]:
    """``(train, test)`` normals: sorted by file name, seeded permutation, first share to test."""
    ordered = sorted(paths, key=lambda p: (p.name, str(p)))
    order = np.random.default_rng(SPLIT_SEED).permutation(len(ordered))
    n_test = round(TEST_FRACTION * len(ordered))  # int, round-half-even
    test = [ordered[int(i)] for i in order[:n_test]]
    train = [ordered[int(i)] for i in order[n_test:]]
    return train, test


@register_layout("elpv")
class ElpvLayout:
    """ELPV cells by type, certain labels only, with a seeded 75/25 split of the normals."""

    name: str = "elpv"

    def categories(self, root: Path | None) -> list[str]:
        """The cell types in the labels file (``mono`` and ``poly`` for the packaged data)."""
        return sorted({cell.cell_type for cell in _read_cells(_labels_path(root))})

    def samples(self, root: Path | None, category: str, split: Split) -> list[Sample]:
        """Training normals, or held-out normals plus all probability-1 cells, of one cell type."""
        split = check_split(split)
        check_category_name(category)
        labels = _labels_path(root)
        cells = _read_cells(labels)
        known = sorted({cell.cell_type for cell in cells})
        if category not in known:
            raise DataError(f"unknown category {category!r}: not in {labels} (found: {', '.join(known)})")
        of_type = [cell for cell in cells if cell.cell_type == category]
        normals = [cell.path for cell in of_type if cell.probability == NORMAL_PROBABILITY]
        train, test = split_normals(normals)
        if split == "train":
            samples = [Sample(path=p, label=0, category=category, split="train") for p in train]
        else:
            samples = [Sample(path=p, label=0, category=category, split="test") for p in test]
            samples += [
                Sample(path=cell.path, label=1, category=category, split="test", defect_type=DEFECT_TYPE)
                for cell in of_type
                if cell.probability == DEFECT_PROBABILITY
            ]
        for sample in samples:
            if not sample.path.is_file():
                raise DataError(f"image {sample.path} listed in {labels} does not exist")
        where = f"{category!r} in {labels}"
        return require_samples(samples, f"no {'training' if split == 'train' else 'test'} images for {where}")
