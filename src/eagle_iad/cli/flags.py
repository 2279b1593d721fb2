"""The flags several commands share, each declared once, and what they mean once parsed.

Why one place: a flag declared per command drifts (one help text edited, another not; a default
changed in one command only). A command module calls these beside its own flags, so a subcommand's
help still lists its options in the order the module adds them. Torch-free: the help screens use it.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeAlias

from eagle_iad.choices import CAAS_PHASES, DEFAULT_ALPHA, DEFAULT_CAAS_PHASE, RENDER_STYLES, RUNTIMES
from eagle_iad.data import layout_names
from eagle_iad.errors import ConfigError
from eagle_iad.fit_options import MAX_SEED
from eagle_iad.ranges import Range


class Parser(argparse.ArgumentParser):
    """``eagle``'s parsers: no abbreviated long flags (``allow_abbrev=False``).

    Why: argparse takes any unambiguous prefix of a flag, so ``eagle serve --model models`` ran as ``--models``
    and a flag added later could make a prefix someone scripted ambiguous, or mean another flag. A class, not
    a keyword at each call: every subparser made by ``add_subparsers`` (``eagle serve``, ``eagle keys add``) is of
    its parent's class, so each command, present and future, gets it too (argparse copies no such keyword).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)


#: What ``ArgumentParser.add_subparsers`` returns: each command module adds its subcommands to it.
Subcommands: TypeAlias = "argparse._SubParsersAction[Parser]"

CAAS_MLLM_HELP = (
    "in-process backend for the inspections in the expert's low-confidence band (tau <= score < s_max), where "
    "CAAS applies; --mllm (e.g. a vLLM engine, openai:URL#model) answers all others. Same weights in both (checked: "
    "two different models are refused). "
    "Without it an openai: --mllm answers band inspections too, recorded as CAAS 'not applied (backend cannot)'"
)
LOG_LEVELS = ["critical", "error", "warning", "info", "debug"]


def add_data_args(parser: argparse.ArgumentParser) -> None:
    """``--data``, ``--layout``, ``--category``: one category of a dataset on disk (read by :func:`data_root`)."""
    parser.add_argument(
        "--data",
        help="dataset root (--layout elpv: none for the packaged cells, or a folder holding its own labels.csv)",
    )
    parser.add_argument("--layout", required=True, choices=layout_names(), help="dataset layout")
    parser.add_argument("--category", required=True, help="category (product) name")


def data_root(value: str | None, layout: str) -> Path | None:
    """``--data`` as a path; only the elpv layout (packaged cells) may go without it.

    elpv reads ``--data`` only as a folder holding its own ``labels.csv`` (a copy or a subset of the cells)
    and ignores anything else: such a ``--data`` is refused rather than silently replaced by the packaged
    cells.
    """
    if value is None:
        if layout != "elpv":
            raise ConfigError(f"--data is required for layout {layout!r}")
        return None
    if layout == "elpv":
        from eagle_iad.data.elpv import LABELS_FILE

        if not (Path(value) / LABELS_FILE).is_file():
            raise ConfigError(
                f"--layout elpv reads --data only as a folder holding its own {LABELS_FILE} (a copy or subset of "
                f"the cells); {value} has none, so it would be ignored: leave --data out to use the packaged cells"
            )
    return Path(value)


#: What a fit keeps in scratch: the commands that fit (fit, eval-expert's missing experts, demo, serve) say so.
FIT_SCRATCH = "a fit's features: about 5 KiB per training patch"


def add_scratch(parser: argparse.ArgumentParser, holds: str = FIT_SCRATCH) -> None:
    """``--scratch``: :func:`eagle_iad.cli.main` points the scratch root there before the command runs.

    ``holds``: what this command writes there and how much, so a user can size the folder (``export``
    keeps no features, only an OpenVINO export's intermediate graph).
    """
    parser.add_argument(
        "--scratch",
        metavar="DIR",
        help=f"existing folder for scratch files ({holds}; default: TMPDIR); stale scratch left by killed runs is "
        "removed there first (docs/OPERATIONS.md)",
    )


