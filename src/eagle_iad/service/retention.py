"""Removing inspections from the history: one on request (an image that must not be kept: a person in frame, a
customer's part photographed by mistake) and the old ones by age (retention, so a line inspecting an image a second
does not fill the disk with heatmaps and boxed pictures).

Shared by ``DELETE /v1/inspections/{id}``, ``eagle history delete`` and ``eagle history prune``.

A single delete removes the pictures first, then the row. Why: what must not be kept is the image, so it goes before
anything else can fail; and a crash (or a history that went away) between the two leaves a record whose pictures are
gone, which every reader already meets (``/v1/files`` answers 404, the console says the picture is missing) and which
running the same delete again completes (it is idempotent).

A prune removes the rows first, then the pictures of the rows it removed, and only of those. Why: it keeps the
inspections labelled meanwhile (an operator's correction is training evidence, the kept upload with it), and only
the ``DELETE`` (``... AND label IS NULL``, :meth:`InspectionStore.delete`) knows which ones those are, also on a
PostgreSQL shared by replicas. A crash between the two leaves picture folders that no row names; the service's
start removes those (``ServiceState._drop_orphan_pictures``; with a shared history only folders untouched for
``ORPHAN_AGE_S``), so a prune cut short is completed by the next start, not by the next prune.

A pictures-only prune keeps the row and says in it that its pictures are gone (no picture links, a line in its
``warnings``): each batch is one transaction that holds the ``labels`` lock, finds the rows still unlabelled, removes
their files and rewrites them; a part labelled meanwhile keeps its pictures, and a prune that stopped half-way
(rolled back) finds its rows again, still linking pictures.

Safe on a live history shared by replicas: a prune works in batches of :data:`PRUNE_BATCH` inspections, each one
short transaction, and holds the store's connection only for each batch's statements, so inspections stored
meanwhile (always newer than the cut-off) are neither delayed long nor touched.
"""

from __future__ import annotations

import os
import shutil
import stat
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from eagle_iad.errors import ConfigError
from eagle_iad.record import iso_time
from eagle_iad.service.store import Inspection, InspectionStore, is_inspection_id
from eagle_iad.stops import checkpoint, uninterrupted

#: Inspections per batch of a prune: one short transaction each, the history's other writers served between them.
PRUNE_BATCH = 200

#: Inspections per transaction of a pictures-only prune, which removes their files inside it (holding the history's
#: labels lock, and on SQLite its write lock): a quarter of a batch, so that other writers wait less.
PICTURES_ONLY_STEP = 50

#: The warning a pictures-only prune adds to a record (``{when}``: the prune's time).
PICTURES_PRUNED = "pictures removed by retention (eagle history prune --pictures-only) at {when}"


@dataclass(frozen=True)
class Sizes:
    """Files and bytes under one or more inspections' picture folders."""

    files: int = 0
    bytes: int = 0

    def __add__(self, other: Sizes) -> Sizes:
        return Sizes(self.files + other.files, self.bytes + other.bytes)


def picture_folder(files_dir: Path, inspection_id: str) -> Path | None:
    """The folder of an inspection's pictures (and its kept upload), or ``None`` for an id that cannot name one
    (the service's ids are 32 hex digits: anything else, ``..`` included, names no folder of the service's)."""
    return files_dir / inspection_id if is_inspection_id(inspection_id) else None


def sizes(folder: Path | None) -> Sizes:
    """How many files, and bytes, ``folder`` holds (none: not there); a link is counted, never followed."""
    if folder is None or not os.path.lexists(folder):
        return Sizes()
    if folder.is_symlink() or not folder.is_dir():
        return Sizes(1, folder.lstat().st_size)
    found = Sizes()
    for root, _, names in os.walk(folder):
        for name in names:
            try:
                info = os.lstat(os.path.join(root, name))
            except OSError:  # removed meanwhile
                continue
            found += Sizes(1, info.st_size if stat.S_ISREG(info.st_mode) else 0)
    return found


def remove_pictures(files_dir: Path, inspection_id: str) -> Sizes:
    """Remove an inspection's picture folder (heatmap, boxed picture, reference, overlays, the kept upload): what it
    held. A folder that could not be removed whole raises :class:`OSError`, so that its row is not removed either
    (the record keeps saying where the files are)."""
    folder = picture_folder(files_dir, inspection_id)
    held = sizes(folder)
    if folder is None or not os.path.lexists(folder):
        return held
    if folder.is_symlink() or not folder.is_dir():
        folder.unlink(missing_ok=True)
    else:
        try:
            shutil.rmtree(folder)
        except FileNotFoundError:  # removed meanwhile, whole or in part (another prune, a delete of the same one)
            shutil.rmtree(folder, ignore_errors=True)
            if os.path.lexists(folder):
                raise
    return held


