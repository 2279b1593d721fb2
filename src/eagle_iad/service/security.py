"""What the service refuses, and how: API keys, names, server paths, uploaded images and zips.

Every check raises :class:`ApiError` (the same JSON error shape as ``eagle serve-mllm``) with a
message that says what was wrong, never echoing a secret.

* keys are compared with :func:`hmac.compare_digest` (constant time: no timing oracle);
* category names are a short conservative alphabet, so a name is always one safe path component;
* server folders are resolved (symlinks included) and must stay inside the data root;
* an upload is an image only if it decodes as one: the content is sniffed, headers are not trusted,
  and the pixel count and aspect ratio are checked from the header before decoding (413 beyond them);
* zips are read member by member: absolute or ``..`` names, symlinks, too many members, too many
  uncompressed bytes and a member that inflates beyond the ratio limit (both counted while inflating,
  not taken from the header) are refused.
"""

from __future__ import annotations

import io
import re
import stat
import zipfile
from pathlib import Path, PurePosixPath

import numpy as np

from eagle_iad.errors import ImageError, ImageTooElongatedError, ImageTooLargeError
from eagle_iad.images import load_rgb, probe
from eagle_iad.mllm.serving import ApiError
from eagle_iad.naming import CATEGORY_NAME_RULE, category_name_problem
from eagle_iad.service.storage import DISK_FULL


def check_name(name: str) -> str:
    """A category name by the one rule (:data:`eagle_iad.naming.CATEGORY_NAME`), or 400 ``invalid_name``.

    The answer does not echo the name: it may be 300 characters of anything.
    """
    if category_name_problem(name) is not None:
        raise ApiError(400, f"invalid category name: use {CATEGORY_NAME_RULE}", code="invalid_name")
    return name


#: What stands for the service's models folder in a command an answer suggests (no host path is shown).
MODELS_PLACEHOLDER = "<models>"


def hide_models_dir(text: str, models_dir: Path) -> str:
    """An error's text for an answer, without host paths: the models folder is cut from each path (a model's
    file reads ``elpv-mono/model.json``), but a command the text suggests (``eagle versions --model …``) keeps
    a path that works from any folder, ``<models>/elpv-mono``, with what ``<models>`` is: cut to the bare
    category it would fail unless run from inside the models folder."""
    prefix = str(models_dir) + "/"
    shown = text.replace(f"--model {prefix}", f"--model {MODELS_PLACEHOLDER}/").replace(prefix, "")
    if f"--model {MODELS_PLACEHOLDER}/" in shown:
        shown += f" ({MODELS_PLACEHOLDER}: the service's --models folder)"
    return shown


def resolve_inside(root: Path | None, relative: str, what: str = "folder") -> Path:
    """``root/relative`` resolved, refused unless it stays inside ``root`` (no ``..``, no absolute, no symlink out)."""
    if root is None:
        raise ApiError(400, f"server {what}s are disabled (start the service with --data-root)", code="no_data_root")
    if not relative or "\x00" in relative:
        raise ApiError(400, f"empty or invalid {what} path", code="invalid_path")
    candidate = PurePosixPath(relative)
    if candidate.is_absolute() or ".." in candidate.parts:
        raise ApiError(400, f"{what} must be relative to the data root, without '..'", code="invalid_path")
    resolved = (root / candidate).resolve()
    if not resolved.is_relative_to(root):
        raise ApiError(400, f"{what} resolves outside the data root", code="invalid_path")
    return resolved


def sniff_image(data: bytes, name: str, max_pixels: int) -> np.ndarray:
    """Decode ``data`` as an image or refuse it: 413 when its header promises too many pixels
    (``too_many_pixels``) or too thin a shape (``image_too_elongated``), checked before decoding (PIL's
    decompression-bomb guard included), else 400."""
    try:
        probe(data, max_pixels)
        return load_rgb(data, max_pixels)
    except ImageTooLargeError as exc:
        message = f"{name}: {str(exc).replace('uploaded image: ', '')}"
        code = "image_too_elongated" if isinstance(exc, ImageTooElongatedError) else "too_many_pixels"
        if code == "too_many_pixels" and "megapixels exceeds the limit" in message:
            message += " (the service's --max-pixels changes it)"  # as the CLI's names EAGLE_MAX_PIXELS
        raise ApiError(413, message, code=code) from None
    except ImageError as exc:
        raise ApiError(400, f"{name}: {str(exc).replace('uploaded image: ', '')}", code="invalid_image") from None


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    return stat.S_ISLNK(info.external_attr >> 16)


