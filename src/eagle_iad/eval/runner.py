"""A resumable run: the manifest, the append-only JSONL store and the per-category worker.

Crash safety and one experiment per folder come from these rules:

* ``RUN/run.json`` (the configuration and its hash) is written atomically before any work; a rerun
  with a different configuration is refused instead of mixing two experiments in one file, unless the
  folder holds no record yet (a run stopped at its start, by a typo in ``--mllm`` say): that one starts
  afresh with the new configuration (the old one's ``fits.json`` dropped), and says so;
* ``run.json`` also records what the records are made with (:mod:`eagle_iad.eval.identity`: each
  expert's ``model.json`` hash, the MLLM weights' fingerprint); a resumed run whose models or weights
  changed is refused the same way (:meth:`RunStore.check_identity`);
* each record is one line appended with flush + fsync, so a crash loses at most the item in flight;
* on open, a torn last line (no trailing newline, or not valid JSON) is truncated away.

A record's key is ``(image, question_id, condition)``; a resumed run skips the keys already there.
Records may arrive in any order (Ray workers), so everything downstream sorts by key.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from eagle_iad.atomic import atomic_write_text
from eagle_iad.choices import DEFAULT_ALPHA, DEFAULT_CAAS_PHASE, CaasPhase
from eagle_iad.data.selection import subsample
from eagle_iad.errors import ConfigError
from eagle_iad.eval.expert_cache import CacheKey, ExpertCache
from eagle_iad.eval.identity import older_fingerprint
from eagle_iad.eval.protocol import WorkItem
from eagle_iad.expert.patchcore import Expert, ExpertResult
from eagle_iad.file_hash import file_sha256
from eagle_iad.mllm.base import Backend
from eagle_iad.naming import plural

Key = tuple[str, str, str]
#: The inspection record's fields (``eagle_iad.pipeline.record_fields``) a JSONL record carries; the
#: rest of a JSONL record is the work item's and the reply's. Fixed lists: a new record field does
#: not change the JSONL records of a run that is being resumed.
EXPERT_FIELDS = ("score", "tau", "s_max", "in_band", "caas_applied")
MLLM_FIELDS = (*EXPERT_FIELDS, "answer", "answered_by")
RESULTS = "results.jsonl"
MANIFEST = "run.json"
#: ``RUN/fits.json``: the experts this run fitted (not in ``metrics.json``: a resumed run, whose experts were
#: fitted by its first part, must give the same metrics as an uninterrupted one).
FITS = "fits.json"
#: What to do instead, for a changed setting a user commonly means to add to a run rather than to change.
#: A run is not extended in place: its report compares the conditions of one configuration, and a run with
#: more categories or conditions is another experiment; a second --out (same --models) costs no refit.
CHANGE_HINTS: dict[str, str] = {
    "conditions": "to add conditions, run them into a new --out with the same --models and --mllm (the experts are "
    "not fitted again; the CAAS flip table needs tgps and eagle in one run)",
    "force_caas": "--force-caas applies CAAS to every eagle item, not by the band rule: another experiment, so run it "
    "into a new --out (with the same --models and --mllm)",
    "categories": "to evaluate other categories, run them (--category) into a new --out with the same --models",
    "limit_selection": "this run's --limit images were drawn by an older rule (the first images in sorted order); "
    "the current rule draws seeded, balanced images, so the same --limit is another set of images",
}


def config_hash(config: dict[str, Any]) -> str:
    """A stable hash of the result-affecting configuration (sorted-key JSON)."""
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


def suggest_out(out: Path) -> Path:
    """The first of ``OUT-2``, ``OUT-3``, ... that does not exist: a new --out to suggest."""
    index = 2
    while Path(f"{out}-{index}").exists():
        index += 1
    return Path(f"{out}-{index}")


def _hint_applies(key: str, old: dict[str, Any], changed: list[str]) -> bool:
    """Whether ``CHANGE_HINTS[key]`` describes this change: ``limit_selection`` is in the hash only with a
    --limit, so it changes too when --limit is added or dropped; only a limited run.json without it (and the
    same --limit) was drawn by the older rule."""
    if key != "limit_selection":
        return True
    config = old.get("config", {})
    return "limit" not in changed and config.get("limit") is not None and "limit_selection" not in config


def record_key(record: dict[str, Any]) -> Key:
    return (str(record["image"]), str(record["question_id"]), str(record["condition"]))


class RunStore:
    """``RUN/run.json`` + ``RUN/results.jsonl``: open (creating or resuming), append, read back."""

    def __init__(self, out: Path, config: dict[str, Any], warn: Callable[[str], None] | None = None) -> None:
        self.out = Path(out)
        self._warn = warn or (lambda message: None)
        self.out.mkdir(parents=True, exist_ok=True)
        # Two processes appending to one run would duplicate work and records: hold an exclusive lock
        # for the store's lifetime (released by close() or, after a crash, by the kernel).
        self._lock = (self.out / ".lock").open("a")
        try:
            fcntl.flock(self._lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise ConfigError(f"{self.out} is in use by another eagle eval run") from None
        try:
            self._open(config)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Release the run directory's lock."""
        if not self._lock.closed:
            self._lock.close()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _open(self, config: dict[str, Any]) -> None:
        self.config = config
        self.hash = config_hash(config)
        self.path = self.out / RESULTS
        self._repair()
        self.done: set[Key] = {record_key(r) for r in self.records()}
        manifest = self.out / MANIFEST
        self.manifest: dict[str, Any] = {"config_hash": self.hash, "config": config}
        if manifest.exists():
            old = json.loads(manifest.read_text(encoding="utf-8"))
            if old.get("config_hash") == self.hash:
                self.manifest = old
                return
            changed = sorted(
                k for k in set(old.get("config", {})) | set(config) if old.get("config", {}).get(k) != config.get(k)
            )
            if self.done:
                hints = "".join(
                    f"; {CHANGE_HINTS[k]}" for k in changed if k in CHANGE_HINTS and _hint_applies(k, old, changed)
                )
                raise ConfigError(
                    f"{self.out} holds a run with a different configuration (changed: {', '.join(changed)}); "
                    f"use a new --out (e.g. {suggest_out(self.out)}) instead of mixing results{hints}"
                )
            # Stopped before its first record (a typo in --mllm, an engine that was down): nothing to mix.
            self._warn(
                f"{self.out} held a run with another configuration (changed: {', '.join(changed)}) but no record "
                "of it; it starts afresh with this configuration"
            )
            # Its fits were made with the old configuration's --fit-option: left here, the report would say this
            # run fitted them with options it was not given.
            (self.out / FITS).unlink(missing_ok=True)
        self._write_manifest()

    def _write_manifest(self) -> None:
        atomic_write_text(self.out / MANIFEST, json.dumps(self.manifest, indent=2) + "\n")

    def check_identity(self, identity: dict[str, Any], what: dict[str, str] | None = None) -> None:
        """Refuse a run with records when an expert or the MLLM changed since they were made; record ``identity``.

        ``identity``: ``{"models": {category: model.json SHA-256}, "mllm": fingerprint or None}``
        (:mod:`eagle_iad.eval.identity`); ``what`` names them in the message (``models``: the models
        folder, ``mllm``: the spec). A run written before identities were recorded is accepted with a
        warning (its records cannot be checked) and checked from now on; an MLLM fingerprint that could
        not be taken (None) on either side is not compared.
        """
        what = what or {}
        old = self.manifest.get("identity")
        if self.done and old is None:
            self._warn(
                f"{self.out} was written before eval recorded which models and MLLM weights its records were made "
                f"with, so its {plural(len(self.done), 'record')} cannot be checked against them; resuming, and "
                "checking from now on (use a new --out if the models or the weights changed since)"
            )
        elif self.done and isinstance(old, dict):
            changes: list[str] = []
            models = Path(what.get("models", "models"))
            old_models = old.get("models") or {}
            for category, sha in sorted(identity.get("models", {}).items()):
                was = old_models.get(category)
                if was is not None and was != sha:
                    changes.append(
                        f"expert {models / category} (model.json SHA-256 {was[:12]}… is now {sha[:12]}…: refitted, "
                        "or its threshold changed)"
                    )
            old_mllm, new_mllm = old.get("mllm"), identity.get("mllm")
            if old_mllm is not None and new_mllm is not None and old_mllm != new_mllm:
                name = f"MLLM {what['mllm']}" if what.get("mllm") else "MLLM"
                # recorded by an older eagle: other files hashed, so a difference is no proof of other weights
                unlike = older_fingerprint(str(old_mllm), str(new_mllm))
                if unlike is not None:
                    self._warn(
                        f"{self.out}: {unlike}; its {plural(len(self.done), 'record')} cannot be checked against "
                        f"the {name} weights; resuming, and checking from now on (use a new --out if the weights "
                        "changed since)"
                    )
                else:
                    changes.append(f"{name} (weights fingerprint {old_mllm} is now {new_mllm})")
            if changes:
                raise ConfigError(
                    f"{self.out} holds {plural(len(self.done), 'record')} made with other models than this run would "
                    f"use: changed {'; '.join(changes)}; use a new --out (e.g. {suggest_out(self.out)}) instead of "
                    "mixing results, or restore what the records were made with to resume"
                )
        merged = {
            "models": {**((old or {}).get("models") or {}), **identity.get("models", {})},
            "mllm": identity.get("mllm") if identity.get("mllm") is not None else (old or {}).get("mllm"),
        }
        if merged != old:
            self.manifest = {**self.manifest, "identity": merged}
            self._write_manifest()

    def mark(self, key: str, value: Any) -> None:
        """Keep ``key: value`` in ``run.json`` beside the configuration (not in its hash); once set, it stays:
        a mark such as ``random_test_model`` holds for the records made before a resume too."""
        if self.manifest.get(key) != value:
            self.manifest = {**self.manifest, key: value}
            self._write_manifest()

    def check_models_present(self, models: Path, categories: Iterable[str]) -> None:
        """Refuse, before a missing expert is fitted, a run with records made with that expert.

        A fit takes minutes and writes the model and ``RUN/fits.json``, and would be refused afterwards: by
        :meth:`check_identity` (another model than the records were made with) or, for a run written before
        identities were recorded, by the tau its records carry (a new fit's tau is not theirs). So the run
        stops here, saying so. A legacy run's category whose records carry no tau (no condition read the
        expert) can have its expert fitted: nothing of its records says which one it was.
        """
        from eagle_iad.expert.store import MANIFEST as MODEL_MANIFEST

        if not self.done:
            return
        identity = self.manifest.get("identity")
        wanted = [c for c in sorted(categories) if not (Path(models) / c / MODEL_MANIFEST).exists()]
        if not wanted:
            return
        if identity is None:
            taus: dict[str, set[float]] = {}
            for record in self.records():
                if record.get("tau") is not None and record.get("category") in wanted:
                    taus.setdefault(str(record["category"]), set()).add(float(record["tau"]))
            missing = [c for c in wanted if c in taus]
            if missing:
                names = ", ".join(
                    f"{Path(models) / c} (tau {', '.join(f'{t:.3f}' for t in sorted(taus[c]))})" for c in missing
                )
                raise ConfigError(
                    f"{self.out} holds {plural(len(self.done), 'record')} made with expert {names}, now missing; a "
                    "new fit would be another model (this run was written before eval recorded its models, so only the "
                    f"records' tau tells them): restore it to resume, or use a new --out (e.g. {suggest_out(self.out)})"
                )
            return
        recorded = identity.get("models") if isinstance(identity, dict) else None
        if not isinstance(recorded, dict):
            return
        missing = [c for c in wanted if c in recorded]
        if missing:
            names = ", ".join(f"{Path(models) / c} (model.json SHA-256 {str(recorded[c])[:12]}…)" for c in missing)
            raise ConfigError(
                f"{self.out} holds {plural(len(self.done), 'record')} made with expert {names}, now missing; a new "
                f"fit would be another model: restore it to resume, or use a new --out (e.g. {suggest_out(self.out)})"
            )

    def _repair(self) -> None:
        """Drop a torn last line (a crash mid-append) so the file is whole lines of valid JSON again."""
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        end = len(data)
        if data and not data.endswith(b"\n"):
            end = data.rfind(b"\n") + 1
        else:
            last_start = data.rfind(b"\n", 0, max(end - 1, 0)) + 1
            try:
                json.loads(data[last_start:end] or b"{}")
            except json.JSONDecodeError:
                end = last_start
        if end != len(data):
            with self.path.open("r+b") as handle:
                handle.truncate(end)
                handle.flush()
                os.fsync(handle.fileno())

    def records(self) -> list[dict[str, Any]]:
        """Every stored record, sorted by key (arrival order is not meaningful)."""
        if not self.path.exists():
            return []
        rows = [json.loads(line) for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip()]
        return sorted(rows, key=record_key)

    def append(self, record: dict[str, Any]) -> None:
        """Append one record durably (one write of one line, then flush + fsync)."""
        line = json.dumps(record, sort_keys=True) + "\n"
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
        self.done.add(record_key(record))


