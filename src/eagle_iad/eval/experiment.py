"""``eagle eval``: the paper's experiment as one resumable command (docs/METHOD.md §5).

Steps: build the work items (MMAD json or a layout), open/resume the run store, fit any missing
expert into ``--models``, run every condition through an executor (each image's expert result is
computed once and kept in ``RUN/expert-cache``: :mod:`eagle_iad.eval.expert_cache`), then compute
metrics and write ``metrics.json``, ``timing.json``, ``report.md`` and ``report.html`` with pictures.
Metrics come only from the stored records (sorted by key) and the deterministic expert evaluation,
so a resumed run reproduces an uninterrupted one exactly; timings live in ``timing.json`` alone.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from eagle_iad.atomic import atomic_write_text
from eagle_iad.choices import (
    ATTENTION_MIN_NEW_TOKENS,
    ATTENTION_TOKENS_MESSAGE,
    DEFAULT_ALPHA,
    DEFAULT_CAAS_PHASE,
    EVAL_MAX_NEW_TOKENS,
    EVAL_SEED,
    CaasPhase,
)
from eagle_iad.data import Sample, get_layout, mask_names
from eagle_iad.data.selection import BALANCED_SELECTION
from eagle_iad.errors import ConfigError
from eagle_iad.eval.executors import Executor, LocalExecutor
from eagle_iad.eval.expert_cache import CACHE_DIR
from eagle_iad.eval.expert_eval import (
    ExpertEvaluation,
    evaluate_expert,
    grid_caption,
    pool_boxes,
    summary_mask_note,
    write_evaluation,
)
from eagle_iad.eval.identity import mllm_fingerprint, model_identities, random_test_model
from eagle_iad.eval.mllm_metrics import compute_metrics
from eagle_iad.eval.preflight import Checked, check_test_files, read_checked, unread_mask_folders, write_checked
from eagle_iad.eval.protocol import (
    Tasks,
    WorkItem,
    layout_items,
    layout_training,
    limit_items,
    mmad_items,
    mmad_training,
)
from eagle_iad.eval.report import RANDOM_MARK, attention_curves, write_report
from eagle_iad.eval.runner import (
    FITS,
    FittedExpert,
    RunStore,
    WorkerConfig,
    ensure_expert,
    fit_config,
    shard_by_category,
)
from eagle_iad.mllm.base import RANDOM_MODEL_NOTE


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything that changes the results (and so the config hash); the executor is not part of it."""

    layout: str
    data: str | None
    models: str
    conditions: tuple[str, ...]
    mllm: str | None = None
    mmad_json: str | None = None
    shots: int = 0
    tasks: Tasks = "anomaly"
    attention: bool = False
    limit: int | None = None
    limit_train: int | None = None
    max_new_tokens: int = EVAL_MAX_NEW_TOKENS
    alpha: float = DEFAULT_ALPHA
    seed: int = EVAL_SEED
    caas_phase: CaasPhase = DEFAULT_CAAS_PHASE
    #: ``--force-caas``: CAAS on every eagle item, not by the band rule (``EagleConfig.force_caas``); another
    #: experiment, so part of the hash (left out when off: a run made before the option existed resumes).
    force_caas: bool = False
    #: ``--category`` (repeatable): evaluate only these categories; ``None``: every category of the data.
    categories: tuple[str, ...] | None = None
    #: ``--fit-option KEY=VALUE``: options of the fit of a missing expert, as ``eagle fit``'s flags
    #: (:mod:`eagle_iad.fit_options`, parsed and typed); sorted ``(name, value)`` pairs.
    fit_options: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        if self.shots not in (0, 1):
            raise ConfigError(f"--shots must be 0 or 1, got {self.shots}")
        if self.layout == "mmad" and not self.mmad_json:
            raise ConfigError("--layout mmad needs --mmad-json FILE")
        if self.mllm is None and any(c != "expert" for c in self.conditions):
            raise ConfigError("--mllm is required for conditions other than 'expert'")
        if self.attention and self.max_new_tokens < ATTENTION_MIN_NEW_TOKENS:
            # One token records no attention at all: refused before any work, as `eagle attention` does.
            raise ConfigError(ATTENTION_TOKENS_MESSAGE)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["conditions"] = list(self.conditions)
        if self.caas_phase == DEFAULT_CAAS_PHASE:
            # Runs made before the option existed scaled in every phase: their hash stays valid to resume.
            del data["caas_phase"]
        # Options left at their default are left out for the same reason: a run made before they existed resumes.
        if not self.force_caas:
            del data["force_caas"]
        if self.categories is None:
            del data["categories"]
        else:
            data["categories"] = list(self.categories)
        if self.fit_options:
            data["fit_options"] = dict(self.fit_options)
        else:
            del data["fit_options"]
        if self.limit is not None:
            # Which images --limit draws: a run drawn by another rule (older versions took the first images in
            # sorted order) differs here, so it is refused rather than resumed with other images.
            data["limit_selection"] = BALANCED_SELECTION
        return data


