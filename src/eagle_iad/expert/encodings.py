"""What a model's training images were encoded as, and the warning a verdict on an input of another carries.

Measured (docs/METHOD.md, "Exposure"): tire's normal test images, re-saved as JPEG at quality 95, all
score above tau on a model fitted on the PNGs with the default exposure (median 117 against tau 91;
as PNG 2 of 25 are flagged). The JPEG's compression error (1.9 grey levels RMS, luma and chroma alike,
4:4:4 as much as 4:2:0) is not in any training image, and the exposure step's gain (about 4.8 on tire)
makes it score as texture the training images never had, most in the darkest regions. Nothing in the
exposure step can remove it without changing what lossless images score, so the model records its
training images' encodings (model schema 10) and a verdict on an input of another family says so.

The same holds for colour: a greyscale photograph of a good tire scores 126.9 (anomalous, 3 boxes) on a model
fitted on colour images, against 81.3 for the colour original, so a model records how many of its training
images were greyscale and how many colour (schema 11) and a verdict on the other mode says so. A fit also says
when its 16-bit training images use few of their bits (:func:`depth_warning`).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

from eagle_iad.errors import ImageError
from eagle_iad.images import (
    COLOUR,
    GREY,
    LOSSLESS,
    ImageSource,
    colour_mode,
    encoding_family,
    encoding_quality,
    image_encoding,
    sixteen_bit_use,
)

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


#: Where a verdict's encoding warning sends its reader for the measured figures. The warning speaks of the user's
#: images, not of the data set the figures were measured on (tire: every normal JPEG of quality 95 flagged by a
#: model fitted on PNGs; fitted at 95, 3 of 25 flagged at quality 90 and 25 of 25 at 75), which the manual gives.
MEASURED = "(measured figures: docs/METHOD.md, 'Exposure', 'Inputs encoded otherwise')"


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
        "compression artefacts can score as defects, even at a high quality"
        if family != LOSSLESS
        else "the training images' compression artefacts are missing from it and it can score as unlike them"
    )
    return (
        f"{what} inspected by a model fitted on {fitted}: {effect}; fit on images from the line's own camera, "
        f"saved as it saves them {MEASURED}"
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
        f"{fitted}: it has {more} compression error than the training images, which can score as defects even a "
        f"few quality points away; fit on images from the line's own camera, saved as it saves them {MEASURED}"
    )


#: The most bits a 16-bit training set may use before a fit says it is read with few grey levels: 14 bits leave
#: 64 levels of 256 (a 14-bit camera's data), 12 leave 16 (tire as 12-bit data: image AUROC 0.71 against 0.85).
FEW_BITS = 14


def depth_warning(sources: Iterable[ImageSource]) -> list[str]:
    """The fit's warning when its 16-bit PNG training images all use few of their bits and no ``sBIT`` says so.

    Why a warning and not a rescale: without ``sBIT`` nothing tells 12-bit data from a dark 16-bit frame, and a
    scale chosen from the training set's values would have to be carried to every runtime (images.low_aligned).
    """
    return few_bits_warning(bits_used(sources))


def bits_used(sources: Iterable[ImageSource]) -> list[int]:
    """The bits each 16-bit PNG among ``sources`` uses (:func:`eagle_iad.images.sixteen_bit_use`); the others and
    the unreadable ones (the fit or teach names those itself) are left out."""
    used: list[int] = []
    for source in sources:
        try:
            bits = sixteen_bit_use(source)
        except ImageError:
            continue
        if bits is not None:
            used.append(bits)
    return used


def few_bits_warning(used: list[int]) -> list[str]:
    """:func:`depth_warning` from the bits each 16-bit PNG training image uses."""
    if not used or max(used) > FEW_BITS:
        return []
    bits = max(used)
    levels = 1 << max(bits - 8, 0)
    return [
        f"{len(used)} training image{'s are' if len(used) > 1 else ' is a'} 16-bit PNG{'s' if len(used) > 1 else ''} "
        f"whose values use at most {bits} of their 16 bits: each is read at full 16-bit range and keeps about "
        f"{levels} grey level{'s' if levels > 1 else ''} of 256, so defects are harder to see (measured: "
        f"docs/METHOD.md, 'Input'); have the camera software write the PNG sBIT chunk ({bits} "
        "significant bits), which eagle reads, or save the images as 8-bit, and refit"
    ]


def count_colours(rgbs: Iterable[np.ndarray]) -> dict[str, int]:
    """``{grey | colour: number of images}`` over decoded images (:func:`eagle_iad.images.colour_mode`), sorted."""
    return dict(sorted(Counter(colour_mode(rgb) for rgb in rgbs).items()))


def parse_colours(raw: object, field: str) -> dict[str, int]:
    """A stored ``{grey | colour: number of images}``; ``ValueError`` naming ``field`` for another key or count."""
    colours = parse_encodings(raw, field)
    for key in colours:
        if key not in (GREY, COLOUR):
            raise ValueError(f"{field} has {key!r}; the colour modes are {GREY!r} and {COLOUR!r}")
    return colours


def mixed_colour_warning(colours: dict[str, int]) -> list[str]:
    """The fit's warning when its training images mix greyscale and colour images."""
    if len(colours) < 2:
        return []
    return [
        f"the training images mix greyscale and colour ({colours.get(GREY, 0)} greyscale, {colours.get(COLOUR, 0)} "
        "colour): a greyscale image of a colour product scores as unlike the colour ones and raises tau; fit on "
        "images taken as the line's camera takes them (docs/METHOD.md, 'Input')"
    ]


