/**
 * End to end: a small expert fitted and exported by the Python CLI in this run (scripts/local_parity.py),
 * the same real images (elpv cells, whole frame and tiles; the MVTec 3D-AD tire in centre-crop mode when
 * ../shared has it; and models fitted and inspected on JPEGs, the elpv cells in false colour and the tire,
 * where an approximate JPEG decoder once changed verdicts)
 * through `eagle inspect --runtime onnx` and through `eagle-client inspect --local` in Node: the same
 * decisions, scores within 1e-4, identical boxes whose patch scores and strengths are the fitted model's
 * own (torch's); the very record `eagle serve --runtime onnx` returns for the same upload; the warning a
 * JPEG inspected by the export of a PNG-fitted model carries; then what a damaged export does.
 */
import { createHash } from "node:crypto";
import { copyFileSync, cpSync, existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { basename, join, resolve } from "node:path";

import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { spawn } from "node:child_process";

import { main, uploadNames } from "../src/cli.js";
import { EagleClient } from "../src/client.js";
import type { InspectionRecord } from "../src/client.js";
import { LocalExpert, type LocalInspectionRecord } from "../src/local/index.js";
import { NO_PYTHON, PYTHON, runPython, scratch } from "./local-python.js";
import { REPO, freePort } from "./server.js";

/** `verdicts`: `eagle inspect --runtime onnx --json` of the export; `torch`: the same of the fitted model. */
interface ParityCase { name: string; export: string; images: string[]; verdicts: Array<Record<string, unknown>>; torch: Array<Record<string, unknown>> }

/** JPEG copies of the first model's (PNG) images and `eagle inspect --runtime onnx --json` of them. */
interface EncodedCase { export: string; images: string[]; verdicts: Array<Record<string, unknown>> }

let work: string;
let cases: ParityCase[];
let encoded: EncodedCase;
let coloured: EncodedCase;
let exposed: EncodedCase;
let skipped: string[];

/** Run the CLI in-process; stdout lines and the exit code. */
async function cli(args: string[]): Promise<{ code: number; lines: string[]; stderr: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const write = process.stdout.write.bind(process.stdout);
  const writeErr = process.stderr.write.bind(process.stderr);
  process.stdout.write = ((chunk: string) => (out.push(chunk), true)) as typeof process.stdout.write;
  process.stderr.write = ((chunk: string) => (err.push(chunk), true)) as typeof process.stderr.write;
  try {
    const code = await main(args);
    return { code, lines: out.join("").split("\n").filter(Boolean), stderr: err.join("") };
  } finally {
    process.stdout.write = write;
    process.stderr.write = writeErr;
  }
}

/** Compile-time proof that a local record is a service InspectionRecord (the generated type). */
function asServiceRecord(record: LocalInspectionRecord): InspectionRecord {
  return record;
}

/** Floats within 1e-6 (relative above 1), everything else equal; the message names the key path. */
function expectClose(actual: unknown, expected: unknown, path: string): void {
  if (typeof expected === "number" && typeof actual === "number") {
    if (Math.abs(actual - expected) > 1e-6 * Math.max(1, Math.abs(expected))) throw new Error(`${path}: ${actual} != ${expected}`);
    return;
  }
  if (Array.isArray(expected)) {
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

function where_(c: ParityCase, index: number): string {
  return `${c.name}/${basename(c.images[index] as string)}`;
}

function boxesOf(boxes: unknown): Array<Record<string, number>> {
  return boxes as Array<Record<string, number>>;
}

describe.skipIf(NO_PYTHON !== "")(`local runtime vs Python's onnx runtime on real images${NO_PYTHON ? ` (skipped: ${NO_PYTHON})` : ""}`, () => {
  beforeAll(() => {
    // EAGLE_LOCAL_PARITY_DIR keeps the fitted models between runs (a developer's loop); default: fresh.
    work = process.env["EAGLE_LOCAL_PARITY_DIR"] || scratch("eagle-local-parity-");
    if (!existsSync(join(work, "parity.json"))) runPython([resolve(REPO, "clients/ts/scripts/local_parity.py"), work], 1_500_000);
    const document = JSON.parse(readFileSync(join(work, "parity.json"), "utf8")) as {
      cases: ParityCase[];
      encoded?: EncodedCase;
      coloured?: EncodedCase;
      exposed?: EncodedCase;
      skipped: string[];
    };
    if (document.encoded === undefined || document.coloured === undefined || document.exposed === undefined) {
      throw new Error(`${join(work, "parity.json")} was written before its JPEG, colour and exposure copies: empty EAGLE_LOCAL_PARITY_DIR to write it again`);
    }
    if (!document.cases.some((c) => c.name === "elpv-jpeg")) {
      throw new Error(`${join(work, "parity.json")} was written before its JPEG-fitted models: empty EAGLE_LOCAL_PARITY_DIR to write it again`);
    }
    coloured = document.coloured;
    exposed = document.exposed;
    cases = document.cases;
    encoded = document.encoded;
    skipped = document.skipped;
    for (const reason of skipped) console.warn(`[local parity] skipped ${reason}`);
  }, 1_500_000);
  afterAll(() => {
    if (!process.env["EAGLE_LOCAL_PARITY_DIR"]) rmSync(work, { recursive: true, force: true });
  });

  it("prints the service's record with Python's decisions, scores (1e-4) and boxes, each box's strength torch's, on PNG and JPEG", async () => {
    expect(cases.length).toBeGreaterThanOrEqual(1);
    // A JPEG-fitted model inspected on JPEGs is always among them (and the tire's, where ../shared has it).
    expect(cases.map((c) => c.name)).toContain("elpv-jpeg");
    if (cases.some((c) => c.name === "tire")) expect(cases.map((c) => c.name)).toContain("tire-jpeg");
    expect(cases.find((c) => c.name === "elpv-jpeg")?.images.every((image) => image.endsWith(".jpg"))).toBe(true);
    let anomalous = 0;
    let boxes = 0;
    for (const c of cases) {
      const { code, lines } = await cli(["inspect", "--local", c.export, ...c.images]);
      const names = uploadNames(c.images);
      expect(code, c.name).toBe(0);
      expect(lines.length, c.name).toBe(c.images.length);
      for (const [index, line] of lines.entries()) {
        const record = JSON.parse(line) as LocalInspectionRecord;
        expect(asServiceRecord(record).category, where_(c, index)).toBe(c.verdicts[index]?.["category"]);
        const python = c.verdicts[index] as Record<string, unknown> & { map: Record<string, unknown> };
        const where = `${c.name}/${basename(c.images[index] as string)}`;
        // The service's InspectionRecord keys, expert only.
        expect(Object.keys(record), where).toEqual([
          "id", "time", "category", "image_name", "score", "tau", "s_max", "decision", "in_band", "answer", "caas_applied",
          "verdict", "pictures", "reference", "answered_by", "label", "label_time", "label_by", "label_note",
          "label_revision", "label_history", "near_threshold", "unrecognised", "station", "source", "image_sha256", "model_version",
          "warnings",
        ]);
        expect(record.image_name, where).toBe(names[index]);
        expect(record.image_sha256, where).toBe(createHash("sha256").update(readFileSync(c.images[index] as string)).digest("hex"));
        expect(record.decision, where).toBe(python["decision"]);
        expect(record.in_band, where).toBe(python["in_band"]);
        expect(Math.abs(record.score - (python["score"] as number)), `${where} score`).toBeLessThanOrEqual(1e-4 * Math.abs(python["score"] as number));
        expect(record.tau, where).toBe(python["tau"]);
        expect(record.s_max, where).toBe(python["s_max"]);
        const v = record.verdict;
        // `eagle inspect --json` adds the record's model_version (null for an export) and warnings to each verdict.
        const { model_version: pythonVersion, warnings: pythonWarnings, ...pythonVerdict } = python;
        expect(record.model_version, where).toBe(pythonVersion);
        expect(record.warnings ?? [], where).toEqual(pythonWarnings ?? []);
        expect(Object.keys(v), where).toEqual(Object.keys(pythonVerdict));
        for (const key of ["boxes", "candidates"] as const) {
          const ours = boxesOf(v[key]);
          const theirs = boxesOf(python[key]);
          const torchs = boxesOf((c.torch[index] as Record<string, unknown>)[key]);
          expect(ours.map((b) => [b["x0"], b["y0"], b["x1"], b["y1"]]), `${where} ${key} as torch's`).toEqual(
            torchs.map((b) => [b["x0"], b["y0"], b["x1"], b["y1"]]),
          );
          expect(ours.map((b) => [b["x0"], b["y0"], b["x1"], b["y1"], b["area"], b["rank"]]), `${where} ${key}`).toEqual(
            theirs.map((b) => [b["x0"], b["y0"], b["x1"], b["y1"], b["area"], b["rank"]]),
          );
          ours.forEach((b, i) => {
            const their = theirs[i] as Record<string, number>;
            expect(Object.keys(b), `${where} ${key} keys`).toEqual(Object.keys(their));
            expect(Math.abs((b["peak"] as number) - (their["peak"] as number)), `${where} ${key} peak`).toBeLessThanOrEqual(1e-4);
            // The number the text and the picture's tag show: the largest patch score under the box, torch's
            // (the graph's patch grid, schema 3), not the map peak on the score's scale.
            const torch = torchs[i] as Record<string, number>;
            for (const number of ["patch_score", "strength"]) {
              const expected = torch[number] as number;
              expect(b[number], `${where} ${key} ${number}`).not.toBeNull();
              expect(Math.abs((b[number] as number) - expected), `${where} ${key} ${number} vs torch`).toBeLessThanOrEqual(1e-4 * Math.max(1, expected));
              expect(Math.abs((b[number] as number) - (their[number] as number)), `${where} ${key} ${number}`).toBeLessThanOrEqual(1e-4 * Math.max(1, expected));
            }
            boxes++;
          });
        }
        expect(v.region_rule, where).toBe(python["region_rule"]);
        expect([v.width, v.height], where).toEqual([python["width"], python["height"]]);
        expect(Object.keys(v.map), where).toEqual(Object.keys(python.map));
        for (const key of ["max", "mean", "p99"]) {
          const theirs = python.map[key] as number;
          expect(Math.abs((v.map[key] as number) - theirs), `${where} map.${key}`).toBeLessThanOrEqual(1e-4 * Math.max(1, Math.abs(theirs)));
        }
        expect(v.map["inspected_fraction"], where).toBe(python.map["inspected_fraction"]);
        if (record.decision === "anomalous") anomalous++;
      }
    }
    expect(anomalous, "some images are anomalous, so boxes were compared").toBeGreaterThan(0);
    expect(boxes).toBeGreaterThan(0);
  });

  it("gives the record `eagle serve --runtime onnx` gives for the same upload (but id, time and pictures)", async () => {
    const c = cases[0] as ParityCase;
    const models = join(work, "served");
    rmSync(models, { recursive: true, force: true });
    const category = String(c.verdicts[0]?.["category"]);
    cpSync(c.export, join(models, category), { recursive: true });
    const port = await freePort();
    const env: NodeJS.ProcessEnv = { ...process.env, PYTHONPATH: resolve(REPO, "src"), HF_HUB_OFFLINE: "1" };
    delete env["EAGLE_API_KEY"];
    const server = spawn(
      PYTHON,
      ["-m", "eagle_iad.cli", "serve", "--runtime", "onnx", "--models", models, "--state-dir", join(work, "served-state"),
        "--host", "127.0.0.1", "--port", String(port), "--log-level", "warning"],
      { cwd: REPO, env, stdio: ["ignore", "ignore", "pipe"], detached: true },
    );
    let log = "";
    server.stderr?.on("data", (chunk: Buffer) => (log = (log + chunk.toString()).slice(-5000)));
    try {
      const client = new EagleClient({ baseUrl: `http://127.0.0.1:${port}`, maxRetries: 0 });
      const deadline = Date.now() + 240_000;
      for (;;) {
        try {
          await client.health();
          break;
        } catch (error) {
          if (Date.now() > deadline || server.exitCode !== null) throw new Error(`eagle serve --runtime onnx did not start: ${log}`);
          await new Promise((r) => setTimeout(r, 500));
        }
      }
      const local = await LocalExpert.open(c.export);
      try {
        for (const path of c.images.slice(0, 4)) {
          const name = basename(path);
          const bytes = readFileSync(path);
          const served = (await client.inspect(bytes, category, { filename: name })) as unknown as Record<string, unknown>;
          const ours = (await local.inspect(bytes, name)) as unknown as Record<string, unknown>;
          expect(Object.keys(ours), name).toEqual(Object.keys(served));
          const strip = (record: Record<string, unknown>) => {
            const { id: _id, time: _time, pictures: _pictures, verdict, ...rest } = record;
            const { pictures: _vp, ...v } = verdict as Record<string, unknown>;
            return { ...rest, verdict: v };
          };
          expectClose(strip(ours), strip(served), name);
        }
      } finally {
        await local.close();
      }
    } finally {
      if (server.pid !== undefined) process.kill(-server.pid, "SIGTERM");
    }
  }, 300_000);

  it("warns on a JPEG inspected by the export of a PNG-fitted model as Python's runtime does; not where the sidecar knows no encodings", async () => {
    const { code, lines } = await cli(["inspect", "--local", encoded.export, ...encoded.images]);
    expect(code).toBe(0);
    expect(lines.length).toBe(encoded.images.length);
    for (const [index, line] of lines.entries()) {
      const where = basename(encoded.images[index] as string);
      const python = encoded.verdicts[index] as { warnings: string[] | null };
      expect(python.warnings, `${where}: Python warns`).toEqual([expect.stringContaining("inspected by a model fitted on lossless images")]);
      expect((JSON.parse(line) as LocalInspectionRecord).warnings, where).toEqual(python.warnings);
    }
    // The same export, its sidecar saying its model's encodings are unknown (null; sealed again): no warning.
    const unknown = join(work, "unknown-encodings");
    rmSync(unknown, { recursive: true, force: true });
    cpSync(encoded.export, unknown, { recursive: true });
    const text = readFileSync(join(unknown, "eagle-export.json"), "utf8");
    const sidecar = JSON.parse(text) as { checksum: string; verdict: { encodings: unknown } };
    expect(sidecar.verdict.encodings).toEqual({ lossless: expect.any(Number) });
    const placeholder = "sha256:" + "0".repeat(64);
    const unsealed = text.replace(/"encodings": \{[^}]*\}/, '"encodings": null').replace(sidecar.checksum, placeholder);
    writeFileSync(join(unknown, "eagle-export.json"), unsealed.replace(placeholder, "sha256:" + createHash("sha256").update(unsealed).digest("hex")));
    const local = await LocalExpert.open(unknown);
    try {
      expect(local.trainEncodings).toBeNull();
      const record = await local.inspect(readFileSync(encoded.images[0] as string), "cell.jpg");
      expect(record.warnings).toBeNull();
    } finally {
      await local.close();
    }
  });

  it("warns on a colour image inspected by the export of a greyscale-fitted model as Python's runtime does", async () => {
    const { code, lines } = await cli(["inspect", "--local", coloured.export, ...coloured.images]);
    expect(code).toBe(0);
    expect(lines.length).toBe(1);
    const python = coloured.verdicts[0] as { warnings: string[] | null };
    expect(python.warnings, "Python warns").toEqual([expect.stringMatching(/^a colour image inspected by a model fitted on greyscale images: /)]);
    expect((JSON.parse(lines[0] as string) as LocalInspectionRecord).warnings).toEqual(python.warnings);
  });

  it("warns on a washed-out or nearly black photo inspected by an export as Python's runtime does, word for word", async () => {
    const { code, lines } = await cli(["inspect", "--local", exposed.export, ...exposed.images]);
    expect(code).toBe(0);
    expect(lines.length).toBe(2);
    const python = exposed.verdicts as { warnings: string[] | null }[];
    expect(python.map((v) => v.warnings), "Python warns").toEqual([
      [expect.stringMatching(/^a photo of mean grey .* it is far brighter than any of them /)],
      [expect.stringMatching(/^a photo of mean grey .* it is far darker than any of them /)],
    ]);
    expect(lines.map((line) => (JSON.parse(line) as LocalInspectionRecord).warnings)).toEqual(python.map((v) => v.warnings));
  });

  it("refuses a graph that does not match its sidecar, and a sidecar of another schema", async () => {
    const source = (cases[0] as ParityCase).export;
    const damaged = join(work, "damaged");
    rmSync(damaged, { recursive: true, force: true });
    cpSync(source, damaged, { recursive: true });
    const graph = readFileSync(join(damaged, "model.onnx"));
    graph.writeUInt8(graph.readUInt8(graph.length - 1) ^ 0xff, graph.length - 1);
    writeFileSync(join(damaged, "model.onnx"), graph);
    await expect(LocalExpert.open(join(damaged, "model.onnx"))).rejects.toThrow(
      `${join(damaged, "model.onnx")}: does not match its sidecar (SHA-256 differs): the file was changed or corrupted after export; export the model again`,
    );
    const { code, stderr } = await cli(["inspect", "--local", damaged, (cases[0] as ParityCase).images[0] as string]);
    expect(code).toBe(1);
    expect(stderr).toContain("does not match its sidecar (SHA-256 differs)");

    const future = join(work, "future");
    rmSync(future, { recursive: true, force: true });
    cpSync(source, future, { recursive: true });
    const sidecar = JSON.parse(readFileSync(join(future, "eagle-export.json"), "utf8")) as Record<string, unknown>;
    writeFileSync(join(future, "eagle-export.json"), JSON.stringify({ ...sidecar, schema_version: 99 }));
    await expect(LocalExpert.open(future)).rejects.toThrow(
      `${join(future, "eagle-export.json")}: export schema version 99 is unknown to this client (it reads 1, 2, 3); update @eagle-iad/client or export with a matching eagle`,
    );
    const graphOpset = sidecar["graph"] as Record<string, unknown>;
    // Schema 1 (before sidecars carried a checksum), so only the opset differs from a readable sidecar.
    const { checksum: _sealed, ...unsealed } = sidecar;
    writeFileSync(
      join(future, "eagle-export.json"),
      JSON.stringify({ ...unsealed, schema_version: 1, graph: { ...graphOpset, opset: 99 } }),
    );
    await expect(LocalExpert.open(future)).rejects.toThrow(/needs ONNX opset 99, onnxruntime-node supports up to \d+/);
  });

  it("refuses a sidecar edited by hand (its checksum covers its own bytes)", async () => {
    const source = (cases[0] as ParityCase).export;
    const edited = join(work, "edited");
    rmSync(edited, { recursive: true, force: true });
    cpSync(source, edited, { recursive: true });
    const text = readFileSync(join(edited, "eagle-export.json"), "utf8");
    const sidecar = JSON.parse(text) as Record<string, unknown>;
    expect(sidecar["schema_version"]).toBe(3);
    expect(sidecar["checksum"]).toMatch(/^sha256:[0-9a-f]{64}$/);
    await (await LocalExpert.open(edited)).close();
    writeFileSync(join(edited, "eagle-export.json"), text.replace(/"tau": [^,]+,/, '"tau": 0.5,'));
    await expect(LocalExpert.open(edited)).rejects.toThrow(
      `${join(edited, "eagle-export.json")}: was edited by hand (its checksum does not match its contents); export the model again`,
    );
    writeFileSync(join(edited, "eagle-export.json"), JSON.stringify({ ...sidecar, schema_version: 1 }, null, 2));
    await expect(LocalExpert.open(edited)).rejects.toThrow("was edited by hand (schema_version 1 predates the checksum it carries)");
    const { checksum: _dropped, ...unsealed } = sidecar;
    writeFileSync(join(edited, "eagle-export.json"), JSON.stringify(unsealed, null, 2));
    await expect(LocalExpert.open(edited)).rejects.toThrow("checksum is missing; the sidecar was edited by hand or is incomplete");
  });

  it("reports an unreadable image as that image's error and carries on", async () => {
    const c = cases[0] as ParityCase;
    const broken = join(work, "broken.png");
    writeFileSync(broken, "not an image");
    const copy = join(work, "good.png");
    copyFileSync(c.images[0] as string, copy);
    const { code, lines, stderr } = await cli(["inspect", "--local", c.export, broken, copy]);
    expect(code).toBe(1);
    expect(JSON.parse(lines[0] as string)).toEqual({ image: broken, error: "broken.png: not a recognised image format (the local runtime reads PNG and JPEG)" });
    // the line names the file once (it read `broken.png: broken.png: not a recognised ...`)
    expect(stderr).toContain(`eagle-client: ${broken}: not a recognised image format (the local runtime reads PNG and JPEG)\n`);
    expect(stderr).not.toContain("broken.png: broken.png");
    expect((JSON.parse(lines[1] as string) as LocalInspectionRecord).score).toBeCloseTo(c.verdicts[0]?.["score"] as number, 3);
  });
});
