"""A camera's frames folder and a hot folder, across processes (station/sources/folder_lock.py): real locks held by
real processes, no camera needed (the locks are the camera's :meth:`Camera.claim`)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import wait_s

from eagle_iad.errors import FolderInUseError
from eagle_iad.station.sources import folder_lock
from eagle_iad.station.sources.folder_lock import LOCK_NAME, lock_folder, lock_frames


class Holder:
    """Another process holding ``call`` (Python, returning a lock) until :meth:`stop`."""

    def __init__(self, call: str) -> None:
        code = ("import sys; from pathlib import Path; from eagle_iad.station.sources.folder_lock import lock_folder, "
                f"lock_frames; lock = {call}; print('held', flush=True); sys.stdin.read(); lock.release()")  # fmt: skip
        self.process = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        text=True)  # fmt: skip
        assert self.process.stdout is not None and self.process.stdout.readline() == "held\n"

    def said(self, station: str, state: str) -> str:
        return f"pid {self.process.pid} on {socket.gethostname()}, station {station!r}, state folder {state}"

    def stop(self) -> None:
        self.process.communicate("", timeout=wait_s(30))
        assert self.process.returncode == 0


def test_a_camera_in_another_process_refuses_a_hot_folder_and_shares_the_folder_with_another_prefix(
    tmp_path: Path,
) -> None:
    """Its shared lock refuses a hot folder here, naming it from its own lock file; a camera of another prefix here
    shares the folder, and the other's stop leaves the station lock to it (a hot folder still refused), so the
    file is removed only by the last camera; then a hot folder is accepted."""
    frames = tmp_path / "frames"
    frames.mkdir()
    other = Holder(f"lock_frames(Path({str(frames)!r}), 'cam1', 'line-1', Path('/srv/a'))")
    try:
        with pytest.raises(FolderInUseError) as refused:
            lock_folder(frames, "line-3", tmp_path / "state")
        assert str(refused.value) == (
            f"station 'line-3': hot folder {frames} is where a camera station saves its frames "
            f"({other.said('line-1', '/srv/a')}); this station would take them away as images of its own: stop that "
            "one first, or give this station its own folder")  # fmt: skip
        with pytest.raises(FolderInUseError, match=r"with name_prefix 'cam1' is taken by another camera station \(pid "
                           f"{other.process.pid} "):  # fmt: skip
            lock_frames(frames, "cam1", "line-2", tmp_path / "state")
        mine = lock_frames(frames, "cam2", "line-2", tmp_path / "state")
        shared = os.stat(frames / LOCK_NAME).st_ino
    finally:
        other.stop()
    assert sorted(p.name for p in frames.iterdir()) == [".eagle-camera-cam2.lock", LOCK_NAME]
    assert os.stat(frames / LOCK_NAME).st_ino == shared  # the other camera's stop left it: this one still holds it
    with pytest.raises(FolderInUseError, match=r"is where a camera station saves its frames \(pid \d+ on .*'line-2'"):
        lock_folder(frames, "line-3", tmp_path / "state")
    mine.release()
    assert list(frames.iterdir()) == []
    lock_folder(frames, "line-3", tmp_path / "state").release()


def test_a_hot_folder_in_another_process_refuses_a_camera_and_what_a_killed_one_left_names_no_one(
    tmp_path: Path,
) -> None:
    """A camera on a folder another process takes as a hot folder is refused naming it, and leaves no lock file of
    its own; the hot folder killed (its holder line left in the file), a camera takes the folder, and a hot folder
    refused then names the camera, not the dead holder."""
    folder = tmp_path / "incoming"
    folder.mkdir()
    other = Holder(f"lock_folder(Path({str(folder)!r}), 'line-a', Path('/srv/a'))")
    try:
        with pytest.raises(FolderInUseError) as refused:
            lock_frames(folder, "frame", "line-4", tmp_path / "state")
        assert str(refused.value) == (
            f"station 'line-4': camera frames folder {folder} is the hot folder of another station "
            f"({other.said('line-a', '/srv/a')}), which would take the frames away as images of its own: stop that "
            "one first, or give this camera its own frames folder")  # fmt: skip
        assert [p.name for p in folder.iterdir()] == [LOCK_NAME]
    finally:
        other.process.kill()
        other.process.communicate()
    assert (folder / LOCK_NAME).read_text()  # the killed holder's line stays
    camera = lock_frames(folder, "frame", "line-4", tmp_path / "state")
    try:
        with pytest.raises(FolderInUseError) as refused:
            lock_folder(folder, "line-b", tmp_path / "state")
        assert f"saves its frames (pid {os.getpid()} on {socket.gethostname()}, station 'line-4', " in str(
            refused.value
        )
    finally:
        camera.release()


def test_a_hot_folder_refused_by_a_camera_names_the_live_one_not_a_killed_one(tmp_path: Path) -> None:
    """A SIGKILLed camera leaves its lock file, its line in it: a hot folder refused by the live camera beside it
    names only the live one (the killed one's file can be taken: nobody holds it); with only the killed one's file
    there (the station lock held by one that has not said who it is), no camera is blamed."""
    frames = tmp_path / "frames"
    frames.mkdir()
    killed = Holder(f"lock_frames(Path({str(frames)!r}), 'cam1', 'deadcam', Path('/srv/d'))")
    killed.process.kill()
    killed.process.communicate()
    assert (
        ".eagle-camera-cam1.lock" in os.listdir(frames)
        and "deadcam" in (frames / ".eagle-camera-cam1.lock").read_text()
    )
    live = Holder(f"lock_frames(Path({str(frames)!r}), 'cam2', 'line-1', Path('/srv/a'))")
    try:
        with pytest.raises(FolderInUseError) as refused:
            lock_folder(frames, "line-3", tmp_path / "state")
        assert str(refused.value) == (
            f"station 'line-3': hot folder {frames} is where a camera station saves its frames "
            f"({live.said('line-1', '/srv/a')}); this station would take them away as images of its own: stop that "
            "one first, or give this station its own folder")  # fmt: skip
    finally:
        live.stop()
    assert sorted(os.listdir(frames)) == [".eagle-camera-cam1.lock"]  # the killed one's, still there
    code = ("import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); fcntl.flock(fd, fcntl.LOCK_EX); "
            "print('held', flush=True); sys.stdin.read()")  # a station between its lock and its line  # fmt: skip
    silent = subprocess.Popen([sys.executable, "-c", code, str(frames / LOCK_NAME)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert silent.stdout is not None and silent.stdout.readline() == "held\n"
        with pytest.raises(FolderInUseError) as refused:
            lock_folder(frames, "line-3", tmp_path / "state")
        assert str(refused.value) == (
            f"station 'line-3': hot folder {frames} is taken by another station (a holder that has not said who it is "
            "yet (starting, or an earlier version)); two stations on one folder would each inspect every image: stop "
            "that one first, or give this station its own folder")  # fmt: skip
    finally:
        silent.communicate("", timeout=wait_s(30))


def test_a_hot_folder_started_as_the_last_camera_stops_is_not_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The last camera to stop holds the station lock exclusively for a moment, to remove the file: a hot folder
    started then tries again (its holder said nothing) and takes the folder, rather than be refused naming the
    camera that is stopping. The moment is made half a second here, and the tries many, for a slow machine."""
    monkeypatch.setattr(folder_lock, "TRIES", int(wait_s(30) / folder_lock.WAIT_S))
    frames = tmp_path / "frames"
    frames.mkdir()
    code = ("import fcntl, sys, time; from pathlib import Path; from eagle_iad.station.sources.folder_lock import "
            f"lock_frames; lock = lock_frames(Path({str(frames)!r}), 'cam1', 'line-1', Path('/srv/a')); "
            "fcntl.flock(lock.folder._fd, fcntl.LOCK_EX); print('stopping', flush=True); time.sleep(0.5); "
            "lock.release(); print('stopped', flush=True)")  # fmt: skip
    camera = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert camera.stdout is not None and camera.stdout.readline() == "stopping\n"
        lock = lock_folder(frames, "line-3", tmp_path / "state")
        assert json.loads((frames / LOCK_NAME).read_text())["station"] == "line-3"
        lock.release()
    finally:
        assert camera.communicate(timeout=wait_s(30))[0] == "stopped\n" and camera.returncode == 0
    assert os.listdir(frames) == []
