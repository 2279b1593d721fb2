"""EAGLE end to end: expert → TGPS prompt → MLLM (CAAS in the band) → parsed answer → verdict.

:func:`inspect_records` is the one orchestrator: it runs the expert once per image (a batch through
``Expert.inspect_many``), asks the MLLM through :meth:`Eagle.inspect` when one is configured, writes
the pictures and returns one :class:`eagle_iad.record.InspectionRecord` per image; the CLI's
``eagle inspect`` and the service's ``/v1/inspect`` call it. ``eagle eval``, which asks several
conditions about each image, takes the expert stage alone (:func:`expert_pass`) once per image and
hands its result to each condition's :meth:`Eagle.inspect`. :func:`record_fields` is the one place
the record's scalar fields (score ... answered_by) are read off a verdict; the eval runner's JSONL
records take theirs from it too. Conditions (docs/METHOD.md §5): ``baseline`` (MLLM alone), ``tgps``
(textual prior + boxed copy), ``eagle`` (TGPS + CAAS when ``tau <= score < s_max``), and the prompt
ablations ``text-only`` / ``visual-only`` (no CAAS, so they isolate the prompt parts).

The verdict records everything needed to audit or replay a decision: the expert's numbers and
boxes, the exact prompt items (images by reference), the raw reply, the parsed answer (or
``unparsable``), whether and how CAAS was applied, and timings.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from eagle_iad.choices import CONDITIONS as CONDITIONS
from eagle_iad.choices import Condition as Condition
from eagle_iad.choices import caas_rule
from eagle_iad.errors import ConfigError, ImageError, one_of
from eagle_iad.expert.encodings import colour_warning, input_warning
from eagle_iad.expert.lighting import exposure_warning
from eagle_iad.expert.patchcore import Expert, ExpertResult
from eagle_iad.file_hash import file_sha256
from eagle_iad.images import ImageSource, colour_mode, frame_count, image_encoding, load_rgb
from eagle_iad.mllm.base import RANDOM_MODEL_MARK, Backend, GenerateOptions
from eagle_iad.mllm.caas import CaasSettings
from eagle_iad.naming import picture_stems
from eagle_iad.record import InspectionRecord, iso_time
from eagle_iad.tgps.answers import UNPARSABLE, parse_answer
from eagle_iad.tgps.prompt import (
    ANOMALY_QUESTION,
    ContentItem,
    ImageItem,
    Prior,
    PromptMode,
    PromptRequest,
    PromptTemplates,
    Question,
    build_prompt,
)
from eagle_iad.tgps.regions import Box
from eagle_iad.tgps.render import RenderStyle, render, save_png
from eagle_iad.verdict import ExpertVerdict, make_verdict, region_threshold, write_pictures

_MODES: dict[str, PromptMode] = {
    "baseline": "full",
    "tgps": "full",
    "eagle": "full",
    "text-only": "text-only",
    "visual-only": "visual-only",
}


@dataclass(frozen=True)
class EagleConfig:
    """How to inspect: condition, CAAS settings, prompt wording, visual-prompt style, generation."""

    condition: Condition = "eagle"
    caas: CaasSettings = field(default_factory=CaasSettings)
    templates: PromptTemplates = field(default_factory=PromptTemplates)
    style: RenderStyle = "box"
    max_new_tokens: int = 128
    capture_attention: bool = False
    #: Optional one-shot normal template image (MMAD 1-shot protocol).
    template_image: str | None = None
    #: Apply CAAS in the ``eagle`` condition even outside the band (``--force-caas`` of ``eagle inspect``, ``eagle
    #: eval`` and ``eagle attention``: it makes the effect of the scaling visible on any image; the product keeps the
    #: band rule). Recorded in each eagle verdict as ``metadata["caas_rule"]`` (:func:`eagle_iad.choices.caas_rule`).
    force_caas: bool = False

    def __post_init__(self) -> None:
        if self.condition not in CONDITIONS:
            raise ConfigError(f"unknown condition {self.condition!r}; choose one of {one_of(CONDITIONS)}")


@dataclass
class EagleVerdict:
    """One image's full EAGLE record (JSON-ready via :meth:`to_dict`).

    ``score``/``tau``/``s_max``/``expert_decision``/``in_band``/``boxes`` are ``None``/empty for the
    baseline condition when no expert is used. ``decision`` is the MLLM's answer mapped onto
    anomalous/normal for the anomaly question (``unparsable`` when the reply could not be read).
    """

    image: str
    condition: str
    score: float | None
    tau: float | None
    s_max: float | None
    expert_decision: str | None
    in_band: bool
    boxes: list[Box]
    prompt: list[dict[str, str]]
    reply: str
    answer: str
    parse_method: str
    decision: str | None
    caas_applied: bool
    caas_settings: dict[str, Any] | None
    timings: dict[str, float]
    attention: dict[str, Any] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    #: The expert's nearest normal training image (:attr:`eagle_iad.verdict.ExpertVerdict.reference`).
    reference: dict[str, Any] | None = None
    #: Which backend answered and what became of CAAS (see :func:`answered_by`).
    answered_by: dict[str, str] = field(default_factory=dict)
    #: The expert's score is close to tau on either side (:attr:`eagle_iad.verdict.ExpertVerdict.near_threshold`).
    near_threshold: bool | None = None
    #: The image is not like the training images (:attr:`eagle_iad.verdict.ExpertVerdict.unrecognised`): the
    #: MLLM was asked without the expert's prior or boxes, which describe a product this image is not.
    unrecognised: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["boxes"] = [box.to_dict() for box in self.boxes]
        return data


def _item_record(item: ContentItem) -> dict[str, str]:
    if isinstance(item, ImageItem):
        return {"type": "image", "role": item.role, "ref": item.ref}
    return {"type": "text", "text": item.text}


def _anomaly_decision(answer: str, question: Question) -> str | None:
    if question != ANOMALY_QUESTION:
        return None
    return {"A": "anomalous", "B": "normal"}.get(answer, UNPARSABLE)


#: ``answered_by["caas"]`` when CAAS was wanted but the backend that answered cannot apply it.
CAAS_NOT_APPLIED = "not applied (backend cannot)"
#: ``answered_by["caas"]`` of an inspection outside the band that ``--force-caas`` sent to CAAS anyway.
CAAS_FORCED = "applied (forced outside the band)"


def answered_by(
    backend_name: str,
    reply_metadata: dict[str, Any],
    condition: str,
    caas_requested: bool,
    caas_applied: bool,
    forced_outside_band: bool = False,
) -> dict[str, str]:
    """Which backend answered (a hybrid names its engine or CAAS backend) and what became of CAAS.

    Said per record because a hybrid sends band and out-of-band inspections to different backends,
    and a CAAS request answered by an engine must read as such, never as a plain answer. CAAS that
    ``--force-caas`` applied outside the band says so (:data:`CAAS_FORCED`): a reader of one record must
    not take it for the band rule's.
    """
    if caas_requested:
        applied = CAAS_FORCED if forced_outside_band else "applied"
        caas = applied if caas_applied else str(reply_metadata.get("caas_not_applied", CAAS_NOT_APPLIED))
    elif condition == "eagle":
        caas = "not needed (outside the band)"
    else:
        caas = f"off (condition {condition})"
    return {
        "backend": str(reply_metadata.get("backend") or backend_name),
        "route": str(reply_metadata.get("route", "single")),
        "caas": caas,
    }


def answered_by_line(who: dict[str, str]) -> str:
    """``answered by: <backend> (route <route>), CAAS <what became of it>``: the text of an :func:`answered_by`.

    The one wording of the record's ``answered_by`` for a person (``eagle inspect``'s text): derived from the
    same fields ``--json`` shows, so the two cannot drift, and it says CAAS's fate whether applied or not
    ("not needed (outside the band)", "off (condition tgps)") where a bare "CAAS" tag said only the first.
    """
    return f"answered by: {who.get('backend', '?')} (route {who.get('route', 'single')}), CAAS {who.get('caas', '?')}"


#: ``metadata["visual_prompt_note"]`` of an EAGLE verdict whose condition can send the boxed copy but did not:
#: why the MLLM was shown the image alone (``eagle inspect`` prints it; ``--json`` and the service records carry it).
VISUAL_PROMPT_NOTE = "visual_prompt_note"


def visual_prompt_note(condition: str, expert_decision: str | None, unrecognised: bool | None) -> str | None:
    """Why no boxed copy (visual prompt) went to the MLLM, or None where one did or the condition never sends one.

    Said in the verdict, not only in the CLI's text, so a JSON reader learns the reason as a person does.
    """
    if not uses_expert(condition):
        return None  # baseline shows the image alone by design: nothing to explain
    if _MODES[condition] == "text-only":
        return ("none sent (the text-only condition gives the MLLM no picture prompt: it was shown the image alone, "
                "with the expert's finding in words)")  # fmt: skip
    if expert_decision == "anomalous" and not unrecognised:
        return None
    why = "the expert called it normal" if expert_decision != "anomalous" else "no boxes were drawn"
    if unrecognised:
        why = "not like the training images"
    return f"none sent ({why}: the MLLM was shown the image alone)"


def uses_expert(condition: str) -> bool:
    """Whether ``condition`` reads the expert's result: every one but ``baseline`` (the MLLM alone)."""
    return condition != "baseline"


