"""The folder sink: each inspected image copied (or hard-linked) into ``normal/``, ``anomalous/`` or
``undecided/``, its JSON record beside it; each image the station refused into ``refused/``, with its refusal.

Named ``<record id>_<image name>`` (``<refused-...>_<image name>``) so a repeated delivery (a restart, a retry)
writes the same two files again instead of adding copies, and two images with one name never collide. Both files
are written atomically, the record last: a ``.json`` present means its image is complete (a refusal's ``.json``
may stand alone: see :meth:`FolderSink._deliver_refusal`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from eagle_iad.atomic import atomic_write_text
from eagle_iad.file_hash import BLOCK
from eagle_iad.naming import NAME_MAX, fit_name
from eagle_iad.station.parts import REQUIRED, SINKS, DeliveryError, Options, RefusedError, Retry, refusal
from eagle_iad.station.sources.folder import ABSENT, NotAFileError, open_regular

#: NAME_MAX bytes a copy's name leaves free: its ``.json``, written atomically (a 10-byte temporary name).
JSON_RESERVE = len(".json") + 10


#: The folder of each decision a verdict's copy goes to; any other (no decision) goes to :data:`UNDECIDED_FOLDER`.
#: One declaration: the deliveries and the start-up line (:meth:`FolderSink.describe`) both read it.
DECISION_FOLDERS = {"normal": "normal", "anomalous": "anomalous", "unrecognised": "unrecognised"}
UNDECIDED_FOLDER = "undecided"
#: Where the images the station refused go, each with its refusal's JSON.
REFUSED_FOLDER = "refused"


class FolderSink:
    """A :class:`~eagle_iad.station.parts.Sink` writing into a folder tree the line's other tools read."""

    kind: ClassVar[str] = "folder"
    takes_refusals: ClassVar[bool] = True

    def __init__(self, options: Options, name: str) -> None:
        self.name = name
        self.folder: Path = options.path("path", REQUIRED)
        self.link = options.flag("link", False)
        self.max_attempts = Retry.read(options).max_attempts
        if self.folder.exists() and not self.folder.is_dir():
            raise options.error("path", f"{self.folder} exists and is not a folder")
        parent = self.folder if self.folder.exists() else self.folder.parent
        if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
            raise options.error("path", f"{self.folder} cannot be created or written by this user")

    def cross_device(self, images: Path) -> str | None:
        """With ``link = true``: why the images in ``images`` (a hot folder's ``done/``) cannot be hard-linked into
        this sink's folder, naming the two file systems, or ``None``. Checked when the station is read: a link
        across file systems fails with EXDEV on every try, for ever, and every later verdict waits behind it."""
        if not self.link:
            return None
        here, there = _existing(images), _existing(self.folder)
        try:
            if os.stat(here).st_dev == os.stat(there).st_dev:
                return None
        except OSError:  # cannot tell now: the first delivery will
            return None
        return (f"link = true needs the hot folder and path on one file system (a hard link cannot cross file "
                f"systems): the images are in {images}, on {_file_system(here)}, and path {self.folder} is on "
                f"{_file_system(there)}; set link = false to copy them, or choose a path on the hot folder's file "
                "system")  # fmt: skip

    def describe(self) -> str:
        how = "hard links" if self.link else "copies"
        folders = ", ".join(f"{folder}/" for folder in (*DECISION_FOLDERS.values(), UNDECIDED_FOLDER))
        return f"folder {self.folder} ({how} in {folders}; refused images in {REFUSED_FOLDER}/)"

    def deliver(self, payload: Mapping[str, Any], key: str) -> None:
        refused = refusal(payload)
        if refused is not None:
            self._deliver_refusal(payload, refused, key)
            return
        record = payload["record"]
        image = Path(payload["image"])
        # stored, not yet put away: the file is still where it arrived
        places = [image, *([Path(str(payload["source"]))] if payload.get("source") else [])]
        expected = record.get("image_sha256")
        folder = self.folder / DECISION_FOLDERS.get(str(record.get("decision")), UNDECIDED_FOLDER)
        name = Path(str(record.get("image_name") or image.name)).name
        stem, suffix = os.path.splitext(f"{key}_{name}")
        base = fit_name(stem, suffix, NAME_MAX - JSON_RESERVE)  # a long name still fits with its .json
        target = folder / base
        try:
            folder.mkdir(parents=True, exist_ok=True)
            if not target.exists():
                temporary = folder / f".{base}.tmp"
                unreadable: list[OSError] = []
                if not self._copy_readable(places, temporary, expected, unreadable):
                    if unreadable:  # there but not read now (EACCES, EIO, EXDEV linking): retried, not refused
                        failure = unreadable[0]
                        raise DeliveryError(f"{failure.filename or image}: {failure.strerror or failure}")
                    # anything under the name (other bytes, a link, a FIFO) is not the image: never there again
                    gone = "replaced by another since it was inspected" if any(map(os.path.lexists, places)) else "gone"
                    raise RefusedError(f"the image is {gone}: {image}")  # a dead letter, in time
                _put_in_place(temporary, target)
            atomic_write_text(folder / f"{base}.json", json.dumps(payload, indent=1) + "\n")
        except OSError as exc:
            raise DeliveryError(f"{folder}: {exc.strerror or exc}") from None

    def _deliver_refusal(self, payload: Mapping[str, Any], refused: Mapping[str, Any], key: str) -> None:
        """``refused/<key>_<name>``: the refused image, from where the station put it (``image``; never where it
        arrived, ``source``, which holds the next file of that name by then, and is no path for a camera), and
        its refusal's JSON beside it. An image that is gone (removed from ``failed/``), unreadable (the reason it
        was refused, often) or other bytes than those refused gets no copy: the JSON alone is written, since the
        refusal is what the reader of this folder must learn, and a copy that can never be made must not turn it
        into a dead letter. Only writing into this folder failing is a failed try."""
        folder = self.folder / REFUSED_FOLDER
        image = Path(str(payload.get("image") or ""))
        name = Path(str(refused.get("image_name") or image.name or "image")).name
        stem, suffix = os.path.splitext(f"{key}_{name}")
        base = fit_name(stem, suffix, NAME_MAX - JSON_RESERVE)
        target = folder / base
        places = [Path(str(payload["image"]))] if payload.get("image") else []
        expected = refused.get("image_sha256")
        try:
            folder.mkdir(parents=True, exist_ok=True)
            if not target.exists():
                temporary = folder / f".{base}.tmp"
                if self._copy_readable(places, temporary, expected):
                    _put_in_place(temporary, target)
            atomic_write_text(folder / f"{base}.json", json.dumps(payload, indent=1) + "\n")
        except OSError as exc:
            raise DeliveryError(f"{folder}: {exc.strerror or exc}") from None

    def _copy_readable(
        self, places: list[Path], temporary: Path, expected: Any, unreadable: list[OSError] | None = None
    ) -> bool:
        """The first of ``places`` that is a regular file and can be read (or, linking, linked) and holds the bytes
        ``expected`` (when known), copied or linked to ``temporary``; ``False`` when none can. The one way this sink
        takes an image, a verdict's or a refusal's: a symbolic link is not followed (its target is not what the
        station filed) and a FIFO not waited on, whether there when the sink looks or put there since (a hard link
        is hashed through :func:`open_regular` too). Any failure to open, link, read or hash a place is no copy of
        it (a link the kernel refuses, ``fs.protected_hardlinks`` for a file this user neither owns nor can read, is
        exactly a refused image's case); those other than "not there" and "not a regular file" are added to
        ``unreadable``, for a caller that retries them. Raises :class:`OSError` only for a failure to write
        ``temporary``, into this sink's folder."""

        def cannot(exc: OSError) -> None:
            temporary.unlink(missing_ok=True)
            if unreadable is not None and not isinstance(exc, NotAFileError) and exc.errno not in ABSENT:
                unreadable.append(exc)

        for place in places:
            temporary.unlink(missing_ok=True)
            if self.link:
                try:
                    if not stat.S_ISREG(os.lstat(place).st_mode):
                        continue
                    os.link(place, temporary, follow_symlinks=False)
                    digest = None if expected is None else _digest(temporary)
                except OSError as exc:  # gone, not linkable here (EPERM, EXDEV), unreadable: the next place
                    cannot(exc)
                    continue
            else:
                try:
                    source = open_regular(place)
                except OSError as exc:  # gone, unreadable, a link, a FIFO, a folder: the next place, else no copy
                    cannot(exc)
                    continue
                hashed, failed = hashlib.sha256(), None
                try:
                    with source, open(temporary, "wb") as copy:
                        while True:
                            try:
                                block = source.read(BLOCK)
                            except OSError as exc:  # EIO reading it: no copy of this place
                                failed = exc
                                break
                            if not block:
                                break
                            hashed.update(block)
                            copy.write(block)
                except BaseException:  # writing failed (a full disk, half-way): no part-copy left taking the room
                    _discard(temporary)  # the retry needs, nor one the reader of this folder could list
                    raise
                if failed is not None:
                    cannot(failed)
                    continue
                digest = hashed.hexdigest()
            if expected is None or digest == expected:
                return True
        temporary.unlink(missing_ok=True)
        return False

    def close(self) -> None:
        pass


