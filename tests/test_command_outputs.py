"""Every command that writes, against every bad ``--out``: one ``eagle: error:`` line, exit 2, nothing lost.

One table: the commands (``fit``, ``inspect --out``, ``eval-expert``, ``eval``, ``attention``) times
the places (an unwritable parent, an existing file, the current directory, ``/``, a symbolic link to
a folder, a missing deep path, a full disk). The rules are the same for every command
(src/eagle_iad/outputs.py): a missing folder, however deep, is created; the others are refused
before any work with one line naming the path, and whatever was there before is left byte for byte.

The full disk is a file size limit (``RLIMIT_FSIZE``, soft limit only, so it is lifted again after
the command): every write past 64 bytes then fails with ``EFBIG``, exactly as a write to a full disk
fails with ``ENOSPC``, and it needs neither root nor a mount. ``SIGXFSZ`` is ignored meanwhile (its
default action would kill the test process).

The expert uses the weight-free fake backbone (tests/expert_fakes.py) on real elpv cells, the MLLM
is the tiny random Qwen2.5-VL (tests/conftest.py); commands run in-process, except the unwritable
parent as root, which needs a process without the capability that lets root write anywhere.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import unprivileged_cli, wait_s
from expert_fakes import FAKE_CONFIG, FakeExtractor

from eagle_iad.cli import main
from eagle_iad.data import get_layout

SRC = Path(__file__).resolve().parents[1] / "src"


@dataclass(frozen=True)
class Inputs:
    models: Path  # <models>/mono and /poly: experts fitted with the fake backbone
    image: str  # an elpv cell
    mllm: Path | None  # the tiny Qwen2.5-VL checkpoint (None without transformers)


@dataclass(frozen=True)
class Command:
    argv: Callable[[Inputs, str], list[str]]
    what: str  # how the refusal names what would be written
    example: str  # the folder the refusal suggests
    written: str  # a file a successful run leaves in --out (glob)
    full_disk: str  # what the full-disk message says about the output's state
    needs_mllm: bool = False


_SPACE = "cannot be written (File too large: the disk is full or a file size limit was reached); "

# fmt: off
COMMANDS: dict[str, Command] = {
    "fit": Command(
        argv=lambda i, out: ["fit", "--layout", "elpv", "--category", "mono", "--limit-train", "3",
                             "--preset", "paper", "--resize", "72", "--crop", "64", "--out", out, "--quiet"],
        what="a model", example="./model", written="model.json",
        full_disk="no room for the fit's scratch features (File too large); set --scratch (or TMPDIR) to a "
                  "folder on a disk with more free space",
    ),
    "inspect": Command(
        argv=lambda i, out: ["inspect", i.image, "--model", str(i.models / "mono"), "--out", out, "--quiet"],
        what="pictures", example="./pictures", written="*_heatmap.png",
        full_disk=_SPACE + "pictures written before it are complete (each is written whole or not at all)",
    ),
    # with an MLLM, --out gets the same pictures and the visual prompt, under the same rules
    "inspect-mllm": Command(
        argv=lambda i, out: ["inspect", i.image, "--model", str(i.models / "mono"), "--mllm", f"hf:{i.mllm}",
                             "--max-new-tokens", "2", "--out", out, "--quiet"],
        what="pictures", example="./pictures", written="*_heatmap.png",
        full_disk=_SPACE + "pictures written before it are complete",
        needs_mllm=True,
    ),
    "eval-expert": Command(
        argv=lambda i, out: ["eval-expert", "--layout", "elpv", "--category", "mono", "--model",
                             str(i.models / "mono"), "--out", out, "--limit-test", "4", "--quiet"],
        what="a report", example="./report", written="report.md",
        full_disk=_SPACE + "the previous files there are unchanged",
    ),
    "eval": Command(
        argv=lambda i, out: ["eval", "--layout", "elpv", "--models", str(i.models), "--conditions", "expert",
                             "--limit", "4", "--out", out],
        what="a run", example="./run", written="report.md",
        full_disk=_SPACE + "the run keeps every finished record; free space and run the same command to resume",
    ),
    "attention": Command(
        argv=lambda i, out: ["attention", i.image, "--model", str(i.models / "mono"), "--mllm", f"hf:{i.mllm}",
                             "--out", out, "--max-new-tokens", "2"],
        what="a report", example="./attention", written="attention.json",
        full_disk=_SPACE + "the previous files there are unchanged",
        needs_mllm=True,
    ),
}
# fmt: on


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Inputs]:
    """The fake backbone stands in for every backbone the commands build (fit and load alike)."""
    from eagle_iad.expert import fit, save

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("eagle_iad.expert.patchcore.build_backbone", lambda *args, **kwargs: FakeExtractor())
        root = tmp_path_factory.mktemp("command_outputs")
        for category in ("mono", "poly"):  # eval covers both elpv categories; a missing expert would be fitted
            cells = [s.path for s in get_layout("elpv").samples(None, category, "train")[:4]]
            expert = fit(cells, category, FAKE_CONFIG, extractor=FakeExtractor())
            save(expert.model, root / "models" / category)
        image = str(next(s for s in get_layout("elpv").samples(None, "mono", "test") if s.label == 1).path)
        mllm = None
        try:
            from eagle_iad.testing.tiny import build_tiny_qwen2_5_vl
        except ImportError:
            pass
        else:
            mllm = build_tiny_qwen2_5_vl(root / "qwen")
        yield Inputs(root / "models", image, mllm)


def _command(name: str, inputs: Inputs) -> Command:
    command = COMMANDS[name]
    if command.needs_mllm and inputs.mllm is None:
        pytest.skip("the tiny MLLM needs transformers, which is not installed")
    return command


@pytest.fixture(scope="module")
def previous(inputs: Inputs, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], tuple[int, Path]]:
    """``previous(name)``: run the command once into a missing deep folder; its exit code and output."""
    runs: dict[str, tuple[int, Path]] = {}

    def get(name: str) -> tuple[int, Path]:
        if name not in runs:
            out = tmp_path_factory.mktemp(f"previous_{name}") / "not" / "yet" / "there"
            runs[name] = (main(_command(name, inputs).argv(inputs, str(out))), out)
        return runs[name]

    return get


def _files(directory: Path) -> dict[str, bytes]:
    """Every file below ``directory`` (links not followed) and its bytes."""
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def _leftovers(directory: Path) -> list[Path]:
    return [p for p in directory.rglob(".*") if ".staging-" in p.name or ".tmp-" in p.name or ".old-" in p.name]


@pytest.fixture
def workspace(
    request: pytest.FixtureRequest, inputs: Inputs, previous: Callable[[str], tuple[int, Path]], tmp_path: Path
) -> tuple[str, Path]:
    """A copy of the command's previous output at ``tmp_path/previous``; the fake backbone is in place."""
    name = request.node.callspec.params["name"]
    code, out = previous(name)
    assert code == 0
    shutil.copytree(out, tmp_path / "previous")
    return name, tmp_path / "previous"


