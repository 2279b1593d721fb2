/**
 * The JPEG decoder (src/local/jpeg.ts) against hostile and corrupt files: the image limits hold for the frame
 * it decodes, whatever a header walk reports (crafted files that once decoded 49 megapixels past the 40
 * megapixel limit from 65 KB), and it refuses what Pillow refuses (bad Huffman tables, scan parameters out of
 * range, unknown markers), checked against eagle's Python on crafted files and on a mutation corpus.
 */
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";

import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { decodeImage } from "../src/local/image.js";
import { MAX_SCANS, decodeJpegExact } from "../src/local/jpeg.js";
import { NO_PYTHON, runPython, scratch } from "./local-python.js";

function segment(marker: number, body: number[]): number[] {
  const length = body.length + 2;
  return [0xff, marker, length >> 8, length & 255, ...body];
}

function frame(width: number, height: number, marker = 0xc0): number[] {
  return segment(marker, [8, height >> 8, height & 255, width >> 8, width & 255, 1, 1, 0x11, 0]);
}

/** One code of one bit for symbol 0: every block is a DC difference of 0 and an end of block. */
const ONE_CODE = [1, ...new Array<number>(15).fill(0), 0];

/** A grey JPEG whose every block is flat: all its entropy-coded bits are zeros. */
function flatJpeg(width: number, height: number, options: { before?: number[]; tables?: number[][]; scan?: number[]; marker?: number } = {}): Uint8Array {
  const blocks = Math.ceil(width / 8) * Math.ceil(height / 8);
  return new Uint8Array([
    0xff, 0xd8,
    ...(options.before ?? []),
    ...segment(0xdb, [0, ...new Array<number>(64).fill(1)]),
    ...frame(width, height, options.marker),
    ...(options.tables ?? [segment(0xc4, [0x00, ...ONE_CODE]), segment(0xc4, [0x10, ...ONE_CODE])]).flat(),
    ...segment(0xda, options.scan ?? [1, 1, 0x00, 0, 63, 0]),
    ...new Array<number>(Math.ceil((blocks * 2) / 8)).fill(0),
    0xff, 0xd9,
  ]);
}

/** The JPEG with its end marker replaced by `tail`. */
function withEnd(jpeg: Uint8Array, tail: number[]): Uint8Array {
  return new Uint8Array([...jpeg.subarray(0, jpeg.length - 2), ...tail]);
}

/** The reviewer's bomb: a 7000x7000 frame, and at the offset a misread length points to, a 100x100 decoy. */
function decoyBomb(standalone: number): Uint8Array {
  const bytes = [0xff, 0xd8, 0xff, standalone];
  bytes.push(...segment(0xdb, [0, ...new Array<number>(64).fill(1)]));
  bytes.push(...frame(7000, 7000));
  bytes.push(...segment(0xc4, [0x00, ...ONE_CODE]), ...segment(0xc4, [0x10, ...ONE_CODE]));
  bytes.push(...segment(0xda, [1, 1, 0x00, 0, 63, 0]), 0xff, 0xd9);
  const decoyAt = 2 + 2 + 0xffdb; // where a walk that reads "FF DB" after the standalone marker as a length lands
  while (bytes.length < decoyAt) bytes.push(0);
  bytes.push(...frame(100, 100));
  return new Uint8Array(bytes);
}

