/**
 * Histogram geometry: the service's `edges` (n+1 ascending) and `counts` (n) as SVG bars, plus the
 * x of any value (the tau and s_max lines) on the same axis.
 */

export interface Bar {
  x: number;
  y: number;
  width: number;
  height: number;
  count: number;
  lo: number;
  hi: number;
}

export interface HistogramGeometry {
  bars: Bar[];
  /** Value range of the x axis (may extend past the edges to show tau / s_max). */
  lo: number;
  hi: number;
  maxCount: number;
  xOf: (value: number) => number;
}

/** Validated bins: edges must be one longer than counts and ascending; otherwise null. */
export function validBins(edges: readonly number[], counts: readonly number[]): boolean {
  if (counts.length === 0 || edges.length !== counts.length + 1) return false;
  for (let i = 1; i < edges.length; i++) {
    const prev = edges[i - 1];
    const cur = edges[i];
    if (prev === undefined || cur === undefined || !Number.isFinite(cur) || !(cur >= prev)) return false;
  }
  return counts.every((c) => Number.isFinite(c) && c >= 0);
}

/**
 * Bars filling `width` x `height` (y grows downwards, bars stand on y = height). `extra` values
 * (tau, s_max) widen the axis so their lines stay visible; `gap` px separates neighbouring bars.
 */
export function histogramGeometry(
  edges: readonly number[],
  counts: readonly number[],
  width: number,
  height: number,
  extra: ReadonlyArray<number | null | undefined> = [],
  gap = 1,
): HistogramGeometry | null {
  if (!validBins(edges, counts)) return null;
  const first = edges[0] as number;
  const last = edges[edges.length - 1] as number;
  const finiteExtra = extra.filter((v): v is number => typeof v === "number" && Number.isFinite(v));
  let lo = Math.min(first, ...finiteExtra);
  let hi = Math.max(last, ...finiteExtra);
  if (hi === lo) {
    lo -= 0.5;
    hi += 0.5;
  } else if (finiteExtra.some((v) => v < first || v > last)) {
    const pad = (hi - lo) * 0.03; // a line exactly at the border would be hidden by the frame
    lo -= pad;
    hi += pad;
  }
  const span = hi - lo;
  const xOf = (value: number): number => ((value - lo) / span) * width;
  const maxCount = Math.max(...counts);
  const bars: Bar[] = counts.map((count, i) => {
    const a = edges[i] as number;
    const b = edges[i + 1] as number;
    const x0 = xOf(a);
    const x1 = xOf(b);
    const h = maxCount > 0 ? (count / maxCount) * height : 0;
    const w = Math.max(0, x1 - x0 - gap);
    return { x: x0 + Math.min(gap, x1 - x0) / 2, y: height - h, width: w, height: h, count, lo: a, hi: b };
  });
  return { bars, lo, hi, maxCount, xOf };
}

/** `n` evenly spaced tick values over [lo, hi], inclusive. */
export function ticks(lo: number, hi: number, n = 5): number[] {
  if (n < 2) return [lo];
  return Array.from({ length: n }, (_, i) => lo + ((hi - lo) * i) / (n - 1));
}

/**
 * The low-confidence band [tau, s_max) as an x span, or null when it is empty (tau >= s_max, docs/METHOD.md §2)
 * or a threshold is unknown.
 */
export function bandSpan(
  tau: number | null | undefined,
  sMax: number | null | undefined,
  xOf: (value: number) => number,
): { x: number; width: number } | null {
  if (typeof tau !== "number" || typeof sMax !== "number" || !(sMax > tau)) return null;
  return { x: xOf(tau), width: xOf(sMax) - xOf(tau) };
}

/**
 * Where a line's label goes: beside the line on the `preferred` side, switched to the other side
 * when the text (about `textWidth` px) would run past the plot's left or right edge.
 */
export function labelPlacement(
  x: number,
  plotWidth: number,
  preferred: "left" | "right",
  textWidth = 90,
  offset = 4,
): { x: number; anchor: "start" | "end" } {
  let side = preferred;
  if (side === "right" && x + offset + textWidth > plotWidth) side = "left";
  else if (side === "left" && x - offset - textWidth < 0) side = "right";
  return side === "right" ? { x: x + offset, anchor: "start" } : { x: x - offset, anchor: "end" };
}

/**
 * Where a line goes on an axis that keeps the data's scale: the value itself, or the axis end it lies beyond
 * (`off` says which way), so that a threshold far outside the scores is marked at the edge with an arrow
 * rather than stretching the axis until the bars are a line.
 */
export function placeOnAxis(value: number, lo: number, hi: number): { value: number; off: "below" | "above" | null } {
  if (value < lo) return { value: lo, off: "below" };
  if (value > hi) return { value: hi, off: "above" };
  return { value, off: null };
}