@pytest.fixture(autouse=True)
def fake_backbone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("eagle_iad.expert.patchcore.build_backbone", lambda *args, **kwargs: FakeExtractor())


NAMES = sorted(COMMANDS)


@pytest.mark.parametrize("name", NAMES)
def test_a_missing_deep_folder_is_created(
    name: str, inputs: Inputs, previous: Callable[[str], tuple[int, Path]]
) -> None:
    code, out = previous(name)
    assert code == 0
    assert list(out.glob(COMMANDS[name].written)), sorted(p.name for p in out.iterdir())
    assert not _leftovers(out.parents[2])


def _refusal(work: Path, prior: Path, case: str, command: Command) -> tuple[str, str]:
    """Set up ``case`` in ``work``; the ``--out`` to give and the exact message expected."""
    if case == "existing file":
        (work / "notes.txt").write_text("keep me")
        return str(work / "notes.txt"), f"{work / 'notes.txt'}: exists and is not a directory; refusing to replace it"
    if case == "current directory":
        os.chdir(prior)
        return ".", f".: is the current directory (or holds it); give a new folder such as {command.example}"
    if case == "filesystem root":
        return "/", f"/: refusing to write {command.what} over the filesystem root; give a new folder"
    assert case == "symlink to a folder"
    (work / "link").symlink_to(prior, target_is_directory=True)
    return str(work / "link"), f"{work / 'link'}: is a symbolic link; give the folder itself or a new folder"