def expert_pass(expert: Expert, image: np.ndarray) -> ExpertResult:
    """The expert stage of one inspection on its own: what :meth:`Eagle.inspect` runs unless handed a result.

    A step of its own so that a caller asking several conditions or questions about one image
    (``eagle eval``) runs it once and hands the result to each :meth:`Eagle.inspect` and to
    :func:`eagle_iad.verdict.make_verdict`. One image per backbone pass, as in :meth:`Eagle.inspect`,
    so the numbers are the same bit for bit (a backbone's float32 output depends on its batch).
    """
    return expert.inspect(image)


class Eagle:
    """Expert + MLLM backend + config; :meth:`inspect` gives an :class:`EagleVerdict` per image."""

    def __init__(self, expert: Expert | None, backend: Backend, config: EagleConfig | None = None) -> None:
        self.expert = expert
        self.backend = backend
        self.config = config or EagleConfig()
        if self.expert is None and self.config.condition != "baseline":
            raise ConfigError(f"condition {self.config.condition!r} needs a fitted expert")
        self._template: np.ndarray | None = None
        if self.config.template_image is not None:
            self._template = load_rgb(self.config.template_image)

    def inspect(
        self,
        image: ImageSource | np.ndarray,
        question: Question | None = None,
        name: str | None = None,
        expert_result: ExpertResult | None = None,
        sent: dict[str, np.ndarray] | None = None,
    ) -> EagleVerdict:
        """Run the configured condition on one image (a path, encoded bytes or an RGB array).

        ``expert_result`` is this image's expert pass when the caller already ran it (the service
        renders the expert's pictures from it first; ``eagle eval`` asks every condition of an image
        with one :func:`expert_pass`): the expert then runs once per image, not once per call.
        ``sent``, when given, receives the images the prompt referred to, by reference (the verdict's
        ``prompt`` names them): the pixels the MLLM was shown, so ``eagle inspect --out`` can save the
        boxed visual prompt itself rather than a redrawing of it.
        """
        start = time.perf_counter()
        question = question or ANOMALY_QUESTION
        if name is None:
            name = "query.png" if isinstance(image, (np.ndarray, bytes)) else str(image)
        rgb = image if isinstance(image, np.ndarray) else load_rgb(image)
        images: dict[str, np.ndarray] = {name: rgb}
        condition = self.config.condition
        score = tau = s_max = None
        expert_decision: str | None = None
        prior: Prior | None = None
        in_band = False
        boxes: list[Box] = []
        boxed_ref: str | None = None
        reference: dict[str, Any] | None = None
        near_threshold: bool | None = None
        unrecognised: bool | None = None
        timings: dict[str, float] = {}
        if uses_expert(condition) and self.expert is not None:
            result = expert_result if expert_result is not None else expert_pass(self.expert, rgb)
            verdict = make_verdict(self.expert, name, result)
            score, tau, s_max = verdict.score, verdict.tau, verdict.s_max
            expert_decision, in_band, boxes = verdict.decision, verdict.in_band, verdict.boxes
            reference, near_threshold = verdict.reference, verdict.near_threshold
            unrecognised = verdict.unrecognised
            prior = None if unrecognised else "anomalous" if verdict.is_anomalous else "normal"
            if verdict.is_anomalous and _MODES[condition] != "text-only":
                boxed_ref = f"{Path(name).stem}_{self.config.style}.png"
                threshold = region_threshold(verdict)
                images[boxed_ref] = render(rgb, result.anomaly_map, boxes, self.config.style, threshold=threshold)
            timings["expert_s"] = time.perf_counter() - start
        template_ref = None
        if self._template is not None and self.config.template_image is not None:
            template_ref = self.config.template_image
            images[template_ref] = self._template
        items = build_prompt(
            PromptRequest(
                query_ref=name,
                prior=prior,
                boxed_ref=boxed_ref,
                template_ref=template_ref,
                questions=(question,),
                mode=_MODES[condition],
                templates=self.config.templates,
            )
        )
        use_caas = condition == "eagle" and (in_band or self.config.force_caas)
        options = GenerateOptions(
            max_new_tokens=self.config.max_new_tokens,
            caas=self.config.caas if use_caas else None,
            capture_attention=self.config.capture_attention,
        )
        if sent is not None:
            sent.update({item.ref: images[item.ref] for item in items if isinstance(item, ImageItem)})
        reply = self.backend.generate(items, images, options)
        parsed = parse_answer(reply.text, question)
        timings.update({f"mllm_{k}": v for k, v in reply.timings.items()})
        timings["total_s"] = time.perf_counter() - start
        note = None if boxed_ref is not None else visual_prompt_note(condition, expert_decision, unrecognised)
        return EagleVerdict(
            image=name,
            condition=condition,
            score=score,
            tau=tau,
            s_max=s_max,
            expert_decision=expert_decision,
            in_band=in_band,
            boxes=boxes,
            prompt=[_item_record(item) for item in items],
            reply=reply.text,
            answer=parsed.answer,
            parse_method=parsed.method,
            decision=_anomaly_decision(parsed.answer, question),
            caas_applied=reply.caas_applied,
            caas_settings=reply.caas_settings,
            timings=timings,
            attention=None if reply.attention is None else reply.attention.to_dict(),
            metadata={
                "backend": self.backend.name,
                "caas_forced": self.config.force_caas,
                **({"caas_rule": caas_rule(self.config.force_caas)} if condition == "eagle" else {}),
                **reply.metadata,
                **({} if note is None else {VISUAL_PROMPT_NOTE: note}),
            },
            reference=reference,
            answered_by=answered_by(
                self.backend.name,
                reply.metadata,
                condition,
                options.caas is not None,
                reply.caas_applied,
                forced_outside_band=use_caas and not in_band,
            ),
            near_threshold=near_threshold,
            unrecognised=unrecognised,
        )


