/**
 * An exported expert (docs/DEPLOY.md) run in Node through onnxruntime-node: no Python, no service.
 *
 * The folder's sidecar is checked before anything runs (kind, schema version, ONNX format, every
 * graph file's SHA-256, the graph's opset against what this onnxruntime-node runs), so a model that
 * was changed or corrupted after export, or that this runtime cannot run, fails with one clear line
 * instead of scoring differently. onnxruntime-node is loaded only here, on first use: the package's
 * main entry (the service client, used in browsers) never imports it.
 */
import { createHash, randomUUID } from "node:crypto";
import { createReadStream } from "node:fs";
import { readFile, stat } from "node:fs/promises";
import { basename, dirname, join } from "node:path";

import type { components } from "../generated/openapi.js";
import { EagleLocalError } from "./errors.js";
import { makeVerdict, mapToOriginal, prepareInput, type DecisionParams, type ExpertVerdictRecord } from "./host.js";
import { inputWarnings, parseColours, parseEncodings } from "./encodings.js";
import { type ExposureRange, parseExposure } from "./lighting.js";
import { decodeImage, type RgbImage } from "./image.js";

export const SIDECAR = "eagle-export.json";
export const EXPORT_KIND = "eagle-export";
/**
 * Sidecar schema versions this runtime reads (2 carries a checksum of its own bytes; 3 adds the graph's
 * `patches` output and the sidecar's `verdict`: the close-call margin and the coverage).
 */
export const SCHEMA_VERSIONS = [1, 2, 3];
/** What stands in the sidecar's `checksum` field while its bytes are hashed (eagle_iad/expert/export.py). */
const CHECKSUM_PLACEHOLDER = "sha256:" + "0".repeat(64);
/** The newest default-domain ONNX opset onnxruntime-node 1.30 loads (measured: 26 loads, 27 is refused at load). */
export const MAX_OPSET = 26;

/** The parts of the sidecar this runtime reads (docs/DEPLOY.md, "The sidecar"). */
export interface ExportSidecar {
  schema_version: number;
  kind: string;
  format: string;
  category: string;
  graph: { file: string; external_data: string | null; opset: number; sha256: Record<string, string> };
  preprocessing: { mode: string; input_hw: [number, number]; resize: number; crop: number };
  tau: number;
  s_max: number;
  map: { map_tau: number; colour_scale: [number, number]; calibrated: boolean };
  regions: { rule: string };
  /**
   * Schema 3: the close-call margin and the coverage; since the training encodings too, `{encoding: number of
   * images}` (docs/DEPLOY.md, "The sidecar"): null or absent where the model does not know them.
   */
  verdict?: {
    near_margin: number | null;
    coverage: { radius: number; limit: number } | null;
    encodings?: Record<string, number> | null;
    /** The training images' colour modes, `{grey | colour: number of images}` (model schema 11); null or absent: unknown. */
    colours?: Record<string, number> | null;
    /** The range of the training images' grey mean and spread (model schema 12; lighting.ts); null or absent: unknown. */
    exposure?: ExposureRange | null;
  };
  /** Schema 2: `sha256:<hex>` of the sidecar's bytes with the placeholder in this field. */
  checksum?: string;
}

/**
 * The generated schema's named fields, without its open `[key: string]: unknown`: with the index
 * signature left in, a misspelt or removed field would still type-check as "some other key".
 */
type NamedFields<T> = { [K in keyof T as string extends K ? never : number extends K ? never : K]: T[K] };

/** The service's inspection record, as the OpenAPI document (hence `eagle_iad.record`) declares it. */
type ServiceInspectionRecord = NamedFields<components["schemas"]["InspectionRecord"]>;

/**
 * The record the service's POST /v1/inspect returns for an expert-only inspection: the generated
 * `InspectionRecord`, narrowed to what an exported expert can say (no MLLM, no pictures, no nearest
 * normal reference, never labelled). Derived rather than written out, so a field added to, renamed in
 * or removed from the service's record fails `inspect` below at compile time instead of drifting.
 */