def colour_warning(train_colours: dict[str, int] | None, mode: str | None) -> str | None:
    """A verdict's warning when its input is greyscale and no training image was, or colour and none was.

    ``None`` when either is unknown (a model saved before schema 11).

    The words quote no data set's figures: they are shown on a verdict card beside that model's own score and
    threshold, where another model's (tire's tau 95.8 on a solar-cell card of tau 154.4) read as this one's. The
    measured example is in docs/METHOD.md, which the warning names.
    """
    if not train_colours or mode is None or mode in train_colours:
        return None
    if mode == GREY:
        return (
            "a greyscale image inspected by a model fitted on colour images: its missing colour can score as a "
            "defect, a good part's too; inspect images taken in colour, as the training images were, or fit on "
            "greyscale images (docs/METHOD.md, 'Input', has it measured)"
        )
    return (
        "a colour image inspected by a model fitted on greyscale images: its colour is new to the model and can "
        "score as a defect; inspect greyscale images, as the training images were, or fit on colour images "
        "(docs/METHOD.md, 'Input')"
    )


#: How :func:`few_bits_warning` begins: its count of 16-bit PNGs and the most bits one uses, read back from a
#: model's warnings by :func:`taught_input_warnings` (the model keeps no bit use per image).
_FEW_BITS_WORDS = re.compile(r"^(\d+) training images? (?:are|is a) 16-bit PNGs? whose values use at most (\d+) of")


def taught_input_warnings(
    warnings: Sequence[str],
    encodings: tuple[dict[str, int] | None, dict[str, int] | None],
    colours: tuple[dict[str, int] | None, dict[str, int] | None],
    taught_bits: list[int],
) -> list[str]:
    """A model's warnings after a teach, with those about its training images' inputs (mixed encodings, mixed
    colour modes, 16-bit PNGs using few bits) made what a fit over the old and the taught images would say.

    ``encodings`` and ``colours`` are the model's counts before and after the teach, ``taught_bits`` the bits
    each taught 16-bit PNG uses (:func:`bits_used`). Why: the fit's words were kept as they were, so teaching
    greyscale frames to a colour model, or JPEGs to a PNG one, said nothing, where a fit on the same images warns
    that such a mix raises tau. The bits the old images use are not kept, so a model's own few-bits warning
    (its count and most bits) stands for them; a model without one is taken to have had no 16-bit PNG that
    uses few bits, and warns when the taught ones do (a fit over the union would not, were an old one to use
    more). Other warnings stay, in their place.
    """
    stale = set(mixed_warning(encodings[0] or {}) + mixed_colour_warning(colours[0] or {}))
    old_bits: list[int] = []
    for warning in warnings:
        found = _FEW_BITS_WORDS.match(warning)
        if found is not None:
            stale.add(warning)
            old_bits = [int(found.group(2))] * int(found.group(1))
    kept = [warning for warning in warnings if warning not in stale]
    fresh = mixed_warning(encodings[1] or {}) + mixed_colour_warning(colours[1] or {})
    return kept + fresh + few_bits_warning(old_bits + taught_bits)