@dataclass(frozen=True)
class WorkerConfig:
    """What a worker needs to answer items; plain data so it can be shipped to Ray actors."""

    conditions: tuple[str, ...]
    models_dir: str
    mllm: str | None
    shots: int = 0
    attention: bool = False
    max_new_tokens: int = 32
    alpha: float = DEFAULT_ALPHA
    caas_phase: CaasPhase = DEFAULT_CAAS_PHASE
    #: ``--force-caas`` (:attr:`eagle_iad.pipeline.EagleConfig.force_caas`).
    force_caas: bool = False
    fit_limit: int | None = None
    seed: int = 0
    backend_options: dict[str, Any] = field(default_factory=dict)
    #: The run folder's expert cache (``RUN/expert-cache``, :mod:`eagle_iad.eval.expert_cache`); ``None``:
    #: each image's expert result is still computed once, but kept only while its items are answered.
    expert_cache: str | None = None
    #: ``{category: model.json SHA-256}`` the run recorded (:meth:`RunStore.check_identity`); an expert
    #: found otherwise when a worker loads it (an ``eagle threshold`` beside the run) is refused.
    model_sha256: dict[str, str] = field(default_factory=dict)
    #: The MLLM is a tiny random test model (:func:`eagle_iad.eval.identity.random_test_model`): every record
    #: it answers carries ``random_test_model: true`` (its answer is noise, not a measurement).
    random_test_model: bool = False