def build_items(config: ExperimentConfig) -> list[WorkItem]:
    root = None if config.data is None else Path(config.data)
    if config.layout == "mmad":
        if root is None or config.mmad_json is None:
            raise ConfigError("--layout mmad needs --data ROOT and --mmad-json FILE")
        items = mmad_items(Path(config.mmad_json), root, config.tasks)
        if config.categories is not None:
            _check_categories(config.categories, sorted({item.category for item in items}), config.mmad_json)
            items = [item for item in items if item.category in config.categories]
    else:
        if config.tasks != "anomaly":
            raise ConfigError("--tasks all needs --layout mmad (other layouts have only the anomaly question)")
        if config.categories is not None:
            known = get_layout(config.layout).categories(root)
            _check_categories(config.categories, known, "the data" if root is None else str(root))
        items = layout_items(config.layout, root, config.categories)
    return limit_items(items, config.limit, config.seed)


def _check_categories(wanted: tuple[str, ...], known: list[str], where: str) -> None:
    """:class:`ConfigError` naming every ``--category`` the data does not have, and those it has."""
    unknown = [name for name in wanted if name not in known]
    if unknown:
        raise ConfigError(
            f"--category {', '.join(unknown)}: not in {where} (its categories: {', '.join(known) or 'none'})"
        )


def _expert_metrics(
    config: ExperimentConfig, items: list[WorkItem], out: Path
) -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
    """Per-class image/pixel AUROC, AUPRO, box measures and figures (reusing :mod:`expert_eval`).

    Also the box measures of all classes pooled image by image (a median cannot be averaged).
    """
    from eagle_iad.expert import load_expert

    summaries: dict[str, Any] = {}
    evaluations: list[ExpertEvaluation] = []
    pictures: dict[str, str] = {}
    for category, shard in shard_by_category(items).items():
        seen: dict[str, WorkItem] = {}
        for item in shard:
            seen.setdefault(item.image, item)
        samples = [
            Sample(
                Path(i.image),
                i.label,
                category,
                "test",
                i.defect_type,
                None if i.mask_path is None else Path(i.mask_path),
            )
            for i in seen.values()
        ]
        expert = load_expert(Path(config.models) / category)
        names = None if config.layout == "mmad" else mask_names(config.layout)
        evaluation = evaluate_expert(expert, samples, mask_names=names)
        write_evaluation(expert, evaluation, out / "expert" / category)
        summaries[category] = evaluation.summary()
        evaluations.append(evaluation)
        pictures[f"{category}: expert score histogram with tau and s_max"] = f"expert/{category}/histogram.png"
        pictures[f"{category}: {grid_caption(evaluation.per_image, short=True)}"] = f"expert/{category}/boxes_grid.png"
    return summaries, pool_boxes(evaluations).to_dict(), pictures


