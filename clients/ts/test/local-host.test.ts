/**
 * The local runtime's host code against Python on fixtures Python writes in this run
 * (scripts/local_fixtures.py): PNG decoding, Pillow's bilinear resize (byte-exact), the map's way
 * back to the original frame, and the verdict with its boxes (identical boxes, floats within 1e-6).
 */
import { readFileSync, rmSync } from "node:fs";
import { join, resolve } from "node:path";

import { PNG } from "pngjs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { mapToOriginal, makeVerdict, prepareInput, type DecisionParams, type ViewGeometry, centreCropGeometry } from "../src/local/host.js";
import { colourMode, colourWarning } from "../src/local/encodings.js";
import { type ExposureRange, fixed1, imageStatistics, statisticsWarning } from "../src/local/lighting.js";
import { decodeImage } from "../src/local/image.js";
import { extractRegions, findBoxes } from "../src/local/regions.js";
import { resizeBilinear } from "../src/local/resize.js";
import { NO_PYTHON, bytes, floats, runPython, scratch } from "./local-python.js";
import { REPO } from "./server.js";

interface ImageCase { name: string; width: number; height: number; rgb: string; colour: string; exposure: [number, number] }
interface ResizeCase { width: number; height: number; out_width: number; out_height: number; src: string; out: string }
interface VerdictCase {
  name: string;
  kind: string;
  preprocess: string;
  input: [number, number];
  size: [number, number];
  resize: number | null;
  score: number;
  params: DecisionParams;
  input_map: string;
  full_map: string;
  /** Python's verdict without a patch grid (an export before schema 3). */
  verdict: VerdictRecord;
  /** A stitched patch grid (float32, input/8 per side), and Python's verdict on the same map with it. */
  patches: string;
  patch_verdict: VerdictRecord;
  paper_boxes: unknown[];
}
type VerdictRecord = Record<string, unknown> & { boxes: unknown[]; candidates: unknown[]; map: Record<string, unknown> };
interface RegionCase {
  name: string;
  /** Which way find_boxes went (local_fixtures.region_cases): map_tau, relative_above, relative_below, peak, flat. */
  branch: string;
  width: number;
  height: number;
  map: string;
  map_tau: number;
  baseline: number | null;
  min_area_fraction: number;
  boxes: unknown[];
  threshold: number | null;
}
interface ExposureWarningCase { trained: ExposureRange; mean: number; spread: number; warning: string | null }
interface ColourWarningCase { trained: Record<string, number> | null; mode: string; warning: string | null }
interface Fixtures {
  images: ImageCase[];
  resizes: ResizeCase[];
  verdicts: VerdictCase[];
  regions: RegionCase[];
  /** What Python's load_rgb says of files it refuses (the path replaced by the name). */
  refusals: Record<string, string>;
  colour_warnings: ColourWarningCase[];
  exposure_warnings: ExposureWarningCase[];
}

let fixtures: Fixtures;
let folder: string;

/** Floats within 1e-6 (relative above 1), everything else equal; the message names the key path. */
function expectClose(actual: unknown, expected: unknown, path = "$"): void {
  if (typeof expected === "number" && typeof actual === "number") {
    const tolerance = 1e-6 * Math.max(1, Math.abs(expected));
    if (Math.abs(actual - expected) > tolerance) throw new Error(`${path}: ${actual} != ${expected}`);
    return;
  }
  if (Array.isArray(expected)) {
    expect(Array.isArray(actual), `${path} is an array`).toBe(true);
    expect((actual as unknown[]).length, `${path} length`).toBe(expected.length);
    expected.forEach((item, i) => expectClose((actual as unknown[])[i], item, `${path}[${i}]`));
    return;
  }
  if (expected !== null && typeof expected === "object") {
    expect(Object.keys(actual as object), `${path} keys`).toEqual(Object.keys(expected));
    for (const [key, value] of Object.entries(expected)) expectClose((actual as Record<string, unknown>)[key], value, `${path}.${key}`);
    return;
  }
  expect(actual, path).toEqual(expected);
}

function geometryOf(c: VerdictCase): ViewGeometry {
  const [h, w] = c.size;
  const [ih, iw] = c.input;
  return c.preprocess === "center-crop" ? centreCropGeometry(h, w, c.resize as number, ih) : { height: h, width: w, inputHeight: ih, inputWidth: iw };
}

