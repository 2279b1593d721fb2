"""MLLM reply → option letter (docs/METHOD.md §2 answer parsing).

MLLMs asked to "answer with the option's letter" mostly comply, but real replies come as ``B``,
``B.``, ``(B)``, ``**B**``, ``Answer: B``, ``The answer is B.`` or as prose ("Yes, there is a
scratch"). Parsing order, strongest evidence first:

1. the whole reply is one option letter (any case, any wrapping punctuation / markdown);
2. an explicit "answer/option/choice (is) X" phrase (any case);
3. the first standalone *upper-case* option letter, skipping an ``A``/``I`` used as an English
   article or pronoun ("A crack is visible") — a letter followed by a lower-case word is prose,
   unless that word is one that follows an option, never an article ("A is correct");
4. the option text: the option whose (normalised) text occurs earliest as whole words in the reply
   ("Yes, there is a defect" → the "Yes." option), else a close whole-reply string match.

Anything else is :data:`UNPARSABLE`, recorded as such and never silently counted as "No".
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, TypeAlias

from eagle_iad.tgps.prompt import Question

UNPARSABLE = "unparsable"
ParseMethod: TypeAlias = Literal["letter", "text", "unparsable"]

_EXPLICIT = re.compile(
    r"\b(?:answer|option|choice)\s*(?:is|would be|:|：|-)?\s*:?\s*[\(\[*\"']*\s*([A-Za-z])\s*[\)\]*\"']*(?![A-Za-z])",
    re.IGNORECASE,
)
#: A lower-case word right after a capital letter marks prose ("A crack"), except these words,
#: which follow an option letter but never the article ("A is correct", "B because ...").
_NEXT_WORD = re.compile(r"\s+([a-z]+)")
_LETTER_FOLLOWERS = frozenset({"is", "was", "seems", "because", "since", "would", "should"})
_STANDALONE = re.compile(r"(?<![A-Za-z0-9'])([A-Z])(?![A-Za-z0-9'])")
_WRAPPING = " \t\r\n.:;,!?()[]{}*_`'\"<>"
_WORDS = re.compile(r"[a-z0-9]+")
#: Whole-reply similarity needed to accept an option by fuzzy text match (reply ≈ option text).
_FUZZY_MIN_RATIO = 0.8


@dataclass(frozen=True)
class ParsedAnswer:
    """The parsed reply: ``answer`` is an option letter or :data:`UNPARSABLE`."""

    answer: str
    method: ParseMethod
    reply: str

    @property
    def is_parsed(self) -> bool:
        """True when an option was recognised."""
        return self.answer != UNPARSABLE


def _normalise_words(text: str) -> list[str]:
    return _WORDS.findall(text.lower())


def _letter_from_reply(reply: str, letters: Sequence[str]) -> str | None:
    whole = reply.strip(_WRAPPING)
    if len(whole) == 1 and whole.upper() in letters:
        return whole.upper()
    explicit = _EXPLICIT.search(reply)
    if explicit is not None and explicit.group(1).upper() in letters:
        prose = explicit.group(1).islower() and re.match(r"\s+[a-z]", reply[explicit.end() :])
        if not prose:  # "the answer is a scratch" is prose; "answer: a" is a letter.
            return explicit.group(1).upper()
    for match in _STANDALONE.finditer(reply):
        letter = match.group(1)
        if letter not in letters:
            continue
        follower = _NEXT_WORD.match(reply[match.end() :])
        if follower is not None and follower.group(1) not in _LETTER_FOLLOWERS:
            continue  # "A crack ..." / "I think ...": an article or pronoun, not an option.
        return letter
    return None


def _option_from_text(reply: str, question: Question) -> str | None:
    words = _normalise_words(reply)
    if not words:
        return None
    best: tuple[int, str] | None = None
    for letter, option in zip(question.letters, question.options, strict=True):
        needle = _normalise_words(option)
        if not needle:
            continue
        for start in range(len(words) - len(needle) + 1):
            if words[start : start + len(needle)] == needle:
                if best is None or start < best[0]:
                    best = (start, letter)
                break
    if best is not None:
        return best[1]
    joined = " ".join(words)
    ratios = [
        (difflib.SequenceMatcher(None, joined, " ".join(_normalise_words(option))).ratio(), letter)
        for letter, option in zip(question.letters, question.options, strict=True)
    ]
    ratio, letter = max(ratios)
    return letter if ratio >= _FUZZY_MIN_RATIO else None


def parse_answer(reply: str, question: Question) -> ParsedAnswer:
    """Map a reply onto one of ``question``'s option letters, or :data:`UNPARSABLE`."""
    letter = _letter_from_reply(reply, question.letters)
    if letter is not None:
        return ParsedAnswer(letter, "letter", reply)
    letter = _option_from_text(reply, question)
    if letter is not None:
        return ParsedAnswer(letter, "text", reply)
    return ParsedAnswer(UNPARSABLE, "unparsable", reply)