describe("local runtime JPEG decoder: the image limits hold for the frame decoded", () => {
  it("refuses the decoy bombs: a standalone marker given a length no longer hides the real frame", () => {
    // TEM (0xFF01) before the first scan: Pillow's header parser refuses the file, and so does this one
    expect(() => decodeImage(decoyBomb(0x01), "tem.jpg")).toThrow(
      "tem.jpg: not a recognised image format (JPEG marker 0xFF01 at byte 2, which Pillow does not read)",
    );
    // RST0 (0xFFD0) carries no length for Pillow either: the header walk finds the 7000x7000 frame
    expect(() => decodeImage(decoyBomb(0xd0), "rst.jpg")).toThrow(
      "rst.jpg: 7000x7000 = 49.0 megapixels exceeds the limit of 40.0 megapixels (set EAGLE_MAX_PIXELS to change it)",
    );
  });

  it("checks the size of the frame it decodes itself, before allocating, with image.ts's message", () => {
    const message = "bomb.jpg: 7000x7000 = 49.0 megapixels exceeds the limit of 40.0 megapixels (set EAGLE_MAX_PIXELS to change it)";
    expect(() => decodeJpegExact(decoyBomb(0x01), "bomb.jpg")).toThrow(message);
    // a second frame header after a small one: Pillow's walk (and image.ts's) takes the last, libjpeg the first
    const twoFrames = flatJpeg(100, 100, { before: frame(7000, 7000) });
    expect(() => decodeImage(twoFrames, "bomb.jpg")).toThrow(message);
    expect(() => decodeJpegExact(twoFrames, "bomb.jpg")).toThrow(message);
    // the other limits too, and libjpeg's own ceiling on a side
    expect(() => decodeJpegExact(flatJpeg(16, 15), "thin.jpg")).toThrow("thin.jpg: 16x15 is too small; each side must be at least 16 px");
    const previous = process.env["EAGLE_MAX_PIXELS"];
    process.env["EAGLE_MAX_PIXELS"] = String(65535 * 4096);
    try {
      const wide = flatJpeg(65535, 4096);
      expect(() => decodeJpegExact(wide, "wide.jpg")).toThrow(
        "wide.jpg: image data is truncated or corrupt (65535x4096: libjpeg reads at most 65500 pixels a side)",
      );
    } finally {
      if (previous === undefined) delete process.env["EAGLE_MAX_PIXELS"];
      else process.env["EAGLE_MAX_PIXELS"] = previous;
    }
  });

  it("decodes the crafted flat JPEG (the base of the refusals below) to grey", () => {
    const image = decodeImage(flatJpeg(24, 16), "flat.jpg");
    expect([image.width, image.height]).toEqual([24, 16]);
    expect(new Set(image.data)).toEqual(new Set([128]));
  });

  it("refuses bad Huffman tables and scan parameters as libjpeg does, naming the file", () => {
    const corrupt = (reason: string) => `bad.jpg: image data is truncated or corrupt (${reason})`;
    const read = (data: Uint8Array) => () => decodeImage(data, "bad.jpg");
    const dc = (counts: number[], values: number[]) => segment(0xc4, [0x00, ...counts, ...new Array<number>(16 - counts.length).fill(0), ...values]);
    const ac = segment(0xc4, [0x10, ...ONE_CODE]);
    // three codes of one bit, or two (no code may be all ones)
    expect(read(flatJpeg(16, 16, { tables: [dc([3], [0, 1, 2]), ac] }))).toThrow(corrupt("bad Huffman table (more Huffman codes of 1 bits than there is room for)"));
    expect(read(flatJpeg(16, 16, { tables: [dc([2], [0, 1]), ac] }))).toThrow(corrupt("bad Huffman table (more Huffman codes of 1 bits than there is room for)"));
    expect(read(flatJpeg(16, 16, { tables: [dc([1], [16]), ac] }))).toThrow(corrupt("bad Huffman table (a DC Huffman table with a symbol over 15)"));
    expect(read(flatJpeg(16, 16, { tables: [dc([1, 255], [0]), ac] }))).toThrow(corrupt("bad Huffman table (more codes than symbols)"));
    expect(read(flatJpeg(16, 16, { tables: [segment(0xc4, [0x04, ...ONE_CODE]), ac] }))).toThrow(corrupt("bad Huffman table id 0x4"));
    // a broken table no scan uses is no error (libjpeg checks a table when a scan uses it)
    expect(decodeImage(flatJpeg(16, 16, { tables: [dc([1], [0]), ac, dc([3], [0, 1, 2]).map((b, i) => (i === 4 ? 0x02 : b))] }), "unused.jpg").width).toBe(16);
    // scans: a component the frame lacks, an undefined table (2, 3: only 0 and 1 have standard stand-ins)
    expect(read(flatJpeg(16, 16, { scan: [1, 9, 0x00, 0, 63, 0] }))).toThrow(corrupt("a scan names component 9, which the frame lacks (or names it twice)"));
    expect(read(flatJpeg(16, 16, { scan: [1, 1, 0x22, 0, 63, 0] }))).toThrow(corrupt("a scan uses an undefined Huffman table"));
    expect(read(flatJpeg(16, 16, { scan: [1, 1, 0x00, 0, 63] }))).toThrow(/bad length 7 of the 0xFFDA segment/);
    // progressive: Se > 0 in a DC scan, Se past 63, Al past 13, a refinement whose Al is not Ah - 1
    for (const [ss, se, ahal] of [[0, 5, 0], [1, 64, 0], [0, 0, 14], [0, 0, 0x20]] as const) {
      expect(read(flatJpeg(16, 16, { marker: 0xc2, scan: [1, 1, 0x00, ss, se, ahal] }))).toThrow(
        corrupt(`invalid progressive parameters Ss=${ss} Se=${se} Ah=${ahal >> 4} Al=${ahal & 15}`),
      );
    }
    // a marker libjpeg does not know, a second start of image
    expect(read(flatJpeg(16, 16, { before: [0xff, 0xde, 0, 2] }))).toThrow(corrupt("unknown JPEG marker 0xFFDE at byte 2"));
    expect(read(flatJpeg(16, 16, { before: [0xff, 0xd8] }))).toThrow(corrupt("a second start-of-image marker"));
  });

  it("refuses a JPEG of more than MAX_SCANS scans, and reads one of exactly that many", () => {
    const withScans = (count: number): Uint8Array => {
      const bytes = [0xff, 0xd8, ...segment(0xdb, [0, ...new Array<number>(64).fill(1)]), ...frame(64, 64, 0xc2)];
      bytes.push(...segment(0xc4, [0x00, ...ONE_CODE]), ...segment(0xda, [1, 1, 0x00, 0, 0, 0x01]), 0x00, 0x00);
      // DC refinement scans without data: libjpeg reads zeros for them, changing nothing
      for (let i = 1; i < count; i++) bytes.push(...segment(0xda, [1, 1, 0x00, 0, 0, 0x10]));
      bytes.push(0xff, 0xd9);
      return new Uint8Array(bytes);
    };
    expect(new Set(decodeImage(withScans(MAX_SCANS), "many.jpg").data)).toEqual(new Set([128]));
    expect(() => decodeImage(withScans(MAX_SCANS + 1), "more.jpg")).toThrow(
      `more.jpg: JPEG has more than ${MAX_SCANS} scans, which the local runtime refuses (encoders write a few dozen at most; each scan costs a pass over the whole image)`,
    );
  });
});

