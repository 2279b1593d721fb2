"""Deleting an inspection (``DELETE /v1/inspections/{id}``, ``eagle history delete``) and retention (``eagle history
prune``): an admin's act, audited, files first then the record, and a prune that keeps labelled inspections, counts
what it removes, changes nothing on a dry run and nothing more when run again.

The route through a real ``eagle serve`` app on a real socket (conftest's LiveServer); the store's side on both
history backends (SQLite, and a PostgreSQL the test starts)."""

from __future__ import annotations

import io
import json
import re
import sqlite3
from contextlib import contextmanager, redirect_stdout
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import LiveServer
from test_access import _keys
from test_history_backends import _record
from test_service import call, multipart
from test_station import _cells, model_dir  # noqa: F401  (model_dir: models/mono, a small real model)

from eagle_iad.cli import main
from eagle_iad.cli.db import os_user
from eagle_iad.record import iso_time
from eagle_iad.service import ServiceSettings, create_app
from eagle_iad.service.retention import PICTURES_PRUNED, cutoff, delete_inspection, prune
from eagle_iad.service.store import InspectionStore
from eagle_iad.service.teaching import KEPT_IMAGE


def _inspect(base: str, image: Path, key: str) -> dict[str, Any]:
    body, content_type = multipart({"category": "mono"}, [("image", image.name, image.read_bytes(), "image/png")])
    status, _, answer = call("POST", f"{base}/v1/inspect", body=body, content_type=content_type, key=key)
    assert status == 200, answer
    return dict(answer)


