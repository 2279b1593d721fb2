"""TGPS prompt: the expert's verdict turned into MLLM content items (docs/METHOD.md §2).

The MLLM sees an ordered list of *content items*, text and images interleaved. Keeping the prompt
as plain items (instead of a chat-template string) means one prompt definition serves every
backend: the transformers backend maps items onto the processor's chat template, an
OpenAI-compatible backend maps them onto ``content`` parts. Images are referenced by a role and a
``ref`` (a path or an id), never embedded, so a prompt can be logged and replayed verbatim.

Order (docs/METHOD.md §2): system text, answer instruction, optional one-shot normal template, expert part
(normal / anomalous with the boxed copy / baseline without expert), question list. Every string
lives in :class:`PromptTemplates` so studies can vary wording without code changes.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, TypeAlias

from eagle_iad.errors import ConfigError, one_of

ImageRole: TypeAlias = Literal["query", "boxed", "template"]
Prior: TypeAlias = Literal["normal", "anomalous"]
PromptMode: TypeAlias = Literal["full", "text-only", "visual-only"]

#: ``full``: textual prior + boxed copy (TGPS); ``text-only``: drop the boxed image (ablation of the
#: visual prompt); ``visual-only``: drop the textual prior (ablation of the text prompt).
PROMPT_MODES: tuple[PromptMode, ...] = ("full", "text-only", "visual-only")


@dataclass(frozen=True)
class TextItem:
    """A piece of prompt text."""

    text: str


@dataclass(frozen=True)
class ImageItem:
    """An image slot; ``ref`` is a path or an id resolved by the caller (see ``Backend.generate``)."""

    role: ImageRole
    ref: str


ContentItem: TypeAlias = TextItem | ImageItem


@dataclass(frozen=True)
class Question:
    """A multiple-choice question; options are lettered A, B, ... in order."""

    text: str
    options: tuple[str, ...]

    def __post_init__(self) -> None:
        if not 2 <= len(self.options) <= 26:
            raise ConfigError(f"a question needs 2 to 26 options, got {len(self.options)}")

    @property
    def letters(self) -> tuple[str, ...]:
        """Option letters in order (``("A", "B")`` for two options)."""
        return tuple(string.ascii_uppercase[: len(self.options)])


#: The anomaly-discrimination question of MMAD; A is "anomalous", B is "normal".
ANOMALY_QUESTION = Question("Is there any defect in the object?", ("Yes.", "No."))


@dataclass(frozen=True)
class PromptTemplates:
    """All prompt strings, defaults verbatim from docs/METHOD.md §2 (the paper's reference prompt)."""

    system: str = (
        "You are an industrial inspector who checks products by images. You should judge whether there is a defect "
        "in the query image and answer the questions about it."
    )
    answer_instruction: str = "Answer with the option's letter from the given choices directly!"
    template_intro: str = (
        "Following is 1 image of normal sample, which can be used as a template to compare the image being queried."
    )
    query_normal: str = "Following is the query image. The query image is predicted as normal."
    query_anomalous: str = "Following is the query image. The query image is predicted as anomalous."
    boxed_intro: str = (
        "Following is the query image with red bounding box. The position of the red bounding box on the query "
        "image is the predicted defect location."
    )
    query_baseline: str = "Following is the query image:"
    question_list_intro: str = "Following is the question list: "
    #: ``{index}`` is 1-based, ``{text}`` the question; options follow as ``"{letter}. {option}\n"``.
    question: str = "Question {index}: {text}\n"
    option: str = "{letter}. {option}\n"

    def question_list(self, questions: Sequence[Question]) -> str:
        """The question-list text (item 5 of docs/METHOD.md §2)."""
        parts = [self.question_list_intro]
        for index, question in enumerate(questions, start=1):
            parts.append(self.question.format(index=index, text=question.text))
            parts.extend(
                self.option.format(letter=letter, option=option)
                for letter, option in zip(question.letters, question.options, strict=True)
            )
        return "".join(parts)


@dataclass(frozen=True)
class PromptRequest:
    """What one prompt is built from.

    ``prior`` is the expert's decision (``None`` = baseline, MLLM alone). ``boxed_ref`` is required
    for an anomalous prior unless the mode drops the boxed image; it is ignored otherwise.
    """

    query_ref: str
    prior: Prior | None = None
    boxed_ref: str | None = None
    template_ref: str | None = None
    questions: tuple[Question, ...] = (ANOMALY_QUESTION,)
    mode: PromptMode = "full"
    templates: PromptTemplates = field(default_factory=PromptTemplates)


def _expert_part(request: PromptRequest) -> list[ContentItem]:
    t = request.templates
    query = ImageItem("query", request.query_ref)
    prior = None if request.mode == "visual-only" else request.prior
    want_boxed = request.prior == "anomalous" and request.mode != "text-only"
    if prior == "normal":
        items: list[ContentItem] = [TextItem(t.query_normal), query]
    elif prior == "anomalous":
        items = [TextItem(t.query_anomalous), query]
    else:
        items = [TextItem(t.query_baseline), query]
    if want_boxed:
        if request.boxed_ref is None:
            raise ConfigError("an anomalous prior in mode 'full' or 'visual-only' needs the boxed image (boxed_ref)")
        items += [TextItem(t.boxed_intro), ImageItem("boxed", request.boxed_ref)]
    return items


def build_prompt(request: PromptRequest) -> list[ContentItem]:
    """Content items in docs/METHOD.md §2 order.

    Ablations: ``text-only`` keeps the textual prior and drops the boxed copy (and its caption);
    ``visual-only`` keeps the boxed copy for anomalous predictions but replaces the prior sentence
    by the baseline caption, so the model gets no textual hint either way.
    """
    if request.mode not in PROMPT_MODES:
        raise ConfigError(f"unknown prompt mode {request.mode!r}; choose one of {one_of(PROMPT_MODES)}")
    if not request.questions:
        raise ConfigError("a prompt needs at least one question")
    t = request.templates
    items: list[ContentItem] = [TextItem(t.system), TextItem(t.answer_instruction)]
    if request.template_ref is not None:
        items += [TextItem(t.template_intro), ImageItem("template", request.template_ref)]
    items += _expert_part(request)
    items.append(TextItem(t.question_list(request.questions)))
    return items


def image_refs(items: Sequence[ContentItem]) -> list[ImageItem]:
    """The image items in prompt order (the n-th image run in the token ids is the n-th of these)."""
    return [item for item in items if isinstance(item, ImageItem)]