def _existing(path: Path) -> Path:
    """``path``, or its nearest folder above that exists (where a folder not made yet will be)."""
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def _file_system(path: Path) -> str:
    """The file system ``path`` is on, in words: its mount point and type (``/dev/shm (tmpfs)``), as
    ``/proc/self/mounts`` says; the mount point alone where that cannot be read."""
    mount = path.resolve()
    try:
        device = os.stat(mount).st_dev
        while mount.parent != mount and os.stat(mount.parent).st_dev == device:
            mount = mount.parent
    except OSError:
        return str(path)
    try:
        with open("/proc/self/mounts", encoding="utf-8", errors="replace") as mounts:
            types = {fields[1]: fields[2] for line in mounts if len(fields := line.split()) >= 3}
    except OSError:
        types = {}
    kind = types.get(str(mount).replace(" ", "\\040"))
    return f"{mount} ({kind})" if kind else str(mount)


def _discard(temporary: Path) -> None:
    """Remove a temporary copy whose write failed, quietly: the write's own error is the one to report."""
    with contextlib.suppress(OSError):
        temporary.unlink(missing_ok=True)


def _put_in_place(temporary: Path, target: Path) -> None:
    """``temporary`` renamed to ``target``; removed if the rename fails, so a failed try leaves nothing behind."""
    try:
        os.replace(temporary, target)
    except BaseException:
        _discard(temporary)
        raise


def _digest(path: Path) -> str:
    """The SHA-256 of the regular file at ``path``, opened by :func:`open_regular`: a link put where the image was
    between the sink's look and its hard link is not followed, nor a FIFO waited on."""
    digest = hashlib.sha256()
    with open_regular(path) as handle:
        while block := handle.read(BLOCK):
            digest.update(block)
    return digest.hexdigest()


SINKS.add(FolderSink.kind, FolderSink)
