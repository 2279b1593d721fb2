"""The ``eagle`` command: one thin subcommand per capability of the Python API.

Every user-caused problem surfaces as an :class:`EagleError` and is printed as one line
``eagle: error: ...`` with exit status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np

from eagle_iad import __version__
from eagle_iad.atomic import atomic_write_text

# Only torch-free modules at the top: `eagle --help`, `--version` and `eagle info` must start at once.
# Each command imports what it needs inside its function (tests/test_fresh_clone.py checks this).
from eagle_iad.choices import (
    CONDITIONS,
    DEFAULT_ALPHA,
    EXECUTORS,
    EXPORT_FORMATS,
    RENDER_STYLES,
    RUNTIMES,
)
from eagle_iad.data import get_layout, layout_names, select_test, select_training
from eagle_iad.errors import ConfigError, EagleError, OutputError
from eagle_iad.fit_options import config_overrides, fit_options, parse_fit_options
from eagle_iad.naming import category_name_problem, printable
from eagle_iad.outputs import (
    SPACE_ERRNOS,
    check_output_path,
    claim_outputs,
    describe_write_error,
    record_outputs,
    staged_folder,
    write_errors,
)
from eagle_iad.registry import load_plugins
from eagle_iad.scratch import set_root as set_scratch_root
from eagle_iad.stops import Stopped, stop_on_signals


def _data_root(value: str | None, layout: str) -> Path | None:
    if value is None:
        if layout != "elpv":
            raise ConfigError(f"--data is required for layout {layout!r}")
        return None
    return Path(value)


def _add_data_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", help="dataset root (not needed for --layout elpv)")
    parser.add_argument("--layout", required=True, choices=layout_names(), help="dataset layout")
    parser.add_argument("--category", required=True, help="category (product) name")


def _add_scratch_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scratch",
        metavar="DIR",
        help="existing folder for scratch files (a fit's features: about 5 KiB per training patch; default: "
        "TMPDIR); stale scratch left by killed runs is removed there first (docs/OPERATIONS.md)",
    )


def _stopped_what(args: argparse.Namespace) -> str:
    """What a stop cut short, for the one line ``main`` prints: the command and what it was writing."""
    parts = [f"eagle {args.command}"]
    for name in ("category", "model", "out", "models"):
        value = getattr(args, name, None)
        if isinstance(value, str):
            parts.append(f"--{name} {value}")
    return " ".join(parts)


def _finite(value: Any) -> Any:
    """``value`` with every NaN or infinity replaced by None (JSON has neither)."""
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def dumps(value: Any) -> str:
    """Indented JSON that is always valid JSON: non-finite numbers become null, never ``NaN``."""
    return json.dumps(_finite(value), indent=2, allow_nan=False)


def _cmd_fit(args: argparse.Namespace) -> int:
    from eagle_iad.expert import ExpertConfig, fit, save
    from eagle_iad.expert.store import check_replaceable

    check_replaceable(args.out)  # refuse a folder that is not ours before minutes of work, not after
    problem = category_name_problem(args.category)
    if problem is not None:  # the service could never serve it
        raise ConfigError(problem)
    given = {o.name: getattr(args, o.name) for o in fit_options() if getattr(args, o.name, None) is not None}
    preset, overrides = config_overrides(parse_fit_options(given))
    config = ExpertConfig.from_preset(preset, **overrides)
    config.validate()  # every setting a model could not be used with is refused now, before the data is read
    layout = get_layout(args.layout)
    samples = layout.samples(_data_root(args.data, args.layout), args.category, "train")
    samples = select_training(samples, args.limit_train, config.seed)
    print(f"fitting {args.category!r} on {len(samples)} normal images with {config.backbone}", file=sys.stderr)
    expert = fit([s.path for s in samples], args.category, config, show_progress=not args.quiet)
    out = save(expert.model, args.out)
    model = expert.model
    for warning in model.warnings:
        print(f"eagle: warning: {warning}", file=sys.stderr)
    summary = {
        "model": str(out),
        "category": model.category,
        "train_images": len(model.train_images),
        "bank_size": int(model.bank.shape[0]),
        "rule": model.thresholds.rule,
        "tau": model.thresholds.tau,
        "s_max": model.thresholds.s_max,
        "timings_s": {k: round(v, 2) for k, v in model.timings.items()},
        "warnings": model.warnings,
    }
    print(dumps(summary))
    return 0


def _parse_layers(value: str | None, option: str = "--caas-layers") -> tuple[int, ...] | None:
    if value is None:
        return None
    try:
        layers = tuple(int(part) for part in value.split(",") if part.strip())
    except ValueError as exc:
        raise ConfigError(f"{option} must be comma-separated layer indices, got {value!r}") from exc
    if not layers:
        raise ConfigError(f"{option} is empty")
    return layers


def _check_images(paths: Sequence[str | None]) -> None:
    """Decode every input once before a model loads: a bad file fails in a second, not after a minute."""
    from eagle_iad.images import load_rgb

    for path in paths:
        if path is not None:
            load_rgb(path)


def _mllm_spec(args: argparse.Namespace) -> str | None:
    """``--mllm`` alone, or with ``--caas-mllm`` the hybrid spec that routes band inspections to CAAS."""
    from eagle_iad.mllm import hybrid_spec

    if args.caas_mllm is not None and not args.mllm:
        raise ConfigError("--caas-mllm needs --mllm (the serving engine for the inspections outside the band)")
    return None if not args.mllm else hybrid_spec(args.mllm, args.caas_mllm)


def inspect_records(args: argparse.Namespace) -> list[Any]:
    """``eagle inspect``'s :class:`eagle_iad.record.InspectionRecord` per image, from the pipeline's
    orchestrator (the service's ``/v1/inspect`` uses the same one), pictures written under ``--out``.

    With an MLLM, ``--out`` receives the attention overlays (``--capture-attention``) only, as before.
    """
    from eagle_iad.expert import load_expert
    from eagle_iad.pipeline import inspect_records as run_pipeline

    if not (args.mllm or args.caas_mllm):
        if not args.model:
            raise ConfigError("--model is required (or pass --mllm SPEC with --condition baseline)")
        out = None if args.out is None else check_output_path(args.out, "pictures", "./pictures")
        _check_images(args.images)
        if out is not None:
            from eagle_iad.expert.references import REFERENCE_SUFFIX

            _claim_pictures(out, args.images, ["_heatmap.png", f"_{args.style}.png", f"_reference{REFERENCE_SUFFIX}"])
        expert = load_expert(args.model, args.runtime)
        with write_errors(out or ".", "pictures written before it are complete (each is written whole or not at all)"):
            return run_pipeline(
                expert, list(args.images), category=expert.model.category, out_dir=out, style=args.style,
                show_candidates=args.candidates, show_progress=not args.quiet,
            )  # fmt: skip
    from eagle_iad.mllm import CaasSettings, load_backend
    from eagle_iad.pipeline import Eagle, EagleConfig

    spec = str(_mllm_spec(args))
    out = None if args.out is None else check_output_path(args.out, "pictures", "./pictures")
    _check_images([*args.images, args.template])
    if out is not None and args.capture_attention:
        _claim_pictures(out, args.images, [], attention=True, inputs=[args.template] if args.template else [])
    loaded = None
    if args.model:
        loaded = load_expert(args.model, args.runtime)
    elif args.condition != "baseline":
        raise ConfigError(f"--model is required for condition {args.condition!r} (only 'baseline' runs without it)")
    config = EagleConfig(
        condition=args.condition,
        caas=CaasSettings(alpha=args.alpha, layers=_parse_layers(args.caas_layers)),
        style=args.style,
        max_new_tokens=args.max_new_tokens,
        capture_attention=args.capture_attention,
        template_image=args.template,
    )
    eagle = Eagle(loaded, load_backend(spec), config)
    category = "" if loaded is None else loaded.model.category
    attention_out = out if args.capture_attention else None
    with write_errors(attention_out or ".", "pictures written before it are complete"):
        records = run_pipeline(
            loaded, list(args.images), category=category, eagle=eagle, out_dir=attention_out, style=args.style,
            expert_pictures=False,
        )  # fmt: skip
    if attention_out is not None:  # the overlays' layers are known only now: recorded as this command's files
        record_outputs(attention_out, [Path(p).name for r in records for k, p in r.pictures.items()
                                       if k.startswith("attention_L")])  # fmt: skip
    return records


def _claim_pictures(
    out: Path, images: Sequence[str], suffixes: list[str], attention: bool = False, inputs: Sequence[str] = ()
) -> None:
    """Refuse before any work to write a picture over an input or a file eagle did not write (outputs.claim_outputs).

    The names are those the pipeline will give (:func:`eagle_iad.naming.picture_stems` of the inputs);
    attention overlays are named by layer, so the ones already there must be eagle's own.
    """
    import glob

    from eagle_iad.naming import picture_stems

    stems = picture_stems(list(images))
    names = [stem + suffix for stem in stems for suffix in suffixes]
    if attention:
        names += [Path(p).name for stem in stems for p in glob.glob(str(out / f"{glob.escape(stem)}_attn_L*.png"))]
    claim_outputs(out, names, [*images, *inputs])


def _cmd_inspect(args: argparse.Namespace) -> int:
    records = inspect_records(args)
    if not (args.mllm or args.caas_mllm):
        return _print_expert_verdicts(args, [r.verdict for r in records])
    from eagle_iad.pipeline import CAAS_NOT_APPLIED

    verdicts = []
    for record in records:
        verdict = record.verdict
        if args.out is not None and args.capture_attention and verdict["attention"] is not None:
            overlays = {kind: path for kind, path in record.pictures.items() if kind.startswith("attention_L")}
            verdict = {**verdict, "metadata": {**verdict["metadata"], "pictures": overlays}}
        verdicts.append(verdict)
    if args.json:
        print(dumps(verdicts))
        return 0
    for v in verdicts:
        expert_part = "" if v["score"] is None else (
            f"  expert {v['expert_decision']} score {v['score']:.3f} tau {v['tau']:.3f}"
        )  # fmt: skip
        caas = "  CAAS" if v["caas_applied"] else ""
        if v["answered_by"].get("caas") == CAAS_NOT_APPLIED:
            caas = f"  CAAS {CAAS_NOT_APPLIED}"
        route = "" if v["answered_by"].get("route", "single") == "single" else f"  via {v['answered_by']['route']}"
        print(f"{printable(v['image'])}: {v['decision']} (answer {v['answer']}){expert_part}{caas}{route}  "
              f"reply {v['reply']!r}")  # fmt: skip
    return 0


def _print_expert_verdicts(args: argparse.Namespace, verdicts: list[dict[str, Any]]) -> int:
    if args.json:
        print(dumps(verdicts))
        return 0
    for v in verdicts:
        band = " (low-confidence band)" if v["in_band"] else ""
        numbers = f"score {v['score']:.3f}  tau {v['tau']:.3f}  s_max {v['s_max']:.3f}"
        print(f"{printable(v['image'])}: {v['decision']}{band}  {numbers}")
        for rank, box in enumerate(v["boxes"], start=1):
            corners = f"x0={box['x0']} y0={box['y0']} x1={box['x1']} y1={box['y1']}"
            print(f"    box #{rank} {corners} score={box['score']:.3f}")
        for kind, path in v["pictures"].items():
            print(f"    {kind}: {printable(path)}")
        if v["reference"] is not None:
            why = "" if v["reference"]["unavailable"] is None else f" ({v['reference']['unavailable']})"
            print(f"    nearest normal training image: {printable(v['reference']['image'])}{why}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    """``eagle export``: the fitted model as one ONNX or OpenVINO graph plus its sidecar (docs/DEPLOY.md)."""
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


def _cmd_attention(args: argparse.Namespace) -> int:
    from eagle_iad.eval.attention_analysis import AnalysisConfig, analyze, load_inputs, write_report
    from eagle_iad.expert import load_expert
    from eagle_iad.mllm import CaasSettings, load_backend

    out = check_output_path(args.out, "a report", "./attention")
    config = AnalysisConfig(
        caas=CaasSettings(alpha=args.alpha, layers=_parse_layers(args.caas_layers)),
        force_caas=args.force_caas,
        overlay_layers=_parse_layers(args.layers, "--layers"),
        max_new_tokens=args.max_new_tokens,
        style=args.style,
    )
    rgb, mask = load_inputs(args.image, args.mask)  # a bad mask fails before any model loads
    expert = load_expert(args.model)
    report = analyze(rgb, args.image, expert, load_backend(args.mllm), config, mask, args.mask)
    with staged_folder(out) as staging:
        staged = write_report(report, rgb, staging, mask)
    paths = {name: out / path.relative_to(staging) for name, path in staged.items()}
    if args.json:
        print(paths["attention"].read_text(encoding="utf-8"), end="")
        return 0
    caas = report.caas
    print(f"{args.image}: CAAS {'applied' if caas['applied'] else 'not applied'} ({caas['rule']} rule), "
          f"layers {caas['layers']}, alpha {caas['alpha']}")  # fmt: skip
    for condition, result in report.conditions.items():
        shares = " ".join(f"L{entry.layer}={entry.share:.3f}" for entry in result.layers)
        print(f"  {condition}: answer {result.verdict.answer}  share {shares}")
    print(f"wrote {len(paths)} files to {args.out}", file=sys.stderr)
    return 0


#: Environment variable holding the bearer key ``eagle serve-mllm`` requires (unset: no key). An
#: environment variable, not a flag, so the key does not show up in ``ps`` output or shell history.
SERVE_API_KEY_ENV = "EAGLE_SERVE_API_KEY"


def _cmd_serve_mllm(args: argparse.Namespace) -> int:
    import ipaddress

    import uvicorn

    from eagle_iad.mllm import load_backend, parse_spec, served_model_name
    from eagle_iad.mllm.server import create_mllm_app

    if args.queue < 1:
        raise ConfigError(f"--queue must be at least 1, got {args.queue}")
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be 0..65535, got {args.port}")
    options: dict[str, Any] = {}
    if args.device:
        if parse_spec(args.mllm).scheme != "hf":
            raise ConfigError("--device applies to hf: backends only")
        options["device"] = args.device
    backend = load_backend(args.mllm, **options)
    name = args.served_model_name or served_model_name(args.mllm)
    api_key = os.environ.get(SERVE_API_KEY_ENV) or None
    app = create_mllm_app(
        backend, model_name=name, queue_size=args.queue, max_tokens_limit=args.max_tokens_limit, api_key=api_key
    )
    try:
        loopback = ipaddress.ip_address(args.host).is_loopback
    except ValueError:
        loopback = args.host == "localhost"
    if not loopback and api_key is None:
        print(
            f"eagle: warning: serving on {args.host} without authentication; anyone who can reach this address "
            f"can use the model (set {SERVE_API_KEY_ENV} to require a bearer key)",
            file=sys.stderr,
        )
    print(f"serving {backend.name} as model {name!r} on http://{args.host}:{args.port}/v1", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    """``eagle serve``: build the service app from the options and run it with uvicorn."""
    import ipaddress

    import uvicorn

    from eagle_iad.service import ServiceSettings, create_app

    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be 0..65535, got {args.port}")
    for option, value in (("--max-upload-mb", args.max_upload_mb), ("--mllm-queue", args.mllm_queue),
                          ("--max-inspections", args.max_inspections), ("--max-pixels", args.max_pixels),
                          ("--max-zip-files", args.max_zip_files), ("--max-zip-mb", args.max_zip_mb),
                          ("--max-zip-ratio", args.max_zip_ratio), ("--max-fit-jobs", args.max_fit_jobs)):  # fmt: skip
        if value < 1:
            raise ConfigError(f"{option} must be at least 1, got {value}")
    if args.min_free_mb < 0:
        raise ConfigError(f"--min-free-mb must be at least 0, got {args.min_free_mb}")
    models = Path(args.models)
    if models.exists() and not models.is_dir():
        raise ConfigError(f"--models {models} is not a directory")
    if args.data_root is not None and not Path(args.data_root).is_dir():
        raise ConfigError(f"--data-root {args.data_root} is not a directory")
    if args.web is not None and not (Path(args.web) / "index.html").is_file():
        raise ConfigError(f"--web {args.web} holds no index.html (build the console with 'make web')")
    settings = ServiceSettings(
        models_dir=models,
        state_dir=Path(args.state_dir) if args.state_dir else models.parent / "eagle-service",
        data_root=args.data_root,
        runs_dir=args.runs,
        db_path=args.db,
        web_dir=args.web,
        mllm=_mllm_spec(args),
        runtime=args.runtime,
        api_key=ServiceSettings.api_key_from_env(),
        max_upload_bytes=args.max_upload_mb * 1024 * 1024,
        max_pixels=args.max_pixels,
        mllm_queue=args.mllm_queue,
        max_inspections=args.max_inspections,
        max_zip_files=args.max_zip_files,
        max_zip_bytes=args.max_zip_mb * 1024 * 1024,
        max_zip_ratio=args.max_zip_ratio,
        max_fit_jobs=args.max_fit_jobs,
        min_free_bytes=args.min_free_mb * 1024 * 1024,
    )
    app = create_app(settings)
    try:
        loopback = ipaddress.ip_address(args.host).is_loopback
    except ValueError:
        loopback = args.host == "localhost"
    if not loopback and settings.api_key is None:
        print(
            f"eagle: warning: serving on {args.host} without authentication (set EAGLE_API_KEY to require a key)",
            file=sys.stderr,
        )
    print(f"eagle service on http://{args.host}:{args.port} (history: {settings.database})", file=sys.stderr)
    state = app.state.service

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            # At the signal, not after the open requests: running fits start stopping now (their event
            # streams end with them), in a thread because this handler may interrupt a database write.
            threading.Thread(target=state.jobs.stop, name="eagle-stop", daemon=True).start()
            super().handle_exit(sig, frame)

    # uvicorn catches SIGINT/SIGTERM itself: it stops accepting, answers (or after the grace cuts) the open
    # requests, runs the app's shutdown (fit jobs stopped, history closed), then raises the signal again,
    # which main's handler turns into Stopped.
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level=args.log_level,
                            timeout_graceful_shutdown=settings.shutdown_grace_s)  # fmt: skip
    try:
        Server(config).run()
    except Stopped as stop:
        jobs = state.jobs.interrupted
        stop.what = f"eagle serve --models {args.models} ({jobs} fit job{'s' * (jobs != 1)} interrupted)"
        if state.jobs_left_running:  # past the grace period: their records say interrupted; do not wait
            print(f"eagle: stopped by {stop.signal_name}: {stop.what}; fit jobs still running after the "
                  f"{settings.shutdown_grace_s} s grace period: {state.jobs_left_running}, abandoned (their scratch "
                  "is removed at the next start)", file=sys.stderr, flush=True)  # fmt: skip
            sys.stdout.flush()
            os._exit(stop.exit_status)
        raise
    return 0


def _cmd_openapi(args: argparse.Namespace) -> int:
    """``eagle openapi``: the service's OpenAPI document, from which the TypeScript client is generated."""
    import tempfile

    from eagle_iad.service import ServiceSettings, create_app

    target = None if args.out in (None, "-") else Path(args.out)
    if target is not None:  # checked before the app is built: a bad path fails at once
        if target.is_dir():
            raise OutputError(f"{args.out}: is a directory; give a file name such as openapi.json")
        below = next((p for p in target.parents if os.path.lexists(p)), None)
        if below is not None and not below.is_dir():
            raise OutputError(f"{args.out}: cannot be created because {below} is not a directory")
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(ServiceSettings(models_dir=Path(tmp), state_dir=Path(tmp) / "state"))
        document = json.dumps(app.openapi(), indent=2, sort_keys=True) + "\n"
        app.state.service.close()
    if target is None:
        sys.stdout.write(document)
        return 0
    with write_errors(target, "the previous file is unchanged"):
        atomic_write_text(target, document)
    return 0


def _cmd_eval_expert(args: argparse.Namespace) -> int:
    from eagle_iad.eval.expert_eval import evaluate_expert, write_evaluation
    from eagle_iad.expert import load_expert
    from eagle_iad.images import probe

    out = check_output_path(args.out, "a report", "./report")
    samples = get_layout(args.layout).samples(_data_root(args.data, args.layout), args.category, "test")
    samples = select_test(samples, args.limit_test, args.seed)
    for sample in samples:  # headers only (cheap): a bad image or mask fails before the model loads
        probe(sample.path)
        if sample.mask_path is not None:
            probe(sample.mask_path)
    expert = load_expert(args.model)
    start = time.perf_counter()
    evaluation = evaluate_expert(expert, samples, show_progress=not args.quiet)
    with staged_folder(out) as staging:
        write_evaluation(expert, evaluation, staging)
    summary = evaluation.summary()
    if evaluation.defects_without_mask and any(s.mask_path is not None for s in samples):
        print(f"eagle: warning: {evaluation.defects_without_mask} of {evaluation.n_anomalous} defect images have "
              "no mask; pixel AUROC and AUPRO leave them out", file=sys.stderr)  # fmt: skip
    summary["seconds"] = round(time.perf_counter() - start, 2)
    print(dumps(summary))
    print(f"wrote {Path(args.out) / 'report.md'} (metrics.json, histogram.png, boxes_grid.png)", file=sys.stderr)
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from eagle_iad.eval.executors import make_executor
    from eagle_iad.eval.experiment import ExperimentConfig, run_experiment
    from eagle_iad.eval.protocol import parse_conditions

    out = check_output_path(args.out, "a run", "./run")
    if args.layout != "elpv" and args.data is None:
        raise ConfigError(f"--data is required for layout {args.layout!r}")

    def absolute(path: str | None) -> str | None:
        # Absolute paths make the config hash and the record keys independent of the working directory.
        return None if path is None else str(Path(path).resolve())

    config = ExperimentConfig(
        layout=args.layout,
        data=absolute(args.data),
        models=str(Path(args.models).resolve()),
        conditions=parse_conditions(args.conditions),
        mllm=_mllm_spec(args),
        mmad_json=absolute(args.mmad_json),
        shots=args.shots,
        tasks=args.tasks,
        attention=args.attention,
        limit=args.limit,
        limit_train=args.limit_train,
        max_new_tokens=args.max_new_tokens,
        alpha=args.alpha,
        seed=args.seed,
    )
    executor = make_executor(args.executor, args.ray_address, args.ray_workers, args.ray_gpus_per_worker)
    start = time.perf_counter()
    with write_errors(out, "the run keeps every finished record; free space and run the same command to resume"):
        metrics = run_experiment(config, out, executor)
    for condition, entry in metrics["mllm"]["conditions"].items():
        acc = entry["overall"]["anomaly"]["accuracy"]
        print(f"{condition}: anomaly accuracy {'–' if acc is None else f'{100 * acc:.2f}%'}")
    print(f"wrote {Path(args.out) / 'report.md'} in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from eagle_iad.expert.manifest import read_manifest

    manifest: dict[str, Any] = read_manifest(args.model)
    if manifest["schema_version"] == 1:  # read as the paper's setting (store.OLDEST_SCHEMA)
        manifest["config"].update(preprocess="center-crop", region_rule="paper", position_baseline=False)
    manifest["training"].pop("images", None)
    manifest["training"].pop("scores", None)
    print(dumps(manifest))
    return 0


def _who() -> str:
    """The user name recorded with a threshold change when ``--by`` is not given."""
    import getpass

    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name (a container without a passwd entry)
        return f"uid {os.getuid()}" if hasattr(os, "getuid") else "unknown"


def _cmd_threshold(args: argparse.Namespace) -> int:
    """``eagle threshold``: change tau on the record, restore an earlier one, or show the record."""
    from eagle_iad.expert.store import change_threshold, load

    if args.tau is None and args.restore is None:
        model = load(args.model)
        print(dumps({"model": args.model, "thresholds": model.thresholds.to_dict(), "history": model.history}))
        return 0
    if args.why is None:
        raise ConfigError("--why is required: say why the threshold changes (it is kept in the model's history)")
    model, entry = change_threshold(args.model, tau=args.tau, restore=args.restore, why=args.why,
                                    by=args.by or _who())  # fmt: skip
    print(dumps({"model": args.model, "change": entry["change"], "tau": model.thresholds.tau,
                 "previous_tau": entry["before"]["tau"], "rule": model.thresholds.rule}))  # fmt: skip
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from eagle_iad.demo import run_demo

    out = check_output_path(args.out, "a demo", "./demo")
    with write_errors(out, "files written before it are complete"):
        report = run_demo(
            out,
            train_limit=args.limit_train,
            test_limit=args.limit_test,
            show_progress=not args.quiet,
            size=args.size,
            coreset_ratio=args.coreset_ratio,
        )
    print(f"demo report: {report}")
    return 0


def _add_fit_options(expert: argparse.ArgumentParser, evidence: argparse._ArgumentGroup) -> None:
    """One flag per row of the fit options table (eagle_iad/fit_options.py), defaults stated there.

    Every flag defaults to None so only what the user gave overrides the preset.
    """
    for option in fit_options():
        target = evidence if option.group == "evidence" else expert
        flags = [option.flag, *("--" + alias.replace("_", "-") for alias in option.aliases)]
        plural = "s" if len(option.rules) > 1 else ""
        used_by = f"; read by rule{plural} {', '.join(option.rules)}" if option.rules else ""
        default = "" if option.default is None else f" (default {option.default})"
        allowed = "" if option.range is None else f"; allowed {option.range}"
        help_text = f"{option.help}{used_by}{allowed}{default}"
        if option.aliases:
            help_text += f"; {', '.join(flags[1:])} is its old name"
        if option.open_choices and option.choices:
            help_text += f"; built in: {', '.join(option.choices)} (a plugin may add more)"
        if option.kind is bool:
            target.add_argument(*flags, dest=option.name, action="store_true", default=None, help=help_text)
        else:
            target.add_argument(*flags, dest=option.name, type=option.kind, default=None,
                                choices=None if option.open_choices else option.choices,
                                help=help_text)  # fmt: skip


CAAS_MLLM_HELP = (
    "in-process backend for the inspections in the expert's low-confidence band (tau <= score < s_max), where "
    "CAAS applies; --mllm (e.g. a vLLM engine, openai:URL#model) answers all others. Same weights in both. "
    "Without it an openai: --mllm answers band inspections too, recorded as CAAS 'not applied (backend cannot)'"
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eagle", description="EAGLE-IAD: a PatchCore expert with label-free TGPS thresholds."
    )
    parser.add_argument("--version", action="version", version=f"eagle-iad {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    fit = sub.add_parser("fit", help="fit the expert on a category's normal training images")
    _add_data_args(fit)
    fit.add_argument("--out", required=True, help="model directory to write (replaced atomically)")
    fit.add_argument("--limit-train", type=int, default=None, help="use a seeded subset of N training images")
    fit.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_scratch_arg(fit)
    evidence = fit.add_argument_group(
        "preprocessing and boxes (saved with the model; `eagle info` shows them)",
        "The default inspects the whole frame. --preset paper reproduces the published setting "
        "(shorter side 256, centre crop 224, boxes at 2/3 of the map maximum); options given "
        "explicitly override the preset.",
    )
    _add_fit_options(fit, evidence)
    fit.set_defaults(func=_cmd_fit)

    inspect = sub.add_parser("inspect", help="score images with a fitted model, optionally ask an MLLM (EAGLE)")
    inspect.add_argument("images", nargs="+", help="image files")
    inspect.add_argument("--model", help="fitted model directory (required unless --mllm with --condition baseline)")
    inspect.add_argument("--out", help="write heatmap and boxed pictures (with --mllm: attention overlays) here")
    inspect.add_argument("--style", default="box", choices=RENDER_STYLES, help="visual prompt style")
    inspect.add_argument("--json", action="store_true", help="print verdicts as JSON")
    inspect.add_argument(
        "--candidates", action="store_true",
        help="on normal verdicts, draw the strongest regions as dashed yellow frames (never red boxes)",
    )
    inspect.add_argument("--quiet", action="store_true", help="no progress bars")
    inspect.add_argument(
        "--runtime",
        default="torch",
        choices=RUNTIMES,
        help="torch (a fitted model folder, default) or onnx/openvino (a folder written by 'eagle export')",
    )
    inspect.add_argument(
        "--mllm",
        help="MLLM backend spec: hf:Qwen/Qwen2.5-VL-7B-Instruct or hf:/path/to/model (in-process; CAAS and "
        "attention capture), or openai:http://host:port/v1#model (an OpenAI-compatible server such as "
        "'eagle serve-mllm', vLLM, SGLang: no CAAS and no attention capture there; a CAAS request is answered "
        "without CAAS and reported as caas_unavailable in the verdict metadata, and --capture-attention is an error)",
    )
    inspect.add_argument("--caas-mllm", help=CAAS_MLLM_HELP)
    inspect.add_argument("--condition", default="eagle", choices=CONDITIONS, help="with --mllm (default eagle)")
    inspect.add_argument("--alpha", type=float, default=DEFAULT_ALPHA, help="CAAS alpha (default %(default)s)")
    inspect.add_argument("--caas-layers", help="CAAS layers, comma-separated 0-based (default: model's band)")
    inspect.add_argument("--template", help="one-shot normal template image for the MLLM prompt")
    inspect.add_argument("--max-new-tokens", type=int, default=128)
    inspect.add_argument("--capture-attention", action="store_true", help="record attention on the query image")
    inspect.set_defaults(func=_cmd_inspect)

    exp = sub.add_parser("export", help="a fitted model as an ONNX or OpenVINO graph with its sidecar (deploy)")
    exp.add_argument("--model", required=True, help="fitted model directory")
    exp.add_argument("--format", required=True, choices=EXPORT_FORMATS, help="graph format")
    exp.add_argument("--out", required=True, help="new folder for the graph and eagle-export.json")
    _add_scratch_arg(exp)
    exp.set_defaults(func=_cmd_export)

    attn = sub.add_parser("attention", help="per-layer attention on the image, plain MLLM vs EAGLE (docs/METHOD.md §4)")
    attn.add_argument("image", help="image file")
    attn.add_argument("--model", required=True, help="fitted expert model directory")
    attn.add_argument("--mllm", required=True, help="MLLM backend spec, e.g. hf:/path/to/Qwen2.5-VL-7B-Instruct")
    attn.add_argument("--mask", help="ground-truth defect mask (same size as the image; non-zero = defect)")
    attn.add_argument("--out", required=True, help="directory for attention.json, curves.png and overlays")
    attn.add_argument(
        "--force-caas", action="store_true", help="apply CAAS in the eagle run even outside the band (recorded)"
    )
    attn.add_argument("--alpha", type=float, default=DEFAULT_ALPHA, help="CAAS alpha (default %(default)s)")
    attn.add_argument("--caas-layers", help="CAAS layers, comma-separated 0-based (default: model's band)")
    attn.add_argument("--layers", help="layers to draw as overlays (default: first/middle/last CAAS layer + last)")
    attn.add_argument("--style", default="box", choices=RENDER_STYLES, help="visual prompt style")
    attn.add_argument("--max-new-tokens", type=int, default=8, help="tokens to generate (>= 2; default 8)")
    attn.add_argument("--json", action="store_true", help="print attention.json")
    attn.set_defaults(func=_cmd_attention)

    serve = sub.add_parser(
        "serve-mllm",
        help="serve an MLLM over an OpenAI-compatible /v1/chat/completions (with an 'eagle' extension for CAAS)",
        description="Serve an MLLM backend to OpenAI clients: POST /v1/chat/completions (images as data URLs; "
        "greedy decoding only; optional request object eagle={caas: {alpha, layers, image_index, enabled}, "
        "capture_attention}), GET /v1/models, GET /healthz. One generation runs at a time; up to --queue "
        "requests wait, further ones get 429 with Retry-After. Set EAGLE_SERVE_API_KEY to require "
        "'Authorization: Bearer <key>' on /v1 (clients using the openai: backend set EAGLE_OPENAI_API_KEY).",
    )
    serve.add_argument(
        "--mllm",
        required=True,
        help="backend spec, e.g. hf:Qwen/Qwen2.5-VL-7B-Instruct (an openai: spec is proxied, without CAAS or "
        "attention capture: replies then report caas_applied false)",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    serve.add_argument("--port", type=int, default=8001, help="port (default 8001)")
    serve.add_argument("--queue", type=int, default=8, help="requests that may wait for the model (default 8)")
    serve.add_argument("--served-model-name", help="model name clients send (default: hub id or folder name)")
    serve.add_argument("--device", help="device for an hf backend (default: cuda if available, else cpu)")
    serve.add_argument("--max-tokens-limit", type=int, default=4096, help="largest max_tokens accepted")
    serve.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    serve.set_defaults(func=_cmd_serve_mllm)

    srv = sub.add_parser(
        "serve",
        help="the inspection service: categories, fit jobs, inspect, history, metrics (OpenAPI at /openapi.json)",
        description="Serve the EAGLE-IAD HTTP API. Set EAGLE_API_KEY to require 'Authorization: Bearer <key>' "
        "on every /v1 route and /metrics.",
    )
    srv.add_argument("--models", required=True, help="directory of fitted categories (<models>/<category>)")
    srv.add_argument("--mllm", help="MLLM backend spec: full EAGLE verdicts and /v1/chat/completions")
    srv.add_argument(
        "--runtime",
        default="torch",
        choices=RUNTIMES,
        help="torch (fitted models, default) or onnx/openvino (each <models>/<category> an export folder)",
    )
    srv.add_argument("--caas-mllm", help=CAAS_MLLM_HELP)
    srv.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    srv.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    srv.add_argument("--data-root", help="server folders a fit may read must be inside this directory")
    srv.add_argument("--runs", help="directory of evaluation runs listed at /v1/evaluations")
    srv.add_argument("--state-dir", help="history, pictures and uploads (default: <models>/../eagle-service)")
    srv.add_argument("--db", help="SQLite history file (default: <state-dir>/eagle.sqlite3)")
    srv.add_argument("--web", help="a built web console to serve at / (default: the packaged one, built by make web)")
    srv.add_argument("--max-upload-mb", type=int, default=32, help="largest request body in MiB (default 32)")
    srv.add_argument("--max-pixels", type=int, default=40_000_000, help="largest uploaded image in pixels")
    srv.add_argument("--mllm-queue", type=int, default=4, help="MLLM requests that may wait (default 4)")
    srv.add_argument("--max-inspections", type=int, default=16,
                     help="inspections in progress at once; more get 429 + Retry-After (default 16)")  # fmt: skip
    srv.add_argument("--max-fit-jobs", type=int, default=8,
                     help="fit jobs queued or running at once; more get 429 + Retry-After (default 8)")  # fmt: skip
    srv.add_argument("--max-zip-files", type=int, default=2000, help="most files in a fit zip (default 2000)")
    srv.add_argument("--max-zip-mb", type=int, default=256, help="most uncompressed MiB in a fit zip (default 256)")
    srv.add_argument("--max-zip-ratio", type=int, default=100,
                     help="largest inflation ratio of a zip member over 1 MiB (default 100)")
    srv.add_argument("--min-free-mb", type=int, default=64,
                     help="free MiB kept on the state folder's disk; requests crossing it get 507 (default 64)")
    srv.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    _add_scratch_arg(srv)
    srv.set_defaults(func=_cmd_serve)

    oa = sub.add_parser("openapi", help="the service's OpenAPI document (the TypeScript client's source)")
    oa.add_argument("--out", help="file to write atomically (default: standard output)")
    oa.set_defaults(func=_cmd_openapi)

    ev = sub.add_parser("eval-expert", help="image/pixel AUROC, AUPRO, metrics at tau, box quality, figures")
    _add_data_args(ev)
    ev.add_argument("--model", required=True, help="fitted model directory")
    ev.add_argument("--out", required=True, help="directory for report.md, metrics.json, scores.jsonl and figures")
    ev.add_argument("--limit-test", type=int, default=None, help="seeded class-balanced subset of N images")
    ev.add_argument("--seed", type=int, default=0, help="seed for --limit-test")
    ev.add_argument("--quiet", action="store_true", help="no progress bars")
    ev.set_defaults(func=_cmd_eval_expert)

    evp = sub.add_parser("eval", help="EAGLE and its baselines on a dataset: MMAD metrics, report, resumable")
    evp.add_argument("--data", help="dataset root (not needed for --layout elpv)")
    evp.add_argument("--layout", required=True, choices=[*layout_names(), "mmad"], help="dataset layout")
    evp.add_argument("--mmad-json", help="MMAD's mmad.json (with --layout mmad; paths relative to --data)")
    evp.add_argument("--models", required=True, help="expert directory: <models>/<category>, fitted when missing")
    evp.add_argument("--mllm", help="MLLM backend spec (not needed for --conditions expert)")
    evp.add_argument("--caas-mllm", help=CAAS_MLLM_HELP)
    evp.add_argument("--conditions", default="baseline,expert,tgps,eagle",
                     help="comma-separated: baseline,expert,tgps,eagle,text-only,visual-only")  # fmt: skip
    evp.add_argument("--shots", type=int, default=0, choices=(0, 1), help="1: add a normal template image")
    evp.add_argument("--tasks", default="anomaly", choices=("anomaly", "all"), help="MMAD task types to ask")
    evp.add_argument("--attention", action="store_true", help="record attention; per-layer curves in the report")
    evp.add_argument("--executor", default=EXECUTORS[0], choices=EXECUTORS)
    evp.add_argument("--ray-address", default=None, help="Ray cluster address (default: a local instance)")
    evp.add_argument("--ray-workers", type=int, default=2, help="Ray actors (default 2)")
    evp.add_argument("--ray-gpus-per-worker", type=float, default=0.0, help="GPUs each Ray actor reserves")
    evp.add_argument("--limit", type=int, default=None, help="at most N images per category (balanced)")
    evp.add_argument("--limit-train", type=int, default=None, help="fit missing experts on a seeded subset of N")
    evp.add_argument("--max-new-tokens", type=int, default=32)
    evp.add_argument("--alpha", type=float, default=DEFAULT_ALPHA, help="CAAS alpha (default %(default)s)")
    evp.add_argument("--seed", type=int, default=0)
    evp.add_argument("--out", required=True, help="run directory (results.jsonl, metrics.json, report.*)")
    _add_scratch_arg(evp)
    evp.set_defaults(func=_cmd_eval)

    info = sub.add_parser("info", help="show a fitted model's manifest")
    info.add_argument("--model", required=True)
    info.set_defaults(func=_cmd_info)

    thr = sub.add_parser(
        "threshold",
        help="change a model's tau on the record (who, when, why, previous value), restore one, or show the record",
        description="Without --tau or --restore: print the thresholds and the history of changes. With --tau: "
        "set tau (rule 'fixed'). With --restore N: put back the thresholds that change N replaced. Every change "
        "is saved atomically with the model and listed in its history; model.json must not be edited by hand "
        "(its checksum detects that and loading refuses the model).",
    )
    thr.add_argument("--model", required=True, help="fitted model directory")
    thr.add_argument("--tau", type=float, help="new decision threshold (a finite number >= 0)")
    thr.add_argument("--restore", type=int, metavar="N", help="put back the thresholds change N replaced")
    thr.add_argument("--why", help="reason for the change (required with --tau or --restore)")
    thr.add_argument("--by", help="who makes the change (default: the login name)")
    thr.set_defaults(func=_cmd_threshold)

    demo = sub.add_parser("demo", help="fit, evaluate and inspect elpv mono cells; write a report")
    demo.add_argument("--out", default="runs/demo")
    demo.add_argument("--limit-train", type=int, default=None, help="seeded subset of training cells (default: all)")
    demo.add_argument("--size", type=int, default=None, help="whole-frame input side (default: the demo's, 224)")
    demo.add_argument("--coreset-ratio", type=float, default=None, help="fraction of patches kept (default 0.01)")
    demo.add_argument("--limit-test", type=int, default=None, help="seeded class-balanced subset of test cells")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_scratch_arg(demo)
    demo.set_defaults(func=_cmd_demo)
    return parser


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
            return int(args.func(args))
        except Stopped as stop:
            what = stop.what or _stopped_what(args)
            print(f"eagle: stopped by {stop.signal_name}: {what}; nothing half-written was kept, "
                  "scratch and staging folders were removed", file=sys.stderr)  # fmt: skip
            return stop.exit_status
        except EagleError as exc:
            print(f"eagle: error: {exc}", file=sys.stderr)
            return 2
        except OSError as exc:
            if exc.errno not in SPACE_ERRNOS:
                raise  # not something the user can fix: a bug, keep the traceback
            print(f"eagle: error: {describe_write_error(exc, 'a file')}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:  # raised outside the main thread's handler (e.g. by a library)
            print("eagle: interrupted; nothing half-written was kept", file=sys.stderr)
            return 130
        finally:
            set_scratch_root(None)  # in-process callers (tests) get the default back


if __name__ == "__main__":
    sys.exit(main())