export type LocalInspectionRecord = ServiceInspectionRecord & {
  score: number;
  tau: number;
  s_max: number;
  decision: ExpertVerdictRecord["decision"];
  answer: null;
  caas_applied: false;
  verdict: ExpertVerdictRecord;
  reference: null;
  answered_by: null;
  label: null;
  label_time: null;
  label_by: null;
  label_note: null;
  label_revision: null;
  label_history: null;
  /** Null for an export before schema 3 (it carries no close-call margin nor patch grid), as the service says. */
  near_threshold: boolean | null;
  unrecognised: boolean | null;
  station: null;
  source: null;
  /** The SHA-256 of the image's bytes, as the service records it. */
  image_sha256: string;
  /** An export keeps no model versions: none, as the service says for an export it serves. */
  model_version: null;
  /**
   * What makes the verdict less trustworthy: an input encoded unlike the training images (its header against the
   * sidecar's `verdict.encodings`, as the service warns; encodings.ts). Null: nothing, or the export does not know
   * its model's encodings.
   */
  warnings: string[] | null;
};

async function sha256(path: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

/** The export folder for a folder or one of its files (model.onnx, the sidecar). */
export async function exportFolder(path: string): Promise<string> {
  const info = await stat(path).catch(() => null);
  if (info === null) throw new EagleLocalError(`${path}: no such export folder or file`);
  const folder = info.isDirectory() ? path : dirname(path);
  const sidecar = join(folder, SIDECAR);
  if (!(await stat(sidecar).catch(() => null))?.isFile()) {
    throw new EagleLocalError(`${folder}: no ${SIDECAR}; --local takes a folder written by 'eagle export --format onnx'`);
  }
  return folder;
}

/** Read and verify an export's sidecar: kind, schema, format, opset, and every graph file's SHA-256. */
export async function readSidecar(path: string): Promise<{ folder: string; sidecar: ExportSidecar }> {
  const folder = await exportFolder(path);
  const where = join(folder, SIDECAR);
  let record: ExportSidecar;
  let raw: Buffer;
  try {
    raw = await readFile(where);
    record = JSON.parse(raw.toString("utf8")) as ExportSidecar;
  } catch (error) {
    throw new EagleLocalError(`${where}: not a readable export sidecar (${error instanceof Error ? error.message : String(error)})`);
  }
  if (record === null || typeof record !== "object" || record.kind !== EXPORT_KIND) {
    throw new EagleLocalError(`${where}: not an eagle export sidecar (kind ${JSON.stringify((record as { kind?: unknown } | null)?.kind ?? null)})`);
  }
  if (!SCHEMA_VERSIONS.includes(record.schema_version)) {
    throw new EagleLocalError(
      `${where}: export schema version ${JSON.stringify(record.schema_version)} is unknown to this client (it reads ` +
        `${SCHEMA_VERSIONS.join(", ")}); update @eagle-iad/client or export with a matching eagle`,
    );
  }
  checkSidecarChecksum(raw, record, where);
  if (record.format !== "onnx") {
    throw new EagleLocalError(`${where}: is an ${record.format} export; the local runtime runs ONNX exports (eagle export --format onnx)`);
  }
  trainEncodings(record, where);
  const graph = record.graph;
  if (graph === undefined || typeof graph.file !== "string" || graph.sha256 === undefined || !(graph.file in graph.sha256)) {
    throw new EagleLocalError(`${where}: malformed sidecar (the graph file and its SHA-256 are missing)`);
  }
  if (typeof graph.opset !== "number" || graph.opset > MAX_OPSET) {
    throw new EagleLocalError(
      `${join(folder, graph.file)}: needs ONNX opset ${JSON.stringify(graph.opset)}, onnxruntime-node supports up to ${MAX_OPSET}; ` +
        "update onnxruntime-node or export with a lower opset",
    );
  }
  for (const [name, expected] of Object.entries(graph.sha256)) {
    const file = join(folder, name);
    if (basename(name) !== name || !(await stat(file).catch(() => null))?.isFile()) {
      throw new EagleLocalError(`${file}: graph file named by the sidecar is missing`);
    }
    if ((await sha256(file)) !== expected) {
      throw new EagleLocalError(
        `${file}: does not match its sidecar (SHA-256 differs): the file was changed or corrupted after export; export the model again`,
      );
    }
  }
  return { folder, sidecar: record };
}

/**
 * The training images' encodings the sidecar carries (`verdict.encodings`); null where it carries none (an
 * export written before it, or of a model that does not know them): its verdicts then warn about nothing. A
 * malformed entry is refused, as Python's runtime refuses it (runtime.py `_encodings`).
 */
export function trainEncodings(record: ExportSidecar, where: string): Record<string, number> | null {
  const rules = record.verdict as unknown;
  const raw = rules !== null && typeof rules === "object" && !Array.isArray(rules) ? (rules as Record<string, unknown>)["encodings"] : undefined;
  if (raw === undefined || raw === null) return null;
  try {
    return parseEncodings(raw, "verdict.encodings");
  } catch (error) {
    throw new EagleLocalError(`${where}: malformed sidecar (${error instanceof Error ? error.message : String(error)})`);
  }
}

/**
 * The training images' colour modes the sidecar carries (`verdict.colours`); null where it carries none (an
 * export written before it, or of a model saved before schema 11): no colour warning. A malformed entry is
 * refused, as Python's runtime refuses it (runtime.py `_colours`).
 */
export function trainColours(record: ExportSidecar, where: string): Record<string, number> | null {
  const rules = record.verdict as unknown;
  const raw = rules !== null && typeof rules === "object" && !Array.isArray(rules) ? (rules as Record<string, unknown>)["colours"] : undefined;
  if (raw === undefined || raw === null) return null;
  try {
    return parseColours(raw, "verdict.colours");
  } catch (error) {
    throw new EagleLocalError(`${where}: malformed sidecar (${error instanceof Error ? error.message : String(error)})`);
  }
}

/**
 * The training images' exposure range the sidecar carries (`verdict.exposure`); null where it carries none (an
 * export written before it, or of a model saved before schema 12): no exposure warning. A malformed entry is
 * refused, as Python's runtime refuses it (runtime.py `_exposure`).
 */
export function trainExposure(record: ExportSidecar, where: string): ExposureRange | null {
  const rules = record.verdict as unknown;
  const raw = rules !== null && typeof rules === "object" && !Array.isArray(rules) ? (rules as Record<string, unknown>)["exposure"] : undefined;
  if (raw === undefined || raw === null) return null;
  try {
    return parseExposure(raw, "verdict.exposure");
  } catch (error) {
    throw new EagleLocalError(`${where}: malformed sidecar (${error instanceof Error ? error.message : String(error)})`);
  }
}

/**
 * Refuse a schema-2 sidecar whose bytes differ from what `eagle export` wrote: the checksum is the
 * SHA-256 of the file with the placeholder in its place (bytes, not parsed JSON, so that Python and
 * JavaScript, which print numbers differently, hash alike).
 */
export function checkSidecarChecksum(raw: Buffer, record: ExportSidecar, where: string): void {
  if (record.schema_version === 1) {
    // A schema number typed over a newer sidecar must not skip the check.
    if ("checksum" in record) throw new EagleLocalError(`${where}: was edited by hand (schema_version 1 predates the checksum it carries)`);
    return; // written before sidecars carried a checksum
  }
  const recorded = record.checksum;
  const field = Buffer.from(`"checksum": "${String(recorded)}"`, "utf8");
  const at = typeof recorded === "string" ? raw.indexOf(field) : -1;
  if (at < 0 || raw.indexOf(field, at + 1) >= 0) {
    throw new EagleLocalError(`${where}: checksum is missing; the sidecar was edited by hand or is incomplete`);
  }
  const restored = Buffer.concat([
    raw.subarray(0, at),
    Buffer.from(`"checksum": "${CHECKSUM_PLACEHOLDER}"`, "utf8"),
    raw.subarray(at + field.length),
  ]);
  if ("sha256:" + createHash("sha256").update(restored).digest("hex") !== recorded) {
    throw new EagleLocalError(`${where}: was edited by hand (its checksum does not match its contents); export the model again`);
  }
}

type Ort = typeof import("onnxruntime-node");

async function loadOrt(): Promise<Ort> {
  try {
    return await import("onnxruntime-node");
  } catch (error) {
    const reason = error instanceof Error ? error.message.split("\n")[0] : String(error);
    throw new EagleLocalError(
      `the local runtime needs onnxruntime-node (an optional dependency of @eagle-iad/client): npm install onnxruntime-node@1.30.0 (${reason})`,
    );
  }
}

/** The decision parameters the sidecar carries, in the shape the host code takes. */
export function decisionParams(sidecar: ExportSidecar): DecisionParams {
  return {
    category: sidecar.category,
    tau: sidecar.tau,
    sMax: sidecar.s_max,
    regionRule: sidecar.regions.rule,
    mapTau: sidecar.map.map_tau,
    colourScale: sidecar.map.colour_scale,
    calibrated: sidecar.map.calibrated,
    preprocess: sidecar.preprocessing.mode,
    nearMargin: sidecar.verdict?.near_margin ?? null,
    coverage: sidecar.verdict?.coverage ?? null,
  };
}

/** An exported expert, ready to inspect images. */
export class LocalExpert {
  private constructor(
    readonly folder: string,
    readonly sidecar: ExportSidecar,
    private readonly session: import("onnxruntime-node").InferenceSession,
    private readonly ort: Ort,
    /** The training images' encodings (sidecar `verdict.encodings`); null: unknown, no input is warned about. */
    readonly trainEncodings: Record<string, number> | null,
    /** The training images' colour modes (sidecar `verdict.colours`); null: unknown, no colour warning. */
    readonly trainColours: Record<string, number> | null = null,
    /** The training images' exposure range (sidecar `verdict.exposure`); null: unknown, no exposure warning. */
    readonly trainExposure: ExposureRange | null = null,
  ) {}

  /** Open an export folder (or its model.onnx): verify it, then create the onnxruntime session. */
  static async open(path: string): Promise<LocalExpert> {
    const { folder, sidecar } = await readSidecar(path);
    const ort = await loadOrt();
    const graph = join(folder, sidecar.graph.file);
    let session: import("onnxruntime-node").InferenceSession;
    try {
      session = await ort.InferenceSession.create(graph, { executionProviders: ["cpu"] });
    } catch (error) {
      const first = (error instanceof Error ? error.message : String(error)).trim().split("\n")[0];
      throw new EagleLocalError(`${graph}: onnxruntime-node ${ort.env.versions.node ?? ""} cannot run this graph (opset ${sidecar.graph.opset}): ${first}`);
    }
    const names = JSON.stringify([session.inputNames, session.outputNames]);
    // schema 3 graphs add `patches` (the stitched patch grid) after the two this runtime reads
    const known = [JSON.stringify([["image"], ["score", "map"]]), JSON.stringify([["image"], ["score", "map", "patches"]])];
    if (!known.includes(names)) {
      throw new EagleLocalError(`${graph}: graph inputs/outputs are ${names}, expected [["image"],["score","map","patches"]] (or, before schema 3, [["image"],["score","map"]])`);
    }
    const where = join(folder, SIDECAR);
    return new LocalExpert(folder, sidecar, session, ort, trainEncodings(sidecar, where), trainColours(sidecar, where), trainExposure(sidecar, where));
  }

  get category(): string {
    return this.sidecar.category;
  }

  /** Score one image's file bytes: the expert verdict as Python's make_verdict builds it. */
  async verdict(data: Uint8Array, name: string, decoded?: RgbImage): Promise<ExpertVerdictRecord> {
    const rgb = decoded ?? decodeImage(data, name);
    const pre = this.sidecar.preprocessing;
    const [inputHeight, inputWidth] = pre.input_hw;
    const { input, geometry } = prepareInput(rgb, pre.mode, inputHeight, inputWidth, pre.resize);
    if (input.width !== inputWidth || input.height !== inputHeight) {
      throw new EagleLocalError(`${this.folder}: the sidecar's input ${inputHeight}x${inputWidth} does not match its preprocessing`);
    }
    const tensor = new this.ort.Tensor("uint8", input.data, [1, inputHeight, inputWidth, 3]);
    const outputs = await this.session.run({ image: tensor });
    const score = (outputs["score"]?.data as Float32Array)[0] as number;
    const heat = outputs["map"]?.data as Float32Array;
    const patches = (outputs["patches"]?.data as Float32Array | undefined) ?? null;
    const full = mapToOriginal({ width: inputWidth, height: inputHeight, data: heat }, geometry);
    return makeVerdict(name, score, full, geometry, decisionParams(this.sidecar), patches);
  }

  /** The record the service's /v1/inspect returns for this image (expert only: no answer, no pictures). */
  async inspect(data: Uint8Array, name: string): Promise<LocalInspectionRecord> {
    const rgb = decodeImage(data, name);
    const verdict = await this.verdict(data, name, rgb);
    return {
      id: randomUUID().replaceAll("-", ""),
      time: new Date().toISOString().replace("Z", "+00:00"),
      category: verdict.category,
      image_name: name,
      score: verdict.score,
      tau: verdict.tau,
      s_max: verdict.s_max,
      decision: verdict.decision,
      in_band: verdict.in_band,
      answer: null,
      caas_applied: false,
      verdict,
      pictures: {},
      reference: null,
      answered_by: null,
      label: null,
      label_time: null,
      label_by: null,
      label_note: null,
      label_revision: null,
      label_history: null,
      near_threshold: verdict.near_threshold,
      unrecognised: verdict.unrecognised,
      station: null,
      source: null,
      image_sha256: createHash("sha256").update(data).digest("hex"),
      model_version: null,
      warnings: inputWarnings(this.trainEncodings, data, this.trainColours, rgb, this.trainExposure),
    };
  }

  async close(): Promise<void> {
    await this.session.release();
  }
}
