"""The MVTec AD layout (``--layout mvtec``).

Expected tree::

    ROOT/<category>/train/good/*.png                   training normals (label 0)
    ROOT/<category>/validation/good/*.png              optional: extra training normals
    ROOT/<category>/test/good/*.png                    test normals (label 0)
    ROOT/<category>/test/<defect>/*.png                test anomalies (label 1, defect_type=<defect>)
    ROOT/<category>/ground_truth/<defect>/<stem>_mask.png   pixel mask of test/<defect>/<stem>.*

MVTec AD itself has no ``validation`` folder; datasets rearranged into this layout from MVTec
3D-AD (such as the shipped ``mvtec3d-tire``) keep their validation normals there. They are
defect-free images the expert would otherwise never see, and this project has no use for a
held-out normal set (the test split is the evaluation set), so they are added to the training
normals rather than dropped.

An anomalous image whose mask file is missing keeps ``mask_path=None`` instead of failing: the image
label is still valid, and pixel metrics simply skip images without ground truth.
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
    split_categories,
)
from eagle_iad.data.base import Sample, Split, register_layout
from eagle_iad.errors import DataError

NORMAL = "good"


@register_layout("mvtec")
class MVTecLayout:
    """MVTec AD folders: ``train/good``, ``test/<defect>``, ``ground_truth/<defect>/<stem>_mask.png``."""

    name: str = "mvtec"
    mask_names: str = "ground_truth/<defect>/<stem>_mask.png"

    def categories(self, root: Path | None) -> list[str]:
        """Sub-folders of ``root`` holding a ``train`` or ``test`` folder (licence files etc. are skipped)."""
        base = require_root(root, self.name)
        found = split_categories(base)
        if not found:
            raise DataError(f"no MVTec categories under {base} (expected {base}/<category>/train/good)")
        return found

    def samples(self, root: Path | None, category: str, split: Split) -> list[Sample]:
        """Training normals (plus validation normals) or all test images of ``category``."""
        split = check_split(split)
        base = require_root(root, self.name)
        folder = category_dir(base, category, split_categories(base))
        if split == "train":
            return self._train(folder, category)
        return self._test(folder, category)

    def _images_in(self, label_dir: Path) -> Path:
        """Where a label folder keeps its images (MVTec 3D-AD puts them one level down)."""
        return label_dir

    def _mask_for(self, folder: Path, label_dir: Path, image: Path) -> Path:
        """The ground-truth mask path of an anomalous test image (it may not exist)."""
        return folder / "ground_truth" / label_dir.name / f"{image.stem}_mask.png"

    def _other_layout(self, label_dir: Path) -> str | None:
        """The sibling layout whose place for images ``label_dir`` holds them, when this one finds none there.

        Why: the two MVTec releases differ only in the ``rgb`` level, and data is often passed around re-packed in the
        other's tree (the MVTec 3D-AD tire shipped here is in the MVTec AD layout); a bare "missing training folder"
        sends the user looking for a missing download rather than at ``--layout``."""
        if list_images(label_dir / "rgb"):
            return "mvtec3d"
        return None

    def _train(self, folder: Path, category: str) -> list[Sample]:
        normal = folder / "train" / NORMAL
        train_dir = self._images_in(normal)
        paths = list_images(train_dir)
        other = None if paths else self._other_layout(normal)
        hint = "" if other is None else f"; its images lie where the {other} layout keeps them: use --layout {other}"
        if not train_dir.is_dir():
            raise DataError(f"missing training folder {train_dir}{hint}")
        paths += list_images(self._images_in(folder / "validation" / NORMAL))
        samples = [Sample(path=p, label=0, category=category, split="train") for p in paths]
        return require_samples(samples, f"no training images in {train_dir}{hint}")

    def _test(self, folder: Path, category: str) -> list[Sample]:
        test_dir = folder / "test"
        if not test_dir.is_dir():
            raise DataError(f"missing test folder {test_dir}")
        samples: list[Sample] = []
        for defect_dir in list_subdirs(test_dir):
            defect = defect_dir.name
            for path in list_images(self._images_in(defect_dir)):
                if defect == NORMAL:
                    samples.append(Sample(path=path, label=0, category=category, split="test"))
                    continue
                mask = self._mask_for(folder, defect_dir, path)
                found = mask.is_file()
                samples.append(
                    Sample(
                        path=path,
                        label=1,
                        category=category,
                        split="test",
                        defect_type=defect,
                        mask_path=mask if found else None,
                        mask_sought=None if found else mask,
                    )
                )
        where = self._images_in(test_dir / "<defect>")
        return require_samples(samples, f"no test images in {where}/")
