"""A plugin source's mistakes, as a fresh user made them: they must neither flood the sinks and the log nor hide.

What must hold: an image the source hands again after the station finished or refused it (its ``finish`` did not
take it away) is passed over, neither inspected nor told to the sinks again, in one line and a status warning naming
the source's kind and class, and ``--until-idle`` ends; a ``poll`` that raises, or yields what is no ``Arrival``,
pauses the intake in one line naming the source, the traceback of an unexpected error logged once.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from conftest import wait_s
from test_station import Running as Run
from test_station import _cells, _env, _history, _run, model_dir  # noqa: F401  (model_dir: the module's fixture)

PLUGIN = '''"""A drop folder's images, as the plugin's author understood finish(): put away only where planned."""
import json
import os
import time

from eagle_iad.station.parts import REQUIRED, SINKS, SOURCES, Arrival


class Drop:
    kind = "drop"
    poll_s = 0.05
    dedupe = True

    def __init__(self, options):
        self.folder = options.path("path", REQUIRED)
        self.mistake = options.text("mistake", "none", ("none", "raise", "dict"))
        options.done()

    def describe(self):
        return f"drop {self.folder}"

    def _waiting(self):
        return sorted(path for path in self.folder.iterdir() if path.suffix == ".png")

    def poll(self):
        if self.mistake == "raise":
            raise RuntimeError("simulated bug in poll")
        for path in self._waiting():
            if self.mistake == "dict":
                yield {"name": path.name}
                continue
            yield Arrival(path=path, source=str(path), name=path.name, appeared=time.time(), data=path.read_bytes())

    def backlog(self):
        return len(self._waiting())

    def planned(self, arrival):
        return self.folder / "done" / arrival.name

    def finish(self, arrival, to, record):
        if to == self.planned(arrival):  # the mistake: a repeat is finished toward the earlier image's place
            (self.folder / "done").mkdir(exist_ok=True)
            os.replace(arrival.path, to)
        return None

    def refuse(self, arrival, reason):
        (self.folder / "failed").mkdir(exist_ok=True)
        os.replace(arrival.path, self.folder / "failed" / arrival.name)
        return None


class Lines:
    kind = "lines"
    takes_refusals = True

    def __init__(self, options, name):
        self.name = name
        self.path = options.path("path", REQUIRED)
        self.max_attempts = 0
        options.done()

    def describe(self):
        return f"lines {self.path}"

    def deliver(self, payload, key):
        with open(self.path, "a") as handle:
            handle.write(json.dumps({"key": key, "event": payload.get("event", "verdict")}) + "\\n")

    def close(self):
        pass


class Answering(Lines):
    """Returns "ok", as its author thought a delivery must answer (the contract: return None)."""

    kind = "answering"

    def deliver(self, payload, key):
        super().deliver(payload, key)
        return "ok"


SOURCES.add("drop", Drop)
SINKS.add("lines", Lines)
SINKS.add("answering", Answering)
'''


def _setup(tmp_path: Path, models: Path, mistake: str = "none", sink: str = "lines") -> tuple[Path, dict[str, str]]:
    """The plugin module, a stations file with its source and sink, and the environment that loads it."""
    (tmp_path / "plugins").mkdir(exist_ok=True)
    (tmp_path / "plugins" / "drop_source.py").write_text(PLUGIN)
    (tmp_path / "incoming").mkdir(exist_ok=True)
    stations = tmp_path / "stations.toml"
    stations.write_text(f"""models = "{models}"
state = "state"

[[station]]
name = "line-1"
category = "mono"
source = {{ kind = "drop", path = "incoming", mistake = "{mistake}" }}

