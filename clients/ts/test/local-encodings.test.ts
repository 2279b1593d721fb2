/**
 * The local runtime's input encodings against Python on files Python writes in this run
 * (scripts/local_encodings.py): the encoding read from each header (PNG; JPEG at every quality and sampling,
 * grey, CMYK, progressive, OpenCV's, odd tables and headers), the warning each gets under several models'
 * training encodings, and the sidecar's `verdict.encodings` read and refused as Python's runtime does.
 */
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";

import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { imageEncoding, inputWarning, inputWarnings, parseEncodings } from "../src/local/encodings.js";
import { decodeImage } from "../src/local/image.js";
import { readSidecar, trainEncodings } from "../src/local/session.js";
import { NO_PYTHON, runPython, scratch } from "./local-python.js";
import { REPO } from "./server.js";

interface ImageCase { name: string; encoding: string | null; warnings: Array<string | null>; record_warnings: Array<string[] | null> }
interface ParseCase { raw: unknown; encodings: Record<string, number> | null; error: string | null }
interface Fixtures { trained: Array<Record<string, number> | null>; images: ImageCase[]; parse: ParseCase[] }

let fixtures: Fixtures;
let folder: string;

/** Formats Python reads that the local runtime does not decode (image.ts): their encoding is unknown here. */
const NOT_DECODED = [".webp"];

describe.skipIf(NO_PYTHON !== "")(`input encodings vs Python${NO_PYTHON ? ` (skipped: ${NO_PYTHON})` : ""}`, () => {
  beforeAll(() => {
    folder = scratch("eagle-local-encodings-");
    runPython([resolve(REPO, "clients/ts/scripts/local_encodings.py"), folder]);
    fixtures = JSON.parse(readFileSync(join(folder, "encodings.json"), "utf8")) as Fixtures;
  });
  afterAll(() => rmSync(folder, { recursive: true, force: true }));

  const read = (name: string): Uint8Array => new Uint8Array(readFileSync(join(folder, "images", name)));

  it("reads each header's encoding as images.py's image_encoding does", () => {
    const jpegs = fixtures.images.filter((c) => c.name.endsWith(".jpg") && c.encoding !== null);
    expect(jpegs.length).toBeGreaterThan(100); // every quality 1..100 and the odd ones
    expect(new Set(jpegs.map((c) => c.encoding)).size).toBeGreaterThan(100);
    for (const c of fixtures.images) {
      if (NOT_DECODED.some((ext) => c.name.endsWith(ext))) {
        expect(imageEncoding(read(c.name)), c.name).toBeNull();
        expect(() => decodeImage(read(c.name), c.name), c.name).toThrow("not a recognised image format");
        continue;
      }
      expect(imageEncoding(read(c.name)), c.name).toBe(c.encoding);
    }
  });

  it("warns as encodings.py's input_warning does, under every training set", () => {
    let warned = 0;
    for (const c of fixtures.images) {
      const bytes = read(c.name);
      const decoded = !NOT_DECODED.some((ext) => c.name.endsWith(ext));
      fixtures.trained.forEach((trained, i) => {
        const where = `${c.name} under ${JSON.stringify(trained)}`;
        const expected = c.warnings[i] ?? null;
        // the text itself, from Python's encoding (a WebP's too: the local runtime reads none)
        expect(inputWarning(trained, c.encoding), where).toBe(expected);
        if (!decoded) return;
        expect(inputWarning(trained, imageEncoding(bytes)), where).toBe(expected);
        expect(inputWarnings(trained, bytes), where).toEqual(c.record_warnings[i] ?? null);
        if (expected !== null) warned++;
      });
    }
    expect(warned).toBeGreaterThan(100);
    // an animated PNG: only its first frame is inspected, and the record says so, as Python's does
    const anim = fixtures.images.find((c) => c.name === "anim.png");
    expect(anim?.record_warnings.at(-1)).toEqual([
      "only the first of the file's 2 frames was inspected (an animation or a multi-page file; docs/USAGE.md, 'Images')",
    ]);
    expect(inputWarnings(null, read("anim.png"))).toEqual(anim?.record_warnings.at(-1));
    // its default image apart from the animation (no fcTL before IDAT): that image is inspected, the animation's
    // one frame is not, so 2 frames, as Python counts them (the local runtime said 1 and warned of nothing)
    const apart = fixtures.images.find((c) => c.name === "anim-default-apart.png");
    expect(apart?.record_warnings.at(-1)).toEqual(anim?.record_warnings.at(-1));
    expect(inputWarnings(null, read("anim-default-apart.png"))).toEqual(apart?.record_warnings.at(-1));
  });

  it("parses stored counts as encodings.py's parse_encodings does, and refuses what it refuses", () => {
    for (const c of fixtures.parse) {
      const where = JSON.stringify(c.raw);
      if (c.error === null) expect(parseEncodings(c.raw, "verdict.encodings"), where).toEqual(c.encodings);
      else expect(() => parseEncodings(c.raw, "verdict.encodings"), where).toThrow(c.error);
    }
  });

  it("reads the sidecar's verdict.encodings: absent or null is unknown, a malformed entry refuses the export", async () => {
    const graph = Buffer.from("not really a graph");
    const placeholder = "sha256:" + "0".repeat(64);
    /** A sealed schema-3 sidecar (its checksum over its own bytes) with `encodings` in its verdict. */
    const exportWith = (name: string, encodings: unknown): string => {
      const dir = join(folder, name);
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, "model.onnx"), graph);
      const verdict: Record<string, unknown> = { near_margin: 1.5, coverage: null };
      if (encodings !== undefined) verdict["encodings"] = encodings;
      const record = {
        schema_version: 3,
        kind: "eagle-export",
        format: "onnx",
        category: "fixture",
        verdict,
        graph: { file: "model.onnx", external_data: null, opset: 17, sha256: { "model.onnx": createHash("sha256").update(graph).digest("hex") } },
        checksum: placeholder,
      };
      const text = JSON.stringify(record, null, 2);
      const sealed = "sha256:" + createHash("sha256").update(text).digest("hex");
      writeFileSync(join(dir, "eagle-export.json"), text.replace(placeholder, sealed));
      return dir;
    };
    for (const [name, encodings, expected] of [
      ["absent", undefined, null],
      ["null", null, null],
      ["lossless", { lossless: 12 }, { lossless: 12 }],
      ["mixed", { lossless: 2, "jpeg 4:2:0 q95": 1 }, { lossless: 2, "jpeg 4:2:0 q95": 1 }],
    ] as const) {
      const { sidecar } = await readSidecar(exportWith(name, encodings));
      expect(trainEncodings(sidecar, "here"), name).toEqual(expected);
    }
    for (const c of fixtures.parse.filter((p) => p.error !== null && p.raw !== null)) {
      const dir = exportWith("malformed", c.raw);
      await expect(readSidecar(dir), JSON.stringify(c.raw)).rejects.toThrow(`${join(dir, "eagle-export.json")}: malformed sidecar (${c.error})`);
    }
  });
});