def add_quiet(parser: argparse.ArgumentParser, help: str = "no progress bars") -> None:
    parser.add_argument("--quiet", action="store_true", help=help)


#: huggingface_hub's switch for every progress bar it and transformers draw, read when it is imported: set for the
#: processes a quiet command starts (an executor's workers), which import it afresh.
HF_BARS_ENV = "HF_HUB_DISABLE_PROGRESS_BARS"


@contextlib.contextmanager
def library_bars_hidden(quiet: bool) -> Iterator[None]:
    """While a ``--quiet`` command runs, the libraries' own bars are hidden too, not only ours.

    Why: transformers draws "Loading weights: 0%| ... 81/81" on stderr when an MLLM loads, so
    ``eagle inspect --mllm ... --quiet`` still printed a bar though ``--quiet`` promises none. Its bars
    and huggingface_hub's share one switch (transformers.utils.logging.disable_progress_bar turns both
    off). Restored afterwards, so an in-process caller (a test, a notebook) keeps its own setting.
    """
    if not quiet:
        yield
        return
    # The module by its path: ``huggingface_hub.utils.tqdm`` as an attribute is the bar class it defines. Light (no
    # torch); a transformers dependency.
    hub_utils = importlib.import_module("huggingface_hub.utils.tqdm")

    was_disabled = hub_utils.are_progress_bars_disabled()
    old_env = os.environ.get(HF_BARS_ENV)
    hub_utils.disable_progress_bars()
    if "transformers.utils.logging" in sys.modules:  # imported already: its own flag was read at its import
        sys.modules["transformers.utils.logging"].disable_progress_bar()
    os.environ[HF_BARS_ENV] = "1"
    try:
        yield
    finally:
        if old_env is None:
            os.environ.pop(HF_BARS_ENV, None)
        else:
            os.environ[HF_BARS_ENV] = old_env
        if not was_disabled:
            if "transformers.utils.logging" in sys.modules:  # imported meanwhile, with the bars off: on again
                sys.modules["transformers.utils.logging"].enable_progress_bar()
            hub_utils.enable_progress_bars()


def add_mllm(parser: argparse.ArgumentParser, help: str, *, required: bool = False) -> None:
    """``--mllm SPEC``; each command says what the MLLM is for there, so the help text is the caller's."""
    parser.add_argument("--mllm", required=required, help=help)


def add_caas_mllm(parser: argparse.ArgumentParser) -> None:
    """``--caas-mllm SPEC``: the band inspections' in-process backend beside ``--mllm`` (:func:`mllm_spec`)."""
    parser.add_argument("--caas-mllm", help=CAAS_MLLM_HELP)


def mllm_spec(args: argparse.Namespace) -> str | None:
    """``--mllm`` alone, or with ``--caas-mllm`` the hybrid spec that routes band inspections to CAAS."""
    from eagle_iad.mllm import hybrid_spec

    if args.caas_mllm is not None and not args.mllm:
        raise ConfigError("--caas-mllm needs --mllm (the serving engine for the inspections outside the band)")
    return None if not args.mllm else hybrid_spec(args.mllm, args.caas_mllm)


def add_caas(parser: argparse.ArgumentParser, *, layers: bool = True) -> None:
    """``--alpha``, ``--caas-phase`` and (unless ``layers`` is False) ``--caas-layers`` (:func:`parse_layers`)."""
    parser.add_argument("--alpha", type=float, default=DEFAULT_ALPHA, help="CAAS alpha (default %(default)s)")
    parser.add_argument(
        "--caas-phase",
        choices=CAAS_PHASES,
        default=DEFAULT_CAAS_PHASE,
        help="when CAAS scales: 'all' = prefill and decoding, so the first answer token too; 'decode' = "
        "decoding steps only, as the reference attention-editing tool (default %(default)s; docs/METHOD.md)",
    )
    if layers:
        parser.add_argument("--caas-layers", help="CAAS layers, comma-separated 0-based (default: model's band)")


