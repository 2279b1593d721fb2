"""Disk space: refuse (507) what would fill the state folder's disk, and say so when the disk is full anyway.

Why a floor and not only ``ENOSPC``: SQLite, the pictures and the uploads share one disk, and a
disk filled to the last byte can fail a write half-way through something else (a job record, the
WAL). Keeping ``min_free_bytes`` free refuses the request that would cross the line before any byte is
written; the ``ENOSPC`` mapping covers what the floor cannot see (another process filling the disk).
Both answer 507 Insufficient Storage with the same code, and the caller removes what it had written.

:class:`StorageWatch` makes the refusals visible to an operator and an alerting system, not only to the
client: one WARNING when the service starts refusing for lack of space and one when it stores again (not a
line per request), ``/healthz`` ``degraded`` meanwhile, and the ``eagle_storage_*`` gauges of ``/metrics``.
"""

from __future__ import annotations

import errno
import logging
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from eagle_iad.mllm.serving import ApiError

#: ``errno`` values that mean "no room": a full disk, or the user's quota.
DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})

_MIB = 1024 * 1024

#: How much room over the floor (``--min-free-mb``) ``/healthz`` wants, once writes were refused, before it
#: takes the disk for usable again on its own (a stored write says so at once): about what a large image's
#: inspection writes, so that freeing a few bytes does not flip the replica back into a load balancer's pool
#: to refuse the next request.
RECOVERY_BYTES = 64 * _MIB

#: A success on a refused route ends a refusal only when no 507 was answered for this many seconds. Why: whether a
#: request is refused depends on its size (an inspection reserves four times its image), so near the floor a line
#: that sends both 12 MP and 1 MP images has some refused and the rest stored; ending the refusal at each success
#: would flip ``/healthz`` between 503 and 200, and log two WARNING lines, at every alternation. The disk is taken
#: for usable again once requests have been stored for this long without a refusal between them (or ``/healthz``
#: finds :data:`RECOVERY_BYTES` over the floor, which needs no quiet time).
RECOVERY_QUIET_S = 30.0

_log = logging.getLogger(__name__)


def is_disk_full(exc: BaseException) -> bool:
    """``exc`` is a write refused for lack of space (``OSError`` or SQLite's ``SQLITE_FULL``)."""
    if isinstance(exc, OSError):
        return exc.errno in DISK_FULL
    if isinstance(exc, sqlite3.OperationalError):
        return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "disk is full" in str(exc)
    return False


def disk_full_error() -> ApiError:
    """The 507 for a write the disk refused."""
    return ApiError(507, "the service's disk is full; nothing was stored (free space on the state folder's disk)",
                    type_="server_error", code="insufficient_storage")  # fmt: skip


def check_free_space(folder: Path, incoming: int, floor: int) -> None:
    """Refuse (507) when writing ``incoming`` bytes under ``folder`` would leave less than ``floor`` free."""
    if floor <= 0:
        return
    free = shutil.disk_usage(folder).free
    if free - incoming < floor:
        raise ApiError(
            507,
            f"not enough free disk space for this request: {free / _MIB:.1f} MiB free, {incoming / _MIB:.1f} MiB "
            f"needed, and the service keeps {floor / _MIB:.0f} MiB free (--min-free-mb)",
            type_="server_error",
            code="insufficient_storage",
        )