#: The name ``eagle inspect --out`` gives the boxed copy an MLLM was shown: ``<stem>_visual_prompt.png``.
VISUAL_PROMPT_SUFFIX = "_visual_prompt.png"


def write_attention_overlays(
    rgb: np.ndarray,
    attention: dict[str, Any],
    out_dir: Path,
    stem: str,
    random_model: bool = False,
    sliding: dict[str, Any] | None = None,
) -> dict[str, Path]:
    """``<stem>_attn_L<layer>.png`` per captured layer; the CLI and the service both write them here.

    ``random_model`` (the reply said ``random_test_model``): each picture carries the caption ``eagle attention``'s
    pictures carry (:func:`eagle_iad.mllm.attention.mark_random`, above the overlay and in its PNG ``Description``),
    so a picture of noise is never shown as a model's attention. ``sliding`` (the reply's ``sliding_window``
    record): a sliding-window layer's picture says in its ``Description`` that its image attention is local
    (:func:`eagle_iad.mllm.attention.sliding_window_note`), so its flat overlay is not read as a finding.
    """
    from eagle_iad.mllm.attention import (
        RANDOM_CAPTION,
        attention_overlay,
        random_marked_overlay,
        sliding_window_note,
    )
    from eagle_iad.mllm.base import AttentionCapture

    capture = AttentionCapture.from_dict(attention)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for layer in sorted(capture.per_layer):
        path = out_dir / f"{stem}_attn_L{layer}.png"
        picture = attention_overlay(rgb, capture, layer)
        local = sliding is not None and layer in sliding.get("layers", [])
        note = sliding_window_note([layer], int(sliding["window"])) if local and sliding is not None else None
        if random_model:
            lines = "\n".join(line for line in (RANDOM_CAPTION, note) if line)
            save_png(path, random_marked_overlay(picture), description=lines)
        else:
            save_png(path, picture, description=note)
        written[f"attention_L{layer}"] = path
    return written


