"""Fixtures for the TypeScript local runtime's parity tests (clients/ts/test/local-*.test.ts).

Run by the tests through EAGLE_PYTHON: ``python local_fixtures.py OUT_DIR``. Writes images in every
PNG flavour (and a few JPEGs) with what ``eagle_iad.images.load_rgb`` decodes them to, Pillow's
bilinear resizes of them, and anomaly maps with the verdicts the Python host code
(``eagle_iad.verdict.make_verdict``) builds from them, so the TypeScript ports are compared with the
real Python code, not with a copy of it.
"""

from __future__ import annotations

import base64
import json
import struct
import sys
import zlib
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
from PIL import Image

from eagle_iad.errors import ImageError
from eagle_iad.expert.encodings import colour_warning
from eagle_iad.expert.lighting import ExposureRange, image_statistics, statistics_warning
from eagle_iad.expert.patchcore import ExpertResult
from eagle_iad.expert.preprocess import CenterCrop, WholeFrame
from eagle_iad.images import Geometry, colour_mode, load_rgb
from eagle_iad.tgps.calibration import MapCalibration, fallback_calibration
from eagle_iad.tgps.regions import find_boxes
from eagle_iad.tgps.thresholds import Thresholds
from eagle_iad.verdict import make_verdict


def b64(arr: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(arr).tobytes()).decode("ascii")


