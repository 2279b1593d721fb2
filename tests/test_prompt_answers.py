"""TGPS prompt items (docs/METHOD.md §2 wording and order) and the reply parser."""

from __future__ import annotations

import pytest

from eagle_iad.errors import ConfigError
from eagle_iad.tgps.answers import UNPARSABLE, parse_answer
from eagle_iad.tgps.prompt import (
    ANOMALY_QUESTION,
    ImageItem,
    PromptRequest,
    PromptTemplates,
    Question,
    TextItem,
    build_prompt,
    image_refs,
)

SYSTEM = TextItem(
    "You are an industrial inspector who checks products by images. You should judge whether there is a defect "
    "in the query image and answer the questions about it."
)
INSTRUCTION = TextItem("Answer with the option's letter from the given choices directly!")
TEMPLATE = [
    TextItem(
        "Following is 1 image of normal sample, which can be used as a template to compare the image being queried."
    ),
    ImageItem("template", "tmpl.png"),
]
NORMAL = [TextItem("Following is the query image. The query image is predicted as normal."), ImageItem("query", "q")]
ANOMALOUS = [
    TextItem("Following is the query image. The query image is predicted as anomalous."),
    ImageItem("query", "q"),
]
BOXED = [
    TextItem(
        "Following is the query image with red bounding box. The position of the red bounding box on the query "
        "image is the predicted defect location."
    ),
    ImageItem("boxed", "b"),
]
BASELINE = [TextItem("Following is the query image:"), ImageItem("query", "q")]
QUESTIONS = TextItem(
    "Following is the question list: Question 1: Is there any defect in the object?\nA. Yes.\nB. No.\n"
)


@pytest.mark.parametrize(
    ("prior", "mode", "template", "expected_middle"),
    [
        ("normal", "full", False, NORMAL),
        ("anomalous", "full", False, ANOMALOUS + BOXED),
        (None, "full", False, BASELINE),
        ("normal", "full", True, TEMPLATE + NORMAL),
        ("anomalous", "full", True, TEMPLATE + ANOMALOUS + BOXED),
        (None, "full", True, TEMPLATE + BASELINE),
        ("anomalous", "text-only", False, ANOMALOUS),
        ("normal", "text-only", False, NORMAL),
        ("anomalous", "visual-only", False, BASELINE + BOXED),
        ("normal", "visual-only", True, TEMPLATE + BASELINE),
    ],
)
def test_prompt_items_exact(prior: str | None, mode: str, template: bool, expected_middle: list[object]) -> None:
    request = PromptRequest(
        query_ref="q",
        prior=prior,  # type: ignore[arg-type]
        boxed_ref="b",
        template_ref="tmpl.png" if template else None,
        mode=mode,  # type: ignore[arg-type]
    )
    assert build_prompt(request) == [SYSTEM, INSTRUCTION, *expected_middle, QUESTIONS]


def test_boxed_ref_required_and_ignored_when_not_needed() -> None:
    with pytest.raises(ConfigError, match="boxed"):
        build_prompt(PromptRequest(query_ref="q", prior="anomalous"))
    # text-only never needs the boxed copy; normal ignores a given one.
    assert ImageItem("boxed", "b") not in build_prompt(PromptRequest(query_ref="q", prior="normal", boxed_ref="b"))
    build_prompt(PromptRequest(query_ref="q", prior="anomalous", mode="text-only"))
    with pytest.raises(ConfigError, match="mode"):
        build_prompt(PromptRequest(query_ref="q", mode="both"))  # type: ignore[arg-type]


def test_templates_configurable_and_multi_question() -> None:
    templates = PromptTemplates(system="SYS", query_baseline="Q:", question="Q{index}) {text}\n")
    questions = (ANOMALY_QUESTION, Question("Which defect?", ("Crack.", "Scratch.", "None.")))
    items = build_prompt(PromptRequest(query_ref="q", questions=questions, templates=templates))
    assert items[0] == TextItem("SYS")
    assert items[2:4] == [TextItem("Q:"), ImageItem("query", "q")]
    assert items[-1] == TextItem(
        "Following is the question list: Q1) Is there any defect in the object?\nA. Yes.\nB. No.\n"
        "Q2) Which defect?\nA. Crack.\nB. Scratch.\nC. None.\n"
    )
    assert [i.role for i in image_refs(build_prompt(PromptRequest("q", "anomalous", "b", "t")))] == [
        "template",
        "query",
        "boxed",
    ]


REPLIES = [
    ("A", "A", "letter"),
    ("B", "B", "letter"),
    ("B.", "B", "letter"),
    ("(A)", "A", "letter"),
    ("Answer: B", "B", "letter"),
    ("**B**", "B", "letter"),
    ("b", "B", "letter"),
    ("a.", "A", "letter"),
    ("The answer is A.", "A", "letter"),
    ("The answer is b", "B", "letter"),
    ("A. Yes.", "A", "letter"),
    ("B. No.", "B", "letter"),
    ("Option (B) No.", "B", "letter"),
    ("  \n**Answer:** A\n", "A", "letter"),
    ("A crack is visible on the surface, so the answer is A.", "A", "letter"),
    ("A small scratch near the edge. B", "B", "letter"),
    ("A is correct.", "A", "letter"),
    ("B, because the surface is clean.", "B", "letter"),
    ("B because no defect is visible", "B", "letter"),
    ("I think the answer is (A)", "A", "letter"),
    ("Yes, there is a defect", "A", "text"),
    ("yes", "A", "text"),
    ("No.", "B", "text"),
    ("No defect is visible.", "B", "text"),
    ("There is no defect in the object.", "B", "text"),
    ("I cannot tell from this image.", UNPARSABLE, "unparsable"),
    ("", UNPARSABLE, "unparsable"),
    ("C", UNPARSABLE, "unparsable"),
    ("The answer is a scratch", UNPARSABLE, "unparsable"),
]


@pytest.mark.parametrize(("reply", "answer", "method"), REPLIES)
def test_parse_reply_table(reply: str, answer: str, method: str) -> None:
    parsed = parse_answer(reply, ANOMALY_QUESTION)
    assert (parsed.answer, parsed.method) == (answer, method)
    assert parsed.is_parsed == (answer != UNPARSABLE)
    assert parsed.reply == reply


def test_parse_three_options_text_and_letter() -> None:
    question = Question("Which defect?", ("Crack.", "Scratch.", "None."))
    assert parse_answer("C", question).answer == "C"
    assert parse_answer("It looks like a scratch.", question).answer == "B"
    assert parse_answer("Scrach", question).answer == "B"  # fuzzy whole-reply match
    assert parse_answer("D", question).answer == UNPARSABLE
