/**
 * Per-defect-type figures of an evaluation run (metrics.json `per_type`, version 1; issue 29).
 *
 * `eagle eval-expert` writes `per_type` at the top level; `eagle eval` writes one per class under
 * `expert.<class>.per_type`. Each type is scored against all normal test images, so the normals'
 * count and false alarms are the same for every row and are read once per table. Runs written
 * before `per_type` existed, or with an unknown version, give no tables (never a broken one).
 */

export const PER_TYPE_VERSION = 1;

export interface TypeRow {
  type: string;
  images: number;
  imageAuroc: number | null;
  recallAtTau: number | null;
  caught: number | null;
  pointing: number | null;
  withMask: number | null;
}

export interface PerTypeTable {
  /** "" for an eval-expert run; the class name for an `eagle eval` run's expert. */
  scope: string;
  normals: number;
  falseAlarms: number;
  rows: TypeRow[];
}

function record(value: unknown): Record<string, unknown> | null {
  return value !== null && typeof value === "object" && !Array.isArray(value) ? (value as Record<string, unknown>) : null;
}

function num(value: unknown): number | null {
  return typeof value === "number" && Number.isFinite(value) ? value : null;
}

/** One `per_type` object as a table, or null when it is absent, of another version, or malformed. */
export function perTypeTable(value: unknown, scope = ""): PerTypeTable | null {
  const perType = record(value);
  const types = record(perType?.["types"]);
  if (!perType || !types || perType["version"] !== PER_TYPE_VERSION) return null;
  const rows: TypeRow[] = [];
  for (const [type, raw] of Object.entries(types)) {
    const entry = record(raw);
    const images = num(entry?.["n_images"]);
    if (!entry || images === null) continue;
    rows.push({
      type,
      images,
      imageAuroc: num(entry["image_auroc"]),
      recallAtTau: num(entry["recall_at_tau"]),
      caught: num(entry["caught"]),
      pointing: num(entry["pointing_accuracy"]),
      withMask: num(entry["n_with_mask"]),
    });
  }
  if (rows.length === 0) return null;
  return { scope, normals: num(perType["n_normal"]) ?? 0, falseAlarms: num(perType["false_alarms"]) ?? 0, rows };
}

/** Every per-type table of a run's metrics: the top-level one, then one per class of `expert`. */
export function perTypeTables(metrics: unknown): PerTypeTable[] {
  const root = record(metrics);
  if (!root) return [];
  const tables: PerTypeTable[] = [];
  const top = perTypeTable(root["per_type"]);
  if (top) tables.push(top);
  for (const [category, value] of Object.entries(record(root["expert"]) ?? {})) {
    const table = perTypeTable(record(value)?.["per_type"], category);
    if (table) tables.push(table);
  }
  return tables;
}

/** A rate with 3 decimals (as the metrics table shows rates), "–" when undefined. */
export function formatRate(value: number | null): string {
  return value === null ? "–" : value.toFixed(3);
}