@dataclass(frozen=True)
class FittedExpert:
    """A missing expert ``eagle eval`` fitted: shown on stderr and in the run's report (``RUN/fits.json``)."""

    category: str
    model: str
    train_images: int
    backbone: str
    tau: float
    warnings: tuple[str, ...] = ()
    #: The ``--fit-option`` values it was fitted with (canonical names).
    options: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"category": self.category, "model": self.model, "train_images": self.train_images,
                "backbone": self.backbone, "tau": self.tau, "warnings": list(self.warnings),
                "options": dict(self.options)}  # fmt: skip


def fit_config(options: Mapping[str, Any], seed: int) -> Any:
    """The :class:`~eagle_iad.expert.ExpertConfig` a missing expert is fitted with, checked as `eagle fit` checks it.

    ``options`` are parsed fit options (:func:`eagle_iad.fit_options.parse_fit_options`); a ``seed`` among
    them overrides the run's ``--seed`` for the fit, as ``eagle fit --seed`` would.
    """
    from eagle_iad.expert import ExpertConfig
    from eagle_iad.fit_options import config_overrides

    preset, overrides = config_overrides(options)
    config = ExpertConfig.from_preset(preset, **{"seed": seed, **overrides})
    config.validate()
    return config


def ensure_expert(
    models_dir: Path,
    category: str,
    training: Callable[[], list[Path]],
    limit: int | None,
    seed: int,
    *,
    options: Mapping[str, Any] | None = None,
    show_progress: bool = False,
    on_fit: Callable[[FittedExpert], None] | None = None,
) -> Path:
    """``models_dir/<category>``: reused when saved, otherwise fitted on ``training()`` and saved.

    A fit is announced on stderr and shows its progress bars (``show_progress``) as ``eagle fit`` does, and is
    handed to ``on_fit`` with its warnings, which would otherwise reach only the model's ``model.json``.
    """
    from eagle_iad.expert import fit, save
    from eagle_iad.expert.store import MANIFEST as MODEL_MANIFEST
    from eagle_iad.expert.store import check_replaceable, read_manifest

    target = Path(models_dir) / category
    if (target / MODEL_MANIFEST).exists():
        # A model copied into another category's folder would answer for it unnoticed, with plausible numbers.
        fitted_on = str(read_manifest(target, verify=False).get("category", category))
        if fitted_on != category:
            raise ConfigError(
                f"{target} is a model of category {fitted_on!r}, but the run evaluates it as {category!r}; "
                f"move it to {Path(models_dir) / fitted_on} (or delete it to fit {category!r} there)"
            )
        return target
    check_replaceable(target)  # a folder of other files there is refused now, not after the fit
    config = fit_config(options or {}, seed)
    paths = training()
    paths = subsample(paths, limit, config.seed)  # the CLI's --limit-train draw, so both fit the same images
    if len(paths) < 2:
        raise ConfigError(f"category {category!r}: need at least 2 normal images to fit an expert, found {len(paths)}")
    # Always said (minutes of work the user did not ask for by name); the bars only with show_progress.
    print(f"fitting {category!r} on {len(paths)} normal images with {config.backbone} (no model in {target})",
          file=sys.stderr)  # fmt: skip
    expert = fit(paths, category, config, show_progress=show_progress)
    saved = save(expert.model, target)
    if on_fit is not None:
        model = expert.model
        on_fit(FittedExpert(category, str(saved), len(paths), config.backbone, float(model.thresholds.tau),
                            tuple(model.warnings), dict(options or {})))  # fmt: skip
    return saved


