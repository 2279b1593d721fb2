"""``eagle station run|status|retry``: stations declared in a TOML file (docs/STATIONS.md)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from eagle_iad.cli.flags import Subcommands, add_log_timestamps, add_quiet
from eagle_iad.cli.printing import dumps


def add_station(sub: Subcommands) -> None:
    station = sub.add_parser("station", help="run stations: a hot folder in, verdicts out to folders and webhooks")
    actions = station.add_subparsers(dest="action", required=True)
    run = actions.add_parser("run", help="run the file's stations until stopped (SIGTERM, Ctrl-C)")
    run.add_argument("file", help="stations.toml (docs/STATIONS.md)")
    run.add_argument("--until-idle", action="store_true",
                     help="stop once no image waits and every verdict is delivered or a dead letter")  # fmt: skip
    add_quiet(run, "no line per image (start-up, pauses and dead letters are still reported)")
    add_log_timestamps(run)
    run.set_defaults(func=_cmd_run)
    status = actions.add_parser("status", help="each station's counts, backlog, latency, sinks and warnings (JSON)")
    status.add_argument("file", help="stations.toml")
    status.set_defaults(func=_cmd_status)
    retry = actions.add_parser("retry", help="put dead letters back in their sinks' queues")
    retry.add_argument("file", help="stations.toml")
    retry.add_argument("--station", help="only this station's (a name the file declares)")
    retry.add_argument("--sink", help="only this sink's (a sink the file declares, or one still in the outbox)")
    retry.set_defaults(func=_cmd_retry)


def _cmd_run(args: argparse.Namespace) -> int:
    from eagle_iad.service.lock import set_state_knob
    from eagle_iad.station.config import read_stations
    from eagle_iad.station.runner import run_stations
    from eagle_iad.stops import Stopped

    stations = read_stations(Path(args.file))
    set_state_knob(f"state folder ('state =' in {args.file})")  # this command has no --state-dir to change
    options: dict[str, Any] = {}
    if args.log_timestamps:
        options["log"] = _timestamped_logs()
    try:
        run_stations(stations, until_idle=args.until_idle, quiet=args.quiet, **options)
    except Stopped as stop:  # what run_stations' stop did (StationManager.stop; docs/STATIONS.md says the same)
        stop.what = stopped_station_what(args.file, stations.settings().shutdown_grace_s)
        raise
    return 0


def _timestamped_logs() -> Callable[[str], None]:
    """``eagle station run --log-timestamps``: its own lines, and the engine's (``eagle_iad.*``) warnings, which
    Python prints bare without a handler, each led by its time (:mod:`eagle_iad.cli.logs`)."""
    import logging
    import sys

    from eagle_iad.cli.logs import Timestamped, stamped

    engine = logging.getLogger("eagle_iad")
    if not any(isinstance(handler.formatter, Timestamped) for handler in engine.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(Timestamped(logging.Formatter("%(message)s")))  # as Python's last resort prints them
        handler.setLevel(logging.WARNING)
        engine.addHandler(handler)
        engine.propagate = False

    def line(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    return stamped(line)


def stopped_station_what(file: str, grace_s: float) -> str:
    """What a stopped ``eagle station run`` did: each station finished the image it held (stored and put
    away), unless that took past the grace period, when the image stays in its source for the next start;
    no other image was taken; verdicts not delivered wait in the outbox."""
    return (f"eagle station run {file}: the image being inspected was finished (stored and put away), or, not "
            f"finished within the {grace_s:g} s grace period, stays for the next start; no other image was taken, "
            "and undelivered verdicts wait in the outbox")  # fmt: skip


def _cmd_status(args: argparse.Namespace) -> int:
    from eagle_iad.station.config import read_stations
    from eagle_iad.station.parts import source_says
    from eagle_iad.station.status import counts_files, file_changed, open_read_only, read_intake, station_status

    # a model folder or hot folder gone is no reason to refuse the figures: it is when they are needed (the station
    # waits for it; the figures' warnings say so)
    stations = read_stations(Path(args.file), fitted=False, looking=True)
    settings = stations.settings()
    if not stations.has_run():
        print(dumps([{"station": s.name, "state": "never run"} for s in stations.stations]))
        return 0
    db = open_read_only(settings.history_url)
    try:
        files = counts_files(settings.history_url, db)  # read-only: a history not upgraded yet is read as it is
        shown = []
        for config in stations.stations:  # the state as the process running it says: running, waiting: <why>
            intake = read_intake(settings.state_dir, config.name)
            state = "not running" if intake is None else intake.state()
            figures = station_status(db, config, intake, files=files)
            missing = stations.unfitted(config)
            if missing is not None:  # first: what keeps the station from starting, or its intake from going on
                figures["warnings"].insert(0, f"{missing}: the station cannot start, and a running one takes no image "
                                              "until it is there again")  # fmt: skip
            looked = source_says(config.source)  # a camera's frames folder it cannot write
            if looked is not None and (intake is None or intake.source_warning is None):
                # what the file and folders say now (a camera's frames folder this user cannot write), where the
                # process running it says nothing of its source: the status answers, rather than failing on it
                figures["warnings"].insert(0, f"source: {looked}")
            changed = file_changed(intake, stations.digest, stations.path)
            if changed is not None:  # the figures are of the file now: what runs is another
                figures["warnings"].insert(0, changed)
            shown.append({"station": config.name, "state": state, **figures})
        print(dumps(shown))
    finally:
        db.close()
    return 0


def _cmd_retry(args: argparse.Namespace) -> int:
    import sys

    from eagle_iad.service.store import InspectionStore
    from eagle_iad.station.config import read_stations
    from eagle_iad.station.outbox import StationTables
    from eagle_iad.station.parts import StationConfigError

    # Owed deliveries need no model: a model folder gone (a category being refitted, a models folder moved) is no
    # reason to keep the verdicts already made from their sinks.
    stations = read_stations(Path(args.file), fitted=False)
    if args.station is not None:
        stations.named(args.station)
    if args.sink is not None and not stations.has_run():  # no outbox yet: the file's sinks only
        stations.check_sink(args.sink, args.station, [])
    if not stations.has_run():  # opening the history would create the state folder for nothing
        raise StationConfigError(f"{stations.path}: nothing to retry: no station of this file has run yet (no "
                                 f"history at {stations.settings().database})")  # fmt: skip
    store = InspectionStore(stations.settings().history_url)
    try:
        tables = StationTables(store)
        # this file's stations only: a shared history (PostgreSQL) holds other files' stations and their rows
        names = [args.station] if args.station is not None else [config.name for config in stations.stations]
        if args.sink is not None:  # a sink removed from the file may still have rows in the outbox
            stations.check_sink(args.sink, args.station, tables.outbox_sinks(names))
        count = tables.requeue_dead(names, args.sink)
    finally:
        store.close()
    print(f"eagle station retry: {count} dead letter{'' if count == 1 else 's'} back in their queues", file=sys.stderr)
    return 0


COMMANDS: dict[str, Callable[[Subcommands], None]] = {"station": add_station}
