"""The evaluation protocol (docs/METHOD.md §5): conditions, questions and the work items of one run.

A run is a flat list of :class:`WorkItem` s — one (image, question) each — times the requested
conditions. Keeping the items plain and JSON-ready means the same list drives the local loop, a
Ray actor pool and the resume check (an item's key is ``(image, question_id, condition)``).

Sources of items:

* ``mmad``: MMAD's ``mmad.json`` (image key → ``mask_path``, ``conversation`` items with
  ``Question`` / ``Answer`` / ``Options`` / ``type``, ``similar_templates`` / ``random_templates``);
  only the anomaly-detection question by default, all seven task types with ``tasks="all"``.
* every other layout: the anomaly-detection question is generated per test image, its gold answer
  taken from the layout's label.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeAlias

from eagle_iad.data import Sample, get_layout
from eagle_iad.data.selection import select_balanced
from eagle_iad.errors import ConfigError, DataError
from eagle_iad.tgps.prompt import ANOMALY_QUESTION, Question

#: Every condition ``eagle eval`` knows: ``expert`` is PatchCore at tau alone (no MLLM); the others
#: are the pipeline's conditions (see :mod:`eagle_iad.pipeline`).
EVAL_CONDITIONS: tuple[str, ...] = ("baseline", "expert", "tgps", "eagle", "text-only", "visual-only")
Tasks: TypeAlias = Literal["anomaly", "all"]
#: MMAD's anomaly-discrimination task type; its questions feed the accuracy/precision/recall metrics.
ANOMALY_TYPE = "Anomaly Detection"
#: MMAD's seven task types (the ``type`` field of each conversation item).
MMAD_TYPES: tuple[str, ...] = (
    "Anomaly Detection",
    "Defect Classification",
    "Defect Localization",
    "Defect Description",
    "Defect Analysis",
    "Object Classification",
    "Object Analysis",
)


@dataclass(frozen=True)
class WorkItem:
    """One (image, question) to be answered under every condition of the run.

    ``answer`` is the gold option letter; for the anomaly question ``A`` = anomalous. ``templates``
    are normal images of the category (the 1-shot template is the first of them).
    """

    category: str
    image: str
    label: int
    question_id: str
    qtype: str
    question: str
    options: tuple[str, ...]
    answer: str
    defect_type: str = "good"
    mask_path: str | None = None
    templates: tuple[str, ...] = field(default_factory=tuple)

    @property
    def is_anomaly_question(self) -> bool:
        return self.qtype == ANOMALY_TYPE

    def to_question(self) -> Question:
        return Question(self.question, self.options)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["options"] = list(self.options)
        data["templates"] = list(self.templates)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WorkItem:
        values = dict(data)
        values["options"] = tuple(values["options"])
        values["templates"] = tuple(values.get("templates", ()))
        return cls(**values)


def parse_conditions(value: str) -> tuple[str, ...]:
    """``"baseline,eagle"`` → ``("baseline", "eagle")``, in the canonical order, unknown names refused."""
    names = [part.strip() for part in value.split(",") if part.strip()]
    unknown = [name for name in names if name not in EVAL_CONDITIONS]
    if unknown or not names:
        raise ConfigError(f"unknown or empty --conditions {value!r}; choose from {', '.join(EVAL_CONDITIONS)}")
    return tuple(name for name in EVAL_CONDITIONS if name in names)


def _anomaly_item(sample: Sample, templates: tuple[str, ...]) -> WorkItem:
    return WorkItem(
        category=sample.category,
        image=str(sample.path),
        label=int(sample.label),
        question_id="anomaly",
        qtype=ANOMALY_TYPE,
        question=ANOMALY_QUESTION.text,
        options=ANOMALY_QUESTION.options,
        answer="A" if sample.label == 1 else "B",
        defect_type=sample.defect_type,
        mask_path=None if sample.mask_path is None else str(sample.mask_path),
        templates=templates,
    )


def layout_items(layout: str, root: Path | None, categories: Sequence[str] | None = None) -> list[WorkItem]:
    """Anomaly-detection items for every test image of every (or the given) category of a layout."""
    data = get_layout(layout)
    names = list(categories) if categories else data.categories(root)
    items: list[WorkItem] = []
    for category in names:
        train = data.samples(root, category, "train")
        templates = (str(train[0].path),)
        items += [_anomaly_item(sample, templates) for sample in data.samples(root, category, "test")]
    return items


def layout_training(layout: str, root: Path | None, category: str) -> list[Path]:
    """The normal training images a missing expert of ``category`` is fitted on."""
    return [sample.path for sample in get_layout(layout).samples(root, category, "train")]


def _mmad_category(key: str) -> tuple[str, str]:
    """Category and defect type from an MMAD image key such as ``DS-MVTec/bottle/image/broken_large/000.png``."""
    parts = Path(key).parts
    if len(parts) < 3:
        raise DataError(f"mmad.json image key {key!r} is not <...>/<category>/<split>/<defect>/<file>")
    category = parts[-4] if len(parts) >= 4 else parts[0]
    return category, parts[-2]


def _mmad_label(key: str, conversation: Sequence[dict[str, Any]]) -> int:
    """1 for an anomalous image: the anomaly question's gold option says "Yes", else the folder is not ``good``."""
    for turn in conversation:
        if turn.get("type") == ANOMALY_TYPE:
            text = str(turn["Options"].get(turn["Answer"], "")).strip().lower()
            return 1 if text.startswith("yes") else 0
    return 0 if Path(key).parts[-2] == "good" else 1


