"""Plugin sources and sinks fail as built-in ones do: one line naming the station, the part and why.

A fresh user's plugin parts (``tests/plugins/csvlog_parts.py``: a ``csvlog`` sink and a ``zipdrop`` source,
loaded with ``EAGLE_PLUGINS``) raise what plugins raise: a ``ValueError`` in ``__init__``, a ``StationConfigError``
of their own wording from ``station_probe``. ``eagle station run``/``status`` must answer rc 2 with the station,
the part's position and kind (and the plugin's class), not a traceback; the service 400, not 500; a kind that no
loaded module registers names ``EAGLE_PLUGINS``, in the file's refusal and in a kept station's state.
"""

from __future__ import annotations

import importlib
import json
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from conftest import LiveServer
from test_service import call
from test_station import _cells, _drop, _env, _history, _run, _stations, model_dir  # noqa: F401  (the fixture)
from test_station_service import _app, _patch, _post, _until

from eagle_iad.station.config import station_from_table
from eagle_iad.station.parts import SINKS, SOURCES, Options, StationConfigError

PLUGINS = Path(__file__).resolve().parent / "plugins"
HINT_SINK = "(a plugin's sink? load it with EAGLE_PLUGINS=module)"
HINT_SOURCE = "(a plugin's source? load it with EAGLE_PLUGINS=module)"


def _plugin_env(plugins: str = "csvlog_parts") -> dict[str, str]:
    return _env(EAGLE_PLUGINS=plugins, PYTHONPATH=f"{PLUGINS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")


def _csvlog(**options: str) -> str:
    extra = "".join(f"\n{key} = {json.dumps(value)}" for key, value in options.items())
    return f'\n[[station.sink]]\nkind = "csvlog"\npath = "out.csv"{extra}\n'


