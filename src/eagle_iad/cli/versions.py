"""``eagle versions``, ``eagle rollback`` and ``eagle retire``: a model's numbered versions, going back to one,
and retiring a category whole.

Every fit, threshold change, teach and rollback saves a numbered version inside the model's folder
(expert/versions.py); these commands list them with what made each, and make an earlier one current.
``eagle retire`` moves a service's category folder, every version with it, into ``<models>/.retired/``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

from eagle_iad.cli.db import add_history_flags, cli_actor, cli_audit, history_location, state_folder
from eagle_iad.cli.flags import Subcommands
from eagle_iad.cli.printing import dumps, print_warnings


def add_versions(sub: Subcommands) -> None:
    versions = sub.add_parser("versions", help="a model's versions: what made each (fit, threshold, teach, rollback)",
                              description="Every fit, threshold change, teach and rollback is a numbered version "
                              "kept in the model's folder, sharing unchanged files by hard link.")  # fmt: skip
    versions.add_argument("--model", required=True, help="fitted model directory")
    versions.add_argument("--json", action="store_true", help="the versions as JSON")
    versions.add_argument("--verify", action="store_true",
                          help="also read every version's tensor file and list one whose SHA-256 differs from "
                          "what its model.json records as damaged (slower: reads them whole)")  # fmt: skip
    versions.set_defaults(func=_cmd_versions)


def add_rollback(sub: Subcommands) -> None:
    rollback = sub.add_parser("rollback", help="make an earlier version of a model current again, on the record",
                              description="Saves version N's model (bank, images, thresholds) as a new version "
                              "that says it rolled back, atomically; nothing is deleted.")  # fmt: skip
    rollback.add_argument("--model", required=True, help="fitted model directory")
    rollback.add_argument("--to", type=int, required=True, metavar="N", help="the version to go back to")
    rollback.add_argument("--why", required=True, help="why (kept in the model's history)")
    rollback.add_argument(
        "--by",
        help="who, if not the login name: recorded as given here, "
        "'cli:<login name> as NAME' (default: 'cli:<login name>')",
    )
    rollback.set_defaults(func=_cmd_rollback)


def add_retire(sub: Subcommands) -> None:
    retire = sub.add_parser("retire", help="retire a category of a service's models folder (moved to .retired/)",
                            description="Moves <models>/NAME whole (every version, its taught images) to "
                            "<models>/.retired/NAME-<UTC time>/ in one rename, audited as DELETE "
                            "/v1/categories/NAME; undo by moving it back. For a stopped service: while one runs "
                            "on this state folder, retire through it (it knows its stations and fits).")  # fmt: skip
    retire.add_argument("name", help="the category (its folder's name under --models)")
    add_history_flags(retire)
    retire.set_defaults(func=_cmd_retire)


#: The API route ``eagle retire`` stands for: its audit row reads as the API's (``GET /v1/audit``).
RETIRE_ROUTE = "/v1/categories/{name}"


def _cmd_retire(args: argparse.Namespace) -> int:
    """What ``DELETE /v1/categories/{name}`` does, for a models folder no service on this machine runs now: the
    stations the history keeps and the fits it records still running (on a replica) refuse it, naming them."""
    from datetime import UTC, datetime

    from eagle_iad.errors import ConfigError
    from eagle_iad.expert.store import is_model_folder, recover_model, retire_model
    from eagle_iad.naming import category_name_problem
    from eagle_iad.service.access import Role
    from eagle_iad.service.jobs import fit_lock, job_lock
    from eagle_iad.service.lock import StateLock
    from eagle_iad.service.store import InspectionStore
    from eagle_iad.station.outbox import StationTables

    if not args.models:
        raise ConfigError("--models: give the service's models folder (the category is a folder in it)")
    problem = category_name_problem(args.name)
    if problem is not None:
        raise ConfigError(problem)
    directory = Path(args.models) / args.name
    recover_model(directory)
    if not is_model_folder(directory):
        raise ConfigError(f"{directory}: is not a fitted model folder; nothing was retired")
    folder = state_folder(args)
    lock = None
    if folder is not None and folder.is_dir():
        lock = StateLock(folder)
        try:
            lock.acquire()  # a service (or eagle station run) on this folder holds it for its life
        except ConfigError as exc:
            raise ConfigError(f"{exc}; retire the category through it instead: DELETE /v1/categories/{args.name} "
                              "with an admin key (it checks its stations and fits)") from None  # fmt: skip
    try:
        store = None
        location = history_location(args)
        if "://" in location or Path(location).is_file():
            store = InspectionStore(location)
        try:
            specs = [] if store is None else StationTables(store).specs()
            users = [f"station {name!r}" for name, spec, _ in specs if spec.get("category") == args.name]
            if users:
                raise ConfigError(f"category {args.name!r} is in use by {', '.join(users)} (kept in the history): "
                                  "delete those stations, or change their category, then retire it")  # fmt: skip
            lease = None if store is None else store.backend.try_lock(fit_lock(args.name))
            if store is not None and lease is None:
                raise ConfigError(f"category {args.name!r} is in use: a fit of it is queued or running on a replica "
                                  "sharing this history; wait for it to end, then retire it")  # fmt: skip
            try:
                if store is not None:
                    for job_id, text in store.read("SELECT id, record FROM fit_jobs"):
                        record = json.loads(text)
                        if record.get("category") != args.name or record.get("state") not in ("queued", "running"):
                            continue
                        alive = store.backend.try_lock(job_lock(str(job_id)))
                        if alive is None:  # its replica holds its lock: it runs
                            raise ConfigError(f"category {args.name!r} is in use: fit job {job_id} is queued or "
                                              "running on a replica sharing this history; wait for it to end, "
                                              "then retire it")  # fmt: skip
                        alive.release()
                moved = retire_model(directory)
            finally:
                if lease is not None:
                    lease.release()
            where = moved.relative_to(os.path.abspath(args.models)).as_posix()
            if store is not None:
                kept, _ = store.page(0, 0, category=args.name)
                when = datetime.now(UTC).isoformat(timespec="milliseconds")
                cli_audit(args, store, when, Role.admin, "DELETE", RETIRE_ROUTE,
                          RETIRE_ROUTE.replace("{name}", args.name), 200,
                          f"retired {args.name}: moved to {where}; {kept} inspection(s) kept in the history "
                          "(eagle retire)")  # fmt: skip
        finally:
            if store is not None:
                store.close()
    finally:
        if lock is not None:
            lock.release()
    print(dumps({"name": args.name, "retired_to": where,
                 "undo": f"mv {Path(args.models) / where} {directory}"}))  # fmt: skip
    return 0


#: Tensor files from this size on are hashed with a progress bar on stderr (``--verify``): a smaller one is read
#: in well under a second, and a bar for it would only flicker.
PROGRESS_BYTES = 64 << 20


def _hash_with_progress(path: Path) -> str:
    """:func:`~eagle_iad.file_hash.file_sha256`, with a bar on stderr (stdout is the listing) for a big file."""
    from tqdm import tqdm

    from eagle_iad.file_hash import file_sha256

    size = path.stat().st_size
    if size < PROGRESS_BYTES:
        return file_sha256(path)
    where = f"{path.parent.name}/{path.name}" if path.parent.parent.name == "versions" else path.name
    with tqdm(total=size, desc=f"eagle versions: hashing {where}", unit="B", unit_scale=True, file=sys.stderr,
              leave=False, dynamic_ncols=True) as bar:  # fmt: skip
        return file_sha256(path, progress=bar.update)


def _cmd_versions(args: argparse.Namespace) -> int:
    from eagle_iad.expert.store import recover_model
    from eagle_iad.expert.versions import disk_use, read_versions
    from eagle_iad.naming import printable

    recover_model(args.model)
    listed, damaged = read_versions(args.model, verify=args.verify, hasher=_hash_with_progress)
    if args.json:
        print(dumps({"model": args.model, "versions": listed, "damaged": damaged, "disk_bytes": disk_use(args.model)}))
        return 0
    lines = []
    for version in listed:
        what = str(version["action"])
        if version.get("images_added"):
            what += f" +{len(version['images_added'])} images"
        if version.get("forced"):  # the guards it overrode, each in its refusal's words
            what += f" FORCED ({printable('; '.join(str(r) for r in version['forced']))})"
        if version.get("to") is not None:
            what += f" to {version['to']}"
        # Who and why are anyone's words (the service takes them too): a newline or an escape sequence in
        # them would forge a line or act on the terminal, so they are shown escaped.
        who = f" by {printable(str(version['by']))}" if version.get("by") else ""
        why = f": {printable(str(version['why']))}" if version.get("why") else ""
        mark = "*" if version["current"] else " "
        size = f"{version['train_images']} images, bank {version['bank_size']}"
        added = f"+{version['bytes_added'] / 1e6:.1f} MB"
        head = f"{mark}{version['version']:>4}  {version['at']}  {what}{who}{why}"
        lines.append((int(version["version"]), f"{head}  tau {version['tau']:.6g}  {size}  {added}"))
    for broken in damaged:
        lines.append((int(broken["version"]), f"!{broken['version']:>4}  damaged: {printable(str(broken['problem']))}"))
    for _, line in sorted(lines):
        print(line)
    note = f", {len(damaged)} damaged (!: cannot be rolled back to)" if damaged else ""
    print(f"{len(listed)} versions{note}, {disk_use(args.model) / 1e6:.1f} MB on disk (* = current)")
    return 0


def _cmd_rollback(args: argparse.Namespace) -> int:
    from eagle_iad.expert.store import rollback

    model, entry = rollback(args.model, to=args.to, why=args.why, by=cli_actor(args.by))
    print_warnings(model.warnings)
    # previous_tau is null where the model rolled back from could not be read (the rollback recovered it).
    print(dumps({"model": args.model, "rolled_back_to": args.to, "tau": model.thresholds.tau,
                 "previous_tau": entry["before"].get("tau"), "train_images": len(model.train_images),
                 "warnings": model.warnings}))  # fmt: skip
    return 0


COMMANDS: dict[str, Callable[[Subcommands], None]] = {
    "versions": add_versions,
    "rollback": add_rollback,
    "retire": add_retire,
}
