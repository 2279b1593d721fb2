/**
 * History exports: CSV for spreadsheets, JSON lines for scripts. One row per inspection with the
 * image's relative path, time, category, score, threshold, band end, decision, band flag, CAAS,
 * the user's label, boxes and absolute links to its pictures. Shared by the console's download buttons and
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
  "boxes",
  "picture_box",
  "picture_heatmap",
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
  boxes: ExportBox[];
  pictures: Record<string, string>;
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
    boxes: boxesOf(record.verdict),
    pictures,
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
      row.in_band, row.caas_applied, row.answer, row.label, boxes, row.pictures["box"] ?? null, row.pictures["heatmap"] ?? null,
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
