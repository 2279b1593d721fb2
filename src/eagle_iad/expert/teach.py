"""Teaching a fitted model new normal images without a refit (docs/METHOD.md, "Teaching normal images").

Why: the same normal variation (a new batch of material, a lighting change) keeps raising the same
false alarms until the model has seen it, and a refit takes minutes to hours. A teach embeds only the
new images, grows the memory bank by the fit's own rule (the sampler's ``extend``: for the greedy
coreset, continue from the bank until the new patches are covered as tightly as the fit covered its
own) and recomputes tau, s_max, the map calibration and the coverage from the leave-own-out scores,
the new images' exactly, the old images' from their kept highest-scoring patches (what is exact and
what is approximate is in docs/METHOD.md). Then it is saved like any model (atomic, crash-consistent, refused with
:class:`~eagle_iad.errors.ConflictError` when the model changed meanwhile), after three guards:

* every image must decode before anything is computed (one bad file refuses the whole teach);
* an image the model scores far above its largest training score, one it calls *unrecognised* (not
  like the training images at all, as an inspection calls it: a blocked camera, another product, a
  defect over much of the part), or
  one the history labels defective, or an inspection nobody labelled normal, is refused unless forced:
  teaching a defect would teach the model to pass it, and teaching a foreign image would teach it to pass
  a blocked camera; an image taught although it scores above s_max is named in the record's ``warnings``;
* every labelled image (the history's, whose image was kept) is scored before and after: the false
  alarms and misses on them go into the record, and a teach after which a labelled defect the model
  caught would pass is refused unless forced.

Each guard a forced teach overrode is in the record's ``forced``, in the words of its refusal, so a version
made by force says so wherever it is listed (``eagle versions``, ``GET .../versions``, the audit).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from eagle_iad.choices import MAX_TEACH_IMAGES
from eagle_iad.errors import ConfigError, EagleError, ImageError
from eagle_iad.expert.coreset import make_sampler
from eagle_iad.expert.coverage import Coverage
from eagle_iad.expert.encodings import bits_used, count_colours, count_encodings, input_warning, taught_input_warnings
from eagle_iad.expert.leave_own_out import leave_own_out_added
from eagle_iad.expert.lighting import ExposureRange, image_statistics, statistics_warning
from eagle_iad.expert.model_warnings import rewarned
from eagle_iad.expert.patchcore import Expert, ExpertModel, embed_runs, input_map, split_grids
from eagle_iad.expert.preprocess import prepare, preprocessor_of
from eagle_iad.expert.references import thumbnail
from eagle_iad.expert.search import make_search
from eagle_iad.expert.store import _fingerprint, check_changeable, labelled_parts, load, next_change, save
from eagle_iad.expert.tails import rescore, select_tails
from eagle_iad.images import image_encoding, load_rgb, unusable_error
from eagle_iad.tgps.calibration import MapCalibration, calibration_from, map_low
from eagle_iad.tgps.thresholds import Thresholds, compute_thresholds

#: An image is "far above" the model's normal scores, and refused unless forced, when it scores more
#: than ``s_max + GUARD_SPREADS * (s_max - median)``: farther above the largest training score than
#: that score is above the typical one. Measured with benchmarks/teach.py (docs/METHOD.md).
GUARD_SPREADS = 1.0

#: Images one teach takes (choices.MAX_TEACH_IMAGES: the service's request schema states it too).
MAX_IMAGES = MAX_TEACH_IMAGES

#: ``progress(stage, done, total)`` for the stages ``features``, ``coreset``, ``training scores``, ``defects``.
TeachProgress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class TeachImage:
    """One image offered to a teach: a name to report it by and its bytes (or a path).

    ``inspection``: the inspection it was taken from (the service's teach of labelled inspections), kept in
    the history entry beside the image. Why apart from ``name``: the name is what the teach's messages and the
    version comparison show ("cell0078.png"), so it stays the file's own name, not one with the id glued on.

    ``label``: that inspection's label in the history (``normal``, ``anomalous``, ``None``: nobody labelled it).
    An inspection nobody labelled normal is refused unless forced: its id may be a typo in a script, and a
    defect the model decided normal would be taught silently (t-shift finding 4).

    ``label_revision``: that inspection's ``label_revision`` when it was read, so the label a forced teach gives
    it (service/routes_teach.py ``label_taught``) is refused only if someone labelled it since (a part labelled
    and then cleared has no label and revision 2, not 0).
    """

    name: str
    source: bytes | Path
    inspection: str | None = None
    label: str | None = None
    label_revision: int = 0

    def read(self) -> bytes:
        return self.source if isinstance(self.source, bytes) else Path(self.source).read_bytes()


@dataclass(frozen=True)
class LabelledImage:
    """An image whose truth a person gave (``label`` normal or anomalous; ``where``: the inspection id): each
    is scored by the model before and after a teach, and a labelled defect that would then pass stops it."""

    where: str
    source: bytes | Path
    label: str = "anomalous"
    #: The image's file name as inspected, so a refusal names the part a person can find (not only its id).
    name: str | None = None

    def described(self) -> str:
        """``cut_000.png (inspection 8422…)``, or the id alone where the name is not known."""
        return self.where if self.name is None else f"{self.name} (inspection {self.where})"


@dataclass
class TeachResult:
    """The taught model and what the teach did: the history entry (kept with the model) and the report."""

    model: ExpertModel
    entry: dict[str, Any]
    seconds: float


def guard_limit(thresholds: Thresholds, scores: np.ndarray) -> float:
    """The score above which an image is too unlike the training images to be taught as normal."""
    median = float(np.median(scores))
    return thresholds.s_max + GUARD_SPREADS * max(thresholds.s_max - median, 0.0)


def _encoding_note(model: ExpertModel, image: TeachImage) -> str:
    """What a refusal adds when ``image`` is encoded unlike the training images (``""`` otherwise): the warning
    an inspection of it carries (expert/encodings.py).

    Why: a good part saved as JPEG scores far above a model fitted on PNGs (tire at quality 95: every normal
    image above tau), so "it looks defective" alone sends the user looking for a defect that is not there.
    """
    try:
        warning = input_warning(model.train_encodings, image_encoding(image.source))
    except ImageError:  # decoded above, so readable; a header read failing now is no reason to lose the refusal
        return ""
    return "" if warning is None else f"; or its encoding is to blame, as an inspection of it warns: {warning}"


def _taught_encodings(before: dict[str, int] | None, images: Sequence[TeachImage]) -> dict[str, int] | None:
    """The model's training encodings with the taught images' added; unknown (``None``) stays unknown."""
    if before is None:
        return None
    counts = Counter(before)
    counts.update(count_encodings(image.source if isinstance(image.source, bytes) else str(image.source)
                                  for image in images))  # fmt: skip
    return dict(sorted(counts.items()))


def _taught_colours(before: dict[str, int] | None, rgbs: Sequence[np.ndarray]) -> dict[str, int] | None:
    """The model's training colour modes with the taught images' added; unknown (``None``) stays unknown."""
    if before is None:
        return None
    counts = Counter(before)
    counts.update(count_colours(rgbs))
    return dict(sorted(counts.items()))


def _labels(images: Sequence[TeachImage]) -> list[str]:
    """How the teach's messages name each image: its name, and where two images share it, where it came from.

    Why: two images of one name (``frame.png`` of two inspections, ``a/x.png`` and ``b/x.png`` of a folder
    the service names by file name) could not be told apart in a refusal or a skip; the inspection, else the
    source path, else the image's place in the teach tells them.
    """
    counts = Counter(image.name for image in images)
    labels = []
    for index, image in enumerate(images):
        if counts[image.name] < 2:
            labels.append(image.name)
        elif image.inspection is not None:
            labels.append(f"{image.name} (inspection {image.inspection})")
        elif isinstance(image.source, Path) and str(image.source) != image.name:
            labels.append(f"{image.name} ({image.source})")
        elif isinstance(image.source, Path):
            labels.append(image.name)  # the same file given twice: nothing to tell apart
        else:
            labels.append(f"{image.name} (image {index + 1} of {len(images)})")
    return labels


def _stored_labels(images: Sequence[TeachImage], names: Sequence[str]) -> list[str]:
    """How messages about taught images (the record's warnings) name them: by their name, and by the name they
    are stored under (``taught-N/000k-x.png``, unique, as in the record's images) where two share a file name."""
    counts = Counter(Path(image.name).name for image in images)
    return [
        image.name if counts[Path(image.name).name] < 2 else f"{image.name} (stored as {name})"
        for image, name in zip(images, names, strict=True)
    ]


def _decode(images: Sequence[TeachImage], labels: Sequence[str]) -> list[tuple[np.ndarray, str]]:
    """Every image's pixels and SHA-256, or one error naming every image that cannot be used (the first 10), so
    they are fixed in one go rather than one teach at a time."""
    decoded = []
    problems: list[EagleError] = []
    for image, label in zip(images, labels, strict=True):
        try:
            data = image.read()
        except OSError as exc:
            problems.append(ImageError(f"{label}: cannot be read ({exc.strerror or exc})"))
            continue
        try:
            rgb = load_rgb(data)
        except ImageError as exc:  # decoded from its bytes, so the reason names an "uploaded image": it names the file
            problems.append(ImageError(f"{label}: {str(exc).removeprefix('uploaded image: ')}"))
            continue
        if not problems:  # pixels are kept only while they may be used
            decoded.append((rgb, hashlib.sha256(data).hexdigest()))
    if len(problems) == 1:
        raise ImageError(f"{problems[0]}; nothing was taught")
    if problems:
        raise unusable_error(problems, len(images), "images", "nothing was taught")
    return decoded


@torch.no_grad()
def _embed(
    expert: Expert, rgbs: Sequence[np.ndarray], progress: TeachProgress | None
) -> tuple[torch.Tensor, list[int], list[tuple[int, int]]]:
    """All new patches (image after image), each image's patch count and grid, batched as a fit batches
    its training images (``embed_runs``, so the same numbers)."""
    config = expert.model.config
    chunks: list[torch.Tensor] = []
    counts: list[int] = []
    grids: list[tuple[int, int]] = []
    for start in range(0, len(rgbs), config.batch_size):
        views = [prepare(rgb, config)[0] for rgb in rgbs[start : start + config.batch_size]]
        patches, batch_counts, batch_grids = embed_runs(expert.extractor, views, config)
        chunks.append(patches)
        counts.extend(batch_counts)
        grids.extend(batch_grids)
        if progress is not None:
            progress("features", min(start + len(views), len(rgbs)), len(rgbs))
    return torch.cat(chunks), counts, grids


def _map_maxima(expert: Expert, view_grids: Sequence[np.ndarray], rgbs: Sequence[np.ndarray]) -> np.ndarray:
    """Each new image's leave-own-out map maximum, drawn as a fit draws its training maps."""
    config = expert.model.config
    offset = 0.0 if expert.model.map_offset is None else expert.model.map_offset.numpy()
    maxima = []
    for views, rgb in zip(view_grids, rgbs, strict=True):
        geometry = prepare(rgb, config)[1]
        maxima.append(float(input_map(geometry.stitch(views) - offset, geometry.input_shape, config.sigma).max()))
    return np.asarray(maxima, dtype=np.float64)


def _foreign_shares(
    model: ExpertModel,
    distances: torch.Tensor,
    counts: Sequence[int],
    grids: Sequence[tuple[int, int]],
    rgbs: Sequence[np.ndarray],
) -> list[float | None]:
    """Each new image's share of patches beyond the coverage radius, on its stitched grid as an inspection
    finds it (``ExpertResult.foreign_share``); ``None`` for each when the model keeps no coverage."""
    coverage = model.coverage
    if coverage is None:
        return [None] * len(rgbs)
    view_grids = split_grids(distances.numpy(), counts, grids)  # float32, as an inspection compares them
    geometries = [prepare(rgb, model.config)[1] for rgb in rgbs]
    return [coverage.share(geometry.stitch(views)) for views, geometry in zip(view_grids, geometries, strict=True)]


def _calibration(model: ExpertModel, maxima: np.ndarray | None, thresholds: Thresholds) -> MapCalibration | None:
    """The map calibration after a teach: exact from every image's map maximum when the model kept them;
    for a model saved before schema 6, the old one scaled by the change of tau (an approximation)."""
    old = model.calibration
    if old is None or old.rule == "legacy":
        return old
    if maxima is not None:
        # The map keeps the rule it was calibrated with (a tau set by hand says nothing about maps).
        rule = old.rule
        params = thresholds.params if thresholds.rule == rule else {}
        for entry in model.history:  # the fit's parameters, kept as the first change's "before"
            first = entry.get("before") or {}
            if first.get("rule") == rule and thresholds.rule != rule:
                params = dict(first.get("params") or {})
            break
        return calibration_from(maxima, map_low(old), Thresholds(rule=rule, tau=0.0, s_max=0.0, params=params))
    factor = thresholds.tau / model.thresholds.tau if model.thresholds.tau > 0 else 1.0
    return dataclasses.replace(old, map_tau=old.map_tau * factor)


def _thresholds(model: ExpertModel, scores: np.ndarray) -> Thresholds:
    """The same rule and parameters on all scores; a tau set by hand (``fixed``) stays, s_max follows."""
    return compute_thresholds(scores, model.thresholds.rule, **model.thresholds.params)


def _above_s_max(name: str, score: float, trained: float, s_max: float, s_max_after: float) -> str:
    """The warning for an image taught although its inspection scored it above s_max.

    Why both scores: its inspection score is against the bank without it, its training score (leave-own-out)
    against the grown bank without its own rows; the grown bank holds the other new images' rows too, and its
    own patches that the coreset picked score no more, so the training score, from which s_max follows, can be
    far lower and s_max need not rise at all (tire: 91.44 on inspection, 77.96 once taught).
    """
    if s_max_after > s_max:
        moved = f"s_max rose to {s_max_after:.4g}"
    elif s_max_after == s_max:
        moved = f"s_max stays {s_max:.4g}"
    else:  # the old images' scores fell with the added bank rows
        moved = f"s_max fell to {s_max_after:.4g}"
    return (f"{name} scored {score:.4g} on inspection, above the largest normal training score (s_max) {s_max:.4g}: "
            f"it was taught, and its training score is {trained:.4g}; {moved}; check that it is normal")  # fmt: skip


def _known_images(model: ExpertModel) -> dict[str, str]:
    """The SHA-256 of every image the model holds already, with why a file with those bytes is skipped.

    Why: a copy of an image the model holds would score near 0 against its twin (its own patches are in the
    bank) and pull tau down. The fit's training images are known by content from schema 10
    (``train_sha256``); a model saved before cannot tell them, and only its taught images are checked.
    """
    known: dict[str, str] = {}
    for entry in model.history:
        if entry.get("action") == "teach" and not entry.get("undone_by"):  # one a rollback undid is not held
            for image in entry.get("images", []):
                known.setdefault(str(image.get("sha256")), f"taught before (change {entry.get('change')}, as "
                                 f"{image.get('name')})")  # fmt: skip
    for name, digest in zip(model.train_images, model.train_sha256 or [], strict=False):
        known.setdefault(digest, f"the same bytes as training image {name} (a copy would score near 0 against it)")
    return known


def _names(images: Sequence[TeachImage], change: int) -> list[str]:
    """Training-image names for the new images: under ``taught-<change>/``, unique, no host paths."""
    names = []
    for index, image in enumerate(images):
        base = Path(image.name).name or f"image-{index + 1}"
        names.append(f"taught-{change}/{index + 1:04d}-{base}")
    return names


def teach(
    directory: str | Path,
    images: Sequence[TeachImage],
    *,
    why: str,
    by: str,
    force: bool = False,
    labelled_defective: Mapping[str, str] | None = None,
    labelled: Sequence[LabelledImage] = (),
    progress: TeachProgress | None = None,
) -> TeachResult:
    """Fold ``images`` (normal) into the model at ``directory`` and save it, or refuse with the reason.

    ``labelled_defective`` maps an image's SHA-256 to where it is labelled defective (an inspection
    id): such an image is refused unless ``force``. ``labelled`` images are scored by the model before
    and after (their false alarms and misses go into the record) before the taught model is saved. A
    file given twice, or taught to this model before (its SHA-256 is in the history), is taught once
    and listed as ``skipped`` (with ``skipped_why``), as is one with the same bytes as one of the fit's training
    images (schema 10 keeps their SHA-256): a copy would score near 0 against its twin and pull tau down.
    """
    started = time.perf_counter()
    if not why.strip():
        raise ConfigError("--why must say why these images are normal (it is kept in the model's history)")
    if not images:
        raise ConfigError("give at least one image to teach")
    check_changeable(directory)
    if len(images) > MAX_IMAGES:
        raise ConfigError(f"{len(images)} images: a teach takes at most {MAX_IMAGES} (teach them in parts, or refit "
                          "on all the normal images); nothing was taught")  # fmt: skip
    labels = _labels(images)
    decoded = _decode(images, labels)
    refused = []
    for label, (_, digest) in zip(labels, decoded, strict=True):
        where = (labelled_defective or {}).get(digest)
        if where is not None:
            refused.append(f"{label} is labelled defective in the history (inspection {where})")
    for label, image in zip(labels, images, strict=True):
        if image.inspection is not None and image.label is None:
            refused.append(f"{label} (inspection {image.inspection}) is labelled normal by nobody: label it normal "
                           "first (a wrong id would teach whatever it names)")  # fmt: skip
    loaded_from = _fingerprint(Path(directory))
    model = load(directory)
    known = _known_images(model)
    kept, skipped, skipped_why = [], [], []
    for image, label, (rgb, digest) in zip(images, labels, decoded, strict=True):
        if digest in known:
            skipped.append(label)
            skipped_why.append(known[digest])
        else:
            known[digest] = f"given twice (as {label})"
            kept.append((image, label, rgb, digest))
    if not kept:
        if refused and not force:
            raise ConfigError("not taught: " + "; ".join(refused) + " (check the images, or force the teach)")
        listed = "; ".join(f"{name}: {why}" for name, why in zip(skipped, skipped_why, strict=True))
        raise ConfigError(f"every image is in this model already ({listed}); nothing was taught")
    images = [image for image, _, _, _ in kept]
    labels = [label for _, label, _, _ in kept]
    decoded = [(rgb, digest) for _, _, rgb, digest in kept]
    change = next_change(model.history)
    names = _names(images, change)
    stored_labels = _stored_labels(images, names)
    expert = Expert(model)
    config = model.config
    rgbs = [rgb for rgb, _ in decoded]
    flat, counts, grids = _embed(expert, rgbs, progress)
    count = len(counts)
    trained = model.patch_image_ids.shape[0] // len(model.train_images)
    if preprocessor_of(config).fixed_grid and set(counts) != {trained}:  # a bug, not bad input: the size is fixed
        raise ConfigError(f"the images give {sorted(set(counts))} patches each, the model's training images {trained}")
    starts = np.cumsum([0, *counts[:-1]])
    before_dist, nearest = expert.search.search(flat)
    scores_before = np.maximum.reduceat(before_dist.double().numpy(), starts)
    limit = guard_limit(model.thresholds, model.train_scores)
    shares = _foreign_shares(model, before_dist, counts, grids, rgbs)
    high = []  # taught although above s_max: named in the record's warnings
    for index, (label, score, share) in enumerate(zip(labels, scores_before, shares, strict=True)):
        if model.coverage is not None and model.coverage.unrecognised(share):
            refused.append(f"{label} is unrecognised: {share:.0%} of it is beyond the training images "
                           f"({model.coverage.limit:.0%} or more makes an image unlike them)"
                           + _encoding_note(model, images[index]))  # fmt: skip
        elif score > limit:
            refused.append(f"{label} scores {score:.4g}, far above the largest normal score "
                           f"{model.thresholds.s_max:.4g} (limit {limit:.4g}): it looks defective"
                           + _encoding_note(model, images[index]))  # fmt: skip
        elif score > model.thresholds.s_max:
            high.append((index, stored_labels[index], float(score)))
    if refused and not force:
        raise ConfigError("not taught: " + "; ".join(refused) + " (check the images, or force the teach)")

    sampler = make_sampler(
        config.sampler, config.coreset_ratio, config.seed, config.projection_dim, config.coreset_points
    )
    if not hasattr(sampler, "extend"):  # a plugin sampler written before teaching existed
        raise ConfigError(f"sampler {config.sampler!r} cannot extend a fitted bank; refit on all the normal images")
    bank = model.bank.numpy()
    radius = model.coreset_radius
    if config.sampler == "greedy" and radius is None:
        radius = sampler.covering_radius(bank)  # type: ignore[attr-defined]

    def coreset_progress(done: int, total: int) -> None:
        if progress is not None:
            progress("coreset", done, total)

    extension = sampler.extend(bank, flat.numpy(), radius, coreset_progress, nearest=nearest.numpy())
    chosen = torch.from_numpy(extension.chosen)
    n_old = len(model.train_images)
    new_ids = torch.arange(n_old, n_old + count, dtype=torch.int32).repeat_interleave(torch.tensor(counts))
    new_selected = torch.zeros(flat.shape[0], dtype=torch.bool)
    new_selected[chosen] = True
    grown = torch.cat([model.bank, flat[chosen]]).contiguous()
    grown_ids = torch.cat([model.bank_image_ids, new_ids[chosen]]).contiguous()

    def score_progress(done: int, total: int) -> None:
        if progress is not None:
            progress("training scores", done, total)

    # The new images' scores: their distances to the old bank (the guard's) and to the rows of the other
    # new images chosen into the bank. The old images': from their kept highest-scoring patches where the
    # model has them (exact, or an upper bound where it cannot tell), else as they were (docs/METHOD.md).
    local_ids = new_ids - n_old
    added = None
    if chosen.numel():
        added = make_search(config.search)
        added.fit(flat[chosen].contiguous(), local_ids[chosen].contiguous())
    own_out = leave_own_out_added(flat, local_ids, new_selected, before_dist, added, count, progress=score_progress)
    new_scores = own_out.image_scores
    if not bool(np.all(np.isfinite(new_scores))):
        raise ConfigError("a taught image cannot be scored against the bank without its own patches")
    if model.tails is None:
        old_scores, exact_old, tails = model.train_scores, None, None
    else:
        added_old = None
        if chosen.numel():  # the added rows without image groups: none of them is an old image's own
            added_old = make_search(config.search)
            added_old.fit(flat[chosen].contiguous())
        rescored = rescore(model.tails, added_old, n_old)
        old_scores = rescored.scores
        exact_old = int(rescored.exact.sum())
        new_tails = select_tails(own_out.patch_scores, local_ids, new_selected, count, lambda rows: flat[rows],
                                 model.tails.per_image)  # fmt: skip
        tails = rescored.tails + dataclasses.replace(new_tails, image_ids=new_tails.image_ids + n_old)
    scores = np.concatenate([old_scores, new_scores])
    thresholds = _thresholds(model, scores)
    if thresholds.tau <= 0:
        raise ConfigError(f"the taught model's tau would be {thresholds.tau}; nothing was taught")
    patch_scores = np.asarray(own_out.patch_scores)
    new_maxima = _map_maxima(expert, split_grids(patch_scores, counts, grids), rgbs)
    maxima = None if model.map_maxima is None else np.concatenate([model.map_maxima, new_maxima])
    coverage = model.coverage
    if coverage is not None:
        finite = patch_scores[np.isfinite(patch_scores)]
        radius_after = max(coverage.radius, float(finite.max())) if finite.size else coverage.radius
        coverage = Coverage(radius=radius_after, limit=coverage.limit)
    warnings = [_above_s_max(name, score, float(new_scores[index]), model.thresholds.s_max, thresholds.s_max)
                for index, name, score in high]  # fmt: skip
    exposure, other_light = _taught_exposure(model.train_exposure, labels, rgbs)
    warnings += other_light
    entry: dict[str, Any] = {
        "change": change,
        "action": "teach",
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "by": by,
        "why": why.strip(),
        "before": model.thresholds.to_dict(),
        "after": thresholds.to_dict(),
        "images": [
            {"name": name, "sha256": digest, "score_before": float(before), "score": float(after)}
            | ({} if image.inspection is None else {"inspection": image.inspection})
            for name, image, (_, digest), before, after in zip(
                names, images, decoded, scores_before, new_scores, strict=True
            )
        ],
        # How the old images' scores were found: how many exactly from their kept patches, the others bounded
        # above; None: kept as they were (a model saved before schema 9).
        "rescored": None if exact_old is None else {"exact": exact_old, "bounded": n_old - exact_old},
        "bank_before": int(model.bank.shape[0]),
        "bank_after": int(grown.shape[0]),
        "forced": refused if refused else None,
        "skipped": skipped or None,
        # Why each was skipped, in the order of ``skipped``: a training image's twin, taught before, given twice.
        "skipped_why": skipped_why or None,
        # Images taught although inspected above s_max (with their training score, and where s_max went), and
        # images taught whose exposure lies far outside the training images' (kept out of that range).
        "warnings": warnings or None,
    }
    taught = dataclasses.replace(
        model,
        bank=grown,
        bank_image_ids=grown_ids,
        patch_image_ids=torch.cat([model.patch_image_ids, new_ids]).contiguous(),
        selected=torch.cat([model.selected, new_selected]).contiguous(),
        train_images=[*model.train_images, *names],
        train_scores=scores,
        thresholds=thresholds,
        calibration=_calibration(model, maxima, thresholds),
        coverage=coverage,
        references=None if model.references is None else [*model.references, *(thumbnail(rgb) for rgb in rgbs)],
        history=[*model.history, entry],
        map_maxima=maxima,
        coreset_radius=extension.radius if extension.radius is not None else model.coreset_radius,
        tails=tails,
        train_sha256=None if model.train_sha256 is None else [*model.train_sha256, *(d for _, d in decoded)],
        # taught images widen the range a verdict is compared with, but for those its rule calls far outside it
        # (_taught_exposure); unknown (before schema 12) stays unknown
        train_exposure=exposure,
    )
    encodings = _taught_encodings(model.train_encodings, images)
    colours = _taught_colours(model.train_colours, rgbs)
    # What a fit over the old and the taught images would warn of: the threshold's and the outliers' from the
    # scores, the inputs' (mixed encodings or colour modes, 16-bit PNGs using few bits) from the counts.
    warned = taught_input_warnings(
        rewarned(model, scores, thresholds, [*model.train_images, *names]),
        (model.train_encodings, encodings),
        (model.train_colours, colours),
        bits_used(image.read() for image in images),
    )
    taught = dataclasses.replace(taught, warnings=warned, train_encodings=encodings, train_colours=colours)
    before = _score_labelled(expert, labelled, "labelled (before)", progress)
    after: list[tuple[LabelledImage, float, bool]] = []
    if labelled:  # the taught model's search is built only to score them: a load builds its own
        search = make_search(config.search)
        search.fit(grown, grown_ids)
        after = _score_labelled(Expert(taught, expert.extractor, search), labelled, "labelled (after)", progress)
    entry["labelled"] = {"before": _errors(before), "after": _errors(after)}
    caught = {image.where for image, _, anomalous in before if image.label == "anomalous" and anomalous}
    # Only a defect the model caught and would now pass stops a teach; one it already missed is not its doing.
    passing = [(image, score) for image, score, anomalous in after
               if image.label == "anomalous" and not anomalous and image.where in caught]  # fmt: skip
    hidden = [{"where": image.where, "score": score} | ({} if image.name is None else {"name": image.name})
              for image, score in passing]  # fmt: skip
    entry["defects_checked"] = sum(1 for image, _, _ in after if image.label == "anomalous")
    entry["defects_passing"] = hidden
    if hidden:
        listed = ", ".join(f"{image.described()} (score {score:.4g} < tau {thresholds.tau:.4g})"
                           for image, score in passing)  # fmt: skip
        passes = f"the taught model would pass {len(hidden)} image(s) labelled defective: {listed}"
        if not force:
            raise ConfigError(f"not taught: {passes} (check those labels and images, or force the teach)")
        # Forced past this guard too: on the record with the others (it was only in defects_passing before).
        entry["forced"] = [*(entry["forced"] or []), passes]
    entry["seconds"] = round(time.perf_counter() - started, 3)
    save(taught, directory, replacing=loaded_from, stamp=True)
    return TeachResult(taught, entry, time.perf_counter() - started)


def _taught_exposure(
    trained: ExposureRange | None, labels: Sequence[str], rgbs: Sequence[np.ndarray]
) -> tuple[ExposureRange | None, list[str]]:
    """The training images' exposure range after a teach, and a warning naming each taught image left out of it.

    Why not every taught image (rev1 finding 8): the range is what the exposure warning (expert/lighting.py)
    compares a photo with, and the warning exists for the blocked, black or washed-out frame. A teach, forced past
    its guards, of such a frame would widen the range to it, and from then on frames like it would pass without a
    word, the very thing the warning was made to catch. So an image whose exposure the rule calls far outside
    the range as it stands is taught (its patches join the bank: the teacher's decision stands) but does not
    move the range; photos under its light still warn, and the teach's warnings say so, naming it. To make a new
    light normal, fit on images taken under it (docs/METHOD.md, "Photos under other light"). Images within the
    rule widen it exactly as before; an unknown range (a model before schema 12) stays unknown."""
    if trained is None:
        return None, []
    within, said = [], []
    for label, rgb in zip(labels, rgbs, strict=True):
        mean, spread = image_statistics(rgb)
        if statistics_warning(trained, mean, spread) is None:
            within.append(rgb)
            continue
        said.append(
            f"{label}: taught, but its exposure (mean grey {mean:.1f}, spread {spread:.1f}) lies far outside the "
            f"training images' (mean grey {trained.mean[0]:.1f} to {trained.mean[1]:.1f}, spread "
            f"{trained.spread[0]:.1f} to {trained.spread[1]:.1f}), so it did not widen the range a photo is compared "
            "with: photos under its light still carry the exposure warning; to make that light normal, fit on "
            "images taken under it (docs/METHOD.md, 'Photos under other light')"
        )
    return trained.merged(ExposureRange.of(within)), said


def _score_labelled(
    expert: Expert, labelled: Sequence[LabelledImage], stage: str, progress: TeachProgress | None
) -> list[tuple[LabelledImage, float, bool]]:
    """Each labelled image's score and decision, a few images per backbone pass; one whose image is gone
    or unreadable is left out."""
    readable: list[tuple[LabelledImage, np.ndarray]] = []
    for image in labelled:
        try:
            readable.append((image, load_rgb(image.source if isinstance(image.source, bytes) else Path(image.source))))
        except (OSError, ImageError):
            continue  # nothing to score it by
    scored = []
    step = 8
    for start in range(0, len(readable), step):
        chunk = readable[start : start + step]
        for (image, _), result in zip(chunk, expert.inspect_many([rgb for _, rgb in chunk]), strict=True):
            if math.isfinite(result.score):
                scored.append((image, result.score, result.is_anomalous))
        if progress is not None:
            progress(stage, min(start + step, len(readable)), len(readable))
    return scored


def _errors(scored: list[tuple[LabelledImage, float, bool]]) -> dict[str, int | str]:
    """False alarms (labelled normal, called anomalous) and misses (labelled defective, passed), and which parts
    they were counted on (:func:`~eagle_iad.expert.store.labelled_parts`)."""
    return {
        "images": len(scored),
        "false_alarms": sum(1 for image, _, anomalous in scored if image.label == "normal" and anomalous),
        "misses": sum(1 for image, _, anomalous in scored if image.label == "anomalous" and not anomalous),
        "parts": labelled_parts((image.where, image.label) for image, _, _ in scored),
    }
