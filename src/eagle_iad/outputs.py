"""Where a command may write, checked before any work, and write failures as one clear error.

Every command that writes (``fit``, ``inspect --out``, ``eval-expert``, ``eval``, ``attention``)
calls :func:`check_output_path` first, so a bad ``--out`` costs a second, not a fit. The same rules
hold for all of them: not the filesystem root, not the current directory or a folder above it, not a
symbolic link (give the folder itself), not an existing file, not below a file, and somewhere this
user can write. A missing folder, however deep, is created. ``fit`` adds its own rule on what a model
folder may replace (:func:`eagle_iad.expert.store.check_replaceable`).

A report (``eval-expert``, ``attention``) is written complete into a staging folder inside the
output folder and then moved into place file by file (:func:`staged_folder`), so a full disk or a
size limit leaves the previous report as it was. A write that fails for lack of space raises
:class:`OutputError` naming the file (:func:`write_errors`), never a traceback.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from eagle_iad.atomic import atomic_write_text
from eagle_iad.errors import OutputError
from eagle_iad.file_hash import file_sha256
from eagle_iad.stops import checkpoint, uninterrupted

#: errno values that mean "this output cannot be written here" (full disk, quota, a file size
#: limit, a read-only filesystem, permissions), as opposed to a bug.
WRITE_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EISDIR}
)
#: The subset that only a write can cause: the CLI reports these as one line wherever they happen
#: (a fit's scratch file in ``TMPDIR`` included).
SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS})


#: The files that make a folder a saved model or an export (their JSON's ``format`` / ``kind`` says whose):
#: nothing but ``eagle fit`` / ``eagle export`` may write in such a folder, or the model no longer loads.
#: The same names and values as ``expert/manifest.py`` and ``expert/export.py`` (a test checks).
OWNED_FOLDER_MARKERS: dict[str, tuple[str, str]] = {
    "model.json": ("format", "eagle-iad/expert"),
    "eagle-export.json": ("kind", "eagle-export"),
}


def owned_folder(path: Path) -> str | None:
    """The marker file that makes ``path`` a model or export folder, or ``None``."""
    for name, (key, value) in OWNED_FOLDER_MARKERS.items():
        try:
            data = json.loads((path / name).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError):
            continue
        if isinstance(data, dict) and data.get(key) == value:
            return name
    return None


def check_output_path(given: str | os.PathLike[str], what: str, example: str, from_parent: bool = False) -> Path:
    """The absolute output path, or :class:`OutputError` with one line naming the problem.

    ``what`` names what would be written ("a model", "a report"), ``example`` a good alternative
    (``./model``). ``from_parent``: the writer replaces the folder itself (a model), so its parent
    must be writable; otherwise the writer writes inside the folder, so the folder (or the nearest
    existing folder above it, where it will be created) must be.
    """
    shown = os.fspath(given)
    target = Path(os.path.abspath(shown))
    if target.parent == target:
        raise OutputError(f"{shown}: refusing to write {what} over the filesystem root; give a new folder")
    cwd = Path.cwd()
    if target == cwd or target in cwd.parents:
        raise OutputError(f"{shown}: is the current directory (or holds it); give a new folder such as {example}")
    if os.path.islink(target):
        raise OutputError(f"{shown}: is a symbolic link; give the folder itself or a new folder")
    if os.path.lexists(target) and not target.is_dir():
        raise OutputError(f"{shown}: exists and is not a directory; refusing to replace it")
    ancestor = target.parent if from_parent else target
    while not os.path.lexists(ancestor) and ancestor.parent != ancestor:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise OutputError(f"{shown}: cannot be created because {ancestor} is not a directory")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise OutputError(f"{shown}: cannot write in {ancestor} (permission denied)")
    for folder in target.parents if from_parent else (target, *target.parents):
        marker = owned_folder(folder)
        if marker is not None:
            kind = "model" if marker == "model.json" else "export"
            raise OutputError(
                f"{shown}: is inside the {kind} folder {folder}, which must hold only the {kind}; give a folder "
                "outside it"
            )
    return target


#: The list of files EAGLE-IAD wrote into an output folder: only those may be replaced by a later run.
LEDGER = ".eagle-outputs.json"
LEDGER_FORMAT = "eagle-iad/outputs"


def _digest(path: Path) -> dict[str, object]:
    """What a written file was: its size and SHA-256 (the size alone tells most changes without reading it)."""
    return {"size": path.stat().st_size, "sha256": file_sha256(path)}


def _ledger(folder: Path) -> tuple[set[str], dict[str, dict[str, object]]]:
    """The names on ``folder``'s ledger and, for those whose written contents are known, their digests.

    A ledger written before digests existed (names only), or a name claimed by a run that stopped before
    it wrote the file, has no digest: that name is taken as eagle's own, as it always was.
    """
    try:
        data = json.loads((folder / LEDGER).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return set(), {}
    if not isinstance(data, dict) or data.get("format") != LEDGER_FORMAT or not isinstance(data.get("files"), list):
        return set(), {}
    names = {str(name) for name in data["files"]}
    raw = data.get("written")
    digests = {
        str(name): dict(value)
        for name, value in (raw.items() if isinstance(raw, dict) else ())
        if str(name) in names and isinstance(value, dict)
    }
    return names, digests


def _changed_since_written(path: Path, digest: dict[str, object]) -> bool:
    """True when the file at ``path`` is no longer what eagle wrote there (a user replaced or edited it)."""
    try:
        if not path.is_file() or path.stat().st_size != digest.get("size"):
            return True
        return file_sha256(path) != digest.get("sha256")
    except OSError:
        return True


def check_outputs(
    folder: Path,
    names: Iterable[str],
    inputs: Iterable[str | os.PathLike[str]] = (),
    legacy: Iterable[str] = (),
) -> None:
    """Refuse to write ``names`` into ``folder`` over an input or a file EAGLE-IAD did not write.

    Why a ledger and not "never overwrite": running a command again into the same folder must refresh
    its own pictures and reports, while a user's file that happens to have the same name (``a_box.png``
    beside ``a.png``) must never be replaced. The folder's ``.eagle-outputs.json`` lists every file a
    command wrote there, with its size and SHA-256: a name not listed that already exists is refused
    with one line, before anything is written, and so is a listed file whose contents changed since
    (a user's own ``histogram.png`` put in place of eagle's: the name alone would let a rerun replace it).
    ``inputs`` are the command's own input files: writing over one is refused even when an earlier
    run wrote it. ``legacy``: files that mark a folder an earlier version of the command wrote before
    ledgers existed (``metrics.json`` and ``report.md`` of a report): in such a folder without a ledger,
    the names this command writes are taken as its own.
    """
    wanted = sorted(set(names))
    sources = {os.path.realpath(path) for path in inputs}
    known, digests = _ledger(folder)
    markers = list(legacy)
    adopted = not (folder / LEDGER).exists() and bool(markers) and all((folder / m).is_file() for m in markers)
    for name in wanted:
        path = folder / name
        if os.path.realpath(path) in sources:
            raise OutputError(
                f"{path}: is one of this command's inputs; refusing to write over it (choose another --out)"
            )
        if os.path.lexists(path) and name not in known and not adopted:
            raise OutputError(
                f"{path}: exists and was not written by eagle; refusing to replace it (move it or choose another --out)"
            )
        if name in digests and os.path.lexists(path) and _changed_since_written(path, digests[name]):
            raise OutputError(
                f"{path}: was changed since eagle wrote it (its size or SHA-256 differs from {folder / LEDGER}); "
                "refusing to replace it (move it, delete it to let eagle write it again, or choose another --out)"
            )


def claim_outputs(
    folder: Path,
    names: Iterable[str],
    inputs: Iterable[str | os.PathLike[str]] = (),
    legacy: Iterable[str] = (),
) -> None:
    """:func:`check_outputs`, then list ``names`` in the ledger (for a writer that writes them next).

    Listed without a digest until :func:`record_outputs` records what was written: a run stopped in
    between leaves names a rerun may refresh, not digests of files it replaced.
    """
    wanted = sorted(set(names))
    check_outputs(folder, wanted, inputs, legacy)
    _update_ledger(folder, wanted, written=False)


@contextmanager
def _ledger_lock(folder: Path) -> Iterator[None]:
    """Two commands writing into one folder take turns at its ledger (neither loses the other's names)."""
    import fcntl

    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def record_outputs(folder: Path, names: Iterable[str]) -> None:
    """Add ``names`` (files this command has just written into ``folder``) to its ledger, with what was written."""
    _update_ledger(folder, names, written=True)


def _update_ledger(folder: Path, names: Iterable[str], written: bool) -> None:
    """List ``names``; ``written``: with each file's digest as it is now, else with none (about to be written)."""
    wanted = set(names)
    if not wanted:
        return
    folder.mkdir(parents=True, exist_ok=True)
    with _ledger_lock(folder):
        known, digests = _ledger(folder)
        after = dict(digests)
        for name in wanted:
            path = folder / name
            if written and path.is_file():
                after[name] = _digest(path)
            else:
                after.pop(name, None)
        if wanted - known or after != digests:
            record = {"format": LEDGER_FORMAT, "files": sorted(known | wanted), "written": dict(sorted(after.items()))}
            atomic_write_text(folder / LEDGER, json.dumps(record, indent=1) + "\n")


def describe_write_error(exc: OSError, where: str | os.PathLike[str] = "an output file") -> str:
    """One line for a failed write: the file (``where`` when the error does not name one) and the reason."""
    where = exc.filename if exc.filename is not None else os.fspath(where)
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return f"{where}: cannot be written ({reason}: the disk is full or a file size limit was reached)"
    return f"{where}: cannot be written ({reason})"


@contextmanager
def write_errors(where: str | os.PathLike[str], what: str) -> Iterator[None]:
    """Turn a write failure (:data:`WRITE_ERRNOS`) inside the block into :class:`OutputError`.

    ``where`` is named when the error itself names no file (a failed ``write()`` does not); ``what``
    says what state the output was left in.
    """
    try:
        yield
    except OSError as exc:
        if exc.errno not in WRITE_ERRNOS:
            raise
        raise OutputError(f"{describe_write_error(exc, where)}; {what}") from None


@contextmanager
def staged_folder(
    target: Path, ledger: bool = True, legacy: tuple[str, ...] = (), last: tuple[str, ...] = ()
) -> Iterator[Path]:
    """A private folder inside ``target`` to write a report into; moved into ``target`` on success, file by file
    (each a rename), the files named in ``last`` after all others: a file that marks the set complete (an
    export's sidecar) must not be seen before what it names.

    Why: a report is a set of files that must agree (metrics, figures, the page linking them). Writing
    it elsewhere first means a full disk fails before any previous file is replaced; the moves that
    follow are renames within one folder, which need no space. The staging folder is removed in
    every case (a stop by SIGINT or SIGTERM included: :mod:`eagle_iad.stops`), and a folder this
    created is removed again when nothing was published into it. A file already in ``target`` that
    EAGLE-IAD did not write is never replaced (:func:`claim_outputs`).
    """
    created = not target.exists()
    try:
        target.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=target))
    except OSError as exc:
        if exc.errno not in WRITE_ERRNOS:
            raise
        raise OutputError(f"{describe_write_error(exc, target)}; nothing was written") from None
    published = False
    try:
        checkpoint("staging")  # test hook: a signal here must leave no staging folder
        with write_errors(target, "the previous files there are unchanged"):
            yield staging
            files = sorted(path for path in staging.rglob("*") if not path.is_dir())
            names = [str(path.relative_to(staging)) for path in files]
            if ledger:  # an export goes into a new folder only, so it needs none
                claim_outputs(target, names, legacy=legacy)
        with uninterrupted():  # a stop waits for the renames: never half the new report beside half the old
            for path in sorted(staging.rglob("*"), key=lambda p: (str(p.relative_to(staging)) in last, p)):
                destination = target / path.relative_to(staging)
                if path.is_dir():
                    destination.mkdir(exist_ok=True)
                else:
                    os.replace(path, destination)
                    published = True
            if ledger:  # what was written, so that a file changed later is told from eagle's own
                record_outputs(target, names)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if created and not published:
            shutil.rmtree(target, ignore_errors=True)
