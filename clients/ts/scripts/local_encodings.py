"""Fixtures for the TypeScript local runtime's encoding test (clients/ts/test/local-encodings.test.ts).

Run by the test through EAGLE_PYTHON: ``python local_encodings.py OUT_DIR``. Writes images of many encodings
(PNG; JPEG by Pillow at every quality 1..100 and each sampling, grey, CMYK, progressive, with custom, 16-bit
and swapped quantization tables, fill bytes, a truncated header; by OpenCV when it is installed; a WebP) and,
for each, what ``eagle_iad.images.image_encoding`` reads from it and the warning
``eagle_iad.expert.encodings.input_warning`` gives it under several models' training encodings (and the record's
whole list, ``eagle_iad.pipeline.input_warnings``: an animated PNG's frames too); and what
``parse_encodings`` says of malformed counts. The TypeScript port is compared with the real Python code.
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
from PIL import Image
from PIL.JpegImagePlugin import JpegImageFile

from eagle_iad.errors import ImageError
from eagle_iad.expert.encodings import input_warning, parse_encodings
from eagle_iad.images import image_encoding
from eagle_iad.pipeline import input_warnings

#: Training encodings of the models the warnings are asked of: lossless, one JPEG quality, a range, JPEGs of
#: unknown quality (schema 10's first day), partly unknown, mixed families, WebP, none known.
TRAINED: list[dict[str, int] | None] = [
    {"lossless": 10},
    {"jpeg 4:2:0 q95": 5},
    {"jpeg 4:2:0 q90": 3, "jpeg 4:4:4 q95": 2},
    {"jpeg 4:2:0 q50": 1, "jpeg grey q60": 1},
    {"jpeg 4:2:0": 4},
    {"jpeg 4:2:0 q95": 2, "jpeg": 1},
    {"lossless": 3, "jpeg 4:2:0 q75": 2},
    {"webp": 2},
    {"lossless": 1, "webp": 1},
    {},
    None,
]

#: Stored counts as a sidecar's ``verdict.encodings`` may hold them (hand-edited or corrupt, and one good).
MALFORMED: list[Any] = [
    [],
    "lossless",
    3,
    2.5,
    True,
    {"lossless": 0},
    {"lossless": -2},
    {"lossless": 2.5},
    {"lossless": True},
    {"jpeg 4:2:0 q95": "3"},
    {"it's": None},
    {"lossless": [1]},
    {"lossless": {"n": 1}},
    {"lossless": 2, "jpeg 4:2:0 q95": 1},
]


def picture(rng: np.random.Generator, h: int = 40, w: int = 56) -> np.ndarray:
    """A smooth gradient with noise, so each quality gives a different file."""
    base = np.add.outer(np.linspace(10, 200, h), np.linspace(0, 50, w))[..., None] + rng.normal(0, 6, (h, w, 3))
    return np.clip(base, 0, 255).astype(np.uint8)


def jpeg(image: Image.Image, **params: Any) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", **params)
    return out.getvalue()


def segments(data: bytes) -> list[tuple[int, int, int]]:
    """(marker, start, end) of each marker segment before the first scan (the header Pillow writes: no junk)."""
    found, pos = [], 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        end = pos + 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
        found.append((marker, pos, end))
        if marker == 0xDA:
            break
        pos = end
    return found


def wide_tables(data: bytes) -> bytes:
    """The same JPEG with its quantization tables written at 16-bit precision (a header libjpeg may write)."""
    out, last = bytearray(), 0
    for marker, start, end in segments(data):
        if marker != 0xDB:
            continue
        body, tables = data[start + 4 : end], bytearray()
        while body:
            tables.append(0x10 | body[0])
            for value in body[1:65]:
                tables += value.to_bytes(2, "big")
            body = body[65:]
        out += data[last:start] + b"\xff\xdb" + (len(tables) + 2).to_bytes(2, "big") + tables
        last = end
    return bytes(out + data[last:])


def swapped_tables(data: bytes) -> bytes:
    """The same JPEG with its luma component naming table 1 and its chroma table 0: the luma table is the one
    the first component names, whatever its number."""
    out = bytearray(data)
    for marker, start, _ in segments(data):
        if marker in (0xC0, 0xC1, 0xC2):
            count = out[start + 9]
            for i in range(count):
                at = start + 10 + 3 * i + 2
                out[at] = 1 if i == 0 else 0
    return bytes(out)


def with_fill_and_junk(data: bytes) -> bytes:
    """Fill bytes (0xFF 0xFF ...) before the first DQT and a stray byte after the APP0 segment, which Pillow skips."""
    parts = segments(data)
    app0 = next(end for marker, _, end in parts if marker == 0xE0)
    dqt = next(start for marker, start, _ in parts if marker == 0xDB)
    assert app0 == dqt
    return data[:app0] + b"\x00\xff\xff" + data[dqt + 1 :]


def ijg_table(quality: int) -> np.ndarray:
    """libjpeg's luminance table at ``quality``, sorted (images.py scales the same base table)."""
    opened = Image.open(io.BytesIO(jpeg(Image.new("L", (16, 16)), quality=50)))
    assert isinstance(opened, JpegImageFile)
    base = np.asarray(opened.quantization[0])
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return np.sort(np.clip((base * scale + 50) // 100, 1, 255))


def tied_table() -> list[int]:
    """A table exactly as far from libjpeg's quality 60 as from 61 (and farther from every other): the lower wins."""
    for quality in range(60, 90):
        low, high = ijg_table(quality), ijg_table(quality + 1)  # the lower quality's entries are the larger
        gap = int((low - high).sum())
        if gap % 2:
            continue
        table, left = high.copy(), gap // 2
        for k in range(63, -1, -1):  # raise the largest entries first, so the table stays sorted
            step = min(left, int(low[k] - high[k]))
            table[k] += step
            left -= step
        assert int(np.abs(table - low).sum()) == int(np.abs(table - high).sum())
        return [int(v) for v in table]
    raise AssertionError("no even gap")


def main() -> None:
    out = Path(sys.argv[1])
    folder = out / "images"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(10)
    rgb = Image.fromarray(picture(rng))
    grey = rgb.convert("L")
    files: dict[str, bytes] = {}

    png = io.BytesIO()
    rgb.save(png, "PNG")
    files["rgb.png"] = png.getvalue()
    png = io.BytesIO()
    grey.save(png, "PNG")
    files["grey.png"] = png.getvalue()
    for quality in range(1, 101):  # every quality, the samplings in turn
        files[f"q{quality:03d}_s{quality % 3}.jpg"] = jpeg(rgb, quality=quality, subsampling=quality % 3)
    for quality in (30, 75, 90, 95, 100):
        for subsampling in (0, 1, 2):
            files[f"q{quality:03d}_s{subsampling}_b.jpg"] = jpeg(rgb, quality=quality, subsampling=subsampling)
    for quality in (5, 50, 75, 93, 95, 100):
        files[f"grey_q{quality:03d}.jpg"] = jpeg(grey, quality=quality)
    files["cmyk_q80.jpg"] = jpeg(rgb.convert("CMYK"), quality=80)
    files["progressive_q85.jpg"] = jpeg(rgb, quality=85, progressive=True)
    files["progressive_optimized_q60_444.jpg"] = jpeg(rgb, quality=60, progressive=True, optimize=True, subsampling=0)
    files["keep_q70.jpg"] = jpeg(rgb, quality=70, subsampling="4:2:2")
    # tables no IJG quality writes: the nearest (sorted, L1), ties to the lower quality
    files["custom_tables.jpg"] = jpeg(rgb, qtables=[[3 + (i % 7) * 5 for i in range(64)], [40] * 64])
    files["flat_table_2.jpg"] = jpeg(rgb, qtables=[[2] * 64, [2] * 64])
    files["flat_table_255.jpg"] = jpeg(rgb, qtables=[[255] * 64, [255] * 64])
    files["tied_table.jpg"] = jpeg(rgb, qtables=[tied_table(), [40] * 64])
    files["wide_tables_q88.jpg"] = wide_tables(jpeg(rgb, quality=88))
    files["swapped_tables_q40.jpg"] = swapped_tables(jpeg(rgb, quality=40))
    files["fill_and_junk_q91.jpg"] = with_fill_and_junk(jpeg(rgb, quality=91))
    exif = Image.Exif()
    exif[0x0112] = 6
    files["exif_q94.jpg"] = jpeg(rgb, quality=94, exif=exif.tobytes())
    whole = jpeg(rgb, quality=80)
    dqt = next(start for marker, start, _ in segments(whole) if marker == 0xDB)
    files["truncated_in_dqt.jpg"] = whole[: dqt + 30]
    files["truncated_after_header.jpg"] = whole[: segments(whole)[-1][2] + 10]
    try:
        import cv2

        bgr = np.asarray(rgb)[..., ::-1]
        for quality in (60, 95):
            ok, encoded = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
            assert ok
            files[f"opencv_q{quality}.jpg"] = encoded.tobytes()
        ok, encoded = cv2.imencode(
            ".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 85, cv2.IMWRITE_JPEG_SAMPLING_FACTOR, 0x111111]
        )
        assert ok
        files["opencv_q85_444.jpg"] = encoded.tobytes()
    except ImportError:
        pass  # the camera extra is not installed: Pillow's JPEGs only
    webp = io.BytesIO()
    rgb.save(webp, "WEBP", quality=80)
    files["photo.webp"] = webp.getvalue()  # the local runtime does not decode WebP: its encoding is unknown there
    apng = io.BytesIO()  # two frames: the record says only the first was inspected
    rgb.save(apng, "PNG", save_all=True, append_images=[grey.convert("RGB")])
    files["anim.png"] = apng.getvalue()
    # The default image not part of the animation (no fcTL before IDAT; acTL says 1 frame): the default image is
    # what is decoded and inspected, the one animation frame is left out, so the file holds 2 (Pillow's count).
    hidden = io.BytesIO()
    rgb.save(hidden, "PNG", save_all=True, append_images=[grey.convert("RGB")], default_image=True)
    files["anim-default-apart.png"] = hidden.getvalue()

    cases = []
    for name, data in files.items():
        (folder / name).write_bytes(data)
        try:
            encoding: str | None = image_encoding(data)
        except ImageError:
            encoding = None
        cases.append({
            "name": name, "encoding": encoding, "warnings": [input_warning(trained, encoding) for trained in TRAINED],
            # the record's whole list (the frames' warning too), as pipeline.py gives it
            "record_warnings": [input_warnings(SimpleNamespace(train_encodings=trained, train_colours=None), data, None)
                                for trained in TRAINED],  # no colour: the TypeScript side is given none
        })  # fmt: skip
    parsed = []
    for raw in MALFORMED:
        try:
            parsed.append({"raw": raw, "encodings": parse_encodings(raw, "verdict.encodings"), "error": None})
        except ValueError as exc:
            parsed.append({"raw": raw, "encodings": None, "error": str(exc)})
    (out / "encodings.json").write_text(json.dumps({"trained": TRAINED, "images": cases, "parse": parsed}, indent=1))


if __name__ == "__main__":
    main()
