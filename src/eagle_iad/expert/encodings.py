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
from eagle_iad.images import LOSSLESS, ImageSource, encoding_family, image_encoding

#: The family a model saved before schema 10 is taken to be fitted on: unknown, so none of its verdicts warns.
UNKNOWN = None


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
        return None
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
