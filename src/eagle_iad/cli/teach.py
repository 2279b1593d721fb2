"""``eagle teach``: fold normal images into a fitted model without a refit (docs/USAGE.md, "Teaching").

The images are files or folders (every image inside, sorted); with the service's history flags the
history's labels guard the teach: an image labelled defective there is refused, and every labelled
defect whose image the service kept is rescored with the taught model before it is saved.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from eagle_iad.cli.db import add_history_flags, cli_actor, files_folder, open_history
from eagle_iad.cli.flags import Subcommands, add_quiet
from eagle_iad.cli.printing import dumps, print_warnings

if TYPE_CHECKING:
    from eagle_iad.expert.teach import LabelledImage


def add_teach(sub: Subcommands) -> None:
    teach = sub.add_parser(
        "teach",
        help="fold normal images (false alarms, a new batch) into a fitted model in seconds, on the record",
        description="Embed only the new images, grow the memory bank by the fit's own rule and recompute tau, "
        "s_max and the map scale, then save the model atomically with a history entry (who, when, why, the images, "
        "tau before and after). An image that scores far above the training images, one the model calls "
        "unrecognised (not like the training images), or one the history labels defective, is refused unless "
        "--force; so is a teach after which a labelled defect would pass. An image taught although it scores above "
        "s_max is named in a warning.",
    )
    teach.add_argument("images", nargs="+", help="normal image files, or folders of them")
    teach.add_argument("--model", required=True, help="fitted model directory (changed in place)")
    teach.add_argument("--why", required=True, help="why these images are normal (kept in the model's history)")
    teach.add_argument(
        "--by",
        help="who teaches, if not the login name: recorded as given here, "
        "'cli:<login name> as NAME' (default: 'cli:<login name>')",
    )
    teach.add_argument("--force", action="store_true", help="teach even what the guards refuse (recorded)")
    add_quiet(teach, "no progress lines")
    add_history_flags(teach)
    teach.set_defaults(func=_cmd_teach)


def _images(arguments: list[str]) -> list[Path]:
    from eagle_iad.data import is_listed_image
    from eagle_iad.errors import ConfigError

    paths: list[Path] = []
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if is_listed_image(p, path))
            if not found:
                raise ConfigError(f"{path}: no images in this folder; nothing was taught")
            paths += found
        elif path.is_file():
            paths.append(path)
        else:
            raise ConfigError(f"{path}: no such file or folder; nothing was taught")
    return paths


def _cmd_teach(args: argparse.Namespace) -> int:
    from eagle_iad.expert.teach import TeachImage, teach

    images = [TeachImage(str(path), path) for path in _images(args.images)]
    digests: dict[str, str] = {}
    labelled: list[LabelledImage] = []
    if args.models or args.state_dir or args.db or args.history:
        from eagle_iad.errors import ConfigError
        from eagle_iad.service.teaching import history_guard

        store = open_history(args)
        pictures = files_folder(args)
        if not pictures.is_dir():
            store.close()
            raise ConfigError(f"no pictures folder at {pictures}: give the service's --state-dir, so the labelled "
                              "images can be checked")  # fmt: skip
        try:
            # The service names a category by its model's folder, whatever the manifest says.
            digests, labelled = history_guard(store, pictures, Path(args.model).resolve().name)
        finally:
            store.close()

    def progress(stage: str, done: int, total: int) -> None:
        if done == total:
            print(f"{stage}: {done}/{total}", file=sys.stderr)

    result = teach(args.model, images, why=args.why, by=cli_actor(args.by), force=args.force,
                   labelled_defective=digests, labelled=labelled,
                   progress=None if args.quiet else progress)  # fmt: skip
    entry = result.entry
    # The teach's own (an image taught although it scored above s_max), then the model's.
    warnings = [*(entry["warnings"] or []), *result.model.warnings]
    print_warnings(warnings)
    skipped = [{"image": name, "why": why}
               for name, why in zip(entry["skipped"] or [], entry["skipped_why"] or [], strict=True)]  # fmt: skip
    for item in skipped:
        print(f"eagle: skipped {item['image']}: {item['why']}", file=sys.stderr)
    print(dumps({
        "model": args.model, "change": entry["change"], "version": entry.get("version"), "images": len(entry["images"]),
        "tau": entry["after"]["tau"], "previous_tau": entry["before"]["tau"], "s_max": entry["after"]["s_max"],
        "bank_size": entry["bank_after"], "previous_bank_size": entry["bank_before"], "rescored": entry["rescored"],
        "labelled": entry["labelled"], "defects_passing": entry["defects_passing"],
        "forced": entry["forced"], "skipped": skipped, "seconds": round(result.seconds, 2), "warnings": warnings,
    }))  # fmt: skip
    return 0


COMMANDS: dict[str, Callable[[Subcommands], None]] = {"teach": add_teach}