#: Members that inflate to less than this are never judged by their ratio (a tiny blank image may
#: compress 1000:1 and harms nobody).
RATIO_EXEMPT_BYTES = 1024 * 1024


def _ratio_error(name: str, max_ratio: int) -> ApiError:
    return ApiError(413, f"zip member {name!r} inflates more than {max_ratio}:1 (a zip bomb?); the limit is "
                    f"{max_ratio}:1 for members over 1 MiB", code="zip_too_large")  # fmt: skip


def extract_zip(data: bytes, out: Path, *, max_files: int, max_bytes: int, max_ratio: int = 100) -> list[Path]:
    """Extract the regular files of a zip into ``out`` (flattened to unique names); refuse anything hostile.

    Three bomb guards: the member count, the total uncompressed bytes and each member's inflation
    ratio, the last two counted while inflating (a header that lies cannot bypass them).
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, ValueError):
        raise ApiError(400, "upload is not a valid zip archive", code="invalid_zip") from None
    with archive:
        members = [info for info in archive.infolist() if not info.is_dir()]
        if len(members) > max_files:
            raise ApiError(413, f"zip has {len(members)} files; the limit is {max_files}", code="zip_too_many_files")
        for info in members:
            path = PurePosixPath(info.filename.replace("\\", "/"))
            if path.is_absolute() or ".." in path.parts or re.match(r"^[A-Za-z]:", info.filename):
                raise ApiError(400, f"zip member {info.filename!r} has an unsafe path", code="zip_unsafe_path")
            if _is_symlink(info):
                raise ApiError(400, f"zip member {info.filename!r} is a symbolic link", code="zip_unsafe_path")
        if sum(info.file_size for info in members) > max_bytes:
            raise ApiError(413, f"zip expands beyond the limit of {max_bytes} bytes", code="zip_too_large")
        for info in members:
            if info.file_size > RATIO_EXEMPT_BYTES and info.file_size > max_ratio * max(1, info.compress_size):
                raise _ratio_error(info.filename, max_ratio)
        out.mkdir(parents=True, exist_ok=True)
        written: list[Path] = []
        total = 0
        for index, info in enumerate(members):
            path = PurePosixPath(info.filename.replace("\\", "/"))
            if path.name.startswith(".") or "__MACOSX" in path.parts:
                continue
            target = out / f"{index:05d}_{re.sub(r'[^A-Za-z0-9_.-]', '_', path.name)[:80]}"
            try:
                with archive.open(info) as source, target.open("wb") as sink:
                    inflated = 0
                    while block := source.read(1 << 16):
                        total += len(block)  # counted while inflating: a lying header cannot bypass the limits
                        inflated += len(block)
                        if total > max_bytes:
                            raise ApiError(413, f"zip expands beyond the limit of {max_bytes} bytes",
                                           code="zip_too_large")  # fmt: skip
                        if inflated > RATIO_EXEMPT_BYTES and inflated > max_ratio * max(1, info.compress_size):
                            raise _ratio_error(info.filename, max_ratio)
                        sink.write(block)
            except OSError as exc:
                if exc.errno in DISK_FULL:
                    raise  # the caller answers 507, not "cannot be read"
                message = f"zip member {info.filename!r} cannot be read ({exc})"
                raise ApiError(400, message, code="invalid_zip") from None
            except (zipfile.BadZipFile, EOFError, RuntimeError) as exc:
                message = f"zip member {info.filename!r} cannot be read ({exc})"
                raise ApiError(400, message, code="invalid_zip") from None
            written.append(target)
    return written
