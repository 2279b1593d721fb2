"""The MVTec 3D-AD layout, RGB images only (``--layout mvtec3d``).

Expected tree (the original release; the ``xyz`` point clouds are ignored)::

    ROOT/<category>/train/good/rgb/*.png               training normals (label 0)
    ROOT/<category>/validation/good/rgb/*.png          optional: extra training normals
    ROOT/<category>/test/<label>/rgb/*.png             test images; ``good`` → 0, else 1
    ROOT/<category>/test/<label>/gt/<same name>.png    pixel mask of an anomalous test image

The validation normals join the training normals for the same reason as in the ``mvtec`` layout:
they are defect-free images and there is no held-out normal set to give them to. Test ``good``
images in 3D-AD also carry (all-black) ``gt`` masks; they are not reported, because
:class:`~eagle_iad.data.base.Sample` keeps ``mask_path`` for anomalous images only. An anomalous
image without its ``gt`` file keeps ``mask_path=None``.
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
IMAGES = "rgb"
MASKS = "gt"


@register_layout("mvtec3d")
class MVTec3DLayout:
    """MVTec 3D-AD folders: ``<split>/<label>/rgb/*.png`` with masks in ``<split>/<label>/gt/``."""

    name: str = "mvtec3d"

    def categories(self, root: Path | None) -> list[str]:
        """Sub-folders of ``root`` holding a ``train`` or ``test`` folder."""
        base = require_root(root, self.name)
        found = split_categories(base)
        if not found:
            raise DataError(f"no MVTec 3D-AD categories under {base} (expected {base}/<category>/train/good/rgb)")
        return found

    def samples(self, root: Path | None, category: str, split: Split) -> list[Sample]:
        """Training normals (plus validation normals) or all test images of ``category``."""
        split = check_split(split)
        base = require_root(root, self.name)
        folder = category_dir(base, category, split_categories(base))
        if split == "train":
            return self._train(folder, category)
        return self._test(folder, category)

    def _train(self, folder: Path, category: str) -> list[Sample]:
        train_dir = folder / "train" / NORMAL / IMAGES
        if not train_dir.is_dir():
            raise DataError(f"missing training folder {train_dir}")
        paths = list_images(train_dir) + list_images(folder / "validation" / NORMAL / IMAGES)
        samples = [Sample(path=p, label=0, category=category, split="train") for p in paths]
        return require_samples(samples, f"no training images in {train_dir}")

    def _test(self, folder: Path, category: str) -> list[Sample]:
        test_dir = folder / "test"
        if not test_dir.is_dir():
            raise DataError(f"missing test folder {test_dir}")
        samples: list[Sample] = []
        for label_dir in list_subdirs(test_dir):
            defect = label_dir.name
            for path in list_images(label_dir / IMAGES):
                if defect == NORMAL:
                    samples.append(Sample(path=path, label=0, category=category, split="test"))
                    continue
                mask = label_dir / MASKS / f"{path.stem}.png"
                samples.append(
                    Sample(
                        path=path,
                        label=1,
                        category=category,
                        split="test",
                        defect_type=defect,
                        mask_path=mask if mask.is_file() else None,
                    )
                )
        return require_samples(samples, f"no test images in {test_dir}/<label>/{IMAGES}/")
