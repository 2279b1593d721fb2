"""The audit log's journal: a change whose row finds the history busy is answered, its row kept and moved in.

A threshold change is saved as files before its audit row is written. Here another connection holds the
history's write lock (as ``eagle keys add``, a station or a replica can) while an engineer moves a
threshold over real HTTP: the change is answered 200 (not a 500 the client would retry, for a change
that took effect), its row waits in ``audit-pending.jsonl``, and once the lock is gone the next read of
the log has it, once, with the journal emptied; a journal left by a stop is moved in at the next start
without writing a row twice.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from conftest import LiveServer, wait_s
from test_service import call

from eagle_iad.data import get_layout


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """models/mono fitted on 8 real elpv cells."""
    import torch

    from eagle_iad.expert import fit, save

    train = sorted(s.path for s in get_layout("elpv").samples(None, "mono", "train"))
    root = tmp_path_factory.mktemp("audit") / "models"
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        save(fit(train[:8], "mono").model, root / "mono")
    finally:
        torch.set_num_threads(before)
    return root


def _app(models: Path, state: Path) -> Any:
    from eagle_iad.service import ServiceSettings, create_app

    return create_app(ServiceSettings(models_dir=models, state_dir=state))


def _threshold(base: str, tau: float) -> tuple[int, dict[str, Any]]:
    body = json.dumps({"tau": tau, "why": f"audit journal {tau}"}).encode()
    status, _, answer = call("POST", f"{base}/v1/categories/mono/threshold", body=body,
                             content_type="application/json")  # fmt: skip
    return status, answer


def _rows(base: str) -> list[tuple[str, str, int, str | None]]:
    status, _, page = call("GET", f"{base}/v1/audit?limit=100")
    assert status == 200, page
    return [(r["method"], r["route"], r["status"], r["detail"]) for r in reversed(page["items"])]


def test_a_change_whose_audit_row_finds_the_history_busy_is_answered_and_the_row_kept(
    models: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from eagle_iad.service import audit

    monkeypatch.setattr(audit, "AUDIT_WAIT_S", 0.2)  # one try (SQLite itself waits 5 s), then the journal
    state = tmp_path / "state"
    journal = state / audit.PENDING
    route = "/v1/categories/{name}/threshold"
    with LiveServer(_app(models, state)) as live:
        assert _threshold(live.base, 120.0)[0] == 200
        holder = sqlite3.connect(str(state / "eagle.sqlite3"), isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # another writer holds the history
        try:
            status, answer = _threshold(live.base, 123.0)
            assert status == 200 and answer["tau"] == 123.0  # the change took effect, and says so
            kept = [json.loads(line) for line in journal.read_text().splitlines()]
            assert [(r["method"], r["route"], r["status"], r["actor"]) for r in kept] == [("POST", route, 200, "local")]
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        rows = _rows(live.base)  # a read of the log moves the journal in first
        assert [r[:3] for r in rows] == [("POST", route, 200), ("POST", route, 200)]
        assert not journal.exists()
        assert _threshold(live.base, 125.0)[0] == 200
        assert len(_rows(live.base)) == 3

    # A journal left by a stop (its last row already in the log: a drain cut short after its commit) is moved
    # in at the next start, each row once.
    stored = sqlite3.connect(str(state / "eagle.sqlite3"))
    last = stored.execute("SELECT time, actor, role, method, route, path, status, detail FROM audit "
                          "ORDER BY seq DESC LIMIT 1").fetchone()  # fmt: skip
    stored.close()
    fields = ("time", "actor", "role", "method", "route", "path", "status", "detail")
    again = dict(zip(fields, last, strict=True))
    new = {**again, "time": "2026-12-06T07:00:00.000+00:00", "path": "/v1/categories/other/threshold"}
    journal.write_text(json.dumps(again) + "\n" + json.dumps(new) + "\n" + '{"time": "cut short')
    with LiveServer(_app(models, state)) as live:
        assert not journal.exists()
        status, _, page = call("GET", f"{live.base}/v1/audit?limit=100")
        paths = [r["path"] for r in reversed(page["items"])]
        assert paths == ["/v1/categories/mono/threshold"] * 3 + ["/v1/categories/other/threshold"]


def test_the_journal_survives_a_line_cut_short_and_a_row_the_log_refuses(tmp_path: Path) -> None:
    """A row appended after a line a crash cut short is read back; a journalled row the log refuses (here one
    SQLite cannot bind) goes to the rejected file and the rows after it still go in; NUL and newlines in a
    detail are written escaped."""
    from eagle_iad.service import audit
    from eagle_iad.service.access import Caller, Role
    from eagle_iad.service.store import InspectionStore

    store = InspectionStore(f"sqlite:///{tmp_path / 'history.sqlite3'}")
    journal = tmp_path / audit.PENDING
    log = audit.AuditLog(store, journal)
    fields = ("time", "actor", "role", "method", "route", "path", "status", "detail")
    refused = dict(zip(fields, ("t1", "eve", "engineer", "POST", "/r", "/p1", {"not": "bindable"}, None), strict=True))
    journal.write_text(json.dumps(refused) + "\n" + '{"time": "cut sh')
    log._append(journal, ("t2", "eve", "engineer", "POST", "/r", "/p2", 200, "kept", None))
    assert [row[0] for row in log._pending(journal)] == ["t1", "t2"]
    caller = Caller(name="eve", role=Role.engineer)
    assert log.write("t3", caller, "POST", "/r", "/p3", 200, "why\x00 with\nlines") is True
    assert not journal.exists()
    assert [json.loads(line)["time"] for line in (tmp_path / audit.REJECTED).read_text().splitlines()] == ["t1"]
    total, rows = log.page(10, 0)
    assert total == 2
    assert [(r["time"], r["path"], r["detail"]) for r in reversed(rows)] == [
        ("t2", "/p2", "kept"),
        ("t3", "/p3", "why\\x00 with\\nlines"),
    ]
    store.close()


def test_a_busy_log_keeps_the_journal_and_a_refused_row_is_set_aside_once(tmp_path: Path) -> None:
    """A drain that finds the log busy keeps every row for the next one (nothing set aside for a passing
    state); the row the log refuses is set aside once, however many drains follow; and a journal that cannot
    be moved at all (its rejected file unwritable) does not stop a new row from being written."""
    from eagle_iad.service import audit
    from eagle_iad.service.access import Caller, Role
    from eagle_iad.service.store import InspectionStore

    database = tmp_path / "history.sqlite3"
    store = InspectionStore(f"sqlite:///{database}")
    journal = tmp_path / audit.PENDING
    draining = tmp_path / (audit.PENDING + ".draining")
    rejected = tmp_path / audit.REJECTED
    log = audit.AuditLog(store, journal)
    fields = ("time", "actor", "role", "method", "route", "path", "status", "detail")
    refused = dict(zip(fields, ("t1", "eve", "engineer", "POST", "/r", "/p1", {"not": "bindable"}, None), strict=True))
    fine = {**refused, "time": "t2", "path": "/p2", "status": 200}
    journal.write_text(json.dumps(refused) + "\n" + json.dumps(fine) + "\n")
    holder = sqlite3.connect(str(database), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        log.drain()  # busy (SQLite waits its 5 s): both rows stay, none is set aside
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert [row[0] for row in log._pending(draining)] == ["t1", "t2"] and not rejected.exists()
    for _ in range(3):
        log.drain()
    assert [json.loads(line)["time"] for line in rejected.read_text().splitlines()] == ["t1"]
    assert not draining.exists() and [r["time"] for r in log.page(10, 0)[1]] == ["t2"]

    rejected.unlink()
    rejected.mkdir()  # the set-aside file cannot be written: the drain fails
    journal.write_text(json.dumps(refused) + "\n")
    assert log.write("t3", Caller(name="eve", role=Role.engineer), "POST", "/r", "/p3", 200) is True
    assert [r["time"] for r in log.page(10, 0)[1]] == ["t3", "t2"]
    store.close()


def test_a_journal_lock_file_is_the_groups_and_one_not_ours_or_held_holds_up_no_row(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lock files are made ``0o666`` less the umask, as the journal is (another user of a setgid state folder's
    group, umask 002, takes them too). One this user cannot write is opened read-only, and both the append and the
    drain go on; one that cannot be opened at all, or one another process holds past ``LOCK_WAIT_S``, is one error
    line and the row is appended under this process's lock alone (the drain waits for its next turn)."""
    import fcntl
    import logging
    import os
    import stat

    from eagle_iad.service import audit
    from eagle_iad.service.access import Caller, Role
    from eagle_iad.service.store import InspectionStore

    caplog.set_level(logging.INFO, logger="eagle_iad.service")
    store = InspectionStore(f"sqlite:///{tmp_path / 'history.sqlite3'}")
    journal = tmp_path / audit.PENDING
    lock = tmp_path / (audit.PENDING + audit.LOCK_SUFFIX)
    log = audit.AuditLog(store, journal)
    row = ("t1", "eve", "engineer", "POST", "/r", "/p1", 200, None, None)  # the last: its category
    before = os.umask(0o002)
    try:
        log._append(journal, row)
    finally:
        os.umask(before)
    assert (stat.S_IMODE(lock.stat().st_mode), stat.S_IMODE(journal.stat().st_mode)) == (0o664, 0o664)

    lock.chmod(0o444)  # another user's, say: root ignores the mode, so its refusal is played too
    opened = os.open

    def refusing(path: Any, flags: int, *args: Any) -> int:
        if str(path) == str(lock) and flags & os.O_RDWR:
            raise PermissionError(13, "Permission denied", str(path))
        return opened(path, flags, *args)

    monkeypatch.setattr(os, "open", refusing)
    log._append(journal, ("t2", "eve", "engineer", "POST", "/r", "/p2", 200, None, None))
    log.drain()
    assert not journal.exists() and [r["time"] for r in log.page(10, 0)[1]] == ["t2", "t1"]
    assert [r.getMessage() for r in caplog.records if "no lock" in r.getMessage()] == []

    def missing(path: Any, flags: int, *args: Any) -> int:
        if str(path) == str(lock):
            raise PermissionError(13, "Permission denied", str(path))
        return opened(path, flags, *args)

    monkeypatch.setattr(os, "open", missing)
    log._append(journal, ("t3", "eve", "engineer", "POST", "/r", "/p3", 200, None, None))
    log.drain()
    assert [row[0] for row in log._pending(journal)] == ["t3"]  # appended; not drained without the lock
    monkeypatch.setattr(os, "open", opened)
    monkeypatch.setattr(audit, "LOCK_WAIT_S", 0.2)
    holder = os.open(lock, os.O_RDONLY)
    fcntl.flock(holder, fcntl.LOCK_EX)  # another process's hold (flock: per open file, so this one alike)
    try:
        assert log.write("t4", Caller(name="eve", role=Role.engineer), "POST", "/r", "/p4", 200) is True
        log._append(journal, ("t5", "eve", "engineer", "POST", "/r", "/p5", 200, None, None))
    finally:
        os.close(holder)
    assert [row[0] for row in log._pending(journal)] == ["t3", "t5"]
    appended = "the row is appended under this process's lock alone (another process's drain may miss it)"
    drained = "the journal is not drained now; the next drain tries again"
    assert [r.getMessage() for r in caplog.records if "no lock" in r.getMessage()] == [
        f"audit: no lock on {lock} (it cannot be opened: Permission denied); {appended}",
        f"audit: no lock on {lock} (it cannot be opened: Permission denied); {drained}",
        f"audit: no lock on {lock} (another process has held it for 0.2 s); {drained}",
        f"audit: no lock on {lock} (another process has held it for 0.2 s); {appended}",
    ]
    log.drain()
    assert not journal.exists() and [r["time"] for r in log.page(10, 0)[1]] == ["t5", "t3", "t4", "t2", "t1"]
    store.close()