def mmad_items(mmad_json: Path, root: Path, tasks: Tasks = "anomaly") -> list[WorkItem]:
    """Work items from MMAD's ``mmad.json``; paths in it are relative to the data ``root``."""
    try:
        data = json.loads(Path(mmad_json).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot read {mmad_json}: {exc}") from exc
    if not isinstance(data, dict):
        raise DataError(f"{mmad_json}: expected an object keyed by image path")
    items: list[WorkItem] = []
    for key in sorted(data):
        entry = data[key]
        conversation = entry.get("conversation", [])
        category, defect = _mmad_category(key)
        label = _mmad_label(key, conversation)
        templates = tuple(
            str(root / t) for t in [*entry.get("similar_templates", []), *entry.get("random_templates", [])]
        )
        mask = entry.get("mask_path")
        for index, turn in enumerate(conversation):
            qtype = str(turn.get("type", ""))
            if tasks == "anomaly" and qtype != ANOMALY_TYPE:
                continue
            options: dict[str, str] = turn["Options"]
            letters = sorted(options)
            if turn["Answer"] not in options:
                raise DataError(f"{mmad_json}: {key} question {index}: answer {turn['Answer']!r} is not an option")
            items.append(
                WorkItem(
                    category=category,
                    image=str(root / key),
                    label=label,
                    question_id=f"q{index}",
                    qtype=qtype,
                    question=str(turn["Question"]),
                    options=tuple(str(options[letter]) for letter in letters),
                    answer=chr(ord("A") + letters.index(turn["Answer"])),
                    defect_type=defect,
                    mask_path=str(root / mask) if mask else None,
                    templates=templates,
                )
            )
    if not items:
        raise DataError(f"{mmad_json}: no questions of the requested tasks ({tasks})")
    return items


def mmad_training(items: Sequence[WorkItem], category: str) -> list[Path]:
    """MMAD ships no training split: a missing expert is fitted on the category's template normals."""
    seen: dict[str, None] = {}
    for item in items:
        if item.category == category:
            seen.update(dict.fromkeys(item.templates))
    return [Path(p) for p in seen]


def limit_items(items: list[WorkItem], limit: int | None, seed: int = 0) -> list[WorkItem]:
    """At most ``limit`` images per category (all their questions kept): :func:`select_balanced`'s draw.

    Half normal, half anomalous (so a small run's accuracy means something), seeded by ``--seed``, the
    anomalous half spread over the defect types; the rule is recorded in the run's configuration.
    """
    if limit is None:
        return items
    images: dict[str, dict[str, WorkItem]] = {}
    for item in items:
        images.setdefault(item.category, {}).setdefault(item.image, item)
    keep: set[str] = set()
    for seen in images.values():
        picked = select_balanced(list(seen.values()), limit, seed, lambda i: i.label, lambda i: i.defect_type)
        keep.update(item.image for item in picked)
    return [item for item in items if item.image in keep]