#: ``--force-caas``'s one help text (``eagle inspect``, ``eagle eval``, ``eagle attention``).
FORCE_CAAS_HELP = (
    "apply CAAS in the eagle condition on every image, not only in the expert's low-confidence band (tau <= score "
    "< s_max), to look at its effect on any image; recorded as caas_rule 'forced' (else 'band'): not the product's rule"
)


def add_force_caas(parser: argparse.ArgumentParser) -> None:
    """``--force-caas`` (``args.force_caas``): declared once, so the commands that take it say the same, and
    what it is recorded as (:func:`eagle_iad.choices.caas_rule`) is read from the same place."""
    parser.add_argument("--force-caas", action="store_true", help=FORCE_CAAS_HELP)


def check_force_caas(force: bool, mllm: str | None, conditions: tuple[str, ...] | list[str]) -> None:
    """``--force-caas`` that could not act is refused (:class:`ConfigError`) rather than recorded as if it had: it
    needs an MLLM and the ``eagle`` condition (the only one that applies CAAS). ``eagle inspect`` and ``eagle eval``
    check it here, before anything loads."""
    if not force:
        return
    if not mllm:
        raise ConfigError("--force-caas needs --mllm: CAAS sharpens the MLLM's attention (the expert alone has none)")
    if "eagle" not in conditions:
        raise ConfigError(
            f"--force-caas acts in the eagle condition only (CAAS is never applied in {', '.join(conditions)}); "
            "ask for the eagle condition, or leave --force-caas out"
        )


def parse_layers(value: str | None, option: str = "--caas-layers") -> tuple[int, ...] | None:
    """A comma-separated list of layer indices (None: the flag was not given)."""
    if value is None:
        return None
    try:
        layers = tuple(int(part) for part in value.split(",") if part.strip())
    except ValueError as exc:
        raise ConfigError(f"{option} must be comma-separated layer indices, got {value!r}") from exc
    if not layers:
        raise ConfigError(f"{option} is empty")
    return layers


def add_runtime(parser: argparse.ArgumentParser, help: str) -> None:
    """``--runtime``: where inspections run; the caller says what the models folder must then hold."""
    parser.add_argument("--runtime", default="torch", choices=RUNTIMES, help=help)


def add_style(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--style", default="box", choices=RENDER_STYLES, help="visual prompt style")


def add_log_level(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--log-level", default="info", choices=LOG_LEVELS)


def add_log_timestamps(parser: argparse.ArgumentParser) -> None:
    """``--log-timestamps``, declared once for every command that runs until stopped (``eagle serve``, ``eagle
    serve-mllm``, ``eagle station run``); :mod:`eagle_iad.cli.logs` says why and the form."""
    parser.add_argument("--log-timestamps", action="store_true",
                        help="start each log line with its time (ISO 8601, local time with its UTC offset, to "
                        "the millisecond), for a log kept in a file; journald and docker logs -t add their "
                        "own")  # fmt: skip


#: The range of every numeric flag outside the fit options and the service settings (which carry their
#: own), by argparse ``dest``: checked once, in :func:`eagle_iad.cli.main`, for whichever command has the
#: flag, before its handler runs, so a negative ``--limit`` or a NaN ``--alpha`` is one line, exit 2.
FLAG_RANGES: dict[str, Range] = {
    "alpha": Range(0, 1000),
    "max_new_tokens": Range(1, 65536),
    "limit": Range(1, None),
    "limit_test": Range(1, None),
    "seed": Range(0, MAX_SEED),
    "expected_revision": Range(0, None),  # eagle review label: a label revision (0: never labelled)
    "ray_workers": Range(1, 4096),
    "ray_gpus_per_worker": Range(0, 1024),
}


def check_flag_ranges(args: argparse.Namespace) -> None:
    """:class:`ConfigError` naming the first numeric flag outside :data:`FLAG_RANGES`.

    ``eagle fit``'s numeric flags are fit options, checked by their own table (eagle_iad/fit_options.py).
    """
    if getattr(args, "command", None) == "fit":
        return
    for dest, allowed in FLAG_RANGES.items():
        value = getattr(args, dest, None)
        if isinstance(value, int | float) and not isinstance(value, bool):
            allowed.check("--" + dest.replace("_", "-"), value)
