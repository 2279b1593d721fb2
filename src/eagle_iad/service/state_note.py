"""Where the service holding a state folder keeps its history and models, noted in that folder for the CLI.

Why: the commands run beside a service (``eagle review``, ``eagle keys``, ``eagle teach``, ``eagle db``) find its
history from the flags ``eagle serve`` was given. With ``--state-dir`` alone they look for
``<state-dir>/eagle.sqlite3``; a service on that folder whose history is a PostgreSQL database (or an SQLite
file elsewhere) was answered "no history at state/eagle.sqlite3: has eagle serve run with these flags?", which
left the operator guessing which flags it had. The service notes them here when it takes the folder's lock, so
the CLI can say which ``--history`` to pass, and knows the service's models folder (``eagle review list
--category`` names the fitted categories as ``GET /v1/review`` does).

The note holds no secret: the passwords in the history's URL (its user part's, each ``password=`` and
``sslpassword=``) are left out (the folder may be readable by more people than the database's password should
be), so the URL it names is one to add a password to, or to use with ``PGPASSWORD`` or ``~/.pgpass``. It is
written atomically (a reader never sees half a note) and left when the service stops: it says where the service
that *last* held the folder kept its history, and the CLI words it so.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from eagle_iad.atomic import atomic_write_text
from eagle_iad.history.backend import without_passwords
from eagle_iad.naming import printable

_log = logging.getLogger(__name__)

#: The note's file in the state folder (beside ``eagle-serve.lock``).
NOTE_FILE = "eagle-serve.json"


def without_password(location: str) -> str:
    """``location`` (a history URL or an SQLite path) with any password left out, not masked: what a user can
    pass as ``--history`` with the password given another way (``postgresql://eagle@db:5432/eagle``)."""
    return without_passwords(location) if "://" in location else location


@dataclass(frozen=True)
class ServiceNote:
    """What the service that last held a state folder noted: its history (no password), models folder, pid and
    start time."""

    history: str
    models: Path | None
    pid: int | None
    started: str | None

    def said(self, state_dir: Path) -> str:
        """The sentence the CLI adds to "no history" (its ``--history`` to pass)."""
        who = f" (pid {self.pid}, started {printable(self.started or '?')})" if self.pid else ""
        history = printable(self.history)
        return (f"the service that last ran on the state folder {state_dir}{who} keeps its history at {history}: "
                f"pass --history {history}")  # fmt: skip


def write_note(state_dir: Path, history: str, models_dir: Path) -> None:
    """Note where this service keeps its history (``history``: a URL or an SQLite file; any password is left
    out) and its models, in ``<state_dir>/eagle-serve.json`` (atomically). A note that cannot be written (a
    full disk) is a warning: it helps the CLI, and is never a reason not to serve."""
    if history.startswith("sqlite:///"):  # what a user passes: the file's path
        history = history[len("sqlite://") :]
    note = {"history": without_password(history), "models": str(models_dir.resolve()), "pid": os.getpid(),
            "started": datetime.now(UTC).isoformat(timespec="seconds")}  # fmt: skip
    try:
        atomic_write_text(state_dir / NOTE_FILE, json.dumps(note, indent=1) + "\n")
    except OSError as exc:
        _log.warning("could not note where the history is in %s (eagle review --state-dir will not know): %s",
                     state_dir / NOTE_FILE, exc)  # fmt: skip


def read_note(state_dir: Path | None) -> ServiceNote | None:
    """The note in ``state_dir``; ``None`` where there is none or it cannot be read (a service from before
    notes, a folder never served): the CLI then says what it said before."""
    if state_dir is None:
        return None
    try:
        data = json.loads((state_dir / NOTE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("history"), str) or not data["history"]:
        return None
    models, pid, started = data.get("models"), data.get("pid"), data.get("started")
    return ServiceNote(
        history=data["history"],
        models=Path(models) if isinstance(models, str) and models else None,
        pid=pid if isinstance(pid, int) and not isinstance(pid, bool) else None,
        started=started if isinstance(started, str) else None,
    )
