/**
 * The local runtime's input encodings against Python on files Python writes in this run
 * (scripts/local_encodings.py): the encoding read from each header (PNG; JPEG at every quality and sampling,
 * grey, CMYK, progressive, OpenCV's, odd tables and headers), the warning each gets under several models'
 * training encodings, and stored counts read and refused as Python's parse_encodings does.
 */
import { readFileSync, rmSync } from "node:fs";
import { join, resolve } from "node:path";

import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { imageEncoding, inputWarning, inputWarnings, parseEncodings } from "../src/local/encodings.js";
import { decodeImage } from "../src/local/image.js";
import { NO_PYTHON, runPython, scratch } from "./local-python.js";
import { REPO } from "./server.js";

interface ImageCase { name: string; encoding: string | null; warnings: Array<string | null> }
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
        expect(inputWarnings(trained, bytes), where).toEqual(expected === null ? null : [expected]);
        if (expected !== null) warned++;
      });
    }
    expect(warned).toBeGreaterThan(100);
  });

  it("parses stored counts as encodings.py's parse_encodings does, and refuses what it refuses", () => {
    for (const c of fixtures.parse) {
      const where = JSON.stringify(c.raw);
      if (c.error === null) expect(parseEncodings(c.raw, "verdict.encodings"), where).toEqual(c.encodings);
      else expect(() => parseEncodings(c.raw, "verdict.encodings"), where).toThrow(c.error);
    }
  });
});
