"""Dataset layouts: MVTec AD, VisA, MVTec 3D-AD (RGB), plain folders and the packaged elpv cells.

Importing this package imports every layout module, whose ``@register_layout`` decorators fill the
registry, so ``get_layout("mvtec")`` works after a plain ``import eagle_iad.data``.
"""

from eagle_iad.data import elpv, folder, mvtec, mvtec3d, visa
from eagle_iad.data._common import IMAGE_EXTENSIONS, is_listed_image, skipped_files
from eagle_iad.data.base import Layout, Sample, Split, get_layout, layout_names, mask_names, register_layout
from eagle_iad.data.selection import select_test, select_training, subsample

__all__ = [
    "IMAGE_EXTENSIONS",
    "Layout",
    "Sample",
    "Split",
    "elpv",
    "folder",
    "get_layout",
    "is_listed_image",
    "layout_names",
    "mask_names",
    "mvtec",
    "mvtec3d",
    "register_layout",
    "select_test",
    "select_training",
    "skipped_files",
    "subsample",
    "visa",
]
