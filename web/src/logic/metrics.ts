/** Evaluation metrics: nested objects flattened to dotted keys, values formatted for a table. */

export type Flat = Array<[key: string, value: unknown]>;

/** `{at_tau: {f1: 0.5}}` -> `[["at_tau.f1", 0.5]]`, in the object's own key order; arrays stay values. */
export function flattenMetrics(value: unknown, prefix = ""): Flat {
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    return prefix ? [[prefix, value]] : [];
  }
  const out: Flat = [];
  const entries = Object.entries(value as Record<string, unknown>);
  if (entries.length === 0 && prefix) return [[prefix, {}]];
  for (const [key, inner] of entries) {
    const path = prefix ? `${prefix}.${key}` : key;
    out.push(...flattenMetrics(inner, path));
  }
  return out;
}

/** Numbers with 3 decimals (integers, e.g. counts, stay integers); booleans, strings, arrays readable. */
export function formatMetric(value: unknown): string {
  if (typeof value === "number") {
    if (!Number.isFinite(value)) return String(value);
    return Number.isInteger(value) ? String(value) : value.toFixed(3);
  }
  if (value === null || value === undefined) return "–";
  if (typeof value === "boolean") return value ? "yes" : "no";
  if (typeof value === "string") return value;
  if (Array.isArray(value)) {
    const shown = value.slice(0, 8).map(formatMetric).join(", ");
    return value.length > 8 ? `[${shown}, … ${value.length} items]` : `[${shown}]`;
  }
  return JSON.stringify(value);
}
