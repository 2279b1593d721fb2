"""Plain image folders (``--layout folder``), for users' own data.

Two forms are accepted for each category; the split form wins when ``train`` or ``test`` exists.

Split form (the user decides which images are held out)::

    ROOT/<category>/train/good/*          training normals (label 0)
    ROOT/<category>/test/good/*           test normals (label 0)
    ROOT/<category>/test/<defect>/*       test anomalies (label 1, defect_type=<defect>)

Flat form (just sorted-by-class folders, no split yet)::

    ROOT/<category>/good/*                normals, split deterministically (below)
    ROOT/<category>/<defect>/*            anomalies, all in the test split

In the flat form the normals are sorted by path and every fourth one (index % 4 == 3, i.e. 25%)
goes to test, the rest to train. A fixed interleave instead of a random draw keeps the split
stable when images are added at the end and needs no seed; interleaving rather than cutting the
tail keeps a capture-order drift (lighting, camera position) from landing wholly in one split.
The folder name ``masks`` is reserved and is never a defect class.

Optional masks, in both forms::

    ROOT/<category>/masks/<defect>/<stem>.png   or   ROOT/<category>/masks/<defect>/<stem>_mask.png

An anomalous image without a mask keeps ``mask_path=None`` (image-level labels only).
"""

from __future__ import annotations

from pathlib import Path

from eagle_iad.data._common import (
    category_dir,
    check_split,
    list_images,
    list_subdirs,
    require_root,
    require_samples,
)
from eagle_iad.data.base import Sample, Split, register_layout
from eagle_iad.errors import DataError

NORMAL = "good"
MASKS = "masks"
#: In the flat form, normal number ``i`` (sorted by path) is a test image when ``i % 4 == 3``.
FLAT_TEST_EVERY = 4


def _is_split_form(folder: Path) -> bool:
    return (folder / "train").is_dir() or (folder / "test").is_dir()


def _category_names(base: Path) -> list[str]:
    """Sub-folders of ``base`` in either form (holding ``train``, ``test`` or ``good``)."""
    return [d.name for d in list_subdirs(base) if _is_split_form(d) or (d / NORMAL).is_dir()]


def _mask_for(folder: Path, defect: str, image: Path) -> Path | None:
    """The mask of ``image`` under ``masks/<defect>/``, trying ``<stem>.png`` then ``<stem>_mask.png``."""
    for name in (f"{image.stem}.png", f"{image.stem}_mask.png"):
        candidate = folder / MASKS / defect / name
        if candidate.is_file():
            return candidate
    return None


def _anomalies(folder: Path, category: str, defect_dirs: list[Path]) -> list[Sample]:
    # Masks are optional: a missing one is reported (mask_sought) only where the category has a masks folder.
    expects_masks = (folder / MASKS).is_dir()
    samples = []
    for d in defect_dirs:
        for path in list_images(d):
            mask = _mask_for(folder, d.name, path)
            sought = folder / MASKS / d.name / f"{path.stem}.png" if mask is None and expects_masks else None
            samples.append(Sample(path, 1, category, "test", d.name, mask, mask_sought=sought))
    return samples


@register_layout("folder")
class FolderLayout:
    """``good/`` versus defect folders, either already split (``train``/``test``) or flat."""

    name: str = "folder"
    mask_names: str = "masks/<defect>/<stem>.png or masks/<defect>/<stem>_mask.png"

    def categories(self, root: Path | None) -> list[str]:
        """Sub-folders of ``root`` holding ``train``, ``test`` or ``good``."""
        base = require_root(root, self.name)
        found = _category_names(base)
        if not found:
            raise DataError(
                f"no image-folder categories under {base} "
                f"(expected {base}/<category>/good or {base}/<category>/train/good)"
            )
        return found

    def samples(self, root: Path | None, category: str, split: Split) -> list[Sample]:
        """Samples of ``split`` in whichever form ``root/category`` uses."""
        split = check_split(split)
        base = require_root(root, self.name)
        folder = category_dir(base, category, _category_names(base))
        if _is_split_form(folder):
            return self._split_form(folder, category, split)
        return self._flat_form(folder, category, split)

    def _split_form(self, folder: Path, category: str, split: Split) -> list[Sample]:
        if split == "train":
            train_dir = folder / "train" / NORMAL
            if not train_dir.is_dir():
                raise DataError(f"missing training folder {train_dir}")
            paths = list_images(train_dir)
            samples = [Sample(path=p, label=0, category=category, split="train") for p in paths]
            return require_samples(samples, f"no training images in {train_dir}")
        test_dir = folder / "test"
        if not test_dir.is_dir():
            raise DataError(f"missing test folder {test_dir}")
        labels = list_subdirs(test_dir)
        normals = [
            Sample(path=p, label=0, category=category, split="test")
            for d in labels
            if d.name == NORMAL
            for p in list_images(d)
        ]
        anomalies = _anomalies(folder, category, [d for d in labels if d.name != NORMAL])
        return require_samples(normals + anomalies, f"no test images in {test_dir}/<label>/")

    def _flat_form(self, folder: Path, category: str, split: Split) -> list[Sample]:
        good_dir = folder / NORMAL
        if not good_dir.is_dir():
            raise DataError(f"missing normal folder {good_dir} (or {folder}/train/good)")
        normals = list_images(good_dir)
        if not normals:
            raise DataError(f"no training images in {good_dir}")
        held_out = {i for i in range(len(normals)) if i % FLAT_TEST_EVERY == FLAT_TEST_EVERY - 1}
        if split == "train":
            samples = [
                Sample(path=p, label=0, category=category, split="train")
                for i, p in enumerate(normals)
                if i not in held_out
            ]
            return require_samples(samples, f"no training images in {good_dir}")
        test_normals = [
            Sample(path=p, label=0, category=category, split="test") for i, p in enumerate(normals) if i in held_out
        ]
        defect_dirs = [d for d in list_subdirs(folder) if d.name not in (NORMAL, MASKS)]
        anomalies = _anomalies(folder, category, defect_dirs)
        return require_samples(test_normals + anomalies, f"no test images in {folder}")