def test_another_process_only_appends_to_the_journal(tmp_path: Path) -> None:
    """A log that does not drain (``eagle review label``, another process than the service) writes its row to
    the log, and never renames, rewrites or removes the journal, which the service's drain moves in."""
    from eagle_iad.service import audit
    from eagle_iad.service.access import Caller, Role
    from eagle_iad.service.store import InspectionStore

    store = InspectionStore(f"sqlite:///{tmp_path / 'history.sqlite3'}")
    journal = tmp_path / audit.PENDING
    draining = tmp_path / (audit.PENDING + ".draining")
    fields = ("time", "actor", "role", "method", "route", "path", "status", "detail")
    waiting = dict(zip(fields, ("t0", "eve", "engineer", "POST", "/r", "/p0", 200, None), strict=True))
    journal.write_text(json.dumps(waiting) + "\n")
    cli = audit.AuditLog(store, journal, drains=False)
    cli_user = Caller(name="cli:ana", role=Role.operator)
    assert cli.write("t1", cli_user, "PUT", "/r", "/p1", 200, "label normal by ana") is True
    cli.drain()
    assert journal.read_text() == json.dumps(waiting) + "\n" and not draining.exists()
    assert [r["time"] for r in cli.page(10, 0)[1]] == ["t1"]
    service = audit.AuditLog(store, journal)
    service.drain()
    assert not journal.exists() and not draining.exists()
    assert [r["time"] for r in service.page(10, 0)[1]] == ["t0", "t1"]  # newest first: t0 moved in after t1
    store.close()