def test_a_plugin_parts_failure_in_init_is_one_line_naming_the_station_the_part_and_its_class(
    model_dir: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    """A ``ValueError`` from a plugin sink's ``__init__`` (and a ``NotImplementedError`` from a source's) was a
    traceback and rc 1 from ``eagle station run`` and ``status``: now rc 2 and the line a built-in part's refusal
    is, with the exception's type and message and the plugin's class; nothing was inspected."""
    _drop(tmp_path / "incoming", _cells(1))
    stations = _stations(tmp_path, model_dir, _csvlog(sep=";"))
    line = (f"eagle: error: {stations}: station 'line-1': sink 1 (csvlog): ValueError: csvlog: ';' separator not "
            "supported by the MES reader (raised by csvlog_parts.CsvLog)\n")  # fmt: skip
    for command in (["run", "--until-idle"], ["status"]):
        assert _run(stations, *command, env=_plugin_env()) == (2, line), command
    stations = _stations(tmp_path, model_dir, _csvlog(), source=', unpack = "tar"')
    stations.write_text(stations.read_text().replace('kind = "folder"', 'kind = "zipdrop"'))
    assert _run(stations, "run", "--until-idle", env=_plugin_env()) == (
        2, f"eagle: error: {stations}: station 'line-1': source (zipdrop): NotImplementedError: zipdrop: tar archives "
           "are not unpacked yet (raised by csvlog_parts.ZipDrop)\n")  # fmt: skip
    assert not (tmp_path / "state" / "eagle.sqlite3").exists() or _history(tmp_path) == []


def test_a_plugin_sinks_start_up_refusal_is_said_after_the_station_and_the_sink(
    model_dir: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    """A plugin sink's ``station_probe`` raising ``StationConfigError("csvlog: ... is not the MES share")`` was
    printed bare; it is said after ``station 'line-1': sink 1 (csvlog):`` as a built-in sink's refusal is. A tab
    ``sep`` (one of its choices) is accepted, not refused as empty, and the run delivers with it."""
    _drop(tmp_path / "incoming", _cells(1))
    stations = _stations(tmp_path, model_dir, _csvlog(sep="\t", share="/mes"))
    assert _run(stations, "run", "--until-idle", env=_plugin_env()) == (
        2, f"eagle: error: {stations}: station 'line-1': sink 1 (csvlog): csvlog: {tmp_path / 'out.csv'} is not the "
           "MES share\n")  # fmt: skip
    zipdrop = _stations(tmp_path, model_dir, _csvlog(), source=', share = "/scanner"')
    zipdrop.write_text(zipdrop.read_text().replace('kind = "folder"', 'kind = "zipdrop"'))
    assert _run(zipdrop, "run", "--until-idle", env=_plugin_env()) == (  # a source's the same (review)
        2, f"eagle: error: {zipdrop}: station 'line-1': source (zipdrop): zipdrop: {tmp_path / 'incoming'} is not on "
           "the scanner's share\n")  # fmt: skip
    stations = _stations(tmp_path, model_dir, _csvlog(sep="\t"))
    code, log = _run(stations, "run", "--until-idle", env=_plugin_env())
    assert code == 0, log
    (record,) = _history(tmp_path)
    assert (tmp_path / "out.csv").read_text() == f"{record.id}\t{record.decision}\n"


def test_an_unknown_source_or_sink_kind_says_to_load_its_plugin(
    model_dir: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    """``kind = "zipdrop"`` with its plugin not loaded listed the known kinds only; a rule's refusal names
    ``EAGLE_PLUGINS``, and so do a source's and a sink's now (the kinds quoted as every choice is)."""
    (tmp_path / "incoming").mkdir()
    stations = _stations(tmp_path, model_dir, _csvlog())
    assert _run(stations, "status", env=_plugin_env("")) == (
        2, f"eagle: error: {stations}: station 'line-1': sink 1: kind is 'csvlog'; choose one of "
           f"{', '.join(map(repr, SINKS.names()))} {HINT_SINK}\n")  # fmt: skip
    stations.write_text(stations.read_text().replace('kind = "folder"', 'kind = "zipdrop"'))
    assert _run(stations, "status", env=_plugin_env("")) == (
        2, f"eagle: error: {stations}: station 'line-1': source: kind is 'zipdrop'; choose one of 'folder', "
           f"'camera' {HINT_SOURCE}\n")  # fmt: skip


def test_a_choice_is_taken_as_is_and_a_refusal_quotes_the_choices() -> None:
    """``Options.text`` with choices: a tab (whitespace) that is a choice was refused as empty, and the refusal
    listed ``,, ;, \\t`` bare. A choice is accepted as written; another value is refused naming each choice quoted;
    a blank that is no choice is still empty."""
    choices = (",", ";", "\t")
    assert Options({"sep": "\t"}, "sink 1 (csvlog)", Path(".")).text("sep", ",", choices) == "\t"
    with pytest.raises(StationConfigError) as refused:
        Options({"sep": "|"}, "sink 1 (csvlog)", Path(".")).text("sep", ",", choices)
    assert str(refused.value) == "sink 1 (csvlog): sep is '|'; choose one of ',', ';', '\\t'"
    with pytest.raises(StationConfigError, match=r"^sink 1 \(csvlog\): sep is empty$"):
        Options({"sep": " "}, "sink 1 (csvlog)", Path(".")).text("sep", ",", choices)


class _Interrupted:
    kind = "interrupted"

    def __init__(self, options: Options, name: str) -> None:
        raise KeyboardInterrupt


def test_an_interrupt_while_a_part_is_made_is_no_refusal(tmp_path: Path) -> None:
    """Only exceptions become a refusal: Ctrl-C during a plugin's ``__init__`` still stops the command."""
    SINKS.add("interrupted", _Interrupted)
    try:
        (tmp_path / "incoming").mkdir()
        table = {"name": "l", "category": "mono", "source": {"kind": "folder", "path": "incoming"},
                 "sink": [{"kind": "interrupted"}]}  # fmt: skip
        with pytest.raises(KeyboardInterrupt):
            station_from_table(Options(table, "station", tmp_path), tmp_path, fitted=False)
    finally:
        SINKS.remove("interrupted")


@pytest.fixture
def csvlog_parts(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The plugin registered in this process (the service's), and unregistered after."""
    monkeypatch.syspath_prepend(str(PLUGINS))
    module = importlib.import_module("csvlog_parts")
    SINKS.add("csvlog", module.CsvLog)
    SOURCES.add("zipdrop", module.ZipDrop)
    yield module
    SINKS.remove("csvlog")
    SOURCES.remove("zipdrop")


def test_the_service_refuses_a_failing_plugin_part_with_400_and_a_kept_one_unloaded_says_to_load_it(
    model_dir: Path,  # noqa: F811
    tmp_path: Path,
    csvlog_parts: Any,
) -> None:
    """``POST``/``PATCH /v1/stations`` with a plugin sink whose ``__init__`` raises ``ValueError`` were 500
    ``internal error``: 400 with the line the CLI gives (the station running on through a refused ``PATCH``); a
    probe's refusal too. A kept station whose plugin is not loaded after a restart says to load it with
    ``EAGLE_PLUGINS`` (not to ``PATCH`` it), and no replica's backlog is pointed to: it runs nowhere."""
    data = tmp_path / "data"
    (data / "incoming").mkdir(parents=True)
    body = {"name": "line-1", "category": "mono",
            "source": {"kind": "zipdrop", "path": "incoming", "settle_s": 0.2, "poll_s": 0.05},
            "sinks": [{"kind": "csvlog", "path": "out.csv", "sep": ";"}]}  # fmt: skip
    init = ("station 'line-1': sink 1 (csvlog): ValueError: csvlog: ';' separator not supported by the MES reader "
            "(raised by csvlog_parts.CsvLog)")  # fmt: skip
    with LiveServer(_app(tmp_path, model_dir, data)) as live:
        assert _post(live.base, "/v1/stations", body) == (400, {"error": {
            "message": init, "type": "invalid_request_error", "code": "invalid_option", "param": None}})  # fmt: skip
        status, answer = _post(live.base, "/v1/stations", {**body, "sinks": [{"kind": "csvlog", "path": "out.csv",
                                                                              "share": "/mes"}]})  # fmt: skip
        probed = f"station 'line-1': sink 1 (csvlog): csvlog: {data / 'out.csv'} is not the MES share"
        assert (status, answer["error"]["message"]) == (400, probed), answer
        body["sinks"] = [{"kind": "csvlog", "path": "out.csv"}]
        assert _post(live.base, "/v1/stations", body)[0] == 201
        status, answer = _patch(live.base, "line-1", {"sinks": [{"sep": ";"}]})
        assert (status, answer["error"]["message"]) == (400, init), answer
        assert call("GET", f"{live.base}/v1/stations/line-1")[2]["state"] == "running"
        _drop(data / "incoming", _cells(1))
        _until(live.base, "line-1", lambda i: i["sinks"]["csvlog"]["delivered"] == 1, "delivered")
    SINKS.remove("csvlog")
    SOURCES.remove("zipdrop")
    why = (f"station 'line-1': source: kind is 'zipdrop'; choose one of {', '.join(map(repr, SOURCES.names()))} "
           f"{HINT_SOURCE}; it was created through /v1/stations and is kept in the history: restart the service with "
           "the plugin module that registers 'zipdrop', 'csvlog' in EAGLE_PLUGINS (on every replica that may run "
           "it), or remove it with DELETE /v1/stations/line-1")  # fmt: skip
    with LiveServer(_app(tmp_path, model_dir, data)) as live:
        (listed,) = call("GET", f"{live.base}/v1/stations")[2]
        assert (listed["state"], listed["source"], listed["warnings"]) == (
            f"error: not started: {why}", "zipdrop incoming", []), listed  # fmt: skip


def test_a_kept_station_that_cannot_start_names_itself_in_the_delete_it_suggests(
    model_dir: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    """The not-started hint with no ready ``PATCH`` ended in ``DELETE /v1/stations/{name}``, the placeholder left
    unfilled; it names the station."""
    data = tmp_path / "data"
    (data / "incoming").mkdir(parents=True)
    body = {"name": "line-1", "category": "mono", "source": {"kind": "folder", "path": "incoming"}}
    with LiveServer(_app(tmp_path, model_dir, data)) as live:
        assert _post(live.base, "/v1/stations", body)[0] == 201
    db = sqlite3.connect(tmp_path / "state" / "eagle.sqlite3")  # as an earlier version may have kept it
    try:
        with db:
            db.execute("UPDATE stations SET spec = ? WHERE name = 'line-1'",
                       (json.dumps({**body, "deadline_s": -1}),))  # fmt: skip
    finally:
        db.close()
    with LiveServer(_app(tmp_path, model_dir, data)) as live:
        (listed,) = call("GET", f"{live.base}/v1/stations")[2]
        assert listed["state"].endswith(", or remove it with DELETE /v1/stations/line-1"), listed
        assert listed["warnings"] == [], listed


class _Feed:
    """A plugin source with no claim of its own (a message queue's topic, say): nothing keeps two stations off it."""

    kind = "feed"

    def __init__(self, options: Options) -> None:
        self.topic = options.text("topic", None)
        self.poll_s = 0.05

    def describe(self) -> str:
        return f"feed {self.topic}"

    def poll(self) -> Any:
        return iter(())

    def backlog(self) -> int:
        return 0

    def planned(self, arrival: Any) -> Path:
        return Path(arrival.path)

    def finish(self, arrival: Any, to: Path, record: Any) -> None:
        return None

    def refuse(self, arrival: Any, reason: str) -> None:
        return None


@pytest.fixture
def feed_source() -> Any:
    SOURCES.add("feed", _Feed)
    try:
        yield _Feed
    finally:
        SOURCES.remove("feed")


def test_two_stations_on_one_plugin_source_with_the_same_options_are_refused(
    model_dir: Path,  # noqa: F811
    tmp_path: Path,
    feed_source: Any,
) -> None:
    """Two stations given the same plugin source (``{"kind": "zipdrop", "path": "drop"}`` twice, a fresh user's
    POST) each inspected every image, each verdict delivered twice: a hot folder and a camera refuse that by their
    locks, a plugin source without a ``claim`` had nothing. The same kind with the very same options is refused now,
    in a stations file (one line) and by the service (409 ``source_in_use``, through POST and PATCH); other options
    are another source."""
    from eagle_iad.station.config import read_stations

    one = '[[station]]\nname = "{}"\ncategory = "mono"\n[station.source]\nkind = "feed"\ntopic = "{}"\n'
    stations = tmp_path / "stations.toml"
    stations.write_text(f'models = "{model_dir}"\n' + one.format("line-1", "a") + one.format("line-2", "a"))
    with pytest.raises(StationConfigError) as caught:
        read_stations(stations)
    assert str(caught.value) == (
        f"{stations}: stations 'line-1' and 'line-2' both take their images from the same source (feed with the same "
        "options); two stations on one source would each inspect every image: give each station its own source (a "
        "plugin source can refuse it itself with a claim, see docs/STATIONS.md)")  # fmt: skip
    stations.write_text(f'models = "{model_dir}"\n' + one.format("line-1", "a") + one.format("line-2", "b"))
    assert [s.name for s in read_stations(stations).stations] == ["line-1", "line-2"]
    body = {"name": "line-1", "category": "mono", "source": {"kind": "feed", "topic": "a"}}
    with LiveServer(_app(tmp_path, model_dir, tmp_path)) as live:
        assert _post(live.base, "/v1/stations", body)[0] == 201
        status, answer = _post(live.base, "/v1/stations", {**body, "name": "line-2"})
        assert (status, answer["error"]["code"], answer["error"]["message"]) == (409, "source_in_use", (
            "stations 'line-1' and 'line-2' both take their images from the same source (feed with the same options); "
            "two stations on one source would each inspect every image: give each station its own source (a plugin "
            "source can refuse it itself with a claim, see docs/STATIONS.md)")), answer  # fmt: skip
        assert _post(live.base, "/v1/stations", {**body, "name": "line-2", "source": {"kind": "feed", "topic": "b"}}
                     )[0] == 201  # fmt: skip
        status, answer = _patch(live.base, "line-2", {"source": {"topic": "a"}})
        assert (status, answer["error"]["code"]) == (409, "source_in_use"), answer
        assert call("GET", f"{live.base}/v1/stations/line-2")[2]["source"] == "feed b"  # left as it was
    # a twin kept from before the check (written as that version kept it) still takes a change that leaves its
    # source as it was (review): only a change of source is compared
    from datetime import UTC, datetime

    from eagle_iad.service.store import InspectionStore
    from eagle_iad.station.outbox import StationTables

    store = InspectionStore(tmp_path / "state" / "eagle.sqlite3")
    try:
        StationTables(store).save_spec("line-3", {**body, "name": "line-3"}, datetime.now(UTC).isoformat())
    finally:
        store.close()
    with LiveServer(_app(tmp_path, model_dir, tmp_path)) as live:
        assert _patch(live.base, "line-3", {"deadline_s": 20})[0] == 200


def test_a_plugin_parts_own_refusal_of_the_projects_kind_keeps_its_status(
    model_dir: Path,  # noqa: F811
    feed_source: Any,
) -> None:
    """A plugin source raising one of the project's errors in ``__init__`` (``FolderInUseError``: its folder is
    another station's) keeps it, and its status with it (409 ``folder_in_use``), rather than a 400 wrapping it
    (review); only a foreign exception is said as the part's refusal."""
    from eagle_iad.errors import FolderInUseError

    class Busy(_Feed):
        def __init__(self, options: Options) -> None:
            raise FolderInUseError("hot folder /data/drop is taken by another station (pid 1 on plc, station 'a')")

    SOURCES.add("busy", Busy)
    try:
        table = {"name": "line-1", "category": "mono", "source": {"kind": "busy"}}
        with pytest.raises(FolderInUseError, match="is taken by another station"):
            station_from_table(Options(table, "test: station 1", model_dir), model_dir)
    finally:
        SOURCES.remove("busy")
