"""The hot folder: images dropped into a folder are inspected once complete, then moved or marked.

Complete means untouched for ``settle_s`` seconds (a camera or copy still writing keeps changing the
file's modification time); a writer that writes ``.name.tmp`` or ``name.part`` and renames is never
read half-way, because names starting with a dot or ending in ``.tmp``/``.part`` are not taken.
Oldest first (modification time, then name), found by listing the folder: a backlog of thousands is
stat-ed, never loaded, and each image is read only when its turn comes.

What becomes of a file (``after``): ``move`` (default) puts it in ``done/`` or ``failed/`` inside the
folder (with ``<name>.reason.txt`` beside a failed one); ``sidecar`` leaves it in place and writes
``<name>.eagle.json`` beside it (the record id and decision, or the reason), which also marks it as
taken. A move never replaces a file: a name already in ``done/`` gets ``-1``, ``-2``, ... Symbolic
links are not followed (a link could make the station read, then move, a file outside the folder).
"""

from __future__ import annotations

import json
import os
import stat
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

from eagle_iad.atomic import atomic_write_text
from eagle_iad.ranges import Range
from eagle_iad.station.parts import REQUIRED, SOURCES, Arrival, Options

#: The image files a hot folder takes (by suffix, any case).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
#: Names a writer uses while a file is not complete yet.
PARTIAL_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload")
SIDECAR_SUFFIX = ".eagle.json"
AFTER = ("move", "sidecar")
SETTLE_S = Range(0.0, 3600.0)
POLL_S = Range(0.01, 60.0)


def move_new(source: Path, folder: Path) -> Path:
    """Move ``source`` into ``folder`` under its name, or ``name-1``, ``name-2``, ... if taken; never replace."""
    folder.mkdir(exist_ok=True)
    stem, suffix = source.stem, source.suffix
    for n in range(100_000):
        target = folder / (source.name if n == 0 else f"{stem}-{n}{suffix}")
        try:
            os.link(source, target)  # fails if target exists: no race can make it replace a file
        except FileExistsError:
            continue
        except OSError:  # a file system without hard links: check, then rename
            if target.exists():
                continue
            os.rename(source, target)
            return target
        os.unlink(source)
        return target
    raise OSError(f"{folder}: no free name for {source.name}")


class HotFolder:
    """A :class:`~eagle_iad.station.parts.Source` over one folder (not its subfolders)."""

    kind: ClassVar[str] = "folder"
    dedupe = True

    def __init__(self, options: Options) -> None:
        self.folder: Path = options.path("path", REQUIRED)
        self.after: str = options.text("after", "move", AFTER)
        self.settle_s = options.number("settle_s", 1.0, SETTLE_S)
        self.poll_s = options.number("poll_s", 0.2, POLL_S)
        if not self.folder.is_dir():
            raise options.error("path", f"{self.folder} is not a folder")
        if not os.access(self.folder, os.R_OK | os.X_OK | os.W_OK):
            raise options.error("path", f"{self.folder} cannot be read and written by this user")
        self.done = self.folder / "done"
        self.failed = self.folder / "failed"
        self._first_seen: dict[str, float] = {}

    def describe(self) -> str:
        then = "moved to done/ or failed/" if self.after == "move" else "left in place with a .eagle.json sidecar"
        return f"folder {self.folder} (complete after {self.settle_s:g} s untouched; {then})"

    def _candidates(self) -> list[tuple[int, str]]:
        found: list[tuple[int, str]] = []
        with os.scandir(self.folder) as entries:
            for entry in entries:
                name = entry.name
                lower = name.lower()
                if name.startswith(".") or not lower.endswith(IMAGE_SUFFIXES):
                    continue
                try:
                    info = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if not stat.S_ISREG(info.st_mode):
                    continue
                if self.after == "sidecar" and os.path.lexists(self.folder / (name + SIDECAR_SUFFIX)):
                    continue
                found.append((info.st_mtime_ns, name))
        found.sort()
        return found

    def backlog(self) -> int:
        return len(self._candidates())

    def poll(self) -> Iterator[Arrival]:
        now = time.time()
        names = set()
        for mtime_ns, name in self._candidates():
            names.add(name)
            first = self._first_seen.setdefault(name, now)
            if now - mtime_ns / 1e9 < self.settle_s:
                continue  # still being written (or just written): its turn comes on a later poll
            path = self.folder / name
            if not path.is_file():
                continue  # taken away meanwhile
            yield Arrival(path=path, source=str(path), name=name, appeared=first)
        for gone in set(self._first_seen) - names:
            del self._first_seen[gone]

    def planned(self, arrival: Arrival) -> Path:
        if self.after == "sidecar":
            return arrival.path
        target: Path = self.done / arrival.name
        n = 0
        while os.path.lexists(target):
            n += 1
            target = self.done / f"{arrival.path.stem}-{n}{arrival.path.suffix}"
        return target

    def finish(self, arrival: Arrival, to: Path, record: Mapping[str, Any]) -> None:
        if self.after == "sidecar":
            mark = {"record_id": record.get("id"), "decision": record.get("decision"), "score": record.get("score")}
            atomic_write_text(arrival.path.with_name(arrival.name + SIDECAR_SUFFIX), json.dumps(mark) + "\n")
            return
        if to.parent == self.done:
            self.done.mkdir(exist_ok=True)
            try:
                if os.path.lexists(to) and os.path.samefile(arrival.path, to):
                    os.unlink(arrival.path)  # a kill between link and unlink: only the unlink was left to do
                    return
                os.link(arrival.path, to)  # never replaces: a name taken meanwhile raises FileExistsError
                os.unlink(arrival.path)
                return
            except FileNotFoundError:
                if not arrival.path.exists():
                    return  # taken away during its inspection: nothing left to put away
            except OSError:
                pass  # taken meanwhile, or a file system without hard links: move_new finds a name
        move_new(arrival.path, self.done)

    def refuse(self, arrival: Arrival, reason: str) -> None:
        if self.after == "sidecar":
            mark = json.dumps({"error": reason}) + "\n"
            atomic_write_text(arrival.path.with_name(arrival.name + SIDECAR_SUFFIX), mark)
            return
        moved = move_new(arrival.path, self.failed)
        atomic_write_text(moved.with_name(moved.name + ".reason.txt"), reason + "\n")


SOURCES.add(HotFolder.kind, HotFolder)