@pytest.mark.parametrize("case", ["existing file", "current directory", "filesystem root", "symlink to a folder"])
@pytest.mark.parametrize("name", NAMES)
def test_a_place_it_must_not_write_is_refused_in_one_line(
    name: str,
    case: str,
    workspace: tuple[str, Path],
    inputs: Inputs,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    command = COMMANDS[name]
    out, expected = _refusal(tmp_path, workspace[1], case, command)
    before = _files(tmp_path)
    capsys.readouterr()
    assert main(command.argv(inputs, out)) == 2
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("", f"eagle: error: {expected}\n")
    assert _files(tmp_path) == before and not _leftovers(tmp_path)


@pytest.mark.parametrize("name", NAMES)
def test_an_unwritable_parent_is_refused_in_one_line(name: str, inputs: Inputs, tmp_path: Path) -> None:
    """A read-only folder holding the previous output: refused before any work, nothing in it changes."""
    command = _command(name, inputs)
    launcher = unprivileged_cli()
    locked = tmp_path / "locked"
    (locked / "previous").mkdir(parents=True)
    (locked / "previous" / "result.txt").write_text("an earlier result")
    # fit swaps a model folder whole, so the parent must be writable even for an existing folder there
    target = locked / "previous" if name == "fit" else locked / "new"
    before = _files(locked)
    os.chmod(locked, 0o555)
    try:
        env = {**os.environ, "PYTHONPATH": str(SRC)}
        result = subprocess.run([*launcher, *command.argv(inputs, str(target))], capture_output=True, text=True,
                                env=env, cwd=tmp_path, timeout=wait_s(300))  # fmt: skip
    finally:
        os.chmod(locked, 0o755)
    expected = f"{target}: cannot write in {locked} (permission denied)"
    assert (result.returncode, result.stdout, result.stderr) == (2, "", f"eagle: error: {expected}\n")
    assert _files(locked) == before and sorted(p.name for p in locked.iterdir()) == ["previous"]


@contextmanager
def _file_size_limit(limit: int) -> Iterator[None]:
    """Every write past ``limit`` bytes fails with EFBIG while the block runs (what a full disk does)."""
    resource = pytest.importorskip("resource")
    import signal

    if not hasattr(signal, "SIGXFSZ"):
        pytest.skip("no SIGXFSZ on this platform: a file size limit cannot stand in for a full disk")
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    if hard != resource.RLIM_INFINITY and hard < limit:
        pytest.skip(f"the hard file size limit ({hard}) is already below {limit} bytes")
    ignored = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, ignored)


@pytest.mark.parametrize("name", NAMES)
def test_a_full_disk_is_one_line_and_leaves_the_previous_output(
    name: str, workspace: tuple[str, Path], inputs: Inputs, capsys: pytest.CaptureFixture[str]
) -> None:
    command = COMMANDS[name]
    out = workspace[1]
    before = _files(out)
    capsys.readouterr()
    with _file_size_limit(64):
        code = main(command.argv(inputs, str(out)))
    err = capsys.readouterr().err
    assert code == 2, err
    # progress lines (a fit's "fitting ...", transformers' weight loading) may come first; the error is one line, last
    lines = err.splitlines()
    assert [line for line in lines if "error" in line.lower() or "Traceback" in line] == [lines[-1]], err
    assert lines[-1].startswith("eagle: error: ") and lines[-1].endswith(command.full_disk) and err.endswith("\n")
    assert _files(out) == before and not _leftovers(out.parent)


def test_a_full_disk_during_a_model_save_keeps_the_previous_model(inputs: Inputs, tmp_path: Path) -> None:
    """The save itself (not the fit's scratch) under the size limit: refused, the old model intact."""
    from eagle_iad.errors import OutputError
    from eagle_iad.expert import load, save

    target = Path(shutil.copytree(inputs.models / "mono", tmp_path / "mono"))
    before = _files(target)
    model = load(target)
    with _file_size_limit(64), pytest.raises(OutputError) as info:
        save(model, target)
    assert str(info.value) == f"{target}: cannot write the model (File too large); the previous model is unchanged"
    assert _files(target) == before and sorted(p.name for p in tmp_path.iterdir()) == ["mono"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["demo", "--out", "/"], "/: refusing to write a demo over the filesystem root; give a new folder"),
        (["demo", "--out", "notes.txt"], "notes.txt: exists and is not a directory; refusing to replace it"),
        (["demo", "--out", "."], ".: is the current directory (or holds it); give a new folder such as ./demo"),
        (["openapi", "--out", "/"], "/: is a directory; give a file name such as openapi.json"),
        (
            ["openapi", "--out", "notes.txt/api.json"],
            "notes.txt/api.json: cannot be created because notes.txt is not a directory",
        ),
    ],
)
def test_demo_and_openapi_outputs_are_checked_first(
    argv: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("keep me")
    assert main(argv) == 2
    assert capsys.readouterr().err == f"eagle: error: {message}\n"
    assert _files(tmp_path) == {"notes.txt": b"keep me"}


class _ClosedPipe:
    """Standard output whose reader went away (``eagle ... | head`` once head has its lines)."""

    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self) -> None:
        raise BrokenPipeError(32, "Broken pipe")