describe.skipIf(NO_PYTHON !== "")(`local runtime host code vs Python${NO_PYTHON ? ` (skipped: ${NO_PYTHON})` : ""}`, () => {
  beforeAll(() => {
    folder = scratch("eagle-local-fixtures-");
    runPython([resolve(REPO, "clients/ts/scripts/local_fixtures.py"), folder]);
    fixtures = JSON.parse(readFileSync(join(folder, "fixtures.json"), "utf8")) as Fixtures;
  });
  afterAll(() => rmSync(folder, { recursive: true, force: true }));

  it("decodes every PNG flavour to the bytes Python's load_rgb gives", () => {
    const pngs = fixtures.images.filter((c) => c.name.endsWith(".png"));
    expect(pngs.map((c) => c.name)).toContain("rgba16.png");
    for (const c of pngs) {
      const image = decodeImage(readFileSync(join(folder, "images", c.name)), c.name);
      expect([image.width, image.height], c.name).toEqual([c.width, c.height]);
      expect(Buffer.from(image.data).equals(Buffer.from(bytes(c.rgb))), `${c.name} decodes exactly`).toBe(true);
    }
  });

  it("decodes every JPEG to the very bytes Pillow gives (libjpeg-turbo's IDCT, fancy upsampling, colour tables), EXIF rotation applied", () => {
    const jpegs = fixtures.images.filter((i) => i.name.endsWith(".jpg"));
    // colour edges in every sampling, progressive, restarts, RGB-coded, CMYK, grey, a stray byte, rotated
    expect(jpegs.map((c) => c.name)).toEqual(
      expect.arrayContaining(["rotated.jpg", "edges_420_q90.jpg", "edges_422_q30_progressive.jpg", "edges_420_restart.jpg",
        "edges_rgb.jpg", "edges_cmyk.jpg", "edges_grey_progressive.jpg", "edges_junk.jpg", "tall_17x300.jpg"]),
    );
    for (const c of jpegs) {
      const image = decodeImage(readFileSync(join(folder, "images", c.name)), c.name);
      expect([image.width, image.height], c.name).toEqual([c.width, c.height]);
      const expected = bytes(c.rgb);
      let differing = 0;
      let worst = 0;
      for (let i = 0; i < expected.length; i++) {
        const difference = Math.abs((image.data[i] as number) - (expected[i] as number));
        if (difference) differing++;
        worst = Math.max(worst, difference);
      }
      // jpeg-js (nearest-neighbour chroma, float colour) differed here by up to 107 levels on 95% of the values
      expect({ differing, worst }, `${c.name} decodes exactly`).toEqual({ differing: 0, worst: 0 });
    }
  });

  it("refuses a truncated JPEG and the JPEG codings it does not read, naming the file", () => {
    const read = (name: string, data?: Uint8Array) => () => decodeImage(data ?? readFileSync(join(folder, "images", name)), name);
    expect(read("truncated.jpg")).toThrow("truncated.jpg: image data is truncated or corrupt (the file ends inside the image data)");
    const baseline = readFileSync(join(folder, "images", "edges_420_q90.jpg"));
    const sof = baseline.indexOf(Buffer.from([0xff, 0xc0]));
    const arithmetic = Buffer.from(baseline);
    arithmetic[sof + 1] = 0xc9;
    expect(read("arith.jpg", arithmetic)).toThrow(
      "arith.jpg: arithmetic-coded JPEGs cannot be read by the local runtime (it reads baseline and progressive ones; convert the file, or inspect it with eagle)",
    );
    const twelve = Buffer.from(baseline);
    twelve[sof + 4] = 12;
    expect(read("twelve.jpg", twelve)).toThrow("twelve.jpg: 12-bit JPEGs cannot be read by the local runtime (it reads 8-bit ones)");
  });

  it("refuses broken and unsupported files with a message naming them", () => {
    const read = (name: string) => () => decodeImage(readFileSync(join(folder, "images", name)), name);
    expect(read("truncated.png")).toThrow(/^truncated\.png: image data is truncated or corrupt \(/);
    expect(read("notes.txt")).toThrow("notes.txt: not a recognised image format (the local runtime reads PNG and JPEG)");
    expect(() => decodeImage(new Uint8Array(0), "empty.png")).toThrow("empty.png: file is empty (0 bytes)");
  });

  it("reads 16-bit PNGs by their sBIT as Python does, and refuses what Python refuses with its words", () => {
    const names = fixtures.images.map((c) => c.name);
    for (const name of ["grey12_sbit.png", "grey12.png", "grey12_shifted_sbit.png", "grey12_dark_sbit.png", "rgb12_top_sbit.png"]) {
      expect(names, `the fixtures hold ${name}`).toContain(name);
    }
    const levels = (name: string) => new Set(decodeImage(readFileSync(join(folder, "images", name)), name).data).size;
    expect(levels("grey12_sbit.png"), "12 bits with sBIT keep their grey levels").toBeGreaterThan(200);
    expect(levels("grey12.png"), "12 bits without sBIT: read at 16-bit range, as before").toBeLessThanOrEqual(17);
    expect(Object.keys(fixtures.refusals)).toEqual(["rgb12_sbit.png"]);
    for (const [name, message] of Object.entries(fixtures.refusals)) {
      expect(() => decodeImage(readFileSync(join(folder, "images", name)), name)).toThrow(message);
    }
  });

  it("tells greyscale from colour and warns about it as Python does", () => {
    for (const c of fixtures.images) {
      const image = decodeImage(readFileSync(join(folder, "images", c.name)), c.name);
      if (c.name.endsWith(".png")) expect(colourMode(image), c.name).toBe(c.colour);
    }
    expect(fixtures.images.filter((c) => c.colour === "grey").map((c) => c.name)).toContain("grey_as_rgb.png");
    expect(fixtures.colour_warnings.length).toBeGreaterThan(5);
    for (const c of fixtures.colour_warnings) {
      expect(colourWarning(c.trained, c.mode), JSON.stringify([c.trained, c.mode])).toBe(c.warning);
    }
  });

  it("measures a photo's exposure to the very double Python does and warns about it in Python's words", () => {
    for (const c of fixtures.images) {
      const image = decodeImage(readFileSync(join(folder, "images", c.name)), c.name);
      expect(imageStatistics(image), c.name).toEqual(c.exposure);
    }
    expect(fixtures.exposure_warnings.filter((c) => c.warning !== null).length).toBeGreaterThan(20);
    expect(fixtures.exposure_warnings.filter((c) => c.warning === null).length).toBeGreaterThan(20);
    for (const c of fixtures.exposure_warnings) {
      expect(statisticsWarning(c.trained, c.mean, c.spread), JSON.stringify([c.trained, c.mean, c.spread])).toBe(c.warning);
    }
    expect([18.25, 18.75, 0.25, 0.05, 2.5, 118].map(fixed1)).toEqual(["18.2", "18.8", "0.2", "0.1", "2.5", "118.0"]);
  });

  it("resizes byte-exactly like Pillow's bilinear, up, down and odd ratios", () => {
    for (const c of fixtures.resizes) {
      const out = resizeBilinear({ width: c.width, height: c.height, data: bytes(c.src) }, c.out_width, c.out_height);
      const expected = bytes(c.out);
      let differing = 0;
      for (let i = 0; i < expected.length; i++) if (out.data[i] !== expected[i]) differing++;
      expect(differing, `${c.width}x${c.height} -> ${c.out_width}x${c.out_height}: bytes differing from Pillow`).toBe(0);
    }
  });

  it("maps input maps back to the original frame like torch's bilinear (and the centre crop)", () => {
    for (const c of fixtures.verdicts) {
      const [ih, iw] = c.input;
      const full = mapToOriginal({ width: iw, height: ih, data: floats(c.input_map) }, geometryOf(c));
      const expected = floats(c.full_map);
      expect(full.data.length, c.name).toBe(expected.length);
      let worst = 0;
      for (let i = 0; i < expected.length; i++) worst = Math.max(worst, Math.abs((full.data[i] as number) - (expected[i] as number)));
      expect(worst, `${c.name}: largest difference to torch`).toBeLessThanOrEqual(1e-6);
    }
  });

  it("draws the boxes Python draws on the same map (both region rules)", () => {
    let boxes = 0;
    for (const c of fixtures.verdicts) {
      const [h, w] = c.size;
      const map = { width: w, height: h, data: floats(c.full_map) };
      expectClose(extractRegions(map), c.paper_boxes, `${c.name}.paper_boxes`);
      const v = c.verdict;
      const p = c.params;
      const cell = Math.min(0.001, (8 / c.input[0]) * (8 / c.input[1]));
      const found = findBoxes(map, v["region_rule"] as string, p.calibrated ? p.mapTau : null, p.calibrated ? p.colourScale[0] : null, 3, cell);
      const expected = [...v.boxes, ...v.candidates].map((b) => {
        const { rank: _rank, strength: _strength, ...box } = b as Record<string, unknown>;
        return box;
      });
      expectClose(found.boxes, expected, `${c.name}.boxes`);
      expectClose(found.threshold, v.map["region_threshold"], `${c.name}.region_threshold`);
      boxes += expected.length;
    }
    expect(boxes, "the fixtures exercise boxes at all").toBeGreaterThan(40);
  });

  it("takes the calibrated rule's fallbacks as Python's find_boxes does, to the bit", () => {
    const branches = new Set<string>();
    for (const c of fixtures.regions) {
      const map = { width: c.width, height: c.height, data: floats(c.map) };
      const found = findBoxes(map, "calibrated", c.map_tau, c.baseline, 3, c.min_area_fraction);
      // Exactly: the same level (the bisection's too), the same boxes, the same floats.
      expect(found, `${c.name} (${c.branch})`).toEqual({ boxes: c.boxes, threshold: c.threshold });
      branches.add(c.branch);
    }
    // A map barely crossing map_tau, one never reaching it, and the peak's region grown to one cell.
    expect([...branches].sort()).toEqual(["flat", "map_tau", "peak", "relative_above", "relative_below"]);
  });

  it("gives each box the largest patch score under it as its strength, as Python's verdict does with the grid", () => {
    let boxes = 0;
    let belowPeak = 0;
    for (const c of fixtures.verdicts) {
      const [ih, iw] = c.input;
      const geometry = geometryOf(c);
      const full = mapToOriginal({ width: iw, height: ih, data: floats(c.input_map) }, geometry);
      const v = makeVerdict(c.name, c.score, full, geometry, c.params, floats(c.patches));
      const factor = c.params.tau / (c.verdict.map["map_tau"] as number);
      const theirs = [...c.patch_verdict.boxes, ...c.patch_verdict.candidates] as Array<Record<string, number>>;
      [...v.boxes, ...v.candidates].forEach((box, i) => {
        expect(Object.keys(box).slice(-2), c.name).toEqual(["rank", "strength"]);
        expect(box.patch_score, c.name).not.toBeNull();
        expect(box.strength, c.name).toBe(box.patch_score);
        expectClose(box.strength, theirs[i]?.["strength"], `${c.name} strength`);
        if (Math.abs(box.strength - box.score * factor) > 1e-3) belowPeak++;
        boxes++;
      });
    }
    expect(boxes).toBeGreaterThan(40);
    expect(belowPeak, "the patch score is not the map peak on the score's scale").toBeGreaterThan(0);
  });

  it("gives each box its map peak on the image score's scale without a patch grid (an export before schema 3)", () => {
    let boxes = 0;
    for (const c of fixtures.verdicts) {
      const [ih, iw] = c.input;
      const geometry = geometryOf(c);
      const full = mapToOriginal({ width: iw, height: ih, data: floats(c.input_map) }, geometry);
      const v = makeVerdict(c.name, c.score, full, geometry, c.params);
      const factor = c.params.tau / (c.verdict.map["map_tau"] as number);
      for (const box of [...v.boxes, ...v.candidates]) {
        expect(box.patch_score, c.name).toBeNull();
        expect(box.strength, c.name).toBe(box.score * factor);
        boxes++;
      }
    }
    expect(boxes).toBeGreaterThan(0);
  });

  it("builds the verdict record Python builds, from the input map (and the patch grid) on", () => {
    for (const c of fixtures.verdicts) {
      const [ih, iw] = c.input;
      const geometry = geometryOf(c);
      const full = mapToOriginal({ width: iw, height: ih, data: floats(c.input_map) }, geometry);
      expectClose(makeVerdict(c.name, c.score, full, geometry, c.params), c.verdict, c.name);
      expectClose(makeVerdict(c.name, c.score, full, geometry, c.params, floats(c.patches)), c.patch_verdict, `${c.name} (patch grid)`);
    }
  });

  it("prepares the graph input as Python does (resize, or resize then centre crop)", () => {
    const image = decodeImage(readFileSync(join(folder, "images", "rgb.png")), "rgb.png");
    const { input, geometry } = prepareInput(image, "center-crop", 32, 32, 40);
    expect(geometry.crop).toEqual({ resizedHeight: 40, resizedWidth: 57, top: 4, left: 12, size: 32 });
    const resized = resizeBilinear(image, 57, 40);
    expect(Array.from(input.data.subarray(0, 3))).toEqual(Array.from(resized.data.subarray((4 * 57 + 12) * 3, (4 * 57 + 12) * 3 + 3)));
  });
});

describe("local runtime image limits (eagle_iad.images' rules, from the header)", () => {
  const png = (width: number, height: number): Uint8Array => {
    const image = new PNG({ width, height });
    return PNG.sync.write(image);
  };

  it("refuses images too small, too large or too elongated, naming the file", () => {
    expect(() => decodeImage(png(15, 40), "tiny.png")).toThrow("tiny.png: 15x40 is too small; each side must be at least 16 px");
    expect(() => decodeImage(png(16, 16 * 33), "strip.png")).toThrow(
      "strip.png: 16x528 is too elongated (aspect ratio 33:1 exceeds the limit of 32:1; set EAGLE_MAX_ASPECT to change it)",
    );
    const previous = process.env["EAGLE_MAX_PIXELS"];
    process.env["EAGLE_MAX_PIXELS"] = "1000";
    try {
      expect(() => decodeImage(png(40, 30), "big.png")).toThrow(
        "big.png: 40x30 = 0.0 megapixels exceeds the limit of 0.0 megapixels (set EAGLE_MAX_PIXELS to change it)",
      );
      expect(decodeImage(png(20, 20), "fits.png").width).toBe(20);
    } finally {
      if (previous === undefined) delete process.env["EAGLE_MAX_PIXELS"];
      else process.env["EAGLE_MAX_PIXELS"] = previous;
    }
  });
});

describe("close calls and unrecognised images (sidecar schema 3's verdict, as eagle_iad.verdict.make_verdict)", () => {
  const geometry: ViewGeometry = { height: 16, width: 16, inputHeight: 16, inputWidth: 16 };
  const flat = { width: 16, height: 16, data: new Float32Array(256).fill(1) };
  const params: DecisionParams = {
    category: "c", tau: 2, sMax: 3, regionRule: "calibrated", mapTau: 1.5, colourScale: [0.5, 2.5], calibrated: true,
    preprocess: "resize", nearMargin: 0.25, coverage: { radius: 1, limit: 0.2 },
  };
  // a 2 x 2 patch grid, one cell of four beyond the radius (a share of 0.25), one cell no tile reached
  const grid = (beyond: number) => Float32Array.from([0.5, beyond, 0.9, -Infinity]);

  it("marks a score within the margin of tau a close call, on either side", () => {
    expect(makeVerdict("a", 1.8, flat, geometry, params, grid(0.9)).near_threshold).toBe(true);
    expect(makeVerdict("b", 2.2, flat, geometry, params, grid(0.9)).near_threshold).toBe(true);
    expect(makeVerdict("c", 1.7, flat, geometry, params, grid(0.9)).near_threshold).toBe(false);
    expect(makeVerdict("d", 1.8, flat, geometry, { ...params, nearMargin: null }, grid(0.9)).near_threshold).toBeNull();
  });

  it("calls an image with a fifth or more of its patches beyond the coverage unrecognised, without boxes", () => {
    const foreign = makeVerdict("e", 9, flat, geometry, params, grid(1.5));
    expect(foreign.foreign_share).toBeCloseTo(1 / 3, 12); // the uncovered cell does not count
    expect([foreign.decision, foreign.unrecognised, foreign.in_band, foreign.near_threshold]).toEqual(["unrecognised", true, false, false]);
    expect([foreign.boxes, foreign.candidates]).toEqual([[], []]);
    const known = makeVerdict("f", 1, flat, geometry, params, grid(0.9));
    expect([known.decision, known.unrecognised, known.foreign_share]).toEqual(["normal", false, 0]);
    // an export before schema 3: no patch grid, no rules: unknown
    const { nearMargin: _margin, coverage: _coverage, ...before } = params;
    const old = makeVerdict("g", 9, flat, geometry, before);
    expect([old.decision, old.unrecognised, old.foreign_share, old.near_threshold]).toEqual(["anomalous", null, null, null]);
  });
});
