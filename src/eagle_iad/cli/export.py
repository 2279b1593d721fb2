"""``eagle export``: a fitted model as one ONNX or OpenVINO graph plus its sidecar (docs/DEPLOY.md)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from eagle_iad.choices import EXPORT_FORMATS
from eagle_iad.cli.flags import Subcommands, add_scratch
from eagle_iad.cli.printing import dumps


def add_export(sub: Subcommands) -> None:
    exp = sub.add_parser("export", help="a fitted model as an ONNX or OpenVINO graph with its sidecar (deploy)")
    exp.add_argument("--model", required=True, help="fitted model directory")
    exp.add_argument("--format", required=True, choices=EXPORT_FORMATS, help="graph format")
    exp.add_argument("--out", required=True, help="new folder for the graph and eagle-export.json")
    add_scratch(exp, "--format openvino: the ONNX graph before its conversion, about the size of the model's memory "
                "bank; --format onnx writes none")  # fmt: skip
    exp.set_defaults(func=_cmd_export)


def _cmd_export(args: argparse.Namespace) -> int:
    from eagle_iad.expert import load_expert
    from eagle_iad.expert.export import check_export_target, export_expert

    target = check_export_target(args.out, args.format)  # before the model loads and the export runs
    expert = load_expert(args.model)
    print(f"exporting {expert.model.category!r} as {args.format} to {target}", file=sys.stderr)
    record = export_expert(
        expert, args.format, target, report=lambda message: print(f"eagle: note: {message}", file=sys.stderr)
    )
    graph = record["graph"]
    print(
        dumps(
            {
                "export": str(target),
                "format": record["format"],
                "category": record["category"],
                "files": sorted([*graph["sha256"], "eagle-export.json"]),
                "external_data": graph["external_data"],
                "opset": graph["opset"],
                "input": graph["inputs"]["image"]["shape"],
                "tau": record["tau"],
                "s_max": record["s_max"],
            }
        )
    )
    return 0


#: The subcommands this module adds, by name (``eagle_iad.cli`` adds them in its fixed order).
COMMANDS: dict[str, Callable[[Subcommands], None]] = {"export": add_export}