class StorageWatch:
    """Whether the service refuses writes for lack of disk space: told by every answer (:meth:`answered`, from
    the request middleware, which sees each 507 whichever route or check gave it), looked at by ``/healthz``
    (:meth:`health`) and ``/metrics`` (:meth:`metrics_lines`).

    Why here and not in each route: a 507 comes from a dozen places (the free-space floor, ``ENOSPC`` in a
    picture, SQLite's ``SQLITE_FULL``, a model save), and the operator needs one signal for all of them. Refusing
    starts at the first 507, logged once (WARNING, with the free space); it ends, logged once with the count of
    refused requests, when a request to a route that was refused is answered below 400 (the disk took its
    writes again) and no 507 was answered for :data:`RECOVERY_QUIET_S` (near the floor, large requests are refused
    while small ones are stored: this keeps such a mix one refusal, not one per alternation), or when
    ``/healthz`` finds :data:`RECOVERY_BYTES` free over the floor on every folder (a load balancer that stopped
    sending work would otherwise never let a request prove it).
    """

    def __init__(self, folders: Mapping[str, Path], floor: int, clock: Callable[[], float] = time.monotonic) -> None:
        """``folders``: what the service writes, by name (``state``, ``files``, ``models``): each a disk that may
        fill. ``floor``: the free bytes kept (``--min-free-mb``). ``clock``: seconds, monotonic (a test's own)."""
        self.folders = dict(folders)
        self.floor = max(0, floor)
        self._clock = clock
        self._lock = threading.Lock()
        self._since: float | None = None  # monotonic time of the first refusal; None: not refusing
        self._last = 0.0  # monotonic time of the latest refusal (meaningful while refusing)
        self._refused = 0
        self._routes: set[str] = set()

    @property
    def refusing(self) -> bool:
        return self._since is not None

    def free_bytes(self) -> dict[str, int | None]:
        """Free bytes on each folder's disk (``None``: the folder cannot be looked at, e.g. removed)."""
        free: dict[str, int | None] = {}
        for name, folder in self.folders.items():
            try:
                free[name] = shutil.disk_usage(folder).free
            except OSError:
                free[name] = None
        return free

    def _free_text(self) -> str:
        said = [f"{name} {self.folders[name]}: {'not readable' if free is None else f'{free / _MIB:.1f} MiB free'}"
                for name, free in self.free_bytes().items()]  # fmt: skip
        return "; ".join(said) + f" (--min-free-mb keeps {self.floor / _MIB:.0f} MiB free)"

    def answered(self, method: str, route: str, status: int) -> None:
        """One answer of the service: a 507 starts (or counts into) the refusal; a success on a route that was
        refused ends it once no 507 was answered for :data:`RECOVERY_QUIET_S`."""
        what = f"{method} {route}"
        if status == 507:
            with self._lock:
                now = self._clock()
                first = self._since is None
                if first:
                    self._since = now
                self._last = now
                self._refused += 1
                self._routes.add(what)
            if first:
                _log.warning("storage: writes are refused for lack of disk space (507, first on %s); %s; /healthz "
                             "says degraded until there is room", what, self._free_text())  # fmt: skip
        elif status < 400 and self._since is not None and what in self._routes:
            self._recovered(f"{what} stored again", quiet=True)

    def _recovered(self, how: str, quiet: bool = False) -> None:
        """End the refusal, logged once; ``quiet``: only if no 507 was answered for :data:`RECOVERY_QUIET_S`."""
        with self._lock:
            now = self._clock()
            if self._since is None or (quiet and now - self._last < RECOVERY_QUIET_S):
                return
            seconds, refused = now - self._since, self._refused
            self._since, self._refused = None, 0
            self._routes.clear()
        _log.warning("storage: writes work again (%s); %d request%s refused (507) over %.0f s", how, refused,
                     "" if refused == 1 else "s were", seconds)  # fmt: skip

    def health(self) -> str:
        """``ok``, or ``refusing: ...`` while writes are refused (``/healthz``: ``degraded``). A refusal ends here
        once every folder's disk has :data:`RECOVERY_BYTES` free over the floor."""
        if self._since is None:
            return "ok"
        free = self.free_bytes()
        if all(room is not None and room >= self.floor + RECOVERY_BYTES for room in free.values()):
            least = min(room for room in free.values() if room is not None)
            self._recovered(f"the disk has room again: {least / _MIB:.0f} MiB free or more")
            return "ok"
        return "refusing: writes are refused for lack of disk space (507)"

    def metrics_lines(self) -> list[str]:
        """``eagle_storage_refusing`` (1 while writes are refused for lack of space) and
        ``eagle_storage_free_bytes{folder=...}`` (free bytes on the disk of each folder the service writes)."""
        lines = [
            "# HELP eagle_storage_refusing 1 while writes are refused (507) for lack of disk space, else 0.",
            "# TYPE eagle_storage_refusing gauge",
            f"eagle_storage_refusing {1 if self._since is not None else 0}",
            "# HELP eagle_storage_free_bytes Free bytes on the disk of each folder the service writes.",
            "# TYPE eagle_storage_free_bytes gauge",
        ]
        for name, free in self.free_bytes().items():
            if free is not None:
                lines.append(f'eagle_storage_free_bytes{{folder="{name}"}} {free}')
        return lines
