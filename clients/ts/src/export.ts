/**
 * History exports: CSV for spreadsheets, JSON lines for scripts. One row per inspection with the
 * image's relative path, time, category, score, threshold, band end, decision, band flag, CAAS,
 * the user's label with who gave it, when and their note (and, in JSON lines, every earlier label: a
 * correction never hides what was said before), the model version that scored it, boxes, absolute links to its pictures, the nearest normal training image (its
 * name and picture link) and which MLLM backend answered by which route and what became of CAAS
 * (empty for expert-only inspections). Shared by the console's download buttons and
 * `eagle-client history --format csv|jsonl`, so both give the same file.
 */

import type { InspectionRecord } from "./client.js";

/** CSV columns, in order. Picture links are absolute (`base` + the record's service path). */
export const EXPORT_COLUMNS = [
  "id",
  "time",
  "category",
  "image",
  "score",
  "threshold",
  "band_end",
  "decision",
  "in_band",
  "caas_applied",
  "answer",
  "label",
  "label_by",
  "label_time",
  "label_note",
  "model_version",
  "boxes",
  "picture_box",
  "picture_heatmap",
  "reference_image",
  "picture_reference",
  "answered_by_backend",
  "answered_by_route",
  "answered_by_caas",
] as const;

export interface ExportBox {
  x0: number;
  y0: number;
  x1: number;
  y1: number;
  peak: number | null;
}

export interface ExportRow {
  id: string;
  time: string;
  category: string;
  image: string;
  score: number | null;
  threshold: number | null;
  band_end: number | null;
  decision: string | null;
  in_band: boolean;
  caas_applied: boolean;
  answer: string | null;
  /** The user's label (what the part actually was), null when not labelled. */
  label: string | null;
  /** Who gave the label, when (ISO 8601 UTC) and their note; null when not labelled (or no note). */
  label_by: string | null;
  label_time: string | null;
  label_note: string | null;
  /** Every label given, changed, confirmed or cleared, oldest first (JSON lines only); null: none recorded. */
  label_history: Array<Record<string, unknown>> | null;
  /** The number of the category's model version that scored it; null: not recorded (an export, older records). */
  model_version: number | null;
  boxes: ExportBox[];
  pictures: Record<string, string>;
  /** The nearest normal training image's name; null when the record has none (stored before references). */
  reference_image: string | null;
  /** Which backend answered, by which route, and what became of CAAS; null for expert-only inspections. */
  answered_by: ExportAnsweredBy | null;
}

/** The record's `answered_by`: `route` is `engine` (serving engine), `caas` (in-process CAAS) or `single`. */
export interface ExportAnsweredBy {
  backend: string | null;
  route: string | null;
  caas: string | null;
}

function answeredByOf(record: InspectionRecord): ExportAnsweredBy | null {
  const raw = record.answered_by;
  if (raw === null || raw === undefined) return null;
  const text = (k: string) => (typeof raw[k] === "string" ? raw[k] : null);
  return { backend: text("backend"), route: text("route"), caas: text("caas") };
}

function boxesOf(verdict: Record<string, unknown>): ExportBox[] {
  const raw = verdict["boxes"];
  if (!Array.isArray(raw)) return [];
  return raw.flatMap((b: unknown) => {
    if (typeof b !== "object" || b === null) return [];
    const box = b as Record<string, unknown>;
    const n = (k: string) => (typeof box[k] === "number" ? (box[k] as number) : null);
    const [x0, y0, x1, y1] = [n("x0"), n("y0"), n("x1"), n("y1")];
    if (x0 === null || y0 === null || x1 === null || y1 === null) return [];
    return [{ x0, y0, x1, y1, peak: n("peak") }];
  });
}

/** One record as an export row; `base` makes picture links absolute (e.g. `http://host:8000`). */
export function exportRow(record: InspectionRecord, base: string): ExportRow {
  const root = base.replace(/\/+$/, "");
  const pictures: Record<string, string> = {};
  for (const [kind, link] of Object.entries(record.pictures)) pictures[kind] = `${root}${link}`;
  return {
    id: record.id,
    time: record.time,
    category: record.category,
    image: record.image_name,
    score: record.score,
    threshold: record.tau,
    band_end: record.s_max,
    decision: record.decision,
    in_band: record.in_band,
    caas_applied: record.caas_applied,
    answer: record.answer ?? null,
    label: record.label ?? null,
    label_by: record.label_by ?? null,
    label_time: record.label_time ?? null,
    label_note: record.label_note ?? null,
    label_history: (record.label_history as Array<Record<string, unknown>> | null | undefined) ?? null,
    model_version: record.model_version ?? null,
    boxes: boxesOf(record.verdict),
    pictures,
    reference_image: record.reference?.image ?? null,
    answered_by: answeredByOf(record),
  };
}

/**
 * One CSV field (RFC 4180 quoting). Text that a spreadsheet would run as a formula (`=`, `+`, `-`,
 * `@` first) gets a leading `'`; numbers are written as they are.
 */
export function csvField(value: string | number | boolean | null): string {
  if (value === null) return "";
  if (typeof value === "number") return Number.isFinite(value) ? String(value) : "";
  if (typeof value === "boolean") return value ? "true" : "false";
  const text = /^[=+\-@\t\r]/.test(value) ? `'${value}` : value;
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

/** The CSV text: a header line and one line per record, CRLF line ends (RFC 4180). */
export function toCsv(records: Iterable<InspectionRecord>, base: string): string {
  const lines = [EXPORT_COLUMNS.join(",")];
  for (const record of records) {
    const row = exportRow(record, base);
    const boxes = row.boxes.map((b) => `${b.x0} ${b.y0} ${b.x1} ${b.y1}`).join("; ");
    const values: Array<string | number | boolean | null> = [
      row.id, row.time, row.category, row.image, row.score, row.threshold, row.band_end, row.decision,
      row.in_band, row.caas_applied, row.answer, row.label, row.label_by, row.label_time, row.label_note,
      row.model_version, boxes, row.pictures["box"] ?? null, row.pictures["heatmap"] ?? null,
      row.reference_image, row.pictures["reference"] ?? null,
      row.answered_by?.backend ?? null, row.answered_by?.route ?? null, row.answered_by?.caas ?? null,
    ];
    lines.push(values.map(csvField).join(","));
  }
  return `${lines.join("\r\n")}\r\n`;
}

/** JSON lines: one export row per line (boxes with their peaks, every picture link). */
export function toJsonLines(records: Iterable<InspectionRecord>, base: string): string {
  let out = "";
  for (const record of records) out += `${JSON.stringify(exportRow(record, base))}\n`;
  return out;
}