describe.skipIf(NO_PYTHON !== "")(`local runtime JPEG decoder vs Pillow on corrupt files${NO_PYTHON ? ` (skipped: ${NO_PYTHON})` : ""}`, () => {
  let folder: string;
  beforeAll(() => {
    folder = scratch("eagle-jpeg-mutants-");
  });
  afterAll(() => rmSync(folder, { recursive: true, force: true }));

  /** Python's load_rgb on each file: true where it decodes, false where it refuses. */
  function pillowDecodes(names: string[]): Record<string, boolean> {
    const code = [
      "import json, sys",
      "from eagle_iad.images import ImageError, load_rgb",
      "out = {}",
      "for name in sys.argv[2:]:",
      "    try:",
      "        load_rgb(sys.argv[1] + '/' + name)",
      "        out[name] = True",
      "    except ImageError:",
      "        out[name] = False",
      "print(json.dumps(out))",
    ].join("\n");
    return JSON.parse(runPython(["-c", code, folder, ...names])) as Record<string, boolean>;
  }

  function tsDecodes(name: string): boolean {
    try {
      decodeImage(readFileSync(join(folder, name)), name);
      return true;
    } catch {
      return false;
    }
  }

  it("refuses and decodes the crafted files as Pillow does", () => {
    const dc3 = segment(0xc4, [0x00, 3, ...new Array<number>(15).fill(0), 0, 1, 2]);
    const ac = segment(0xc4, [0x10, ...ONE_CODE]);
    const files: Record<string, Uint8Array> = {
      "flat.jpg": flatJpeg(24, 16),
      "standard_tables.jpg": flatJpeg(24, 16, { tables: [] }), // no DHT: libjpeg-turbo's standard tables 0 and 1
      "oversubscribed.jpg": flatJpeg(16, 16, { tables: [dc3, ac] }),
      "unused_bad_table.jpg": flatJpeg(16, 16, { tables: [segment(0xc4, [0x00, ...ONE_CODE]), ac, dc3.map((b, i) => (i === 4 ? 0x02 : b))] }),
      "dc_symbol.jpg": flatJpeg(16, 16, { tables: [segment(0xc4, [0x00, ...ONE_CODE.slice(0, 16), 16]), ac] }),
      "table_2.jpg": flatJpeg(16, 16, { scan: [1, 1, 0x22, 0, 63, 0] }),
      "component_9.jpg": flatJpeg(16, 16, { scan: [1, 9, 0x00, 0, 63, 0] }),
      "prog_dc_se.jpg": flatJpeg(16, 16, { marker: 0xc2, scan: [1, 1, 0x00, 0, 5, 0] }),
      "prog_al.jpg": flatJpeg(16, 16, { marker: 0xc2, scan: [1, 1, 0x00, 0, 0, 14] }),
      "dhp.jpg": flatJpeg(16, 16, { before: [0xff, 0xde, 0, 2] }),
      "two_soi.jpg": flatJpeg(16, 16, { before: [0xff, 0xd8] }),
      "rst_in_header.jpg": flatJpeg(16, 16, { before: [0xff, 0xd3] }),
      "dht_length_0.jpg": flatJpeg(16, 16, { before: [0xff, 0xc4, 0, 0] }),
      "dri_length_5.jpg": flatJpeg(16, 16, { before: [0xff, 0xdd, 0, 5, 0, 1, 0] }),
      // after a single-scan image: a segment cut short by the end of the file only ends it early, unless
      // what is there is already wrong
      "app1_past_end.jpg": withEnd(flatJpeg(24, 16), [0xff, 0xe1, 0x40, 0x00, 1, 2, 3]),
      "dqt_past_end_bad_id.jpg": withEnd(flatJpeg(24, 16), [0xff, 0xdb, 0x40, 0x00, 0x07, 1, 2, 3]),
      "dqt_past_end.jpg": withEnd(flatJpeg(24, 16), [0xff, 0xdb, 0x40, 0x00, 0x01, 1, 2, 3]),
    };
    for (const [name, data] of Object.entries(files)) writeFileSync(join(folder, name), data);
    const pillow = pillowDecodes(Object.keys(files));
    const ours = Object.fromEntries(Object.keys(files).map((name) => [name, tsDecodes(name)]));
    expect(ours).toEqual(pillow);
    expect(pillow["flat.jpg"] && pillow["standard_tables.jpg"] && pillow["unused_bad_table.jpg"]).toBe(true);
    expect(pillow["oversubscribed.jpg"] || pillow["prog_al.jpg"] || pillow["dqt_past_end_bad_id.jpg"]).toBe(false);
    expect(pillow["app1_past_end.jpg"] && pillow["dqt_past_end.jpg"]).toBe(true);
  });

  it("gives no verdict on a mutated JPEG that Pillow refuses, and refuses none that Pillow decodes", () => {
    const code = [
      "import io, sys",
      "import numpy as np",
      "from PIL import Image",
      "y, x = np.mgrid[0:40, 0:56]",
      "a = np.stack([(x * 5) % 256, (y * 7) % 256, ((x + y) * 3) % 256], -1).astype(np.uint8)",
      "a[13:20, 14:28] = (np.arange(7 * 14 * 3).reshape(7, 14, 3) * 37) % 256",
      "im = Image.fromarray(a)",
      "im.save(sys.argv[1] + '/base.jpg', quality=80, subsampling=2, restart_marker_blocks=2)",
      "im.save(sys.argv[1] + '/prog.jpg', quality=75, subsampling=2, progressive=True)",
      "im.convert('CMYK').save(sys.argv[1] + '/cmyk.jpg', quality=85)",
    ].join("\n");
    runPython(["-c", code, folder]);
    let seed = 2024;
    const random = (): number => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x80000000;
    const names: string[] = [];
    for (const source of ["base", "prog", "cmyk"]) {
      const original = readFileSync(join(folder, `${source}.jpg`));
      for (let i = 0; i < 150; i++) {
        const data = Buffer.from(original);
        const changes = 1 + Math.floor(random() * 4);
        for (let j = 0; j < changes; j++) data[Math.floor(random() * data.length)] = Math.floor(random() * 256);
        const name = `${source}-${i}.jpg`;
        writeFileSync(join(folder, name), data);
        names.push(name);
      }
    }
    const pillow = pillowDecodes(names);
    const disagree = names.filter((name) => tsDecodes(name) !== pillow[name]).map((name) => `${name}: Pillow ${pillow[name] ? "decodes" : "refuses"}`);
    expect(disagree).toEqual([]);
    // the corpus exercises both sides
    const refused = names.filter((name) => !pillow[name]).length;
    expect(refused).toBeGreaterThan(50);
    expect(names.length - refused).toBeGreaterThan(200);
  });
});
