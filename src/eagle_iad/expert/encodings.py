"""What a model's training images were encoded as, and the warning a verdict on an input of another carries.

Measured (docs/METHOD.md, "Exposure"): tire's normal test images, re-saved as JPEG at quality 95, all
score above tau on a model fitted on the PNGs with the default exposure (median 117 against tau 91;
as PNG 2 of 25 are flagged). The JPEG's compression error (1.9 grey levels RMS, luma and chroma alike,
4:4:4 as much as 4:2:0) is not in any training image, and the exposure step's gain (about 4.8 on tire)
makes it score as texture the training images never had, most in the darkest regions. Nothing in the
exposure step can remove it without changing what lossless images score, so the model records its
training images' encodings (model schema 10) and a verdict on an input of another family says so.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from eagle_iad.errors import ImageError
from eagle_iad.images import LOSSLESS, ImageSource, encoding_family, encoding_quality, image_encoding

#: The family a model saved before schema 10 is taken to be fitted on: unknown, so none of its verdicts warns.
UNKNOWN = None

#: How far (in quality points) a JPEG's quality may lie outside the training JPEGs' before a verdict warns. Why 2:
#: libjpeg's tables give every quality exactly (images.jpeg_quality), so the margin only absorbs an encoder
#: whose own table sits between two IJG qualities; the smallest step measured to matter is 5 (tire fitted at
#: quality 95: 3 of 25 normal images flagged at 90 against 0 at 95; docs/METHOD.md, "Exposure").
QUALITY_MARGIN = 2


def parse_encodings(raw: object, field: str) -> dict[str, int]:
    """A stored ``{encoding: number of images}`` (a model's ``training.encodings``, an export's
    ``verdict.encodings``), each count an integer >= 1; ``ValueError`` naming ``field`` otherwise.

    Why strict: a hand-edited or corrupt count must not be read as another number (2.7 as 2, true as 1)."""
    if not isinstance(raw, dict):
        raise ValueError(f"{field} must be an object of counts, not {type(raw).__name__}")
    encodings: dict[str, int] = {}
    for key, value in raw.items():
        if not isinstance(key, str) or isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{field}[{key!r}] must be a whole number >= 1, not {value!r}")
        encodings[key] = value
    return encodings


def count_encodings(sources: Iterable[ImageSource]) -> dict[str, int]:
    """``{encoding: number of images}`` over ``sources`` (headers only), sorted by encoding."""
    found: Counter[str] = Counter()
    for source in sources:
        try:
            found[image_encoding(source)] += 1
        except ImageError:  # unreadable here means unreadable for the fit too, which names it
            continue
    return dict(sorted(found.items()))


def families(encodings: dict[str, int]) -> set[str]:
    return {encoding_family(encoding) for encoding in encodings}


def _describe(encodings: dict[str, int]) -> str:
    return ", ".join(f"{count} {encoding}" for encoding, count in encodings.items())


def mixed_warning(encodings: dict[str, int]) -> list[str]:
    """The fit's warning when its training images mix lossless and lossy encodings."""
    if len(families(encodings)) < 2:
        return []
    return [
        f"the training images mix encodings ({_describe(encodings)}): compression artefacts differ between them "
        "and can score as defects on dark, low-contrast products (docs/METHOD.md, 'Exposure'); fit on images "
        "saved the way the line's camera saves them"
    ]


def input_warning(train_encodings: dict[str, int] | None, encoding: str | None) -> str | None:
    """A verdict's warning when its input's encoding family is none of the training images'; else ``None``.

    ``None`` too when either is unknown (a model saved before schema 10, a decoded frame).
    """
    if not train_encodings or encoding is None:
        return None
    trained = families(train_encodings)
    family = encoding_family(encoding)
    if family in trained:
        return _quality_warning(train_encodings, encoding)
    fitted = "lossless images" if trained == {LOSSLESS} else f"{' and '.join(sorted(trained))} images"
    what = "a lossless image" if family == LOSSLESS else f"a {family.upper()} ({encoding})"
    effect = (
        "compression artefacts can score as defects (tire at JPEG quality 95: every normal image above tau)"
        if family != LOSSLESS
        else "the training images' compression artefacts are missing from it and it can score as unlike them"
    )
    return (
        f"{what} inspected by a model fitted on {fitted}: {effect}; fit on images from the line's own camera, "
        "saved as it saves them (docs/METHOD.md, 'Exposure')"
    )


def _quality_warning(train_encodings: dict[str, int], encoding: str) -> str | None:
    """The warning for a JPEG whose quality lies outside the training JPEGs' range; ``None`` if inside or unknown.

    Why both ways: fitted at 95, a quality-75 JPEG has more compression error than any training image (25 of
    25 normal tire images flagged), and a lossless image, which has less, was flagged too (8 of 25), so a
    quality above the range is as foreign as one below it.
    """
    quality = encoding_quality(encoding)
    family = encoding_family(encoding)
    known = [encoding_quality(e) for e in train_encodings if encoding_family(e) == family]
    # a model of schema 10's first day recorded no quality, and a teach since adds keys with one: its range is
    # unknown while any of its images' quality is
    if quality is None or not known or None in known:
        return None
    qualities = [q for q in known if q is not None]
    low, high = min(qualities), max(qualities)
    if low - QUALITY_MARGIN <= quality <= high + QUALITY_MARGIN:
        return None
    fitted = f"quality {low}" if low == high else f"qualities {low} to {high}"
    more = "more" if quality < low else "less"
    return (
        f"a {family.upper()} of quality {quality} ({encoding}) inspected by a model fitted on {family.upper()}s of "
        f"{fitted}: it has {more} compression error than the training images, which can score as defects (tire "
        "fitted at quality 95: 3 of 25 normal images flagged at 90, 25 of 25 at 75); fit on images from the line's "
        "own camera, saved as it saves them (docs/METHOD.md, 'Exposure')"
    )