#: One process appending ``count`` rows of its own to the journal, as ``eagle review label`` does when the log is busy.
_APPENDER = """
import sys
from pathlib import Path
from eagle_iad.service.audit import AuditLog
from eagle_iad.service.store import InspectionStore

history, journal, who, count = sys.argv[1], Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
store = InspectionStore(history)
log = AuditLog(store, journal, drains=False)
print("ready", flush=True)
sys.stdin.readline()
for index in range(count):
    if index == count // 2:  # halfway: wait while the test drains, so one drain surely takes rows from a live writer
        print("half", flush=True)
        sys.stdin.readline()
    log._append(journal, (f"t{index:04d}", who, "operator", "PUT", "/r", f"/{who}/{index}", 200, None, None))
store.close()
"""


def test_rows_appended_by_two_processes_while_the_service_drains_are_each_in_the_log_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two real processes append 300 rows each to the journal while the service's log drains it over and over
    (renaming it each time it finds rows): every row is in the log exactly once, and no drain finds a row it
    already wrote (earlier an append that the rename cut off was written again, and only the log's look for
    the same row kept it from being doubled)."""
    import logging
    import subprocess
    import sys
    import time

    from eagle_iad.service import audit
    from eagle_iad.service.store import InspectionStore

    caplog.set_level(logging.INFO, logger="eagle_iad.service")
    read: list[tuple[Any, ...]] = []  # every row a drain took from the journal (each file is read once here)
    pending = audit.AuditLog._pending
    alive: list[Any] = []  # the appenders, once started
    raced = []  # each drain of a journal holding rows while an appender was still alive (the race exercised)

    def reading(path: Path) -> list[tuple[Any, ...]]:
        rows = pending(path)
        read.extend(rows)
        if rows and any(appender.poll() is None for appender in alive):
            raced.append(len(rows))
        return rows

    monkeypatch.setattr(audit.AuditLog, "_pending", staticmethod(reading))
    history = f"sqlite:///{tmp_path / 'history.sqlite3'}"
    store = InspectionStore(history)
    journal = tmp_path / audit.PENDING
    service = audit.AuditLog(store, journal)
    count = 300
    command = [sys.executable, "-c", _APPENDER, history, str(journal)]
    pipes: dict[str, Any] = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "text": True}
    appenders = [subprocess.Popen([*command, who, str(count)], **pipes) for who in ("ana", "bo")]
    alive.extend(appenders)
    try:
        for appender in appenders:
            assert appender.stdout is not None and appender.stdout.readline() == "ready\n"
        for appender in appenders:
            assert appender.stdin is not None
            appender.stdin.write("go\n")
            appender.stdin.flush()
        # the race exercised whatever the load: each appender waits halfway while a drain takes its rows (on a busy
        # machine the appenders could otherwise finish before the loop below first finds rows), then both go on
        # while the loop drains
        for appender in appenders:
            assert appender.stdout is not None and appender.stdout.readline() == "half\n"
        service.drain()
        drains = 1
        for appender in appenders:
            assert appender.stdin is not None
            appender.stdin.write("on\n")
            appender.stdin.close()
        while any(appender.poll() is None for appender in appenders) or journal.exists():
            service.drain()
            drains += 1
            time.sleep(0.001)
        assert [appender.wait(wait_s(120)) for appender in appenders] == [0, 0]
    finally:
        for appender in appenders:
            if appender.poll() is None:
                appender.kill()
                appender.wait()
    service.drain()
    total, rows = service.page(10 * count, 0)
    assert (total, len(read)) == (2 * count, 2 * count), drains
    assert raced, f"no drain took rows while an appender was alive ({drains} drains): the race was not exercised"
    assert sorted(r["path"] for r in rows) == sorted(f"/{who}/{i}" for who in ("ana", "bo") for i in range(count))
    assert not journal.exists() and not (tmp_path / (audit.PENDING + ".draining")).exists()
    assert [r.getMessage() for r in caplog.records if "in the log already" in r.getMessage()] == []
    store.close()
