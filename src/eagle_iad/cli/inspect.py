"""``eagle inspect`` and ``eagle attention``: a fitted expert (and an MLLM) on image files."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from eagle_iad.choices import CONDITIONS, caas_rule
from eagle_iad.cli.flags import (
    Subcommands,
    add_caas,
    add_caas_mllm,
    add_force_caas,
    add_mllm,
    add_quiet,
    add_runtime,
    add_style,
    check_force_caas,
    mllm_spec,
    parse_layers,
)
from eagle_iad.cli.printing import dumps, print_warnings
from eagle_iad.errors import ConfigError
from eagle_iad.naming import printable
from eagle_iad.outputs import check_output_path, check_outputs, record_outputs, staged_folder, write_errors


def add_inspect(sub: Subcommands) -> None:
    inspect = sub.add_parser("inspect", help="score images with a fitted model, optionally ask an MLLM (EAGLE)")
    inspect.add_argument("images", nargs="+", help="image files")
    inspect.add_argument("--model", help="fitted model directory (required unless --mllm with --condition baseline)")
    inspect.add_argument(
        "--out",
        help="write the heatmap, the boxed picture and the nearest normal training image here; with --mllm also "
        "the visual prompt the MLLM was shown and, with --capture-attention, the attention overlays",
    )
    add_style(inspect)
    inspect.add_argument("--json", action="store_true", help="print verdicts as JSON")
    inspect.add_argument(
        "--candidates", action="store_true",
        help="on normal verdicts, draw the strongest regions as dashed yellow frames (never red boxes)",
    )  # fmt: skip
    add_quiet(inspect)
    add_runtime(inspect, "torch (a fitted model folder, default) or onnx/openvino (a folder written by 'eagle export')")
    add_mllm(
        inspect,
        "MLLM backend spec: hf:Qwen/Qwen2.5-VL-7B-Instruct or hf:/path/to/model (in-process; CAAS and "
        "attention capture), or openai:http://host:port/v1#model (an OpenAI-compatible server such as "
        "'eagle serve-mllm', vLLM, SGLang: no CAAS and no attention capture there; a CAAS request is answered "
        "without CAAS and reported as caas_unavailable in the verdict metadata, and --capture-attention is an error)",
    )
    add_caas_mllm(inspect)
    inspect.add_argument("--condition", default="eagle", choices=CONDITIONS, help="with --mllm (default eagle)")
    add_caas(inspect)
    add_force_caas(inspect)
    inspect.add_argument("--template", help="one-shot normal template image for the MLLM prompt")
    inspect.add_argument("--max-new-tokens", type=int, default=128)
    inspect.add_argument("--capture-attention", action="store_true", help="record attention on the query image")
    inspect.set_defaults(func=_cmd_inspect)


def _check_images(paths: Sequence[str | None]) -> None:
    """Decode every input once before a model loads: a bad file fails in a second, not after a minute, and every
    bad file is named in that one error (the first 10), so they are fixed in one go, not one run at a time."""
    from eagle_iad.images import decode_problems, unusable_error

    given = [path for path in paths if path is not None]
    for path in given:
        if Path(path).is_dir():  # else "not a regular file", which names no way out
            shown = printable(path).rstrip("/")
            raise ConfigError(f"{shown}: is a folder; eagle inspect takes image files (give {shown}/*.png)")
    unique = list(dict.fromkeys(given))
    problems = decode_problems(unique)  # one at a time: a few large images need not sit in memory together
    if problems:
        raise unusable_error(problems, len(unique), "images", "nothing was inspected")


def inspect_records(args: argparse.Namespace) -> list[Any]:
    """``eagle inspect``'s :class:`eagle_iad.record.InspectionRecord` per image, from the pipeline's
    orchestrator (the service's ``/v1/inspect`` uses the same one), pictures written under ``--out``.

    With an MLLM, ``--out`` receives the same expert pictures (when the condition runs the expert), the
    boxed visual prompt the MLLM was shown (when one was sent) and, with ``--capture-attention``, the
    attention overlays. A run that could write nothing there (``baseline`` runs no expert) is refused
    before any model loads rather than leaving ``--out`` empty without a word.
    """
    from eagle_iad.expert import load_versioned
    from eagle_iad.pipeline import inspect_records as run_pipeline

    check_force_caas(args.force_caas, args.mllm or args.caas_mllm, [args.condition])
    if not (args.mllm or args.caas_mllm):
        if not args.model:
            raise ConfigError("--model is required (or pass --mllm SPEC with --condition baseline)")
        out = None if args.out is None else check_output_path(args.out, "pictures", "./pictures")
        _check_images(args.images)
        if out is not None:
            from eagle_iad.expert.references import REFERENCE_SUFFIX

            _claim_pictures(out, args.images, ["_heatmap.png", f"_{args.style}.png", f"_reference{REFERENCE_SUFFIX}"])
        expert, version = load_versioned(args.model, args.runtime)
        if args.runtime != "torch":  # an older export's: no close calls, unrecognised images nor box patch scores
            print_warnings(expert.model.warnings)
        with write_errors(out or ".", "pictures written before it are complete (each is written whole or not at all)"):
            records = run_pipeline(
                expert, list(args.images), category=expert.model.category, out_dir=out, style=args.style,
                show_candidates=args.candidates, show_progress=not args.quiet, model_version=version,
            )  # fmt: skip
        if out is not None:  # only what was written goes on the ledger (no reference picture for an old model)
            record_outputs(out, [Path(p).name for r in records for p in r.pictures.values()])
        return records
    from eagle_iad.mllm import CaasSettings, load_backend
    from eagle_iad.pipeline import Eagle, EagleConfig

    spec = str(mllm_spec(args))
    out = None if args.out is None else check_output_path(args.out, "pictures", "./pictures")
    _check_images([*args.images, args.template])
    expert_runs = args.condition != "baseline"  # baseline is the MLLM alone: no expert, no boxes
    if out is not None and not (expert_runs or args.capture_attention):
        raise ConfigError(
            f"--out {printable(args.out)}: nothing to write there: condition baseline runs no expert (no heatmap, "
            "boxed picture or visual prompt); add --capture-attention for attention overlays, or leave --out out"
        )
    if out is not None:
        from eagle_iad.expert.references import REFERENCE_SUFFIX
        from eagle_iad.pipeline import VISUAL_PROMPT_SUFFIX

        suffixes = ["_heatmap.png", f"_{args.style}.png", f"_reference{REFERENCE_SUFFIX}", VISUAL_PROMPT_SUFFIX]
        _claim_pictures(
            out, args.images, suffixes if expert_runs else [], attention=args.capture_attention,
            inputs=[args.template] if args.template else [],
        )  # fmt: skip
    loaded, version = None, None
    if args.model:
        loaded, version = load_versioned(args.model, args.runtime)
    elif expert_runs:
        raise ConfigError(f"--model is required for condition {args.condition!r} (only 'baseline' runs without it)")
    config = EagleConfig(
        condition=args.condition,
        caas=CaasSettings(alpha=args.alpha, layers=parse_layers(args.caas_layers), phase=args.caas_phase),
        style=args.style,
        max_new_tokens=args.max_new_tokens,
        capture_attention=args.capture_attention,
        template_image=args.template,
        force_caas=args.force_caas,
    )
    backend = load_backend(spec)
    from eagle_iad.mllm.base import backend_warnings

    print_warnings(backend_warnings(backend))  # e.g. a tiny random test model: its answers are noise
    eagle = Eagle(loaded, backend, config)
    category = "" if loaded is None else loaded.model.category
    with write_errors(out or ".", "pictures written before it are complete"):
        records = run_pipeline(
            loaded, list(args.images), category=category, eagle=eagle, out_dir=out, style=args.style,
            show_candidates=args.candidates, model_version=version, prompt_pictures=True,
        )  # fmt: skip
    if out is not None:  # the overlays' layers are known only now: every written file goes on the ledger
        record_outputs(out, [Path(p).name for r in records for p in r.pictures.values()])
    return records


def _claim_pictures(
    out: Path, images: Sequence[str], suffixes: list[str], attention: bool = False, inputs: Sequence[str] = ()
) -> None:
    """Refuse before any work to write a picture over an input or a file eagle did not write (outputs.check_outputs).

    The names are those the pipeline will give (:func:`eagle_iad.naming.picture_stems` of the inputs);
    attention overlays are named by layer, so the ones already there must be eagle's own.
    """
    import glob

    from eagle_iad.naming import picture_stems

    stems = picture_stems(list(images))
    names = [stem + suffix for stem in stems for suffix in suffixes]
    if attention:
        names += [Path(p).name for stem in stems for p in glob.glob(str(out / f"{glob.escape(stem)}_attn_L*.png"))]
    # A folder an older eagle filled (no ledger yet) holds each input's heatmap: then its pictures are eagle's.
    legacy = [f"{stem}_heatmap.png" for stem in stems] if suffixes else []
    check_outputs(out, names, [*images, *inputs], legacy=legacy)


def _versioned(record: Any) -> dict[str, Any]:
    """The record's verdict with the model version that scored it (the record's ``model_version``, the key the
    service's records have): the number ``eagle versions`` lists as current; a version folder given as the model is
    its number; null without a model or for an export."""
    return {**record.verdict, "model_version": record.model_version}


def _cmd_inspect(args: argparse.Namespace) -> int:
    records = inspect_records(args)
    if not (args.mllm or args.caas_mllm):
        return _print_expert_verdicts(args, [{**_versioned(r), "warnings": r.warnings or []} for r in records])
    from eagle_iad.pipeline import CAAS_NOT_APPLIED, answered_by_line

    verdicts = []
    for record in records:
        verdict = _versioned(record)
        if args.out is not None:  # what was written for it, by kind (none: the notes below say why)
            verdict = {**verdict, "metadata": {**verdict["metadata"], "pictures": dict(record.pictures)}}
        verdicts.append({**verdict, "warnings": record.warnings or []})
    if args.json:
        print(dumps(verdicts))
        return 0
    for v in verdicts:
        expert_part = "" if v["score"] is None else (
            f"  expert {v['expert_decision']} score {v['score']:.3f} tau {v['tau']:.3f}"
        )  # fmt: skip
        caas = "  CAAS" if v["caas_applied"] else ""
        if caas and v["metadata"].get("caas_rule") == caas_rule(True):
            caas += f" ({caas_rule(True)})"
        if v["answered_by"].get("caas") == CAAS_NOT_APPLIED:
            caas = f"  CAAS {CAAS_NOT_APPLIED}"
        route = "" if v["answered_by"].get("route", "single") == "single" else f"  via {v['answered_by']['route']}"
        print(f"{printable(v['image'])}: {v['decision']} (answer {v['answer']}){expert_part}{caas}{route}  "
              f"reply {v['reply']!r}")  # fmt: skip
        print(f"    {answered_by_line(v['answered_by'])}")
        for warning in v.get("warnings") or []:
            print(f"    warning: {warning}")
        if args.out is not None:
            _print_mllm_pictures(args, v)
    return 0


def _print_mllm_pictures(args: argparse.Namespace, verdict: dict[str, Any]) -> None:
    """Each picture written for an MLLM verdict, and why an expected one is not there."""
    from eagle_iad.pipeline import VISUAL_PROMPT_NOTE

    pictures = verdict["metadata"].get("pictures") or {}
    for kind, path in pictures.items():
        print(f"    {kind}: {printable(path)}")
    note = verdict["metadata"].get(VISUAL_PROMPT_NOTE)  # the verdict's own reason, as --json carries it
    if note is not None and "visual_prompt" not in pictures:
        print(f"    visual_prompt: {note}")
    sliding = verdict["metadata"].get("sliding_window")
    if isinstance(sliding, dict) and any(kind.startswith("attention_L") for kind in pictures):
        print(f"    attention: {sliding['note']}")  # why those layers' overlays are flat
    if args.capture_attention and not any(kind.startswith("attention_L") for kind in pictures):
        note = verdict["metadata"].get("attention_note") or "the backend captured none"
        print(f"    attention: no overlays ({note})")


def _print_expert_verdicts(args: argparse.Namespace, verdicts: list[dict[str, Any]]) -> int:
    from eagle_iad.verdict import boxes_cut_below

    if args.json:
        print(dumps(verdicts))
        return 0
    for v in verdicts:
        band = " (low-confidence band)" if v["in_band"] else ""
        band += " (close call: look again)" if v.get("near_threshold") else ""
        if v.get("unrecognised"):
            band = f" (not like the training images: {v['foreign_share']:.0%} of it is beyond them; no boxes)"
        numbers = f"score {v['score']:.3f}  tau {v['tau']:.3f}  s_max {v['s_max']:.3f}"
        print(f"{printable(v['image'])}: {v['decision']}{band}  {numbers}")
        for warning in v.get("warnings") or []:
            print(f"    warning: {warning}")
        for rank, box in enumerate(v["boxes"], start=1):
            corners = f"x0={box['x0']} y0={box['y0']} x1={box['x1']} y1={box['y1']}"
            # the picture's tag shows the same number, to the same digits (render.box_tag)
            print(f"    box #{rank} {corners} score={box['strength']:.2f}")
        cut = boxes_cut_below(v)
        if cut is not None:  # the heatmap's legend marks the same cut ("boxes 110.10")
            why = "no region of the map reaches it" if v["map"]["max"] < v["map"]["map_tau"] else (
                "too few of the map's pixels reach it to make a region")  # fmt: skip
            print(f"    boxes: cut at {cut:.2f}, below the threshold {v['tau']:.2f}: {why}, so they mark its strongest "
                  "part (weak evidence)")  # fmt: skip
        for kind, path in v["pictures"].items():
            print(f"    {kind}: {printable(path)}")
        if v["reference"] is not None:
            why = "" if v["reference"]["unavailable"] is None else f" ({v['reference']['unavailable']})"
            print(f"    nearest normal training image: {printable(v['reference']['image'])}{why}")
    return 0


def add_attention(sub: Subcommands) -> None:
    attn = sub.add_parser("attention", help="per-layer attention on the image, plain MLLM vs EAGLE (docs/METHOD.md §4)")
    attn.add_argument("image", help="image file")
    attn.add_argument("--model", required=True, help="fitted expert model directory")
    add_mllm(attn, "MLLM backend spec, e.g. hf:/path/to/Qwen2.5-VL-7B-Instruct", required=True)
    attn.add_argument("--mask", help="ground-truth defect mask (same size as the image; non-zero = defect)")
    attn.add_argument("--out", required=True, help="directory for attention.json, curves.png and overlays")
    add_force_caas(attn)
    add_caas(attn)
    attn.add_argument("--layers", help="layers to draw as overlays (default: first/middle/last CAAS layer + last)")
    add_style(attn)
    attn.add_argument("--max-new-tokens", type=int, default=8, help="tokens to generate (>= 2; default 8)")
    attn.add_argument("--json", action="store_true", help="print attention.json")
    attn.set_defaults(func=_cmd_attention)


#: The files every attention report holds, and the one that marks a report written before output ledgers.
ATTENTION_FILES = ("attention.json", "curves.png", "overlays.png")
ATTENTION_MARKERS = ("attention.json",)


def _cmd_attention(args: argparse.Namespace) -> int:
    from eagle_iad.eval.attention_analysis import AnalysisConfig, analyze, load_inputs, write_report
    from eagle_iad.expert import load_expert
    from eagle_iad.mllm import CaasSettings, load_backend

    out = check_output_path(args.out, "a report", "./attention")
    config = AnalysisConfig(
        caas=CaasSettings(alpha=args.alpha, layers=parse_layers(args.caas_layers), phase=args.caas_phase),
        force_caas=args.force_caas,
        overlay_layers=parse_layers(args.layers, "--layers"),
        max_new_tokens=args.max_new_tokens,
        style=args.style,
    )
    rgb, mask = load_inputs(args.image, args.mask)  # a bad mask fails before any model loads
    inputs = [args.image, *([args.mask] if args.mask else [])]
    check_outputs(out, ATTENTION_FILES, inputs, legacy=ATTENTION_MARKERS)  # before the models load
    expert = load_expert(args.model)
    backend = load_backend(args.mllm)
    from eagle_iad.mllm.base import backend_warnings

    print_warnings(backend_warnings(backend))
    report = analyze(rgb, args.image, expert, backend, config, mask, args.mask, spec=args.mllm)
    if report.random_test_model:
        print(f"eagle: warning: {printable(args.mllm)} is a tiny random test model: its attention is noise; "
              "attention.json, curves.png and overlays.png are marked random_test_model", file=sys.stderr)  # fmt: skip
    with staged_folder(out, legacy=ATTENTION_MARKERS) as staging:
        staged = write_report(report, rgb, staging, mask)
    paths = {name: out / path.relative_to(staging) for name, path in staged.items()}
    if args.json:
        print(paths["attention"].read_text(encoding="utf-8"), end="")
        return 0
    caas = report.caas
    print(f"{printable(args.image)}: CAAS {'applied' if caas['applied'] else 'not applied'} ({caas['rule']} rule), "
          f"layers {caas['layers']}, alpha {caas['alpha']}")  # fmt: skip
    for condition, result in report.conditions.items():
        shares = " ".join(f"L{entry.layer}={entry.share:.3f}" for entry in result.layers)
        print(f"  {condition}: answer {result.verdict.answer}  share {shares}")
    print(f"wrote {len(paths)} files to {args.out}", file=sys.stderr)
    return 0


#: The subcommands this module adds, by name (``eagle_iad.cli`` adds them in its fixed order).
COMMANDS: dict[str, Callable[[Subcommands], None]] = {"inspect": add_inspect, "attention": add_attention}
