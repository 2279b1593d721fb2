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

from eagle_iad.data._common import list_images, require_root, split_categories
from eagle_iad.data.base import register_layout
from eagle_iad.data.mvtec import MVTecLayout
from eagle_iad.errors import DataError

IMAGES = "rgb"
MASKS = "gt"


@register_layout("mvtec3d")
class MVTec3DLayout(MVTecLayout):
    """MVTec 3D-AD folders: ``<split>/<label>/rgb/*.png`` with masks in ``<split>/<label>/gt/``.

    The same walk as MVTec AD (so both layouts treat splits, labels and validation normals alike);
    only where images and masks sit differs.
    """

    name: str = "mvtec3d"
    mask_names: str = "test/<defect>/gt/<image name>.png"

    def categories(self, root: Path | None) -> list[str]:
        """Sub-folders of ``root`` holding a ``train`` or ``test`` folder."""
        base = require_root(root, self.name)
        found = split_categories(base)
        if not found:
            raise DataError(f"no MVTec 3D-AD categories under {base} (expected {base}/<category>/train/good/rgb)")
        return found

    def _images_in(self, label_dir: Path) -> Path:
        return label_dir / IMAGES

    def _mask_for(self, folder: Path, label_dir: Path, image: Path) -> Path:
        return label_dir / MASKS / f"{image.stem}.png"

    def _other_layout(self, label_dir: Path) -> str | None:
        """``mvtec`` where the images lie directly in the label folder (MVTec AD's place for them)."""
        return "mvtec" if list_images(label_dir) else None