def test_an_admin_deletes_an_inspection_its_files_first_audited_and_an_operator_may_not(
    model_dir: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    keys = _keys(state)
    app = create_app(ServiceSettings(models_dir=model_dir, state_dir=state))
    with LiveServer(app) as live:
        first, second = (_inspect(live.base, cell, keys["operator"]) for cell in _cells(2))
        folder = state / "files" / first["id"]
        assert (folder / KEPT_IMAGE).is_file() and first["pictures"]
        count, size = len(list(folder.iterdir())), sum(path.stat().st_size for path in folder.iterdir())
        # labelled: its label goes with it
        assert call("PUT", f"{live.base}/v1/inspections/{first['id']}/label", key=keys["operator"],
                    body=b'{"label": "normal"}', content_type="application/json")[0] == 200  # fmt: skip
        url = f"{live.base}/v1/inspections/{first['id']}?why=a%20person%20in%20frame"
        for role in ("operator", "engineer"):
            status, _, answer = call("DELETE", url, key=keys[role])
            assert (status, answer["error"]["code"]) == (403, "forbidden"), role
        assert folder.is_dir()
        status, _, answer = call("DELETE", url, key=keys["admin"])
        assert status == 200, answer
        assert answer == {"id": first["id"], "category": "mono", "image_name": first["image_name"],
                          "files_removed": count, "bytes_removed": size}  # fmt: skip
        assert not folder.exists()
        status, _, answer = call("GET", f"{live.base}/v1/inspections/{first['id']}", key=keys["viewer"])
        assert (status, answer["error"]["code"]) == (404, "not_found")
        for link in first["pictures"].values():
            assert call("GET", f"{live.base}{link}", key=keys["viewer"])[0] == 404
        page = call("GET", f"{live.base}/v1/inspections", key=keys["viewer"])[2]
        assert [item["id"] for item in page["items"]] == [second["id"]]
        assert (state / "files" / second["id"]).is_dir()  # the other one is untouched
        status, _, answer = call("DELETE", url, key=keys["admin"])
        assert (status, answer["error"]["code"]) == (404, "not_found")
        row = call("GET", f"{live.base}/v1/audit", key=keys["admin"])[2]["items"][0]
        assert (row["actor"], row["role"], row["method"], row["path"], row["status"]) == (
            "ada", "admin", "DELETE", f"/v1/inspections/{first['id']}", 200)  # fmt: skip
        assert row["detail"] == (f"deleted inspection {first['id']} of mono ({first['image_name']}; "
                                 f"{count} files, {size} bytes): a person in frame")  # fmt: skip
        # mono's rows (GET /v1/audit?category=mono): the label and the deletion of its inspection, newest first
        mono = call("GET", f"{live.base}/v1/audit?category=mono", key=keys["engineer"])[2]["items"]
        assert [(r["method"], r["path"]) for r in mono] == [
            ("DELETE", f"/v1/inspections/{first['id']}"), ("PUT", f"/v1/inspections/{first['id']}/label")]  # fmt: skip


def test_the_files_go_first_and_a_delete_the_history_failed_is_completed_by_the_same_delete_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The history going away between the two steps leaves the record without its files (never files without a
    record); the delete, made again, completes."""
    store = InspectionStore(tmp_path / "h.sqlite3")
    files = tmp_path / "files"
    try:
        record = _record(1, id="a" * 32)
        store.add(record)
        (files / record.id).mkdir(parents=True)
        (files / record.id / "heatmap.png").write_bytes(b"x" * 10)

        def away(ids: Any) -> Any:
            raise OSError("the history went away")

        with monkeypatch.context() as patched:
            patched.setattr(store, "delete", away)
            with pytest.raises(OSError, match="went away"):
                delete_inspection(store, files, record.id)
        assert not (files / record.id).exists() and store.get(record.id) is not None
        done = delete_inspection(store, files, record.id)
        assert done is not None and done[1].files == 0 and store.get(record.id) is None
        assert delete_inspection(store, files, record.id) is None
    finally:
        store.close()


def _history(store: InspectionStore, files: Path, now: datetime) -> dict[str, str]:
    """Six inspections: four 40 days old (one labelled, one of another category), two of today; each with files."""
    made = {}
    for index, (age, category, label) in enumerate(
        [(40, "c", None), (40, "c", "normal"), (40, "d", None), (40, "c", None), (0, "c", None), (0, "d", None)]
    ):
        when = (now - timedelta(days=age, seconds=index)).isoformat(timespec="milliseconds")
        record = _record(index, id=f"{index:032x}", time=when, category=category, label=label,
                         pictures={"heatmap": f"/v1/files/{index:032x}/heatmap.png"})  # fmt: skip
        store.add(record)
        (files / record.id).mkdir(parents=True)
        (files / record.id / "heatmap.png").write_bytes(b"h" * 100)
        (files / record.id / KEPT_IMAGE).write_bytes(b"i" * 1000)
        made[f"{age}-{category}-{label}-{index}"] = record.id
    return made


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    url = (
        str(tmp_path / "h.sqlite3") if request.param == "sqlite" else request.getfixturevalue("postgres").new_database()
    )
    opened = InspectionStore(url)
    yield opened
    opened.close()


def test_a_prune_says_what_it_removes_keeps_labelled_ones_and_a_second_run_removes_nothing(
    store: InspectionStore, tmp_path: Path
) -> None:
    files = tmp_path / "files"
    now = datetime.now(UTC)
    made = _history(store, files, now)
    dry = prune(store, files, 30, dry_run=True, batch=2, now=now)
    assert (dry["inspections"], dry["picture_folders"], dry["files"], dry["bytes"], dry["labelled_kept"]) == (
        3, 3, 6, 3300, 1)  # fmt: skip
    assert store.page(50, 0)[0] == 6 and len(list(files.iterdir())) == 6  # a dry run changes nothing
    done = prune(store, files, 30, batch=2, now=now)  # in batches smaller than what it removes
    assert {**done, "dry_run": True} == dry
    left = {record.id for record in store.page(50, 0)[1]}
    assert left == {made["40-c-normal-1"], made["0-c-None-4"], made["0-d-None-5"]}
    assert sorted(folder.name for folder in files.iterdir()) == sorted(left)
    again = prune(store, files, 30)
    assert (again["inspections"], again["files"], again["bytes"]) == (0, 0, 0)
    everything = prune(store, files, 30, labelled=True)
    assert (everything["inspections"], everything["labelled_kept"]) == (1, 0)
    assert not (files / made["40-c-normal-1"]).exists()


def test_a_pictures_only_prune_of_one_category_keeps_the_records_saying_their_pictures_are_gone(
    store: InspectionStore, tmp_path: Path
) -> None:
    files = tmp_path / "files"
    made = _history(store, files, datetime.now(UTC))
    done = prune(store, files, 30, category="c", pictures_only=True)
    assert (done["inspections"], done["files"], done["bytes"], done["labelled_kept"]) == (2, 4, 2200, 1)
    assert store.page(50, 0)[0] == 6
    for key in ("40-c-None-0", "40-c-None-3"):
        record = store.get(made[key])
        assert record is not None and record.pictures == {} and "pictures" not in record.verdict
        assert record.warnings is not None and record.warnings[-1].startswith(PICTURES_PRUNED.split("{")[0])
        assert not (files / made[key]).exists()
    assert (files / made["40-d-None-2"]).is_dir() and (files / made["40-c-normal-1"]).is_dir()
    assert prune(store, files, 30, category="c", pictures_only=True)["inspections"] == 0  # idempotent


def test_eagle_history_prune_and_delete_from_the_command_line(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    store = InspectionStore(state / "eagle.sqlite3")
    made = _history(store, state / "files", datetime.now(UTC))
    store.close()
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["history", "prune", "--older-than", "30", "--dry-run", "--state-dir", str(state)]) == 0
    report = json.loads(out.getvalue())
    assert (report["dry_run"], report["inspections"], report["bytes"]) == (True, 3, 3300)
    assert len(list((state / "files").iterdir())) == 6
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["history", "prune", "--older-than", "30", "--state-dir", str(state)]) == 0
    assert json.loads(out.getvalue())["inspections"] == 3
    target = made["0-d-None-5"]
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["history", "delete", target, "--why", "customer's part", "--state-dir", str(state)]) == 0
    assert json.loads(out.getvalue())["files_removed"] == 2 and not (state / "files" / target).exists()
    assert main(["history", "delete", target, "--state-dir", str(state)]) == 2  # no such inspection: an error
    store = InspectionStore(state / "eagle.sqlite3")
    try:
        assert store.get(target) is None
        rows = store.read("SELECT actor, method, path, detail FROM audit ORDER BY seq")
    finally:
        store.close()
    # the prune's own row first (test_a_prune_that_removed_something_writes_one_audit_row...), then the delete's
    assert [row[1:3] for row in rows] == [("DELETE", "eagle history prune"), ("DELETE", f"/v1/inspections/{target}")]
    assert str(rows[1][0]).startswith("cli:") and str(rows[1][3]).endswith("customer's part (eagle history delete)")


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_prune_that_removed_something_writes_one_audit_row_and_a_dry_run_or_an_empty_one_none(
    tmp_path: Path, request: pytest.FixtureRequest, backend: str
) -> None:
    """Who pruned, what was asked (days, cut-off, category, pictures only, labelled) and what went: one row, by
    ``cli:<login>`` as ``eagle history delete`` writes; none for a dry run or a prune that found nothing."""
    state = tmp_path / "state"
    state.mkdir()
    sqlite = str(state / "eagle.sqlite3")
    location = sqlite if backend == "sqlite" else request.getfixturevalue("postgres").new_database()
    store = InspectionStore(location)
    _history(store, state / "files", datetime.now(UTC))
    store.close()
    flags = ["--history", location, "--files", str(state / "files"), "--state-dir", str(state)]

    def run(*argv: str) -> dict[str, Any]:
        out = io.StringIO()
        with redirect_stdout(out):
            assert main(["history", "prune", "--older-than", "30", *argv, *flags]) == 0
        return dict(json.loads(out.getvalue()))

    def audit() -> list[tuple[Any, ...]]:
        opened = InspectionStore(location)
        try:
            return [tuple(row) for row in opened.read("SELECT actor, role, method, route, path, status, detail, "
                                                       "category FROM audit ORDER BY seq")]  # fmt: skip
        finally:
            opened.close()

    run("--dry-run")
    run("--dry-run", "--include-labelled")
    assert audit() == []  # a dry run changed nothing
    done = run("--category", "c", "--pictures-only")
    assert (done["inspections"], done["files"], done["bytes"]) == (2, 4, 2200)
    run("--category", "c", "--pictures-only")  # again: nothing left to remove, no row
    everything = run("--include-labelled")
    assert (everything["inspections"], everything["files"], everything["bytes"]) == (4, 4, 2200)
    rows = audit()
    assert [row[0] for row in rows] == [f"cli:{os_user()}"] * 2
    assert [row[1:6] for row in rows] == [("admin", "DELETE", "eagle history prune", "eagle history prune", 200)] * 2
    assert [row[6] for row in rows] == [
        f"pruned inspections older than 30 days (inspected before {done['older_than']}), category c, pictures only, "
        "labelled kept: 2 inspection(s), 2 picture folder(s), 4 files, 2200 bytes removed; 1 labelled kept "
        "(eagle history prune)",
        f"pruned inspections older than 30 days (inspected before {everything['older_than']}), every category, "
        "records and pictures, labelled included: 4 inspection(s), 2 picture folder(s), 4 files, 2200 bytes "
        "removed; 0 labelled kept (eagle history prune)",
    ]
    assert [row[7] for row in rows] == ["c", None]  # a prune of one category is in that category's rows


def _audit_rows(location: str) -> list[tuple[Any, ...]]:
    opened = InspectionStore(location)
    try:
        return [tuple(row) for row in opened.read("SELECT actor, method, path, status, detail FROM audit ORDER BY seq")]
    finally:
        opened.close()


@pytest.mark.parametrize("pictures_only", [False, True])
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_prune_that_fails_after_a_batch_still_audits_what_it_removed(
    tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, backend: str, pictures_only: bool
) -> None:
    """Each batch commits for good: a prune that fails on its second batch has removed the first one's inspections
    (or pictures), and its audit row says so, with what stopped it (review finding: the row was written only
    after prune returned, so an error, SIGTERM or Ctrl-C part-way removed thousands with no trace)."""
    from eagle_iad.service import retention

    state = tmp_path / "state"
    state.mkdir()
    location = (
        str(state / "eagle.sqlite3") if backend == "sqlite" else request.getfixturevalue("postgres").new_database()
    )
    store = InspectionStore(location)
    made = _history(store, state / "files", datetime.now(UTC))
    store.close()
    monkeypatch.setattr(retention, "PRUNE_BATCH", 2)  # the old unlabelled ones (0, 2, 3) in two batches: 0 and 2, 3
    name = "forget_pictures" if pictures_only else "delete"
    real = getattr(InspectionStore, name)
    calls: list[int] = []

    def second_fails(self: InspectionStore, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 2:
            raise OSError("the history went away")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(InspectionStore, name, second_fails)
    argv = ["history", "prune", "--older-than", "30", "--history", location, "--state-dir", str(state)]
    with pytest.raises(OSError, match="the history went away"):
        main([*argv, *(["--pictures-only"] if pictures_only else [])])
    monkeypatch.undo()
    first, third = made["40-c-None-0"], made["40-c-None-3"]
    assert not (state / "files" / first).exists() and (state / "files" / third).exists()
    what = "pictures only" if pictures_only else "records and pictures"
    rows = _audit_rows(location)
    assert [row[:4] for row in rows] == [(f"cli:{os_user()}", "DELETE", "eagle history prune", 200)]
    cut = str(rows[0][4]).split("(inspected before ")[1].split(")")[0]
    assert rows[0][4] == (
        f"pruned inspections older than 30 days (inspected before {cut}), every category, {what}, labelled kept: "
        "2 inspection(s), 2 picture folder(s), 4 files, 2200 bytes removed; stopped early: OSError: the history "
        "went away (eagle history prune)"
    )
    out = io.StringIO()
    with redirect_stdout(out):  # run again: the rest, audited as a finished prune
        assert main([*argv, *(["--pictures-only"] if pictures_only else [])]) == 0
    assert json.loads(out.getvalue())["inspections"] == 1 and not (state / "files" / third).exists()
    assert str(_audit_rows(location)[1][4]).endswith(
        "1 inspection(s), 1 picture folder(s), 2 files, 1100 bytes removed; 1 labelled kept (eagle history prune)"
    )


def _prune_stopped_at(tmp_path: Path, pause: str) -> tuple[int, str, str, list[tuple[Any, ...]]]:
    """A real ``eagle history prune`` process on :func:`_history`, paused at checkpoint ``pause``
    (``EAGLE_TEST_PAUSE``) and sent SIGTERM there: its status, stdout, stderr and the audit rows after it."""
    import signal

    from test_stops import Eagle

    state = tmp_path / "state"
    state.mkdir()
    store = InspectionStore(state / "eagle.sqlite3")
    _history(store, state / "files", datetime.now(UTC))
    store.close()
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    eagle = Eagle(["history", "prune", "--older-than", "30", "--state-dir", str(state)], tmpdir, tmp_path,
                  pause=pause)  # fmt: skip
    try:
        eagle.wait_paused(pause)
        eagle.process.send_signal(signal.SIGTERM)
        code, out, err = eagle.finish()
    finally:
        eagle.kill()
    return code, out, err, _audit_rows(str(state / "eagle.sqlite3"))


def test_a_prune_stopped_by_sigterm_after_a_batch_still_audits_what_it_removed(tmp_path: Path) -> None:
    """Paused after its first batch (``prune batch``) and sent SIGTERM there: the shell's status for it (143), and
    the audit row of what that batch removed."""
    code, out, err, rows = _prune_stopped_at(tmp_path, "prune batch")
    assert code == 143 and out == "", err
    assert "eagle: stopped by SIGTERM: eagle history" in err and "Traceback" not in err, err
    assert ("eagle history prune: stopped early (stopped by SIGTERM) after it removed 3 inspection(s), 6 files, "
            "3300 bytes (audited); running it again removes the rest") in err  # fmt: skip
    assert len(rows) == 1 and str(rows[0][4]).endswith(
        "labelled kept: 3 inspection(s), 3 picture folder(s), 6 files, 3300 bytes removed; stopped early: stopped "
        "by SIGTERM (eagle history prune)"
    ), rows


def test_a_prune_stopped_between_a_batch_s_commit_and_its_count_audits_that_batch(tmp_path: Path) -> None:
    """SIGTERM right after a batch's delete committed, before it was counted (``prune batch committed``): the
    batch is settled from the rows, so the audit row names the batch that went for good (before: no row at all,
    nothing counted). Then 143, as any stop."""
    code, out, err, rows = _prune_stopped_at(tmp_path, "prune batch committed")
    assert code == 143 and out == "", err
    assert len(rows) == 1 and str(rows[0][4]).endswith(
        "labelled kept: 3 inspection(s), 0 picture folder(s), 0 files, 0 bytes removed; stopped early: stopped "
        "by SIGTERM (eagle history prune)"
    ), rows


#: The one format of an inspection's stored time and of a prune's cut-off: UTC, milliseconds, ``+00:00``. Fixed
#: width, so that comparing two as text (``time < ?``, on either backend) compares them as times.
STORED_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00")


def test_every_stored_inspection_time_has_the_one_format_a_prune_compares_as_text(
    model_dir: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    """A prune selects ``time < cut-off`` as text, which is time order only if every row's time and the cut-off
    share one fixed-width format (a ``Z``, a missing fraction or microseconds would sort wrong). Inspections are
    stored only by ``run_inspection`` (an upload; a station's image, on the same path), timed by
    ``pipeline.now_iso``; this pins that format as stored, read back raw, and the cut-off's, at instants whose
    fraction is zero or just under a second, and that their text order is their time order."""
    state = tmp_path / "state"
    keys = _keys(state)
    app = create_app(ServiceSettings(models_dir=model_dir, state_dir=state))
    with LiveServer(app) as live:
        made = [_inspect(live.base, cell, keys["operator"]) for cell in _cells(2)]
    stored = sqlite3.connect(state / "eagle.sqlite3")
    try:
        times = [str(row[0]) for row in stored.execute("SELECT time FROM inspections ORDER BY seq")]
    finally:
        stored.close()
    assert times == [record["time"] for record in made]
    assert all(STORED_TIME.fullmatch(one) for one in times), times
    assert times[0] <= times[1]
    instants = [1_765_000_000.0, 1_765_000_000.0009, 1_765_000_000.001, 1_765_000_000.999, 1_765_000_001.0,
                1_765_086_399.9995, 4_102_444_800.5]  # fmt: skip
    written = [iso_time(instant) for instant in instants]
    assert written[0] == "2025-12-06T05:46:40.000+00:00" and all(STORED_TIME.fullmatch(one) for one in written)
    assert sorted(written) == written  # text order is time order
    now = datetime.fromtimestamp(1_765_000_000.25, UTC)
    assert [cutoff(days, now) for days in (0, 0.5, 30)] == [
        "2025-12-06T05:46:40.250+00:00", "2025-12-05T17:46:40.250+00:00", "2025-11-06T05:46:40.250+00:00"]  # fmt: skip


@pytest.mark.parametrize("pictures_only", [False, True])
def test_an_inspection_labelled_while_a_prune_removes_its_batch_keeps_its_record_and_its_pictures(
    store: InspectionStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pictures_only: bool
) -> None:
    """An operator's label given between the prune's choice of a batch and its removal is training evidence too:
    the record stays with its label, and so do its kept upload and pictures, which it still links (rev1 finding
    2: the files of every id in the batch went first, the labelled record kept linking them)."""
    from eagle_iad.service import retention

    files = tmp_path / "files"
    made = _history(store, files, datetime.now(UTC))
    target = made["40-c-None-3"]
    aged = store.aged

    def labelled_meanwhile(*args: Any, **kwargs: Any) -> Any:
        rows = aged(*args, **kwargs)
        if target in {inspection_id for _, inspection_id in rows}:
            store.set_label(target, "anomalous", "2026-12-07T05:00:00.000+00:00", by="anna")
        return rows

    monkeypatch.setattr(store, "aged", labelled_meanwhile)
    monkeypatch.setattr(retention, "PICTURES_ONLY_STEP", 2)  # a batch's files in more than one transaction
    done = prune(store, files, 30, pictures_only=pictures_only)
    assert done["inspections"] == 2 and done["labelled_kept"] == 2 and done["picture_folders"] == 2
    kept = store.get(target)
    assert kept is not None and kept.label == "anomalous" and kept.pictures and not kept.warnings
    assert (files / target / KEPT_IMAGE).exists() and (files / target / "heatmap.png").exists()
    assert not (files / made["40-c-None-0"]).exists() and not (files / made["40-d-None-2"]).exists()


def test_a_label_committed_just_before_the_prunes_delete_keeps_its_record(postgres: Any, tmp_path: Path) -> None:
    """On PostgreSQL (read committed) the removal itself asks that the row is unlabelled: a label another replica
    commits after the prune chose its batch, right before the DELETE, keeps the record (rev1 finding 1: the
    DELETE removed the ids an earlier SELECT had found). SQLite's BEGIN IMMEDIATE keeps that writer out anyway."""
    url = postgres.new_database()
    store, other = InspectionStore(url), InspectionStore(url)
    files = tmp_path / "files"
    try:
        made = _history(store, files, datetime.now(UTC))
        target = made["40-c-None-3"]
        real = store.transaction

        @contextmanager
        def labelling_replica() -> Any:
            with real() as db:

                class Spy:
                    def execute(self, sql: str, params: Any = ()) -> Any:
                        if sql.startswith("DELETE FROM inspections"):  # another replica labels it, and commits
                            other.set_label(target, "anomalous", "2026-12-07T05:00:00.000+00:00", by="anna")
                        return db.execute(sql, params)

                    def __getattr__(self, name: str) -> Any:
                        return getattr(db, name)

                yield Spy()

        store.transaction = labelling_replica  # type: ignore[method-assign]
        done = prune(store, files, 30)
        store.transaction = real  # type: ignore[method-assign]
        kept = store.get(target)
        assert kept is not None and kept.label == "anomalous" and (files / target / KEPT_IMAGE).exists()
        assert done["inspections"] == 2 and store.get(made["40-c-None-0"]) is None
    finally:
        store.close()
        other.close()


def test_a_prune_or_delete_with_a_wrong_files_folder_is_refused_before_anything_is_removed(
    store: InspectionStore, tmp_path: Path
) -> None:
    """A --files that holds none of the records' picture folders (a typo, the default on another machine) would
    remove the records and keep every picture, reported as "0 files" (rev1 finding 12): refused, nothing removed."""
    from eagle_iad.errors import ConfigError
    from eagle_iad.service.retention import files_dir_problem

    files = tmp_path / "files"
    made = _history(store, files, datetime.now(UTC))
    wrong = tmp_path / "elsewhere"
    wrong.mkdir()
    for pictures_only in (False, True):
        with pytest.raises(ConfigError, match="holds none of the picture folders"):
            prune(store, wrong, 30, pictures_only=pictures_only)
    assert store.page(50, 0)[0] == 6 and all(record.pictures for record in store.page(50, 0)[1])
    record = store.get(made["40-c-None-0"])
    assert record is not None
    problem = files_dir_problem(wrong, record)
    assert problem is not None and str(wrong) in problem
    assert files_dir_problem(files, record) is None
    (files / record.id / KEPT_IMAGE).unlink()
    (files / record.id / "heatmap.png").unlink()
    (files / record.id).rmdir()  # a delete cut short after its pictures: the same delete again completes it
    assert files_dir_problem(files, record) is None
    assert prune(store, files, 30)["inspections"] == 3  # the right folder: removed


def test_a_deletions_why_with_control_characters_or_a_wrong_files_folder_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A deletion's why is plain text as every other why and note (rev1 finding 7: ESC and U+202E were taken):
    400 naming the character, the CLI refuses it, and nothing is deleted; newlines and tabs stay allowed."""
    import urllib.parse

    state = tmp_path / "state"
    keys = _keys(state)
    models = tmp_path / "models"
    models.mkdir()
    store = InspectionStore(state / "eagle.sqlite3")
    made = _history(store, state / "files", datetime.now(UTC))
    store.close()
    first, second = made["0-c-None-4"], made["0-d-None-5"]
    with LiveServer(create_app(ServiceSettings(models_dir=models, state_dir=state))) as live:
        why = urllib.parse.quote("ok\x1b[31mRED\u202eevil")
        status, _, answer = call("DELETE", f"{live.base}/v1/inspections/{first}?why={why}", key=keys["admin"])
        assert status == 400 and "U+001B" in answer["error"]["message"]
        status, _, _ = call("GET", f"{live.base}/v1/inspections/{first}", key=keys["admin"])
        assert status == 200  # not deleted
        why = urllib.parse.quote("a customer's part\tline 3")
        assert call("DELETE", f"{live.base}/v1/inspections/{first}?why={why}", key=keys["admin"])[0] == 200
    assert main(["history", "delete", second, "--why", "x\u202ey", "--state-dir", str(state)]) == 2
    assert "U+202E" in capsys.readouterr().err and (state / "files" / second).exists()
    wrong = tmp_path / "not-the-files"
    for argv in (["delete", second], ["prune", "--older-than", "0"]):
        assert main(["history", *argv, "--files", str(wrong), "--state-dir", str(state)]) == 2
        assert "Nothing was" in capsys.readouterr().err
    store = InspectionStore(state / "eagle.sqlite3")
    try:
        assert store.get(second) is not None and store.get(first) is None
    finally:
        store.close()


@pytest.mark.parametrize("returning", [True, False])
def test_a_delete_of_unlabelled_rows_keeps_a_labelled_one_and_its_upload_key(
    store: InspectionStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, returning: bool
) -> None:
    """``delete(unlabelled_only=True)`` removes the unlabelled rows and only their upload keys, with ``DELETE ...
    RETURNING`` and without it (an SQLite older than 3.35: its BEGIN IMMEDIATE keeps other writers out)."""
    monkeypatch.setattr(type(store.backend), "returning", property(lambda _: returning))
    made = _history(store, tmp_path / "files", datetime.now(UTC))
    ids = [made["40-c-None-0"], made["40-c-normal-1"]]
    with store.transaction() as db:
        for index, one in enumerate(ids):
            db.execute("INSERT INTO idempotency (key, fingerprint, record_id, created) VALUES (?, ?, ?, ?)",
                       (f"k{index}", "f", one, "2026-12-07T05:00:00.000+00:00"))  # fmt: skip
    assert store.delete([*ids, "f" * 32], unlabelled_only=True) == [ids[0]]
    assert store.get(ids[0]) is None and store.by_idempotency_key("k0") is None
    kept = store.by_idempotency_key("k1")
    assert store.get(ids[1]) is not None and kept is not None and kept[1].id == ids[1]