Verdict = ExpertVerdict | EagleVerdict


def record_fields(verdict: Verdict) -> dict[str, Any]:
    """The inspection record's fields that a verdict decides, keyed by :class:`InspectionRecord` field.

    The one derivation: the record builder and the eval runner's JSONL records both read them here,
    so a new record field is one line in ``record.py`` plus one entry below. An expert verdict
    (no MLLM) decides by itself: no answer, no CAAS, nobody else answered.
    """
    if isinstance(verdict, ExpertVerdict):
        return {"score": verdict.score, "tau": verdict.tau, "s_max": verdict.s_max, "decision": verdict.decision,
                "in_band": verdict.in_band, "answer": None, "caas_applied": False, "reference": verdict.reference,
                "answered_by": None, "near_threshold": verdict.near_threshold,
                "unrecognised": verdict.unrecognised}  # fmt: skip
    return {"score": verdict.score, "tau": verdict.tau, "s_max": verdict.s_max, "decision": verdict.decision,
            "in_band": verdict.in_band, "answer": verdict.answer, "caas_applied": bool(verdict.caas_applied),
            "reference": verdict.reference, "answered_by": verdict.answered_by,
            "near_threshold": verdict.near_threshold, "unrecognised": verdict.unrecognised}  # fmt: skip


def now_iso() -> str:
    """An inspection's time as the history stores it (UTC, ISO 8601, milliseconds)."""
    return iso_time()