def test_a_reader_that_goes_away_ends_the_command_quietly(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``eagle ... | head``: standard output closed early ends the command with 141 (SIGPIPE's status, as
    ``cat`` has) and no BrokenPipeError traceback, for every command (handled once, in ``eagle_iad.cli.main``):
    what a command writes in one call and what is left in the buffer for the flush at its end alike."""
    import sys

    from eagle_iad.cli import main

    monkeypatch.setattr(sys, "stdout", _ClosedPipe())
    assert main(["openapi"]) == 141
    assert capsys.readouterr().err == ""


def _replace_stdout(monkeypatch: pytest.MonkeyPatch, fd: int) -> None:
    """Standard output on ``fd`` (a pipe's write end), closed at the test's end (a buffered text file)."""
    import io
    import sys

    stream = io.TextIOWrapper(io.BufferedWriter(io.FileIO(fd, "w", closefd=True)), encoding="utf-8")
    monkeypatch.setattr(sys, "stdout", stream)


def _openapi_does(monkeypatch: pytest.MonkeyPatch, body: Callable[[], None]) -> None:
    """``eagle openapi`` replaced by ``body``: any command's own work."""
    import eagle_iad.cli.serve as serve

    def run(args: object) -> int:
        body()
        return 0

    monkeypatch.setattr(serve, "_cmd_openapi", run)


def test_a_real_pipe_whose_reader_went_away_ends_quietly_written_or_not(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``eagle ... | head`` over a real pipe: the BrokenPipeError of a print to it, and of the flush of what
    is still buffered at the end, is 141 without a word; so is one the command raised while standard
    output is that closed pipe (it polls as an error)."""
    import sys

    from eagle_iad.cli import main

    def write_a_lot() -> None:
        for _ in range(2000):
            print("x" * 100)

    for body in (write_a_lot, lambda: print("short, still buffered"), _raise_broken_pipe):
        read, write = os.pipe()
        os.close(read)  # head has its lines
        _replace_stdout(monkeypatch, write)
        _openapi_does(monkeypatch, body)
        try:
            assert main(["openapi"]) == 141
        finally:
            with suppress(OSError):
                sys.stdout.close()
        assert capsys.readouterr().err == ""


def _raise_broken_pipe() -> None:
    raise BrokenPipeError(32, "Broken pipe")


def test_a_broken_pipe_that_is_not_standard_output_is_an_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A BrokenPipeError from anything but standard output (a subprocess's pipe, a dead worker's, a
    plugin's socket) is a failure, not a reader that went away: it reaches the interpreter as any other
    unexpected error does (its traceback, status 1), not a silent 141; with standard output a live pipe, a
    file or a stream of the caller's."""
    import sys

    from eagle_iad.cli import main

    def half_then_a_worker_dies() -> None:
        print("half the answer")
        _raise_broken_pipe()

    read, write = os.pipe()
    try:
        _replace_stdout(monkeypatch, write)
        _openapi_does(monkeypatch, half_then_a_worker_dies)
        with pytest.raises(BrokenPipeError):
            main(["openapi"])
        sys.stdout.close()
        assert os.read(read, 100) == b"half the answer\n"  # the reader is there: what was written reached it
    finally:
        os.close(read)
    _replace_stdout(monkeypatch, os.open(tmp_path / "out.txt", os.O_WRONLY | os.O_CREAT))
    with pytest.raises(BrokenPipeError):
        main(["openapi"])  # standard output a file
    sys.stdout.close()
    assert (tmp_path / "out.txt").read_text() == "half the answer\n"
    monkeypatch.undo()
    _openapi_does(monkeypatch, _raise_broken_pipe)
    with pytest.raises(BrokenPipeError):
        main(["openapi"])  # standard output is pytest's capture
    assert capsys.readouterr().err == ""


def test_export_help_says_what_its_scratch_holds(capsys: pytest.CaptureFixture[str]) -> None:
    """``eagle export --scratch`` said it held "a fit's features", which an export never writes."""
    with pytest.raises(SystemExit):
        main(["export", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())  # argparse wraps at the terminal's width
    assert (
        "--scratch DIR existing folder for scratch files (--format openvino: the ONNX graph before its conversion, "
        "about the size of the model's memory bank; --format onnx writes none; default: TMPDIR)"
    ) in help_text
    assert "features" not in help_text
    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    assert "(a fit's features: about 5 KiB per training patch; default: TMPDIR)" in " ".join(
        capsys.readouterr().out.split()
    )