def delete_inspection(store: InspectionStore, files_dir: Path, inspection_id: str) -> tuple[Inspection, Sizes] | None:
    """Remove one inspection: its pictures first, then its row (with its label, its place in the review queue and
    the upload keys that name it); ``None`` when the history has no such inspection (or it was removed meanwhile)."""
    record = store.get(inspection_id)
    if record is None:
        return None
    removed = remove_pictures(files_dir, inspection_id)
    if not store.delete([inspection_id]):
        return None
    return record, removed


def cutoff(older_than_days: float, now: datetime | None = None) -> str:
    """The time before which an inspection is older than ``older_than_days``, as the history stores times."""
    if not older_than_days >= 0:
        raise ConfigError(f"--older-than must be a number of days of 0 or more, got {older_than_days}")
    when = (now or datetime.now(UTC)) - timedelta(days=older_than_days)
    return iso_time(when.timestamp())


@dataclass
class PruneProgress:
    """What a prune has removed so far, updated in place as it goes: the rows of each batch once their transaction
    committed, each picture folder once it is gone. Why in place and not only in :func:`prune`'s answer: a prune
    commits batch by batch, so one stopped part-way (an error, SIGTERM, Ctrl-C) has removed what its finished
    batches removed, for good, and never returns; its caller still holds this, and ``eagle history prune`` audits
    it (a ``finally``) so that thousands of inspections never go without a trace. With ``dry_run``: what it would
    remove (nothing went)."""

    #: The cut-off (inspected before it), set before the first batch.
    older_than: str = ""
    inspections: int = 0
    picture_folders: int = 0
    files: int = 0
    bytes: int = 0

    #: The batch being written and not yet counted: its ids, and whether it forgets pictures (else: deletes rows).
    #: A prune stopped there (a signal between the commit and the count) leaves it here for :meth:`settle`.
    pending: tuple[list[str], bool] | None = None

    def settle(self, store: InspectionStore) -> None:
        """Count a pending batch by what the history holds now: the rows of it that are gone (deleted), or whose
        pictures are gone (forgotten). Exact whether its transaction committed or rolled back, and needs no signal
        deferred around a statement that may wait for another writer's locks."""
        if self.pending is None:
            return
        ids, pictures_only = self.pending
        self.pending = None
        marks = ", ".join("?" for _ in ids)
        if pictures_only:
            sql = f"SELECT COUNT(*) FROM inspections WHERE id IN ({marks}) AND pictures = '{{}}'"
            self.inspections += int(store.read(sql, ids)[0][0])
        else:
            there = int(store.read(f"SELECT COUNT(*) FROM inspections WHERE id IN ({marks})", ids)[0][0])
            self.inspections += len(ids) - there

    def removed(self, folder: Sizes) -> None:
        """Count one inspection's picture folder (an empty or absent one counts no folder)."""
        self.files += folder.files
        self.bytes += folder.bytes
        self.picture_folders += int(folder.files > 0)

    @property
    def anything(self) -> bool:
        """Whether it removed anything at all (a row, or a file)."""
        return bool(self.inspections or self.files)


