"""The ``eagle`` command: one thin subcommand per capability of the Python API.

Every user-caused problem surfaces as an :class:`EagleError` and is printed as one line
``eagle: error: ...`` with exit status 2; anything else is a bug and keeps its traceback.

One module per group of commands, each declaring its flags beside its handler (``fit``: fit,
threshold, info; ``inspect``: inspect, attention; ``evaluate``: eval-expert, eval, demo; ``export``;
``serve``: serve-mllm, serve, openapi; ``review``; ``teach``; ``keys``; ``db``; ``history``: delete, prune;
``versions``: versions, rollback, retire); the flags several commands share are declared once in ``flags``.
Only torch-free modules at the top of each: ``eagle --help``, ``--version`` and ``eagle info`` must start at
once, so each command imports what it needs inside its handler (tests/test_fresh_clone.py checks this).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from eagle_iad import __version__
from eagle_iad.cli import db, evaluate, export, fit, history, inspect, keys, review, serve, station, teach, versions
from eagle_iad.cli.flags import Parser, Subcommands, check_flag_ranges, library_bars_hidden
from eagle_iad.cli.inspect import inspect_records
from eagle_iad.cli.printing import dumps
from eagle_iad.cli.serve import SERVE_API_KEY_ENV
from eagle_iad.errors import EagleError, remote_cause
from eagle_iad.naming import printable
from eagle_iad.outputs import SPACE_ERRNOS, describe_write_error
from eagle_iad.registry import load_plugins
from eagle_iad.scratch import set_root as set_scratch_root
from eagle_iad.service.lock import set_holder as set_lock_holder
from eagle_iad.stops import Stopped, stop_on_signals

__all__ = ["COMMAND_ORDER", "SERVE_API_KEY_ENV", "build_parser", "dumps", "inspect_records", "main"]

#: The order ``eagle --help`` lists the commands in: the everyday ones first, as users met them.
COMMAND_ORDER: tuple[str, ...] = (
    "fit", "inspect", "export", "attention", "serve-mllm", "serve", "openapi",
    "station", "review", "teach", "keys", "db", "history", "eval-expert", "eval", "info", "threshold", "versions",
    "rollback", "retire", "demo",
)  # fmt: skip


def _commands() -> dict[str, Callable[[Subcommands], None]]:
    """Every command module's subcommands, by name; a module's command missing from the order is a bug."""
    found = {
        **fit.COMMANDS,
        **inspect.COMMANDS,
        **export.COMMANDS,
        **serve.COMMANDS,
        **evaluate.COMMANDS,
        **station.COMMANDS,
        **review.COMMANDS,
        **teach.COMMANDS,
        **versions.COMMANDS,
        **keys.COMMANDS,
        **db.COMMANDS,
        **history.COMMANDS,
    }
    assert sorted(found) == sorted(COMMAND_ORDER), "cli.COMMAND_ORDER must list every command once"
    return found


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="eagle", description="EAGLE-IAD: a PatchCore expert with label-free TGPS thresholds.")
    parser.add_argument("--version", action="version", version=f"eagle-iad {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    commands = _commands()
    for name in COMMAND_ORDER:
        commands[name](sub)
    return parser


#: The exit status when standard output's reader went away (``| head``): a command killed by SIGPIPE's.
BROKEN_PIPE_STATUS = 141


def _stdout_is_broken() -> bool:
    """Whether standard output is the pipe whose reader went away, after a BrokenPipeError: writing what is
    still buffered for it fails the same way, or (nothing buffered) the pipe reports an error: a pipe's
    write end with no reader left polls as ``POLLERR``. Any other broken pipe is the command's failure."""
    import os
    import select

    try:
        sys.stdout.flush()
    except BrokenPipeError:
        return True
    except (OSError, ValueError):  # closed or otherwise failing: not the reader going away
        return False
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # replaced by a caller (tests): its flush said it is fine
        return False
    if not hasattr(select, "poll"):
        return False
    try:
        import stat

        mode = os.fstat(fd).st_mode
        if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)):
            return False  # a file or a terminal: EPIPE does not come from writing to it
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))
    except OSError:
        return False


def _drop_stdout() -> None:
    """Point standard output at /dev/null, so the interpreter's last flush of what was still buffered for a
    closed pipe does not print "Exception ignored ... BrokenPipeError" after a quiet exit."""
    import os

    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # replaced by a caller (tests): nothing to flush at exit
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


def _command(args: argparse.Namespace) -> str:
    """The command being run, as a person typed it: ``eagle serve``, ``eagle station run``."""
    action = getattr(args, "action", None)
    return f"eagle {args.command}" + (f" {action}" if isinstance(action, str) else "")


def _stopped_what(args: argparse.Namespace) -> str:
    """What a stop cut short, for the one line ``main`` prints: the command and what it was writing."""
    parts = [f"eagle {args.command}"]
    for name in ("category", "model", "out", "models"):
        value = getattr(args, name, None)
        if isinstance(value, str):
            parts.append(f"--{name} {value}")
    return " ".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        load_plugins()  # before the parser: a plugin's threshold rule brings its own --flags
    except EagleError as exc:
        print(f"eagle: error: {exc}", file=sys.stderr)
        return 2
    parser = build_parser()
    args = parser.parse_args(argv)
    # One mechanism for every command, present and future: SIGINT and SIGTERM raise Stopped in the main
    # thread, so the command's own clean-up (scratch, staging, the previous model kept) runs as for any
    # error; then one line and the shell's status for a signal (130, 143). See eagle_iad/stops.py.
    with stop_on_signals():
        try:
            set_scratch_root(getattr(args, "scratch", None))
            set_lock_holder(_command(args))
            check_flag_ranges(args)
            with library_bars_hidden(bool(getattr(args, "quiet", False))):
                status = int(args.func(args))
            sys.stdout.flush()  # a reader that went away shows here, not as a traceback at exit
            return status
        except BrokenPipeError:  # `eagle ... | head`: the reader has what it wanted; stop as `cat` would
            if not _stdout_is_broken():  # a subprocess's pipe, a worker's, a plugin's socket: a real failure
                raise
            _drop_stdout()
            return BROKEN_PIPE_STATUS
        except Stopped as stop:
            what = stop.what or _stopped_what(args)
            print(f"eagle: stopped by {stop.signal_name}: {printable(what)}; nothing half-written was kept, "
                  "scratch and staging folders were removed", file=sys.stderr)  # fmt: skip
            return stop.exit_status
        except EagleError as exc:  # its message names the user's files: control characters shown escaped
            # One raised in a Ray worker and wrapped by Ray: its own message, not Ray's coloured traceback.
            print(f"eagle: error: {printable(str(remote_cause(exc)))}", file=sys.stderr)
            return 2
        except OSError as exc:
            if exc.errno not in SPACE_ERRNOS:
                raise  # not something the user can fix: a bug, keep the traceback
            print(f"eagle: error: {printable(describe_write_error(exc, 'a file'))}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:  # raised outside the main thread's handler (e.g. by a library)
            print("eagle: interrupted; nothing half-written was kept", file=sys.stderr)
            return 130
        finally:
            set_scratch_root(None)  # in-process callers (tests) get the default back
