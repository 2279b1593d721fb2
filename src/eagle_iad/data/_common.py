"""Filesystem helpers shared by the layout modules.

Every layout needs the same few guards (a root that exists, a category name that cannot escape the
root, a split that is really "train" or "test", a folder that actually holds images), and every
one of them must fail with a :class:`DataError` naming the offending path, so the checks live here
once instead of drifting apart in five copies.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from eagle_iad.choices import IMAGE_SUFFIXES
from eagle_iad.data.base import Sample, Split
from eagle_iad.errors import DataError

#: The image suffixes a listed folder takes (:data:`eagle_iad.choices.IMAGE_SUFFIXES`, declared there once for
#: every path that lists a folder), as a set.
IMAGE_EXTENSIONS: frozenset[str] = frozenset(IMAGE_SUFFIXES)

SPLITS: tuple[Split, ...] = ("train", "test")


def is_hidden(path: Path) -> bool:
    """Dot-files (``.DS_Store``, ``._x.png`` AppleDouble files, ``.ipynb_checkpoints``) are never data."""
    return path.name.startswith(".")


def is_image(path: Path) -> bool:
    """A visible regular file whose extension is a known image type."""
    return not is_hidden(path) and path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file()


def is_listed_image(path: Path, folder: Path) -> bool:
    """Whether a recursive listing of ``folder`` (``eagle teach``'s folders, the service's server-side folders)
    takes ``path``, found under it: :func:`is_image`, and no hidden folder on the way (``.ipynb_checkpoints``)."""
    return not any(is_hidden(Path(part)) for part in path.relative_to(folder).parts) and is_image(path)


#: At most this many skipped files are named in :func:`skipped_files`'s line (the count says how many in all).
SKIPPED_SHOWN = 10


def skipped_kind(path: Path) -> str | None:
    """Why a listing passes over the file ``path`` (``.txt``, ``no suffix``, ``hidden``), or None when it is taken
    or is no one's business: a dot-file that is no image by name (``.DS_Store``), a folder."""
    suffix = path.suffix.lower()
    if is_hidden(path):
        return "hidden" if suffix in IMAGE_EXTENSIONS and path.is_file() else None
    if suffix in IMAGE_EXTENSIONS or not path.is_file():
        return None
    return suffix or "no suffix"


def skipped_files(folders: Iterable[Path], what: str = "training") -> str | None:
    """One line saying how many files directly inside ``folders`` were not taken as images, of which kinds, and
    which (the first :data:`SKIPPED_SHOWN`); None when none was.

    Why: a listing takes images by suffix, so a camera's ``x.raw``, a renamed ``.hidden.png`` or a format
    outside :data:`IMAGE_EXTENSIONS` silently left a fit with fewer images than the folder holds.
    """
    skipped: list[tuple[Path, str]] = []
    listed = [folder for folder in dict.fromkeys(folders) if folder.is_dir()]
    for folder in listed:
        skipped += [(p, kind) for p in sorted(folder.iterdir()) if (kind := skipped_kind(p)) is not None]
    if not skipped:
        return None
    counts: dict[str, int] = {}
    for _, kind in skipped:
        counts[kind] = counts.get(kind, 0) + 1
    kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items(), key=lambda item: (-item[1], item[0])))
    shown = ", ".join(p.name for p, _ in skipped[:SKIPPED_SHOWN]) + (", ..." if len(skipped) > SKIPPED_SHOWN else "")
    files = "file that is" if len(skipped) == 1 else "files that are"
    where = "folder" if len(listed) == 1 else "folders"
    return (
        f"skipped {len(skipped)} {files} not taken as images in the {what} {where} ({kinds}): {shown}; "
        f"a folder's images are its visible files ending {' '.join(IMAGE_SUFFIXES)} (docs/USAGE.md, 'Images')"
    )


def list_images(folder: Path) -> list[Path]:
    """Images directly inside ``folder``, sorted; empty when the folder does not exist.

    Not recursive: sub-folders in these layouts carry meaning (labels, masks), so descending into
    them would silently mix classes.
    """
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if is_image(p))


def list_subdirs(folder: Path) -> list[Path]:
    """Visible sub-folders of ``folder``, sorted; empty when the folder does not exist."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_dir() and not is_hidden(p))


def check_split(split: str) -> Split:
    """``split`` itself, after checking it is "train" or "test" (callers may pass CLI strings)."""
    if split == "train":
        return "train"
    if split == "test":
        return "test"
    raise DataError(f"unknown split {split!r}; expected 'train' or 'test'")


def check_category_name(category: str) -> str:
    """``category`` itself, after checking it names one folder and cannot climb out of the root.

    Category names come from users (CLI flags, config files) and are joined onto the root, so a
    separator or ``..`` would let them read outside the dataset.
    """
    if not category or category.strip() != category:
        raise DataError(f"invalid category name {category!r}: empty or surrounded by whitespace")
    if "/" in category or "\\" in category or "\0" in category:
        raise DataError(f"invalid category name {category!r}: it must not contain path separators")
    if ".." in category or category == ".":
        raise DataError(f"invalid category name {category!r}: it must not contain '..' or be '.'")
    return category


def require_root(root: Path | None, layout: str) -> Path:
    """``root`` as a Path, after checking it is an existing directory."""
    if root is None:
        raise DataError(f"the {layout} layout needs a dataset root folder; none was given")
    root = Path(root)
    if not root.exists():
        raise DataError(f"dataset root {root} does not exist")
    if not root.is_dir():
        raise DataError(f"dataset root {root} is not a directory")
    return root


def category_dir(root: Path, category: str, known: Iterable[str]) -> Path:
    """``root/category`` after validating the name and checking the category exists.

    ``known`` are the categories the layout found, listed in the error so a typo is easy to fix.
    """
    check_category_name(category)
    folder = root / category
    if not folder.is_dir():
        names = ", ".join(sorted(known)) or "none"
        raise DataError(f"unknown category {category!r}: {folder} does not exist (found: {names})")
    return folder


def sort_samples(samples: Iterable[Sample]) -> list[Sample]:
    """Samples ordered by path, the order every layout promises so runs are reproducible."""
    return sorted(samples, key=lambda s: s.path)


def require_samples(samples: list[Sample], message: str) -> list[Sample]:
    """``samples`` sorted by path, or a :class:`DataError` with ``message`` if there are none."""
    if not samples:
        raise DataError(message)
    return sort_samples(samples)


def split_categories(base: Path) -> list[str]:
    """Sub-folders of ``base`` that hold a ``train`` or ``test`` folder, sorted.

    The filter keeps licence files, READMEs and unrelated folders next to the categories out of
    the category list.
    """
    return [d.name for d in list_subdirs(base) if (d / "train").is_dir() or (d / "test").is_dir()]