def raw_png(path: Path, arr: np.ndarray, colour_type: int, depth: int, sbit: bytes | None = None) -> None:
    """A PNG written by hand (Pillow cannot write 16-bit RGB or RGBA), big-endian samples, filter 0; ``sbit``: an
    sBIT chunk's body."""
    height, width = arr.shape[:2]
    samples = arr.astype(">u2" if depth == 16 else "u1").reshape(height, -1)
    if depth < 8:  # pack several samples a byte, the first in the high bits
        per = 8 // depth
        padded = np.zeros((height, -(-samples.shape[1] // per) * per), dtype=np.uint8)
        padded[:, : samples.shape[1]] = samples
        groups = padded.reshape(height, -1, per).astype(np.uint16)
        shifts = np.arange(per - 1, -1, -1, dtype=np.uint16) * depth
        samples = (groups << shifts).sum(axis=2).astype(np.uint8)
    raw = b"".join(b"\x00" + row.tobytes() for row in samples)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, depth, colour_type, 0, 0, 0)
    significant = b"" if sbit is None else chunk(b"sBIT", sbit)
    chunks = chunk(b"IHDR", header) + significant + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunks)


def jpegs(folder: Path, rng: np.random.Generator, written: list[str]) -> None:
    """JPEGs that tell a libjpeg-exact decoder from an approximate one: saturated colour edges (where chroma
    upsampling shows: nearest-neighbour differs from libjpeg's "fancy" triangle filter by tens of levels), in
    every sampling Pillow writes and those OpenCV adds (4:1:1, 4:4:0), progressive, restart markers, odd sizes,
    grey, CMYK, RGB-coded, and a stray byte between segments."""
    h, w = 45, 61  # not a multiple of the MCU: the edge blocks and the last chroma row and column matter
    blocks = rng.integers(0, 256, (h // 5 + 1, w // 5 + 1, 3), dtype=np.uint8)
    edges = np.repeat(np.repeat(blocks, 5, axis=0), 5, axis=1)[:h, :w]
    edges = np.clip(edges.astype(int) + rng.integers(-20, 21, edges.shape), 0, 255).astype(np.uint8)
    image = Image.fromarray(edges)

    def save(name: str, picture: Image.Image, **params: Any) -> None:
        picture.save(folder / name, **params)
        written.append(name)

    for subsampling, label in ((0, "444"), (1, "422"), (2, "420")):
        save(f"edges_{label}_q90.jpg", image, quality=90, subsampling=subsampling)
        save(f"edges_{label}_q30_progressive.jpg", image, quality=30, subsampling=subsampling, progressive=True)
    save("edges_420_restart.jpg", image, quality=75, restart_marker_blocks=3)
    save("edges_420_progressive_restart.jpg", image, quality=75, progressive=True, restart_marker_rows=1)
    save("edges_q100.jpg", image, quality=100)  # large coefficients: the IDCT's range limit
    save("edges_rgb.jpg", image, quality=85, keep_rgb=True)  # Adobe transform 0: no YCbCr
    save("edges_cmyk.jpg", image.convert("CMYK"), quality=80)  # Pillow reads it Adobe-inverted
    save("edges_grey_progressive.jpg", image.convert("L"), quality=70, progressive=True)
    save("tall_17x300.jpg", image.resize((17, 300)), quality=88)
    data = (folder / "edges_420_q90.jpg").read_bytes()
    app0_end = 4 + int.from_bytes(data[4:6], "big")
    (folder / "edges_junk.jpg").write_bytes(data[:app0_end] + b"\x00" + data[app0_end:])
    written.append("edges_junk.jpg")
    try:
        import cv2
    except ImportError:
        return  # OpenCV is an optional extra; the samplings below are then untested
    bgr = np.ascontiguousarray(edges[:, :, ::-1])
    for factor, label in ((0x411111, "411"), (0x121111, "440")):
        ok, encoded = cv2.imencode(
            ".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 85, cv2.IMWRITE_JPEG_SAMPLING_FACTOR, factor]
        )
        assert ok
        (folder / f"edges_opencv_{label}.jpg").write_bytes(encoded.tobytes())
        written.append(f"edges_opencv_{label}.jpg")


def images(out: Path, rng: np.random.Generator) -> list[dict[str, Any]]:
    """Decode fixtures: file name, and the RGB Python decodes it to."""
    folder = out / "images"
    folder.mkdir(parents=True, exist_ok=True)
    h, w = 37, 53
    rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    grey = rng.integers(0, 256, (h, w), dtype=np.uint8)
    alpha = rng.integers(0, 256, (h, w), dtype=np.uint8)
    written: list[str] = []

    def save(name: str, image: Image.Image, **params: Any) -> None:
        image.save(folder / name, **params)
        written.append(name)

    save("rgb.png", Image.fromarray(rgb))
    save("rgba.png", Image.fromarray(np.dstack([rgb, alpha]), "RGBA"))
    save("grey.png", Image.fromarray(grey))
    save("grey_alpha.png", Image.fromarray(np.dstack([grey, alpha]), "LA"))
    save("grey_trns.png", Image.fromarray(grey), transparency=int(grey[0, 0]))
    save("rgb_trns.png", Image.fromarray(rgb), transparency=tuple(int(v) for v in rgb[0, 0]))
    save("bilevel.png", Image.fromarray(grey > 127))
    palette = Image.fromarray(rgb).quantize(colors=200)
    save("palette.png", palette)
    save("palette_trns.png", palette, transparency=3)
    save("palette_4bit.png", Image.fromarray(rgb).quantize(colors=16), bits=4)
    grey16 = rng.integers(0, 65536, (h, w), dtype=np.uint16)
    raw_png(folder / "grey16.png", grey16, 0, 16)
    written.append("grey16.png")
    for name, colour_type, arr in (
        ("rgb16.png", 2, rng.integers(0, 65536, (h, w, 3))),
        ("rgba16.png", 6, rng.integers(0, 65536, (h, w, 4))),
        ("grey_alpha16.png", 4, rng.integers(0, 65536, (h, w, 2))),
        ("grey2.png", 0, rng.integers(0, 4, (h, w))),
    ):
        raw_png(folder / name, arr, colour_type, 2 if name == "grey2.png" else 16)
        written.append(name)
    # 12-bit camera data: in the low bits with sBIT (scaled by 4095), without (by 65535), shifted the PNG way with
    # sBIT (by 65535), a dark shifted frame (all multiples of 16: by 65535), and sBIT on 16-bit colour in the top bits
    twelve = rng.integers(0, 4096, (h, w))
    for name, arr, colour_type, sbit in (
        ("grey12_sbit.png", twelve, 0, b"\x0c"),
        ("grey12.png", twelve, 0, None),
        ("grey12_shifted_sbit.png", twelve << 4, 0, b"\x0c"),
        ("grey12_dark_sbit.png", (twelve // 32) << 4, 0, b"\x0c"),
        ("grey10_sbit.png", twelve // 4, 0, b"\x0a"),
        ("rgb12_top_sbit.png", rng.integers(0, 65536, (h, w, 3)), 2, b"\x0c\x0c\x0c"),
        ("rgb12.png", rng.integers(0, 4096, (h, w, 3)), 2, None),
    ):
        raw_png(folder / name, arr, colour_type, 16, sbit)
        written.append(name)
    raw_png(folder / "rgb12_sbit.png", rng.integers(0, 4096, (h, w, 3)), 2, 16, b"\x0c\x0c\x0c")  # refused
    save("grey_as_rgb.png", Image.fromarray(np.repeat(grey[..., None], 3, axis=2)))
    smooth = np.clip(
        np.add.outer(np.linspace(0, 200, h), np.linspace(0, 55, w))[..., None] + rng.normal(0, 3, (h, w, 3)), 0, 255
    ).astype(np.uint8)
    turned = Image.Exif()
    turned[0x0112] = 8
    save("rotated.png", Image.fromarray(rgb), exif=turned.tobytes())
    save("photo.jpg", Image.fromarray(smooth), quality=92)
    save("photo_444.jpg", Image.fromarray(smooth), quality=95, subsampling=0)
    exif = Image.Exif()
    exif[0x0112] = 6
    save("rotated.jpg", Image.fromarray(smooth), quality=95, subsampling=0, exif=exif.tobytes())
    jpegs(folder, rng, written)
    (folder / "truncated.png").write_bytes((folder / "rgb.png").read_bytes()[:120])
    (folder / "truncated.jpg").write_bytes((folder / "photo.jpg").read_bytes()[:-300])
    (folder / "notes.txt").write_bytes(b"not an image\n")
    return [
        {
            "name": name,
            "width": int(arr.shape[1]),
            "height": int(arr.shape[0]),
            "rgb": b64(arr),
            "colour": colour_mode(arr),
            "exposure": list(image_statistics(arr)),
        }
        for name in written
        for arr in [load_rgb(folder / name)]
    ]


def refusals(out: Path) -> dict[str, str]:
    """What load_rgb says of each file the local runtime must refuse the same way."""
    said = {}
    for name in ("rgb12_sbit.png",):
        try:
            load_rgb(out / "images" / name)
        except ImageError as exc:
            said[name] = str(exc).replace(str(out / "images" / name), name)
        else:
            raise SystemExit(f"{name}: load_rgb was expected to refuse it")
    return said


def colour_warnings() -> list[dict[str, Any]]:
    """colour_warning under each training set and input mode (the TypeScript port must say the same)."""
    trained_sets: list[dict[str, int] | None] = [None, {}, {"colour": 3}, {"grey": 2}, {"colour": 1, "grey": 1}]
    return [
        {"trained": trained, "mode": mode, "warning": colour_warning(trained, mode)}
        for trained in trained_sets
        for mode in ("grey", "colour")
    ]


def exposure_warnings(rng: np.random.Generator) -> list[dict[str, Any]]:
    """statistics_warning under several training ranges and photos (the TypeScript port must say the same, word for
    word): each way out (darker, brighter by the mean and by the distance from white, flatter, more contrasted),
    inside, a range of few images (widened) and one of many, and numbers that are exact ties at one decimal
    (18.25, 0.75: Python rounds them to even, JavaScript's toFixed away from zero)."""
    ranges = [
        ExposureRange(239, (18.923341666666666, 21.31548611111111), (9.354747817715644, 18.273106503588103)),
        ExposureRange(4, (59.444, 112.1445), (16.872674740209042, 26.639337199274827)),
        ExposureRange(441, (59.444, 214.2797111111111), (16.872674740209042, 48.67671765807886)),
        ExposureRange(1, (18.25, 18.25), (0.75, 0.75)),
        ExposureRange(7, (0.0, 12.5), (0.0, 3.25)),
    ]
    photos = [(18.6, 9.9), (118.0, 40.0), (2.0, 1.3), (20.0, 4.0), (20.0, 40.0), (185.6, 35.5), (240.0, 20.0),
              (250.0, 3.0), (12.0, 20.0), (0.25, 0.75), (36.75, 1.25), (255.0, 0.0), (0.0, 0.0)]  # fmt: skip
    photos += [(float(m), float(s)) for m, s in zip(rng.uniform(0, 255, 40), rng.uniform(0, 90, 40), strict=True)]
    return [
        {
            "trained": trained.to_dict(),
            "mean": mean,
            "spread": spread,
            "warning": statistics_warning(trained, mean, spread),
        }
        for trained in ranges
        for mean, spread in photos
    ]


def resizes(rng: np.random.Generator) -> list[dict[str, Any]]:
    """Pillow's bilinear resize, up and down, odd ratios, one side only."""
    cases = []
    for (h, w), (oh, ow) in (
        ((37, 53), (224, 224)),
        ((37, 53), (16, 20)),
        ((300, 200), (96, 64)),
        ((300, 200), (301, 199)),
        ((64, 64), (64, 17)),
        ((64, 64), (250, 64)),
        ((123, 457), (61, 229)),
        ((19, 700), (33, 1021)),
        ((480, 640), (192, 256)),
    ):
        src = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        src[: h // 3] = 255  # saturated and black areas exercise the clipping
        src[-h // 4 :, : w // 2] = 0
        out = np.asarray(Image.fromarray(src).resize((ow, oh), Image.Resampling.BILINEAR))
        cases.append({"width": w, "height": h, "out_width": ow, "out_height": oh, "src": b64(src), "out": b64(out)})
    return cases


def blob_map(rng: np.random.Generator, h: int, w: int, kind: str) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    values = 1.0 + 0.05 * rng.random((h, w))
    if kind == "flat":
        return np.full((h, w), 2.5, dtype=np.float32)
    if kind == "ring":
        r = np.hypot(yy - h / 2, xx - w / 2)
        values += 3.0 * np.exp(-(((r - min(h, w) / 4) / 2.0) ** 2))
        values += 3.2 * np.exp(-((yy - h / 2) ** 2 + (xx - w / 2) ** 2) / 2.0)  # a peak inside the hole
    if kind == "shifted":  # high almost everywhere: the median fallback
        values += 2.0 + 0.3 * np.sin(xx / 3.0) * np.cos(yy / 5.0)
    for _ in range(rng.integers(1, 7) if kind != "flat" else 0):
        cy, cx = rng.random() * h, rng.random() * w
        sy, sx = 1 + rng.random() * h / 8, 1 + rng.random() * w / 8
        values += (0.5 + 3 * rng.random()) * np.exp(-((yy - cy) ** 2 / (2 * sy**2) + (xx - cx) ** 2 / (2 * sx**2)))
    return values.astype(np.float32)


def patch_grid(rng: np.random.Generator, crop_map: np.ndarray, uncovered: bool) -> np.ndarray:
    """A stitched patch grid (one cell per 8 x 8 input pixels) near the map's own cell maxima, noisy so a box's
    largest cell is not its map peak's; ``uncovered``: a few cells no tile reached (``-inf``), as a tile layout
    may leave."""
    height, width = crop_map.shape[0] // 8, crop_map.shape[1] // 8
    cells = crop_map[: height * 8, : width * 8].reshape(height, 8, width, 8).max(axis=(1, 3))
    grid = cells * rng.uniform(0.9, 1.2, cells.shape) + rng.uniform(0.0, 0.3, cells.shape)
    if uncovered:
        grid[0, :3] = -np.inf
    return grid.astype(np.float32)


def verdicts(rng: np.random.Generator) -> list[dict[str, Any]]:
    """Input maps through the Python host code: map back to the original frame, decide, box."""
    cases = []
    shapes = [
        ("resize", (64, 96), (150, 230), None),
        ("resize", (96, 64), (401, 263), None),
        ("tile", (128, 192), (700, 1050), None),
        ("resize", (64, 64), (64, 64), None),
        ("center-crop", (64, 64), (120, 180), 72),
        ("center-crop", (56, 56), (211, 97), 64),
    ]
    kinds = ["blobs", "blobs", "ring", "shifted", "flat", "blobs", "blobs", "blobs"]
    index = 0
    for preprocess, (ih, iw), (h, w), resize in shapes:
        for kind in kinds:
            index += 1
            crop_map = blob_map(rng, ih, iw, kind)
            if preprocess == "center-crop":
                assert resize is not None
                geometry: Any = CenterCrop(Geometry.for_image(h, w, resize, ih))
            else:
                geometry = WholeFrame(h, w, ih, iw)
            full = geometry.to_original(crop_map)
            score = float(crop_map.max()) * float(rng.choice([0.6, 0.9, 1.0]))
            tau = float(crop_map.max()) * 0.8
            thresholds = Thresholds(rule="ksigma", tau=tau, s_max=tau * 1.1, params={})
            calibrated = index % 3 != 0
            calibration = (
                MapCalibration(
                    map_tau=float(np.quantile(full, 0.9 if index % 2 else 0.999)),
                    colour_min=1.2,
                    colour_max=tau * 1.3,
                    rule="ksigma",
                )
                if calibrated
                else None
            )
            rule = "paper" if index % 5 == 0 else "calibrated"
            expert = SimpleNamespace(
                thresholds=thresholds,
                # No close-call margin nor coverage (both checks unknown; the params below carry neither).
                near_margin=lambda: None,
                model=SimpleNamespace(
                    calibration=calibration,
                    category="fixture",
                    config=SimpleNamespace(region_rule=rule, preprocess=preprocess),
                    # (an export keeps no training scores: the margin comes from its sidecar, absent here)
                    train_scores=np.empty(0),
                    coverage=None,
                ),
            )
            result = ExpertResult(
                score=score,
                is_anomalous=thresholds.is_anomalous(score),
                in_band=thresholds.in_band(score),
                patch_scores=np.empty((0, 0), dtype=np.float32),  # an export before schema 3: no patch grid
                crop_map=crop_map,
                anomaly_map=full,
                geometry=geometry,
            )
            verdict = make_verdict(expert, f"case{index}.png", result)  # type: ignore[arg-type]
            # the same map with the graph's patch grid (schema 3): the boxes' patch scores, as torch gives them
            patches = patch_grid(np.random.default_rng(index), crop_map, uncovered=preprocess == "tile")
            with_grid = make_verdict(expert, f"case{index}.png", replace(result, patch_scores=patches))  # type: ignore[arg-type]
            used = calibration or fallback_calibration(thresholds)
            # The same rule at the paper's defaults too, for the region port alone.
            paper = find_boxes(full, "paper", None).boxes
            cases.append(
                {
                    "name": f"case{index}.png",
                    "kind": kind,
                    "preprocess": preprocess,
                    "input": [ih, iw],
                    "size": [h, w],
                    "resize": resize,
                    "score": score,
                    "params": {
                        "category": "fixture",
                        "tau": tau,
                        "sMax": tau * 1.1,
                        "regionRule": rule,
                        "mapTau": used.map_tau,
                        "colourScale": [used.colour_min, used.colour_max],
                        "calibrated": calibration is not None,
                        "preprocess": preprocess,
                    },
                    "input_map": b64(crop_map),
                    "full_map": b64(full.astype(np.float32)),
                    "verdict": verdict.to_dict(),
                    "patches": b64(patches),
                    "patch_verdict": with_grid.to_dict(),
                    "paper_boxes": [box.to_dict() for box in paper],
                }
            )
    return cases


def spike_map(rng: np.random.Generator, h: int, w: int, peaks: list[tuple[int, int, float, float]]) -> np.ndarray:
    """A noisy floor near 1 with Gaussian peaks ``(y, x, height, sigma)``; sigma 0 is a single pixel."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    values = 1.0 + 0.05 * rng.random((h, w))
    for y, x, height, sigma in peaks:
        if sigma == 0:
            values[y, x] += height
        else:
            values += height * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * sigma**2))
    return values.astype(np.float32)


def region_cases(rng: np.random.Generator) -> list[dict[str, Any]]:
    """The calibrated rule's fallbacks on small synthetic maps, through ``find_boxes`` itself.

    Each case names the branch it takes: ``map_tau`` (a region above it), ``relative_above`` (the map
    crosses map_tau, but in no region of the minimum area: cut 2/3 of the way from the baseline to the
    peak), ``relative_below`` (the map never reaches map_tau), ``peak`` (not even that cut leaves a region:
    the peak's region grown to the minimum area), ``flat`` (no boxes).
    """
    h, w = 40, 60
    ring = spike_map(rng, h, w, [(20, 30, 3.5, 0)])
    yy, xx = np.mgrid[0:h, 0:w]
    ring[np.abs(np.hypot(yy - 20, xx - 30) - 4.0) < 0.8] += 1.2  # a ring around the spike: its hole is filled
    twins = spike_map(rng, h, w, [(10, 12, 0.6, 4.0), (30, 45, 0.6, 4.0)])
    twins[10, 12] = twins[30, 45] = 4.0  # two equal maxima: the first in raster order is the peak
    specs: list[tuple[str, np.ndarray, float | None, float | None, float]] = [
        # name, map, map_tau, baseline, min_area_fraction
        ("above map_tau", spike_map(rng, h, w, [(15, 20, 2.0, 3.0), (30, 44, 1.5, 2.5)]), 2.0, 1.0, 0.005),
        ("barely crosses", spike_map(rng, h, w, [(18, 25, 2.0, 4.0), (8, 50, 1.2, 2.0)]), 2.99, 1.0, 0.01),
        ("never reaches", spike_map(rng, h, w, [(22, 33, 1.5, 3.5)]), 4.0, 1.1, 0.01),
        ("baseline above the peak", spike_map(rng, h, w, [(22, 33, 1.5, 3.5)]), 4.0, 9.0, 0.01),
        ("no baseline, never reaches", spike_map(rng, h, w, [(12, 40, 1.5, 2.0)]), 4.0, None, 0.01),
        (
            "one sharp pixel",
            spike_map(rng, h, w, [(25, 9, 4.0, 0), (25, 9, 0.4, 3.0), (5, 50, 0.3, 2.0)]),
            4.9,
            1.0,
            0.01,
        ),
        ("spike in a ring", ring, 4.4, 1.0, 0.02),
        ("twin spikes", twins, 3.9, 1.0, 0.01),
        ("spike, no baseline", spike_map(rng, h, w, [(3, 57, 5.0, 0)]), 5.5, None, 0.004),
        ("flat", np.full((h, w), 2.0, dtype=np.float32), 1.0, 0.5, 0.01),
    ]
    cases = []
    for name, values, map_tau, baseline, fraction in specs:
        found = find_boxes(values, "calibrated", map_tau, baseline, min_area_fraction=fraction)
        top = float(values.max())
        assert map_tau is not None
        floor = map_tau if baseline is None else min(baseline, top)
        relative = floor + (2.0 / 3.0) * (top - floor)
        if found.threshold is None:
            branch = "flat"
        elif found.threshold == map_tau:
            branch = "map_tau"
        elif found.threshold == relative:
            branch = "relative_above" if top >= map_tau else "relative_below"
        else:
            branch = "peak"
        cases.append(
            {
                "name": name,
                "branch": branch,
                "width": w,
                "height": h,
                "map": b64(values),
                "map_tau": map_tau,
                "baseline": baseline,
                "min_area_fraction": fraction,
                "boxes": [box.to_dict() for box in found.boxes],
                "threshold": found.threshold,
            }
        )
    return cases


def main() -> None:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(14)
    document = {
        "images": images(out, rng),
        "refusals": refusals(out),
        "colour_warnings": colour_warnings(),
        "exposure_warnings": exposure_warnings(rng),
        "resizes": resizes(rng),
        "verdicts": verdicts(rng),
        "regions": region_cases(rng),
    }
    (out / "fixtures.json").write_text(json.dumps(document))


if __name__ == "__main__":
    main()
