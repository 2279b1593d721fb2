"""The VisA layout (``--layout visa``), driven by the official one-class split file.

Expected tree::

    ROOT/split_csv/1cls.csv        columns: object,split,label,image,mask
    ROOT/<paths named in the csv>  images and masks, relative to ROOT

``label`` is ``normal`` (→ 0) or ``anomaly`` (→ 1); ``split`` is ``train`` or ``test``; ``mask`` is
empty for normal rows. The csv rather than the folder tree is the source of truth because VisA's
``Data/Images/{Normal,Anomaly}`` folders do not say which normals are held out for testing; reading
the csv reproduces the published split exactly.

VisA names no defect types, so anomalous samples get ``defect_type="anomaly"``. A listed image
that does not exist is an error (the download is incomplete); a listed mask that does not exist
leaves ``mask_path=None``, as in the MVTec layout.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from eagle_iad.data._common import check_category_name, check_split, require_root, require_samples
from eagle_iad.data.base import Sample, Split, register_layout
from eagle_iad.errors import DataError

SPLIT_CSV = Path("split_csv") / "1cls.csv"
COLUMNS = ("object", "split", "label", "image", "mask")
LABELS = {"normal": 0, "anomaly": 1}
ANOMALY_TYPE = "anomaly"


@dataclass(frozen=True)
class _Row:
    """One validated csv row; ``line`` is kept for error messages."""

    line: int
    category: str
    split: Split
    label: int
    image: str
    mask: str


def _read_rows(csv_path: Path) -> list[_Row]:
    """All rows of the split csv, validated; errors name the csv file and line."""
    if not csv_path.is_file():
        raise DataError(f"missing VisA split file {csv_path}")
    with csv_path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f"{csv_path} lacks column(s) {', '.join(missing)}; expected {','.join(COLUMNS)}")
        rows: list[_Row] = []
        for line, record in enumerate(reader, start=2):
            category = (record["object"] or "").strip()
            split = (record["split"] or "").strip()
            label = (record["label"] or "").strip().lower()
            image = (record["image"] or "").strip()
            mask = (record["mask"] or "").strip()
            if not category or not image:
                raise DataError(f"{csv_path} line {line}: empty object or image")
            for rel in (image, mask):
                if Path(rel).is_absolute() or ".." in Path(rel).parts:
                    raise DataError(f"{csv_path} line {line}: path {rel!r} must be relative to the root")
            if split not in ("train", "test"):
                raise DataError(f"{csv_path} line {line}: split {split!r} is not 'train' or 'test'")
            if label not in LABELS:
                raise DataError(f"{csv_path} line {line}: label {label!r} is not 'normal' or 'anomaly'")
            rows.append(
                _Row(
                    line=line,
                    category=category,
                    split=check_split(split),
                    label=LABELS[label],
                    image=image,
                    mask=mask,
                )
            )
    if not rows:
        raise DataError(f"{csv_path} lists no images")
    return rows


@register_layout("visa")
class VisALayout:
    """VisA as listed in ``split_csv/1cls.csv``."""

    name: str = "visa"
    mask_names: str = "the file named in the split csv's mask column"

    def categories(self, root: Path | None) -> list[str]:
        """The distinct ``object`` values of the csv, sorted."""
        base = require_root(root, self.name)
        return sorted({row.category for row in _read_rows(base / SPLIT_CSV)})

    def samples(self, root: Path | None, category: str, split: Split) -> list[Sample]:
        """The csv rows of ``category`` and ``split`` as samples; every listed image must exist."""
        split = check_split(split)
        check_category_name(category)
        base = require_root(root, self.name)
        csv_path = base / SPLIT_CSV
        rows = _read_rows(csv_path)
        known = sorted({row.category for row in rows})
        if category not in known:
            raise DataError(f"unknown category {category!r}: not in {csv_path} (found: {', '.join(known)})")
        samples: list[Sample] = []
        for row in rows:
            if row.category != category or row.split != split:
                continue
            path = base / row.image
            if not path.is_file():
                raise DataError(f"{csv_path} line {row.line}: image {path} does not exist")
            if row.label == 0:
                samples.append(Sample(path=path, label=0, category=category, split=split))
                continue
            mask = base / row.mask if row.mask else None
            samples.append(
                Sample(
                    path=path,
                    label=1,
                    category=category,
                    split=split,
                    defect_type=ANOMALY_TYPE,
                    mask_path=mask if mask is not None and mask.is_file() else None,
                    mask_sought=mask if mask is not None and not mask.is_file() else None,
                )
            )
        return require_samples(samples, f"no {split} images for {category!r} in {csv_path}")