@dataclass
class _Image:
    """The image being answered: its pixels, and its expert result once something asked for it."""

    category: str
    path: str
    rgb: np.ndarray
    result: ExpertResult | None = None


class Worker:
    """Holds one MLLM backend and the loaded experts; answers one category's items under every condition.

    Every condition goes through the pipeline; the expert's result for an image is computed once
    (:func:`eagle_iad.pipeline.expert_pass`) and handed to each condition and question that reads it,
    from memory while the image's items are answered and from the run's expert cache after that.
    """

    def __init__(self, config: WorkerConfig) -> None:
        self.config = config
        self._experts: dict[str, Expert] = {}
        self._model_sha256: dict[str, str] = {}
        self._backend: Backend | None = None
        self._image: _Image | None = None
        self._cache = None if config.expert_cache is None else ExpertCache(Path(config.expert_cache))

    def expert(self, category: str) -> Expert:
        if category not in self._experts:
            from eagle_iad.expert import load_expert
            from eagle_iad.expert.store import MANIFEST as MODEL_MANIFEST

            folder = Path(self.config.models_dir) / category
            # The model's identity for the expert cache, read on both sides of the load: a save landing
            # in between would otherwise file one model's results under the other's identity.
            try:
                identity = file_sha256(folder / MODEL_MANIFEST)
            except OSError:
                load_expert(folder)  # says clearly what is missing or unreadable
                raise
            expert = load_expert(folder)
            if file_sha256(folder / MODEL_MANIFEST) != identity:
                raise ConfigError(
                    f"{folder} changed while it was loaded (a fit or `eagle threshold` beside this run?); "
                    "run the same command again to resume once it is done"
                )
            expected = self.config.model_sha256.get(category)
            if expected is not None and identity != expected:
                raise ConfigError(
                    f"{folder} changed since this run started (model.json SHA-256 {expected[:12]}… is now "
                    f"{identity[:12]}…: refitted, or its threshold changed); its records would mix two models: "
                    "use a new --out"
                )
            self._model_sha256[category] = identity
            self._experts[category] = expert
        return self._experts[category]

    def backend(self) -> Backend:
        if self._backend is None:
            from eagle_iad.mllm import load_backend

            if self.config.mllm is None:
                raise ConfigError("--mllm is required for conditions other than 'expert'")
            self._backend = load_backend(self.config.mllm, **self.config.backend_options)
        return self._backend

    def image(self, item: WorkItem) -> _Image:
        """``item``'s image, decoded once for all its conditions and questions (they come in a row)."""
        if self._image is None or (self._image.category, self._image.path) != (item.category, item.image):
            from eagle_iad.images import load_rgb

            self._image = _Image(item.category, item.image, load_rgb(item.image))
        return self._image

    def expert_result(self, item: WorkItem) -> ExpertResult:
        """``item``'s expert result: from memory, else the run's expert cache, else one expert pass."""
        image = self.image(item)
        if image.result is None:
            image.result = self._stored_or_computed(image)
        return image.result

    def _stored_or_computed(self, image: _Image) -> ExpertResult:
        from eagle_iad import __version__
        from eagle_iad.pipeline import expert_pass

        expert = self.expert(image.category)
        if self._cache is None:
            return expert_pass(expert, image.rgb)
        key = CacheKey(image.path, file_sha256(image.path), self._model_sha256[image.category], __version__)
        found = self._cache.get(image.category, key)
        if found is not None:
            return found
        result = expert_pass(expert, image.rgb)
        self._cache.put(image.category, key, result)
        return result

    def run(self, items: Sequence[WorkItem], done: set[Key]) -> Iterator[dict[str, Any]]:
        """Records for every (item, condition) not in ``done``; one at a time so each is stored at once."""
        for item in items:
            for condition in self.config.conditions:
                if (item.image, item.question_id, condition) in done:
                    continue
                if condition == "expert" and not item.is_anomaly_question:
                    continue  # the expert answers only "is there a defect?"
                yield self.answer(item, condition)

    def answer(self, item: WorkItem, condition: str) -> dict[str, Any]:
        """One record; its ``latency_s`` includes the image's expert pass only where that pass ran."""
        start = time.perf_counter()
        record: dict[str, Any] = {
            "image": item.image,
            "question_id": item.question_id,
            "condition": condition,
            "category": item.category,
            "label": item.label,
            "defect_type": item.defect_type,
            "qtype": item.qtype,
            "gold": item.answer,
        }
        if condition == "expert":
            from eagle_iad.pipeline import record_fields
            from eagle_iad.verdict import make_verdict

            expert = self.expert(item.category)
            verdict = make_verdict(expert, item.image, self.expert_result(item))
            fields = record_fields(verdict)
            record.update({name: fields[name] for name in EXPERT_FIELDS})
            # the expert "answers" the anomaly question by its decision (no MLLM reply)
            record.update(reply="", answer="A" if verdict.is_anomalous else "B", parse_method="expert")
        else:
            verdict_dict = self._mllm(item, condition)
            record.update(verdict_dict)
        record["correct"] = record["answer"] == item.answer
        record["latency_s"] = time.perf_counter() - start
        return record

    def _mllm(self, item: WorkItem, condition: str) -> dict[str, Any]:
        from eagle_iad.mllm.caas import CaasSettings
        from eagle_iad.pipeline import Eagle, EagleConfig, record_fields, uses_expert

        template = item.templates[0] if self.config.shots == 1 and item.templates else None
        config = EagleConfig(
            condition=condition,  # type: ignore[arg-type]  # checked by parse_conditions / EagleConfig
            caas=CaasSettings(alpha=self.config.alpha, phase=self.config.caas_phase),
            max_new_tokens=self.config.max_new_tokens,
            capture_attention=self.config.attention,
            template_image=template,
            force_caas=self.config.force_caas,
        )
        expert = self.expert(item.category) if uses_expert(condition) else None
        result = self.expert_result(item) if uses_expert(condition) else None
        eagle = Eagle(expert, self.backend(), config)
        verdict = eagle.inspect(self.image(item).rgb, item.to_question(), item.image, expert_result=result)
        fields = record_fields(verdict)
        out: dict[str, Any] = {name: fields[name] for name in MLLM_FIELDS}
        out.update(reply=verdict.reply, parse_method=verdict.parse_method)
        if self.config.random_test_model or verdict.metadata.get("random_test_model"):
            out["random_test_model"] = True  # an answer of random weights: never read as a model's
        if template is not None:  # a 1-shot answer names the normal image it was shown beside the query
            out["template"] = template
        if verdict.attention is not None:
            out["attention_share"] = {str(k): float(v) for k, v in verdict.attention["share"].items()}
            sliding = verdict.metadata.get("sliding_window")
            if isinstance(sliding, dict):  # those layers' share is local by design: the report's curves say so
                out["sliding_window"] = {
                    "layers": list(sliding["layers"]),
                    "window": int(sliding["window"]),
                    "distance": int(sliding["distance"]),
                }
        return out


def shard_by_category(items: Iterable[WorkItem]) -> dict[str, list[WorkItem]]:
    """Items grouped by category (the unit of work of one worker: one expert in memory)."""
    shards: dict[str, list[WorkItem]] = {}
    for item in items:
        shards.setdefault(item.category, []).append(item)
    return dict(sorted(shards.items()))