def _timing(records: list[dict[str, Any]], conditions: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for condition in conditions:
        rows = [r for r in records if r["condition"] == condition]
        seconds = sum(float(r["latency_s"]) for r in rows)
        out[condition] = {"n": len(rows), "seconds": seconds, "items_per_s": len(rows) / seconds if seconds else None}
    return out


def _stderr_warning(message: str) -> None:
    print(f"eagle: warning: {message}", file=sys.stderr)


def preflight(
    config: ExperimentConfig, items: list[WorkItem], warn: Callable[[str], None], known: Checked | None = None
) -> Checked:
    """Before any fit or MLLM work: every test image (and 1-shot template) decodes, every mask fits its image;
    a layout that reads no mask where the data has a mask folder is warned about (:mod:`eagle_iad.eval.preflight`).

    ``known``: the pairs a previous part of the run checked good (``RUN/preflight.json``); those whose files did
    not change are not decoded again. Returns the pairs checked good, to keep for the next resume.
    """
    pairs: list[tuple[str, str | None]] = [(item.image, item.mask_path) for item in items]
    if config.shots == 1:
        pairs += [(item.templates[0], None) for item in items if item.templates]
    checked = check_test_files(pairs, known)
    if config.layout != "mmad":
        root = None if config.data is None else Path(config.data)
        seen = {item.image: (item.category, item.label, item.mask_path) for item in items}
        for note in unread_mask_folders(root, list(seen.values()), config.layout):
            warn(note)
    return checked


def run_experiment(
    config: ExperimentConfig,
    out: Path,
    executor: Executor | None = None,
    *,
    show_progress: bool = False,
    warn: Callable[[str], None] = _stderr_warning,
    made: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Run (or resume) the experiment into ``out`` and return the metrics written to ``metrics.json``.

    ``made``, when given, is told how many records this call added to ``results.jsonl`` (0: a rerun with
    nothing left to do, which then only rewrites the report): so the command says what it did, not just a time.

    ``show_progress``: a missing expert's fit shows its progress on stderr, as ``eagle fit`` does. ``warn``
    receives what the user should know but that does not stop the run (stderr by default): each warning of
    such a fit (and a note when ``--fit-option`` reached no fit), one line each; the fits are also listed in
    ``RUN/fits.json`` and the report, so they are not found only in ``model.json``.
    """
    items = build_items(config)
    options = dict(config.fit_options)
    if options:
        fit_config(options, config.seed)  # a setting no model could be fitted with is refused before any work
    known = read_checked(out)
    checked = preflight(config, items, warn, known)
    # Before the run folder is written: a malformed spec, an engine that is down or a local hf: folder that
    # could not answer right (mllm.hf.check_spec) stops the run here.
    needs_mllm = config.mllm is not None and any(c != "expert" for c in config.conditions)
    if needs_mllm and config.mllm is not None:
        from eagle_iad.mllm.hf import check_spec

        check_spec(config.mllm)  # a local hf: folder without tokenizer, chat template, ...: refused here
        from eagle_iad.mllm.base import HYBRID_SCHEME, parse_spec

        parsed = parse_spec(config.mllm)
        if parsed.scheme == HYBRID_SCHEME:  # two different models on its sides: refused here, before the run folder
            from eagle_iad.mllm.hybrid import check_same_model

            note = check_same_model(parsed.target, str(parsed.model))
            if note is not None:
                warn(note)
    mllm_identity = mllm_fingerprint(config.mllm) if needs_mllm and config.mllm is not None else None
    random_model = random_test_model(config.mllm) if needs_mllm and config.mllm is not None else None
    if random_model is not None:
        warn(
            f"{random_model} is a tiny random test model ({RANDOM_MODEL_NOTE}): its answers are random noise; this "
            "run's records, run.json and report are marked as answers from a random test model, not a measurement"
        )
    with RunStore(out, config.as_dict(), warn) as store:
        if checked != known:  # kept once the folder is this run's: a resume decodes only new or changed files
            write_checked(out, checked)
        if random_model is not None:
            store.mark(RANDOM_MARK, True)
        root = None if config.data is None else Path(config.data)
        fits = _read_fits(out)
        reused: list[str] = []
        store.check_models_present(Path(config.models), shard_by_category(items))
        for category in shard_by_category(items):
            training = (
                (lambda c=category: mmad_training(items, c))
                if config.layout == "mmad"
                else (lambda c=category: layout_training(config.layout, root, c))
            )
            fitted: list[FittedExpert] = []
            ensure_expert(Path(config.models), category, training, config.limit_train, config.seed,
                          options=options, show_progress=show_progress, on_fit=fitted.append)  # fmt: skip
            for fit in fitted:
                fits[category] = fit.to_dict()
                atomic_write_text(out / FITS, json.dumps(fits, indent=2, sort_keys=True) + "\n")
                for warning in fit.warnings:
                    warn(f"{fit.model}: {warning}")
            if not fitted and category not in fits:
                reused.append(category)
        if options and reused:
            warn(
                f"--fit-option is used only for missing experts; {', '.join(reused)} already had a model in "
                f"{config.models} and were not fitted again (delete a model, or `eagle fit` it, to change it)"
            )
        if store.done and store.manifest.get("identity") is None:
            # A run written before identities were recorded: its records' own tau is all there is to check the
            # models by, so it is checked before check_identity records the current models as the run's and
            # before the executor appends records made with them (a refusal only at the report would leave
            # both taus in results.jsonl, and the run refused for good even with the old model put back).
            _check_taus(config, items, store.records())
        models = model_identities(Path(config.models), shard_by_category(items))
        store.check_identity(
            {"models": models, "mllm": mllm_identity}, {"models": config.models, "mllm": config.mllm or ""}
        )
        worker = WorkerConfig(
            conditions=config.conditions,
            models_dir=str(config.models),
            mllm=config.mllm,
            shots=config.shots,
            attention=config.attention,
            max_new_tokens=config.max_new_tokens,
            alpha=config.alpha,
            caas_phase=config.caas_phase,
            force_caas=config.force_caas,
            expert_cache=str(out / CACHE_DIR),
            model_sha256=models,
            random_test_model=random_model is not None,
        )
        before = len(store.done)
        (executor or LocalExecutor()).run(shard_by_category(items), worker, set(store.done), store.append)
        if made is not None:
            made(len(store.done) - before)
        records = store.records()
        random_run = bool(store.manifest.get(RANDOM_MARK)) or any(r.get(RANDOM_MARK) for r in records)
        return _finish(config, items, out, records, store.hash, warn, random_run=random_run)


def check_record_taus(records: list[dict[str, Any]], category: str, tau: float, model: Path) -> None:
    """Refuse a report whose expert table would show a tau the records of ``category`` were not made with.

    A run's identity check (:meth:`RunStore.check_identity`) refuses a changed model, but a run written
    before identities were recorded cannot be checked that way: its records' own tau is compared here,
    before anything of the report is written.
    """
    taus = sorted({float(r["tau"]) for r in records if r["category"] == category and r.get("tau") is not None})
    if taus and (len(taus) > 1 or not math.isclose(taus[0], float(tau), rel_tol=1e-9, abs_tol=1e-12)):
        made = ", ".join(f"{t:.3f}" for t in taus)
        raise ConfigError(
            f"the records of category {category!r} were made at tau {made}, but {model} now has tau "
            f"{float(tau):.3f} (`eagle threshold` or a refit since); a report would mix them: run again with a "
            "new --out, or restore the model the records were made with"
        )


def _check_taus(config: ExperimentConfig, items: list[WorkItem], records: list[dict[str, Any]]) -> None:
    """:func:`check_record_taus` for every category of the run, from ``model.json`` alone (no model load)."""
    from eagle_iad.expert.manifest import read_manifest

    for category in shard_by_category(items):
        model = Path(config.models) / category
        check_record_taus(records, category, float(read_manifest(model, verify=False)["thresholds"]["tau"]), model)


def _read_fits(out: Path) -> dict[str, Any]:
    """``RUN/fits.json``: the experts fitted by this run (any of its resumptions), by category."""
    try:
        data = json.loads((out / FITS).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read {out / FITS}: {exc}; delete it (the report's list of fits is lost)") from exc
    return data if isinstance(data, dict) else {}


def _finish(
    config: ExperimentConfig,
    items: list[WorkItem],
    out: Path,
    records: list[dict[str, Any]],
    run_hash: str,
    warn: Callable[[str], None] = _stderr_warning,
    *,
    random_run: bool = False,
) -> dict[str, Any]:
    """Expert evaluation, ``metrics.json``, ``timing.json`` and the report, from the stored records.

    ``random_run``: MLLM answers of the run came from a tiny random test model: ``metrics.json`` and the report
    say so (``random_test_model``), so its numbers are never mistaken for a model's.
    """
    _check_taus(config, items, records)  # before anything is written
    expert, expert_boxes, pictures = _expert_metrics(config, items, out)
    metrics = {
        "config_hash": run_hash,
        "config": config.as_dict(),
        "n_records": len(records),
        "mllm": compute_metrics(records, config.conditions),
        "expert": expert,
        "expert_boxes": expert_boxes,
    }
    if random_run:  # only then: the metrics of every other run stay as they were
        metrics[RANDOM_MARK] = True
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    timing = _timing(records, config.conditions)
    atomic_write_text(out / "timing.json", json.dumps(timing, indent=2) + "\n")
    if config.attention and attention_curves(records, out / "attention.png", random_model=random_run):
        pictures["attention share per layer: correct vs wrong, per condition"] = "attention.png"
    write_report(out, metrics, timing, pictures, fits=_read_fits(out))
    if config.layout != "elpv":  # elpv has no masks to miss
        for category, summary in sorted(expert.items()):
            note = summary_mask_note(summary)
            if note is not None:
                warn(f"category {category!r}: {note}")
    return metrics