def inspect_records(
    expert: Expert | None,
    images: Sequence[ImageSource | np.ndarray],
    *,
    category: str,
    names: Sequence[str] | None = None,
    ids: Sequence[str] | None = None,
    when: str | None = None,
    eagle: Eagle | None = None,
    question: Question | None = None,
    out_dir: Path | None = None,
    stems: Sequence[str] | None = None,
    style: RenderStyle = "box",
    show_candidates: bool = False,
    show_progress: bool = False,
    expert_pictures: bool = True,
    run_expert: Callable[[list[np.ndarray]], list[ExpertResult]] | None = None,
    model_version: int | None = None,
    prompt_pictures: bool = False,
) -> list[InspectionRecord]:
    """Inspect images end to end and return one record each; the only place the steps are chained.

    The expert runs once per image (``run_expert``, default one batch through
    ``expert.inspect_many``; the service passes its micro-batcher), and its result gives both the
    pictures and, with ``eagle``, the MLLM's prompt. With ``out_dir`` the expert's pictures
    (unless ``expert_pictures`` is off) and any attention overlays are written there, named by
    ``stems`` (default: :func:`eagle_iad.naming.picture_stems` of ``names``); the record's
    ``pictures`` map each kind to the written path, which the caller turns into its own links.
    ``verdict`` is the verdict's ``to_dict()``: the expert's (no ``eagle``) or EAGLE's, attention
    included. ``ids`` (default ``""``), ``when`` (default: now), ``category`` and ``model_version`` (the
    expert's :func:`~eagle_iad.expert.versions.current_version` when it was loaded) are the caller's.
    With ``prompt_pictures`` (``eagle inspect --out``) the boxed copy the MLLM was shown is written too,
    as ``<stem>_visual_prompt.png`` (kind ``visual_prompt``): the evidence picture (``<stem>_<style>.png``)
    adds box tags and hatching for a person, so only this file is what the model saw.
    """
    if eagle is not None and expert is None:
        expert = eagle.expert
    if expert is None and (eagle is None or eagle.config.condition != "baseline"):
        raise ConfigError("an inspection needs a fitted expert (or an MLLM in the baseline condition)")
    rgbs = [image if isinstance(image, np.ndarray) else load_rgb(image) for image in images]
    digests = [image_digest(image) for image in images]
    model = None if expert is None else expert.model
    warned = [input_warnings(model, image, rgb) for image, rgb in zip(images, rgbs, strict=True)]
    if names is None:
        names = ["upload.png" if isinstance(image, (bytes, np.ndarray)) else str(image) for image in images]
    stems = picture_stems(names) if stems is None else stems
    ids = [""] * len(rgbs) if ids is None else ids
    needs_expert = expert is not None and (eagle is None or eagle.config.condition != "baseline")
    results: list[ExpertResult | None] = [None] * len(rgbs)
    if needs_expert:
        assert expert is not None
        if run_expert is None:
            results = list(expert.inspect_many(rgbs, show_progress=show_progress))
        else:
            results = list(run_expert(rgbs))
    records = []
    for index, (name, stem, rgb, result) in enumerate(zip(names, stems, rgbs, results, strict=True)):
        pictures: dict[str, str] = {}
        expert_verdict = None
        if result is not None:
            assert expert is not None
            expert_verdict = make_verdict(expert, name, result)
            if out_dir is not None and expert_pictures:
                write_pictures(expert_verdict, rgb, result, out_dir, style, show_candidates, stem, expert)
                pictures.update(expert_verdict.pictures)
        verdict: Verdict
        if eagle is None:
            assert expert_verdict is not None
            verdict = expert_verdict
        else:
            sent: dict[str, np.ndarray] = {}
            verdict = eagle.inspect(rgb, question, name, expert_result=result, sent=sent)
            boxed = [item["ref"] for item in verdict.prompt if item["type"] == "image" and item["role"] == "boxed"]
            if out_dir is not None and prompt_pictures and boxed:
                prompt_path = out_dir / f"{stem}{VISUAL_PROMPT_SUFFIX}"
                save_png(prompt_path, sent[boxed[0]])
                pictures["visual_prompt"] = str(prompt_path)
            if out_dir is not None and verdict.attention is not None:
                random_model = bool(verdict.metadata.get(RANDOM_MODEL_MARK))
                sliding = verdict.metadata.get("sliding_window")
                written = write_attention_overlays(
                    rgb, verdict.attention, out_dir, stem, random_model, sliding if isinstance(sliding, dict) else None
                )
                pictures.update({kind: str(path) for kind, path in written.items()})
        records.append(
            InspectionRecord(
                id=ids[index],
                time=now_iso() if when is None else when,
                category=category,
                image_name=name,
                verdict=verdict.to_dict(),
                pictures=pictures,
                **record_fields(verdict),
                image_sha256=digests[index],
                model_version=model_version,
                warnings=warned[index],
            )
        )
    return records


