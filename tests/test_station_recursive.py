"""A hot folder that takes the images of its subfolders (``recursive = true``): line cameras and copy jobs that
write into dated folders (``2026-12-07/cam1/part-0001.png``).

What must hold: each image in a subfolder is inspected once, named by its path relative to the hot folder in the record,
in every sink's message and in refusals; two files of one base name in two subfolders are two parts; done/ and failed/
mirror the tree and are never entered again, nor another station's (a done/ or failed/ at any depth); a folder sink's or
the service's folders inside a recursive hot folder are refused; a symbolic link in done/'s tree pauses the intake;
hidden and temporary folders and symbolic links are not entered, a folder deeper than the limit is said once; a kill
between storing and moving inspects nothing twice; and with the option off a subfolder is still only said as not taken.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import unprivileged_cli, wait_s
from test_station import (  # noqa: F401  (model_dir, receiver: the module's fixtures)
    SUBFOLDER,
    Receiver,
    Running,
    _cells,
    _env,
    _history,
    _kill_after_storing,
    _rows,
    _run,
    _stations,
    _status,
    _webhook,
    model_dir,
    receiver,
)

from eagle_iad.station.config import read_stations
from eagle_iad.station.parts import Options, StationConfigError
from eagle_iad.station.sources.folder import (
    ANOTHER_STATION,
    CAMERA_FRAMES,
    FILED,
    IGNORED_AFTER_S,
    MAX_DEPTH,
    HotFolder,
)
from eagle_iad.station.sources.folder_lock import LOCK_NAME

RECURSIVE = ", recursive = true"


def _put(incoming: Path, name: str, source: Path | bytes, age: float = 10.0) -> str:
    """Write ``source`` (a file's bytes, or bytes) at ``name`` (relative, ``/`` between folders) in the hot folder,
    its folders made, old enough to count as complete; ``name`` back."""
    target = incoming.joinpath(*name.split("/"))
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(source if isinstance(source, bytes) else source.read_bytes())
    past = time.time() - age
    os.utime(target, (past, past))
    return name


def _files(folder: Path) -> list[str]:
    """Every file below ``folder``, by its path relative to it with ``/``, sorted."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def _folder(tmp_path: Path, **options: object) -> tuple[HotFolder, list[str]]:
    """A hot folder source on ``tmp_path/incoming`` (settle_s 0), and the lines it logs."""
    folder = HotFolder(Options({"path": "incoming", "settle_s": 0, **options}, "source", tmp_path))
    lines: list[str] = []
    folder.log = lines.append
    return folder, lines


def _age(*paths: Path) -> None:
    """Make ``paths`` (links themselves, not followed) unchanged for longer than IGNORED_AFTER_S."""
    old = time.time() - IGNORED_AFTER_S - 1
    for path in paths:
        os.utime(path, (old, old), follow_symlinks=False)


def test_subfolder_images_are_inspected_under_their_relative_path_and_filed_in_a_mirrored_tree(
    model_dir: Path,  # noqa: F811
    tmp_path: Path,
    receiver: Receiver,  # noqa: F811
) -> None:
    """Dated camera folders: each image is inspected once, its ``image_name`` its relative path in the record, the
    webhook's message and the folder sink's JSON; the same base name in two subfolders is two parts (two records,
    two copies in the folder sink); a refusal names the relative path too; done/ and failed/ mirror the tree, the
    emptied camera folders are left; a second run enters neither done/ nor failed/ (nothing inspected or said
    again), and a repeat of an inspected content in a third subfolder is told under its own relative name."""
    incoming = tmp_path / "incoming"
    cells = _cells(3)
    names = [
        _put(incoming, "2026-12-07/cam1/part-0001.png", cells[0], age=13),
        _put(incoming, "2026/12/07/cam2/part-0001.png", cells[1], age=12),  # deeper than an upload's name keeps
        _put(incoming, "top.png", cells[2], age=11),
    ]
    broken = _put(incoming, "2026-12-07/cam1/broken.png", b"not a png at all", age=10)
    sinks = _webhook(receiver.port) + '\n[[station.sink]]\nkind = "folder"\npath = "sorted"\n'
    stations = _stations(tmp_path, model_dir, sinks, source=RECURSIVE)
    code, log = _run(stations, "run", "--until-idle")
    assert code == 0, log
    history = _history(tmp_path)
    assert [r.image_name for r in history] == names, log  # oldest first, each once, the whole relative path
    assert [r.source for r in history] == [str(incoming.joinpath(*n.split("/"))) for n in names]
    assert _files(incoming / "done") == sorted(names)
    assert _files(incoming / "failed") == [broken, f"{broken}.reason.txt"]
    assert (incoming / "failed" / "2026-12-07" / "cam1" / "broken.png.reason.txt").read_text() == (
        f"{broken}: not a recognised image format\n"
    )
    for name, cell in zip(names, cells, strict=True):
        assert (incoming / "done").joinpath(*name.split("/")).read_bytes() == cell.read_bytes()
    assert [p.name for p in (incoming / "2026-12-07").iterdir()] == ["cam1"]  # left, empty
    assert [p.name for p in (incoming / "2026" / "12" / "07").iterdir()] == ["cam2"]
    filed = [*(f"done/{n}" for n in names), f"failed/{broken}", f"failed/{broken}.reason.txt"]
    assert _files(incoming) == sorted(filed)  # nothing left in the camera folders
    *verdicts, refused = receiver.received
    assert [v["body"]["record"]["image_name"] for v in verdicts] == names
    assert [v["body"]["image"] for v in verdicts] == [str((incoming / "done").joinpath(*n.split("/"))) for n in names]
    assert refused["body"]["refused"]["image_name"] == broken
    assert refused["body"]["image"] == str(incoming / "failed" / "2026-12-07" / "cam1" / "broken.png")
    for record in history:  # the folder sink: two part-0001.png, each under its own record id
        copy = tmp_path / "sorted" / str(record.decision) / f"{record.id}_{record.image_name.rpartition('/')[2]}"
        assert copy.read_bytes() == (incoming / "done").joinpath(*record.image_name.split("/")).read_bytes()
        assert json.loads(Path(f"{copy}.json").read_text())["record"]["image_name"] == record.image_name
    (told,) = (tmp_path / "sorted" / "refused").glob("*.json")
    assert json.loads(told.read_text())["refused"]["image_name"] == broken
    status = _status(stations)
    assert (status["inspected"], status["failed"], status["backlog"], status["warnings"]) == (3, 1, 0, []), status
    assert status["source"].endswith(f"moved to done/ or failed/; with subfolders, up to {MAX_DEPTH} levels)")
    code, log = _run(stations, "run", "--until-idle")  # done/ and failed/ hold images: never entered
    assert code == 0 and "same content" not in log and "not inspected" not in log, log
    assert len(_history(tmp_path)) == 3 and len(receiver.received) == 4
    again = _put(incoming, "2026-12-08/cam1/part-0001.png", cells[0])  # the line sent part 1's image again
    code, log = _run(stations, "run", "--until-idle")
    assert code == 0 and f"{again}: same content as record {history[0].id}" in log, log
    repeat = receiver.received[-1]["body"]
    assert (repeat["event"], repeat["refused"]["image_name"]) == ("refused", again)
    assert (incoming / "done" / "2026-12-08" / "cam1" / "part-0001.png").read_bytes() == cells[0].read_bytes()


def test_a_kill_between_storing_a_subfolder_image_and_moving_it_does_not_inspect_it_again(
    model_dir: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    """Restart safety as for the folder itself: the subfolder image stored before the kill is not inspected again
    (its relative name and content are known), and goes to its place in done/'s tree."""
    incoming = tmp_path / "incoming"
    cells = _cells(2)
    names = [_put(incoming, "a/b/x.png", cells[0], age=12), _put(incoming, "c/x.png", cells[1], age=11)]
    stations = _stations(tmp_path, model_dir, "", source=RECURSIVE)
    _kill_after_storing(stations, _env())
    assert [r.image_name for r in _history(tmp_path)] == names[:1]  # stored, not moved
    assert (incoming / "a" / "b" / "x.png").exists()
    code, log = _run(stations, "run", "--until-idle")
    assert code == 0, log
    assert [r.image_name for r in _history(tmp_path)] == names, log  # the first one not inspected twice
    assert f"{names[0]}: same content as record" in log
    assert _files(incoming / "done") == sorted(names)


def test_killed_mid_burst_every_subfolder_image_is_inspected_exactly_once_and_delivered(
    model_dir: Path,  # noqa: F811
    tmp_path: Path,
    receiver: Receiver,  # noqa: F811
) -> None:
    """60 images in three camera folders, each folder's files named alike (``cam<n>/part-<i>.png``): killed after
    10 deliveries and restarted, every image is inspected exactly once under its relative name, every verdict
    delivered, the first deliveries in the order stored, and done/ holds the three folders' files."""
    incoming = tmp_path / "incoming"
    names = []
    for index, cell in enumerate(_cells(20) * 3):  # a different last byte each: 60 contents, none a repeat
        name = f"2026-12-07/cam{index // 20 + 1}/part-{index % 20:04d}.png"
        names.append(_put(incoming, name, cell.read_bytes() + index.to_bytes(4, "big"), age=10 - index * 0.001))
    stations = _stations(tmp_path, model_dir, _webhook(receiver.port), source=RECURSIVE)
    process = subprocess.Popen([sys.executable, "-m", "eagle_iad.cli", "station", "run", "--quiet", str(stations)],
                               cwd=tmp_path, env=_env(), stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + wait_s(300)
        while len(receiver.received) < 10:
            assert process.poll() is None and time.monotonic() < deadline, "the station did not deliver 10 verdicts"
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=wait_s(60))
    finally:
        process.kill()
        process.communicate()
    assert len(_history(tmp_path)) < len(names)  # killed mid-burst
    code, log = _run(stations, "run", "--until-idle", "--quiet")
    assert code == 0, log
    history = _history(tmp_path)
    assert sorted(r.image_name for r in history) == sorted(names)  # every image, exactly once
    ids = [r.id for r in history]
    keys = receiver.keys()
    assert set(keys) == set(ids)  # every verdict delivered at least once ...
    assert sorted(set(keys), key=keys.index) == ids  # ... the first deliveries in the order the verdicts were stored
    assert len(keys) - len(ids) <= 1  # a repeat only for the one in flight at the kill, with the same key
    assert _files(incoming / "done") == sorted(names)


def test_an_unreadable_subfolder_image_refused_before_a_kill_is_told_once_from_its_place_in_failed(
    model_dir: Path,  # noqa: F811
    tmp_path: Path,
    receiver: Receiver,  # noqa: F811
) -> None:
    """The refusal of a subfolder file that could not be read, stored before a kill, stays held while the folder
    lists that file under its relative name (the restart's first polls wait for it to settle): refused again under
    the same key, it is told once, from ``failed/<its subfolders>/``, never released as gone from the source."""
    launcher = unprivileged_cli()  # root would read it anyway
    incoming = tmp_path / "incoming"
    name = _put(incoming, "2026-12-07/cam1/x.png", _cells(1)[0])
    image = incoming / "2026-12-07" / "cam1" / "x.png"
    os.chmod(image, 0)
    stations = _stations(tmp_path, model_dir, _webhook(receiver.port), source=RECURSIVE)
    failed = incoming / "failed" / "2026-12-07" / "cam1" / "x.png"
    try:
        _kill_after_storing(stations, _env(), point="station refusal stored", launcher=launcher)
        ((key,),) = _rows(tmp_path, "SELECT record_id FROM outbox")
        code, log = _run(stations, "run", "--until-idle", launcher=launcher)
    finally:
        for path in (image, failed):
            if path.exists():
                os.chmod(path, 0o644)
    assert code == 0, log
    assert receiver.keys() == [key], log
    body = receiver.received[0]["body"]
    assert (body["image"], body["refused"]["image_name"]) == (str(failed), name), body
    assert body["refused"]["reason"] == f"{name}: cannot be read: Permission denied"
    assert failed.exists() and "not put aside before the last stop" not in log, log
    assert _status(stations)["failed"] == 1


def test_hidden_temporary_and_linked_folders_are_not_entered_and_a_folder_too_deep_is_said_once(
    tmp_path: Path,
) -> None:
    """What is entered: any subfolder down to MAX_DEPTH levels. What is not: the station's own done/ and failed/,
    hidden folders and a writer's temporary folder (not said, as a hidden file is not), a folder named done or
    failed below the top (a stopped station on cam1 filed its images there, its lock file gone: said once), a
    symbolic link to a folder (a loop back to the hot folder here: said once, not followed), a folder deeper than
    MAX_DEPTH (said once, with the limit), another station's hot folder (its lock file in it: said once), a camera's
    frames folder (a camera's lock file beside it: said once, as what it is)."""
    incoming = tmp_path / "incoming"
    deepest = "/".join(f"d{level}" for level in range(1, MAX_DEPTH + 1))  # MAX_DEPTH folders: taken
    _put(incoming, "cam1/done/x.png", b"1")
    _put(incoming, "cam1/failed/x.png", b"2")
    _put(incoming, "cam1/failed/x.png.reason.txt", b"x.png: not a recognised image format")
    taken = sorted([
        _put(incoming, "cam1/z.png", b"1"),
        _put(incoming, f"{deepest}/deep.png", b"3"),
        _put(incoming, "folder.png/y.png", b"4"),  # a folder named like an image is a folder
    ])  # fmt: skip
    _put(incoming, f"{deepest}/too/deep.png", b"5")  # MAX_DEPTH + 1 folders: not taken
    _put(incoming, "line-2/x.png", b"6")  # another station's hot folder: its lock file in it
    (incoming / "line-2" / LOCK_NAME).write_text("{}")
    _put(incoming, "cam2/frame-1.png", b"7")  # a camera's frames folder: its lock files in it
    (incoming / "cam2" / LOCK_NAME).write_text("")
    (incoming / "cam2" / ".eagle-camera-frame.lock").write_text("{}")
    for untaken in ("done/a/x.png", "failed/x.png", ".snapshot/x.png", "batch.tmp/x.png", "cam1/.hidden/x.png"):
        _put(incoming, untaken, b"untaken")
    (incoming / "loop").symlink_to(incoming, target_is_directory=True)
    (incoming / "cam1" / "up").symlink_to("..", target_is_directory=True)
    quiet = ("done", "failed", ".snapshot", "batch.tmp", "cam1/.hidden")  # unchanged long enough, yet not said
    said_ones = (incoming / "loop", incoming / "cam1" / "up", incoming.joinpath(*deepest.split("/"), "too"),
                 incoming / "cam1" / "done", incoming / "cam1" / "failed")  # fmt: skip
    _age(*said_ones, incoming / "line-2", incoming / "cam2", *(incoming.joinpath(*name.split("/")) for name in quiet))
    folder, lines = _folder(tmp_path, recursive=True)
    assert sorted(a.name for a in folder.poll()) == taken and folder.backlog() == 3
    linked = "a symbolic link to a folder (not followed: it could lead outside the folder, or back into it)"
    too_deep = f"a folder more than {MAX_DEPTH} levels below the hot folder (recursive goes {MAX_DEPTH} levels deep)"
    said = {line.split(": warning: ")[1] for line in lines}
    filed = "a station's filed images (a folder named done or failed is never entered)"
    assert said == {f"loop: ignored: {linked}", f"cam1/up: ignored: {linked}", f"{deepest}/too: ignored: {too_deep}",
                    f"line-2: ignored: {ANOTHER_STATION}", f"cam2: ignored: {CAMERA_FRAMES}",
                    f"cam1/done: ignored: {filed}", f"cam1/failed: ignored: {filed}"}, lines  # fmt: skip
    assert len(lines) == 7
    assert sorted(a.name for a in folder.poll()) == taken and len(lines) == 7  # said once
    assert folder.ignored()[0] == 7


def test_with_recursive_off_a_subfolder_is_still_only_said_as_not_taken(tmp_path: Path) -> None:
    """The default: a subfolder's images are not taken, and the subfolder is said once (naming the option)."""
    incoming = tmp_path / "incoming"
    _put(incoming, "top.png", b"1")
    _put(incoming, "sub/x.png", b"2")
    _age(incoming / "sub")
    folder, lines = _folder(tmp_path)
    assert folder.recursive is False
    assert [a.name for a in folder.poll()] == ["top.png"] and folder.backlog() == 1
    assert [line.split(": warning: ")[1] for line in lines] == [f"sub: ignored: {SUBFOLDER}"]


def test_a_subfolder_image_settles_counts_replacements_and_is_put_away_by_its_relative_name(tmp_path: Path) -> None:
    """settle_s and the ``replaced`` count work per relative name: two frames renamed onto ``cam1/current.png``
    before it settled are one lost frame, counted under that name, while ``cam2/current.png`` is another file; a
    subfolder's image goes to the same subfolders of done/ (failed/)."""
    incoming = tmp_path / "incoming"
    for camera in ("cam1", "cam2"):
        _put(incoming, f"{camera}/current.png", b"frame 0")
    folder, lines = _folder(tmp_path, recursive=True, settle_s=3600)
    assert list(folder.poll()) == []
    (incoming / "cam1" / ".frame.tmp").write_bytes(b"frame 1, longer")
    os.replace(incoming / "cam1" / ".frame.tmp", incoming / "cam1" / "current.png")
    assert list(folder.poll()) == []
    total, last, _ = folder.replaced()
    assert (total, last) == (1, "cam1/current.png"), lines
    folder.settle_s = 0
    arrivals = sorted(folder.poll(), key=lambda a: a.name)
    assert [(a.name, a.path) for a in arrivals] == [
        ("cam1/current.png", incoming / "cam1" / "current.png"),
        ("cam2/current.png", incoming / "cam2" / "current.png"),
    ]
    assert folder.planned(arrivals[0]) == incoming / "done" / "cam1" / "current.png"
    assert folder.planned_refusal(arrivals[1]) == incoming / "failed" / "cam2" / "current.png"


def test_a_subfolder_that_cannot_be_listed_is_said_once_and_the_rest_taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """EACCES (or EIO) listing one subfolder skips it, said in one line while it lasts, not at every poll; the rest
    of the folder is taken and the intake goes on (the listing of the hot folder itself failing pauses it, as
    before). The fault is injected at ``os.scandir``: root lists any folder whatever its mode."""
    incoming = tmp_path / "incoming"
    _put(incoming, "cam1/x.png", b"1")
    _put(incoming, "cam2/x.png", b"2")
    real = os.scandir

    def scandir(path: Any) -> Any:
        if Path(path) == incoming / "cam2":
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real(path)

    folder, lines = _folder(tmp_path, recursive=True)
    monkeypatch.setattr(os, "scandir", scandir)
    assert [a.name for a in folder.poll()] == ["cam1/x.png"]
    assert [a.name for a in folder.poll()] == ["cam1/x.png"] and folder.backlog() == 1
    assert lines == [f"eagle station: folder {incoming}: cam2: cannot be looked at (Permission denied); skipped "
                     "until it can"], lines  # fmt: skip
    monkeypatch.setattr(os, "scandir", real)
    assert sorted(a.name for a in folder.poll()) == ["cam1/x.png", "cam2/x.png"] and len(lines) == 1


def test_recursive_must_be_a_boolean_and_may_not_take_another_station_s_folder(tmp_path: Path) -> None:
    """Checked when the file is read: ``recursive`` is true or false; a recursive station whose folder holds
    another station's folder is refused (both would take those images), naming both."""
    (tmp_path / "models" / "mono").mkdir(parents=True)
    (tmp_path / "incoming" / "cam2").mkdir(parents=True)
    stations = _stations(tmp_path, tmp_path / "models", "", source=', recursive = "yes"')
    with pytest.raises(StationConfigError) as bad:
        read_stations(stations, fitted=False)
    assert str(bad.value) == f"{stations}: station 'line-1': source: recursive must be true or false, not 'yes'"
    text = _stations(tmp_path, tmp_path / "models", "", source=RECURSIVE).read_text()
    stations.write_text(text + '\n[[station]]\nname = "line-2"\ncategory = "mono"\n'
                               'source = { kind = "folder", path = "incoming/cam2" }\n')  # fmt: skip
    with pytest.raises(StationConfigError) as nested:
        read_stations(stations, fitted=False)
    inner = (tmp_path / "incoming" / "cam2").resolve()
    assert str(nested.value) == (
        f"{stations}: station 'line-1' takes the images of {inner.parent} and its subfolders (recursive = true), so "
        f"those of station 'line-2' in {inner} too; give each station its own folder"
    )
    stations.write_text(text.replace(RECURSIVE, "") + '\n[[station]]\nname = "line-2"\ncategory = "mono"\n'
                        'source = { kind = "folder", path = "incoming/cam2" }\n')  # fmt: skip
    assert [s.name for s in read_stations(stations, fitted=False).stations] == ["line-1", "line-2"]


def test_sidecar_mode_marks_a_subfolder_image_beside_it(tmp_path: Path) -> None:
    """With ``after = "sidecar"`` a subfolder image's sidecar is written beside it, and marks it: the next poll
    does not take it again, while the same base name in another subfolder is still taken."""
    incoming = tmp_path / "incoming"
    _put(incoming, "a/x.png", b"1")
    _put(incoming, "b/x.png", b"2")
    folder, _ = _folder(tmp_path, recursive=True, after="sidecar")
    arrivals = sorted(folder.poll(), key=lambda a: a.name)
    assert [a.name for a in arrivals] == ["a/x.png", "b/x.png"]
    assert folder.planned(arrivals[0]) == incoming / "a" / "x.png"
    first = arrivals[0]
    assert folder.finish(first, folder.planned(first), {"id": "r1", "decision": "normal", "score": 0.1}) is None
    assert json.loads((incoming / "a" / "x.png.eagle.json").read_text())["record_id"] == "r1"
    assert [a.name for a in folder.poll()] == ["b/x.png"]
    shutil.rmtree(incoming / "b")
    assert list(folder.poll()) == [] and folder.backlog() == 0


def test_a_recursive_station_leaves_the_images_a_stopped_station_on_its_subfolder_filed(
    model_dir: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    """A station on ``incoming/cam1`` files its images in ``cam1/done/`` and ``cam1/failed/``; stopped (its lock
    file gone), a recursive station on ``incoming`` takes only the new images: the filed ones are neither inspected
    again nor moved, and the two folders are said once as a station's filed images."""
    incoming = tmp_path / "incoming"
    cells = _cells(2)
    _put(incoming, "cam1/a.png", cells[0])
    _put(incoming, "cam1/broken.png", b"not a png at all")
    inner = _stations(tmp_path, model_dir, "")
    inner.write_text(inner.read_text().replace('path = "incoming"', 'path = "incoming/cam1"'))
    code, log = _run(inner, "run", "--until-idle")
    assert code == 0, log
    filed = ["done/a.png", "failed/broken.png", "failed/broken.png.reason.txt"]
    assert _files(incoming / "cam1") == filed, log
    _age(incoming / "cam1" / "done", incoming / "cam1" / "failed")
    second = _put(incoming, "cam2/b.png", cells[1])
    outer = tmp_path / "outer.toml"
    outer.write_text(_stations(tmp_path, model_dir, "", source=RECURSIVE).read_text().replace("line-1", "line-0"))
    code, log = _run(outer, "run", "--until-idle")
    assert code == 0, log
    assert [r.image_name for r in _history(tmp_path)] == ["a.png", second], log  # line-1 named it a.png; not again
    assert _files(incoming / "cam1") == filed
    assert f"cam1/done: ignored: {FILED}" in log and f"cam1/failed: ignored: {FILED}" in log, log


def test_a_folder_sink_or_the_service_s_folders_inside_a_recursive_hot_folder_are_refused_and_never_entered(
    tmp_path: Path,
) -> None:
    """A folder sink writing inside a recursive hot folder would have its copies taken again, refused as repeats,
    the refusal's copy taken again, without end; the service's state, pictures and models folders would lose what
    they keep. Both refused when the file is read, naming both folders (resolved); without ``recursive`` a folder
    sink at the hot folder itself is fine (it writes only into subfolders, which are not entered). The walk skips
    such a folder all the same, said once."""
    models = tmp_path / "models"
    (models / "mono").mkdir(parents=True)
    (tmp_path / "incoming").mkdir()
    hot = (tmp_path / "incoming").resolve()
    sink = '\n[[station.sink]]\nkind = "folder"\npath = "incoming/results"\n'
    stations = _stations(tmp_path, models, sink, source=RECURSIVE)
    with pytest.raises(StationConfigError) as looping:
        read_stations(stations, fitted=False)
    assert str(looping.value) == (
        f"{stations}: station 'line-1': sink 'folder' (folder) writes in {hot / 'results'}, inside hot folder {hot}, "
        "which the station takes with its subfolders (recursive = true): its copies would be taken again, without "
        "end; give the sink a path outside the hot folder"
    )
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "linked").symlink_to(hot, target_is_directory=True)  # the same folder through a link
    stations.write_text(stations.read_text().replace("incoming/results", "linked"))
    with pytest.raises(StationConfigError) as linked:
        read_stations(stations, fitted=False)
    assert f"sink 'folder' (folder) writes in {hot}, inside hot folder {hot}," in str(linked.value)
    stations.write_text(stations.read_text().replace(RECURSIVE, ""))  # not recursive: its subfolders stay untaken
    assert [s.name for s in read_stations(stations, fitted=False).stations] == ["line-1"]
    for key, text, where in (("state", 'state = "state"', "state"), ("models", "", "models")):
        top = _stations(tmp_path, models, "", source=RECURSIVE).read_text().replace('path = "incoming"', 'path = "."')
        stations.write_text(top if text else top.replace('state = "state"', 'state = "/tmp/elsewhere-state"'))
        with pytest.raises(StationConfigError) as kept:
            read_stations(stations, fitted=False)
        folder = (tmp_path / where).resolve()
        assert str(kept.value) == (
            f"{stations}: station 'line-1': source: hot folder {tmp_path.resolve()} holds the service's {key} folder "
            f"{folder} and is taken with its subfolders (recursive = true): the station would take and move what "
            "the service keeps; give the station a folder outside it"
        )
    _put(tmp_path / "incoming", "results/normal/r1_x.png", b"a copy")
    _put(tmp_path / "incoming", "cam1/x.png", b"an image")
    _age(tmp_path / "incoming" / "results")
    folder, lines = _folder(tmp_path, recursive=True)
    assert folder.keep_out(tmp_path / "incoming" / "results", "folder sink 'folder''s folder") is True
    assert folder.keep_out(tmp_path / "elsewhere", "not below it") is False
    assert [a.name for a in folder.poll()] == ["cam1/x.png"] and [a.name for a in folder.poll()] == ["cam1/x.png"]
    assert [line.split(": warning: ")[1] for line in lines] == ["results: ignored: folder sink 'folder''s folder"]


def test_a_symbolic_link_in_done_s_tree_pauses_the_intake_instead_of_moving_the_image_through_it(
    model_dir: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    """``done/cam1`` a symbolic link to a folder elsewhere: the inspected image is not moved out of the hot folder
    through it; the intake pauses naming it (as for a ``done`` that is a file), and resumes once it is a folder."""
    incoming = tmp_path / "incoming"
    name = _put(incoming, "cam1/x.png", _cells(1)[0])
    outside = tmp_path / "outside"
    outside.mkdir()
    (incoming / "done").mkdir()
    (incoming / "done" / "cam1").symlink_to(outside, target_is_directory=True)
    stations = _stations(tmp_path, model_dir, "", source=RECURSIVE)
    station = Running(stations)
    try:
        station.until(lambda: station.saw("intake paused:"), "no pause")
        link = incoming / "done" / "cam1"
        why = f"{name}: inspected, but it could not be put away: {link} is a symbolic link, not a folder"
        assert station.saw(why), station.log()
        assert list(outside.iterdir()) == [] and (incoming / "cam1" / "x.png").exists()
        (incoming / "done" / "cam1").unlink()
        station.until(lambda: station.saw("intake resumed") and not (incoming / "cam1" / "x.png").exists(), "resume")
        assert station.stop() == 143
    finally:
        station.process.kill()
    assert _files(incoming / "done") == [name] and list(outside.iterdir()) == []