[[station.sink]]
kind = "{sink}"
path = "out.jsonl"
""")
    env = _env(EAGLE_PLUGINS="drop_source", PYTHONPATH=f"{tmp_path / 'plugins'}{os.pathsep}"
                                                       f"{os.environ.get('PYTHONPATH', '')}")  # fmt: skip
    return stations, env


def _delivered(tmp_path: Path) -> list[dict[str, str]]:
    out = tmp_path / "out.jsonl"
    return [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []


HANDED_AGAIN = (
    "source 'drop' (drop_source.Drop) handed again.png again after it was refused: its finish() did not take it "
    "away; not told to the sinks again"
)


def test_an_image_a_plugin_source_hands_again_after_its_refusal_is_told_once(
    model_dir: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    """The tester's bad.zip: a copy of an image already inspected is told to the sinks as refused and finished toward
    the earlier image's place, which the plugin did not take for a put-away, so it handed the file at every poll: 11,800
    lines and refusals in 80 s, each under a new key, never idle. Now: one refusal, one line, and the run ends."""
    stations, env = _setup(tmp_path, model_dir)
    cell = _cells(1)[0]
    shutil.copyfile(cell, tmp_path / "incoming" / "first.png")
    code, log = _run(stations, "run", "--until-idle", env=env)
    assert code == 0 and len(_history(tmp_path)) == 1, log
    shutil.copyfile(cell, tmp_path / "incoming" / "again.png")
    code, log = _run(stations, "run", "--until-idle", env=env, timeout=120)
    assert code == 0, log
    record = _history(tmp_path)[0].id
    lines = log.splitlines()
    assert lines.count(f"eagle station line-1: again.png: same content as record {record}; not inspected again, told "
                       "to the sinks as refused") == 1, log  # fmt: skip
    assert [line for line in lines if "handed" in line] == [f"eagle station line-1: warning: {HANDED_AGAIN}"], log
    events = [line["event"] for line in _delivered(tmp_path)]
    assert events == ["verdict", "refused"], events
    assert (tmp_path / "incoming" / "again.png").exists()  # the plugin kept it: the station did not lose it
    assert len(_history(tmp_path)) == 1


def test_the_status_warns_while_the_source_hands_it_again(
    model_dir: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    """While the file is handed again, the status says so (another process reading the state file), the duplicate
    counted once; polls go on (every 50 ms) without another line or refusal; the warning goes once the file is gone."""
    stations, env = _setup(tmp_path, model_dir)
    cell = _cells(1)[0]
    shutil.copyfile(cell, tmp_path / "incoming" / "0-first.png")  # listed before again.png
    shutil.copyfile(cell, tmp_path / "incoming" / "again.png")
    run = Run(stations, env=env)
    try:
        run.until(lambda: run.saw(HANDED_AGAIN), "the line of the file handed again")
        time.sleep(wait_s(1.0))  # twenty polls and more
        code, out = _run(stations, "status", env=env)
        assert code == 0, out
        status = json.loads(out[out.index("[") :])[0]
        assert HANDED_AGAIN in status["warnings"], status
        # a repeat is a duplicate (counted once, not at each hand-over), not a failed image
        assert (status["duplicates"], status["failed"], status["inspected"]) == (1, 0, 1), status
        assert sum(HANDED_AGAIN in line for line in run.lines) == 1, run.log()
        assert [line["event"] for line in _delivered(tmp_path)] == ["verdict", "refused"]
        (tmp_path / "incoming" / "again.png").unlink()  # taken away at last: the warning goes

        def cleared() -> bool:
            code, out = _run(stations, "status", env=env)
            return code == 0 and HANDED_AGAIN not in json.loads(out[out.index("[") :])[0]["warnings"]

        run.until(cleared, "the warning gone with the file")
    finally:
        assert run.stop() == 143, run.log()


def test_a_plugin_sources_failing_poll_is_named_with_its_traceback_once(
    model_dir: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    """A ``poll`` that raises: the line names the source's kind and class (the plugin's message need not), and the
    traceback reaches the log once, not at each retry; one that yields a dict is named as such, without one."""
    stations, env = _setup(tmp_path, model_dir, "raise")
    shutil.copyfile(_cells(1)[0], tmp_path / "incoming" / "first.png")
    run = Run(stations, env=env)
    try:
        failed = ("eagle station line-1: intake paused: intake failed: source 'drop' (drop_source.Drop): RuntimeError: "
                  "simulated bug in poll; retrying every 5 s\n")  # fmt: skip
        run.until(lambda: failed in run.lines, "the intake's failure")
        header = "eagle station line-1: the intake's error, said once: Traceback (most recent call last):\n"
        run.until(lambda: header in run.lines, "its traceback")
        run.until(lambda: run.saw('raise RuntimeError("simulated bug in poll")'), "the failing line")
        time.sleep(wait_s(11.0))  # two retries
        assert run.lines.count(failed) == 1 and run.lines.count(header) == 1, run.log()
        assert run.saw("eagle station line-1: | RuntimeError: simulated bug in poll\n"), run.log()
    finally:
        assert run.stop() == 143, run.log()
    stations.write_text(stations.read_text().replace('mistake = "raise"', 'mistake = "dict"'))
    run = Run(stations, env=env)
    try:
        wrong = ("eagle station line-1: intake paused: intake failed: source 'drop' (drop_source.Drop): its poll() "
                 "yielded a dict ({'name': 'first.png'}), not an Arrival (eagle_iad.station.parts.Arrival); retrying "
                 "every 5 s\n")  # fmt: skip
        run.until(lambda: wrong in run.lines, "the wrong type named")
    finally:
        assert run.stop() == 143, run.log()
    assert not any("Traceback" in line or "AttributeError" in line for line in run.lines), run.log()
    assert len(_history(tmp_path)) == 0


def test_a_sink_whose_deliver_returns_something_is_said_once(
    model_dir: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    """A plugin sink's ``deliver`` that returns something (``"ok"``) is told of once (its author may have meant a
    delivery not made), and counted as delivered: the contract is to return None or raise."""
    stations, env = _setup(tmp_path, model_dir, sink="answering")
    for index, cell in enumerate(_cells(2)):
        shutil.copyfile(cell, tmp_path / "incoming" / f"{index}.png")
    code, log = _run(stations, "run", "--until-idle", env=env)
    assert code == 0, log
    said = [line for line in log.splitlines() if "deliver()" in line]
    assert said == [
        "eagle station line-1: warning: sink answering (drop_source.Answering): its deliver() returned 'ok', not "
        "None; counted as delivered (said once: deliver returns None once delivered, and raises DeliveryError to be "
        "retried or RefusedError when the receiver refused it)"
    ], log
    assert [line["event"] for line in _delivered(tmp_path)] == ["verdict", "verdict"]


def test_a_file_the_source_took_away_is_not_remembered_so_a_new_copy_is_taken(tmp_path: Path) -> None:
    """Only a source still holding what it was given back is passed over: a file read from its place that is gone
    after its finish (taken away, as it must be) is forgotten at once. Remembered, a new part sent as a copy of the
    same name and bytes (``cp -p``: the same size and time, and Linux hands a freed inode out again) was passed over
    for good, nothing ever finishing it (review of this change). A file still there as that very file is
    remembered; an arrival handed as bytes is remembered by its content and name."""
    from dataclasses import replace

    from test_station import _bare_runner

    from eagle_iad.station.parts import Arrival
    from eagle_iad.station.sources.folder import identity

    lines: list[str] = []
    runner = _bare_runner(tmp_path, object(), lines)
    runner._say_intake = lambda running=True: None  # no status file: only the memory is looked at
    part = tmp_path / "part.png"
    part.write_bytes(b"png bytes")
    read = Arrival(path=part, source=str(part), name=part.name, appeared=time.time(), data=part.read_bytes())
    read = replace(read, identity=identity(os.stat(part)))
    runner._handled_now(read, "d1", "refused", "refuse")  # still there as that very file: the source kept it
    assert runner._again(read, "d1") is True and runner._handled
    runner._handled.clear()
    part.unlink()  # taken away by the source's refuse
    runner._handled_now(read, "d1", "refused", "refuse")
    assert runner._handled == {}
    part.write_bytes(b"png bytes")  # the next part, a copy of the same name and bytes
    os.utime(part, ns=(read.identity[3], read.identity[3]))  # type: ignore[index]
    again = replace(read, identity=identity(os.stat(part)))
    assert runner._again(again, "d1") is False
    pushed = Arrival(path=tmp_path / "queue" / "p.png", source="push", name="p.png", appeared=time.time(), data=b"x")
    runner._handled_now(pushed, "d2", "refused", "refuse")  # bytes handed by the source: remembered by content
    assert runner._again(pushed, "d2") is True


def test_an_intake_error_is_told_apart_by_where_it_was_raised_not_by_its_words(tmp_path: Path) -> None:
    """The traceback is said once per error: once per place it was raised (type, file and line), so a message that
    carries a count or a time is not a new traceback at every retry, filling the allowance (TRACEBACKS_SAID) before a
    new bug comes; an error raised at another line is said (review)."""
    from test_station import _bare_runner

    lines: list[str] = []
    runner = _bare_runner(tmp_path, object(), lines)
    runner._pause = lambda why: None
    runner._tracebacks = set()

    def counted(n: int) -> RuntimeError:
        try:
            raise RuntimeError(f"queue read failed after {n} tries")
        except RuntimeError as exc:
            return exc

    for n in range(5):
        exc = counted(n)
        runner.fail(f"RuntimeError: {exc}", exc)
    said = [line for line in lines if "said once" in line]
    assert said == ["eagle station line-1: the intake's error, said once: Traceback (most recent call last):"]
    try:
        raise KeyError("elsewhere")
    except KeyError as other:
        runner.fail("KeyError: 'elsewhere'", other)
    assert len([line for line in lines if "said once" in line]) == 2
    assert lines[-1] == "eagle station line-1: | KeyError: 'elsewhere'"