def prune(
    store: InspectionStore, files_dir: Path, older_than_days: float, *, category: str | None = None,
    pictures_only: bool = False, labelled: bool = False, dry_run: bool = False, batch: int | None = None,
    now: datetime | None = None, progress: PruneProgress | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Remove the inspections (or with ``pictures_only`` only their pictures) inspected more than ``older_than_days``
    ago, optionally of one ``category``, in batches (of ``batch``, default :data:`PRUNE_BATCH`); what it removed
    (or with ``dry_run`` would remove: nothing is changed then), with counts and bytes. Labelled inspections are
    kept unless ``labelled`` (an operator's correction is training evidence): ``labelled_kept`` counts those it
    left. Idempotent: a second run finds nothing more to do, and one that stopped half-way is completed by the next
    (the picture folders of rows it removed before it stopped: by the service's next start, module doc). A
    ``files_dir`` that holds none of the first batch's picture folders is refused (:class:`ConfigError`) before
    anything is removed. ``progress``: counted into as it goes (:class:`PruneProgress`), for a caller that must
    know what went when the prune does not return."""
    done = progress if progress is not None else PruneProgress()
    before = cutoff(older_than_days, now)
    done.older_than = before
    step = PRUNE_BATCH if batch is None else batch  # read at call time: one declaration, also for the CLI's prune
    when = iso_time()
    after = 0
    checked = False
    while True:
        rows = store.aged(before, after, step, category=category, with_pictures=pictures_only, labelled=labelled)
        if not rows:
            break
        after = rows[-1][0]
        ids = [inspection_id for _, inspection_id in rows]
        if not checked:
            checked = _check_files_dir(store, files_dir, ids)
        if dry_run:
            done.inspections += len(ids)
            for inspection_id in ids:
                done.removed(sizes(picture_folder(files_dir, inspection_id)))
        elif pictures_only:  # the files inside the batch's transaction, of rows still unlabelled under the lock
            # each folder counted as it goes: gone for good even if its batch's transaction then rolls back
            def remove(inspection_id: str) -> None:
                done.removed(remove_pictures(files_dir, inspection_id))

            for start in range(0, len(ids), PICTURES_ONLY_STEP):
                step_ids = ids[start : start + PICTURES_ONLY_STEP]
                done.pending = (step_ids, True)  # a stop before the count: settled from the rows (PruneProgress)
                forgot = store.forget_pictures(step_ids, PICTURES_PRUNED.format(when=when),
                                               unlabelled_only=not labelled, remove=remove)  # fmt: skip
                done.inspections += len(forgot)
                done.pending = None
        else:  # the rows first, each still unlabelled when removed; then the files of those, and only those
            # A stop (SIGTERM, Ctrl-C) between the batch's commit and its count would leave a batch removed for good
            # and missing from the audit row: the batch is pending until counted, and a stopped prune's caller
            # settles it from the rows (PruneProgress.settle). Not a deferred signal: the DELETE may wait for locks.
            done.pending = (ids, False)
            gone = store.delete(ids, unlabelled_only=not labelled)
            checkpoint("prune batch committed")  # test hook: a signal here, between the commit and the count
            done.inspections += len(gone)
            done.pending = None
            for inspection_id in gone:
                with uninterrupted():  # removed and counted as one (files only: no lock to wait for)
                    done.removed(remove_pictures(files_dir, inspection_id))
        checkpoint("prune batch")  # test hook: a signal here stops a prune that has removed a batch
    kept = 0
    if not labelled:
        # compared as text, as store.aged does: one format for every stored time and the cut-off (test_retention)
        where, params = "time < ? AND label IS NOT NULL", [before]
        if category is not None:
            where += " AND category = ?"
            params.append(category)
        kept = int(store.read(f"SELECT COUNT(*) FROM inspections WHERE {where}", params)[0][0])
    return {
        "dry_run": dry_run,
        "older_than": before,
        "category": category,
        "pictures_only": pictures_only,
        "inspections": done.inspections,
        "picture_folders": done.picture_folders,
        "files": done.files,
        "bytes": done.bytes,
        "labelled_kept": kept,
    }


def _check_files_dir(store: InspectionStore, files_dir: Path, ids: list[str]) -> bool:
    """Refuse a ``--files`` that is not the service's pictures folder before anything is removed: when inspections
    of ``ids`` link pictures and not one of their folders is under ``files_dir``, a prune would remove their
    records and keep every picture (a wrong or default folder: ``0 files, 0.0 MB``). Whether ``ids`` settled it
    (some link pictures); ``False``: none does, the next batch is asked."""
    marks = ", ".join("?" for _ in ids)
    linking = [
        str(row[0])
        for row in store.read(f"SELECT id FROM inspections WHERE id IN ({marks}) AND pictures <> '{{}}'", ids)
    ]
    if not linking:
        return False
    if not any(os.path.lexists(folder) for one in linking if (folder := picture_folder(files_dir, one))):
        raise ConfigError(
            f"{files_dir} holds none of the picture folders of the {len(linking)} inspection(s) to remove first, "
            "which link pictures: is it the service's pictures folder (eagle serve's --files, else "
            "<state-dir>/files)? Nothing was removed; name the right one with --files or --state-dir"
        )
    return True


def files_dir_problem(files_dir: Path, record: Inspection) -> str | None:
    """Why ``files_dir`` cannot be the service's pictures folder for deleting ``record`` (``eagle history delete``):
    the record links pictures, its folder is not there, and the folder holds no inspection's pictures at all (a
    wrong or default ``--files``, which would delete the record and keep its image); ``None``: it may be."""
    folder = picture_folder(files_dir, record.id)
    if not record.pictures or folder is None or os.path.lexists(folder):
        return None
    try:
        with os.scandir(files_dir) as entries:
            if any(is_inspection_id(entry.name) for entry in entries):
                return None  # the service's folder, this inspection's pictures gone already (a delete cut short)
    except OSError:
        pass
    return (f"inspection {record.id} links pictures, and {files_dir} holds no inspection's picture folder: is it the "
            "service's pictures folder (eagle serve's --files, else <state-dir>/files)? Nothing was deleted; name "
            "the right one with --files or --state-dir")  # fmt: skip


def describe_prune(report: dict[str, Any]) -> str:
    """One line a person reads: what a prune removed (or would), and the labelled inspections it kept."""
    verb = "would remove" if report["dry_run"] else "removed"
    what = "the pictures of" if report["pictures_only"] else ""
    scope = f" of {report['category']}" if report["category"] else ""
    count = report["inspections"]
    line = (f"{verb} {what} {count} inspection{'' if count == 1 else 's'}{scope} inspected before "
            f"{report['older_than']}: {report['files']} files, {report['bytes'] / 1e6:.1f} MB")  # fmt: skip
    line = line.replace("  ", " ")
    if report["labelled_kept"]:
        line += (f"; kept {report['labelled_kept']} labelled inspection(s) (training evidence: "
                 "--include-labelled removes them too)")  # fmt: skip
    return line