def input_warnings(model: object, image: ImageSource | np.ndarray, rgb: np.ndarray | None) -> list[str] | None:
    """What the record warns about its input: an encoding none of the training images had, then a colour mode
    (greyscale or colour) none of them had, then a brightness or contrast far outside theirs, then a file of several
    frames of which only the first was inspected; ``None``: nothing.

    ``model`` is the expert's model; one without the fields (a plugin's, a test's fake) knows no encoding, no
    colour mode and no exposure range, as one saved before schema 10 (11, 12) does. ``rgb`` is the decoded input
    (``None``: not judged).
    """
    warned: list[str] = []
    frames = 1
    trained = getattr(model, "train_encodings", None)
    if not isinstance(image, np.ndarray):
        try:
            frames = frame_count(image)
            encoding = None if trained is None else input_warning(trained, image_encoding(image))
        except ImageError:  # decoded above, so readable; a header read failing now is no reason to lose the verdict
            encoding = None
        if encoding is not None:
            warned.append(encoding)
    colours = getattr(model, "train_colours", None)
    if colours is not None and rgb is not None:
        colour = colour_warning(colours, colour_mode(rgb))
        if colour is not None:
            warned.append(colour)
    exposure = exposure_warning(getattr(model, "train_exposure", None), rgb)
    if exposure is not None:
        warned.append(exposure)
    if frames > 1:  # an animated GIF or PNG, a multi-page TIFF: a defect in a later frame is never seen
        warned.append(f"only the first of the file's {frames} frames was inspected (an animation or a multi-page "
                      "file; docs/USAGE.md, 'Images')")  # fmt: skip
    return warned or None


def image_digest(image: ImageSource | np.ndarray) -> str | None:
    """The SHA-256 of an image file's bytes (uploaded or on disk); ``None`` for a frame already decoded."""
    if isinstance(image, np.ndarray):
        return None
    if isinstance(image, bytes):
        return hashlib.sha256(image).hexdigest()
    return file_sha256(image)
