/**
 * The heatmap's legend, drawn by the console at a readable size (the PNG keeps its own for files), on
 * the same scale as the score and the box tags: the map's colours run from `low` to `high`, and the
 * threshold sits where the category's map threshold (`map_tau`) sits, at tau. The factor is
 * `tau / map_tau` (docs/METHOD.md, "Calibrated maps and boxes"), as the Python pictures use it.
 */

import { formatScore } from "./scale";

export interface MapLegend {
  low: number;
  high: number;
  threshold: number;
}

function finite(value: unknown): value is number {
  return typeof value === "number" && Number.isFinite(value);
}

/**
 * The legend of one inspection's heatmap: from the expert verdict's own `map` record (its colour scale
 * and `map_tau`, as the heatmap was drawn) when the record has one, else the category's `map_legend`.
 */
export function legendOf(verdict: Record<string, unknown>, tau: number | null, category?: { map_legend?: MapLegend | null } | null): MapLegend | null {
  const map = verdict["map"];
  if (typeof map === "object" && map !== null && finite(tau)) {
    const m = map as Record<string, unknown>;
    const scale = m["colour_scale"];
    const mapTau = m["map_tau"];
    if (Array.isArray(scale) && finite(scale[0]) && finite(scale[1]) && finite(mapTau)) {
      const factor = mapFactor(mapTau, tau);
      // A degenerate map threshold (no factor): the map's own units, its own threshold marked.
      return { low: scale[0] * factor, high: scale[1] * factor, threshold: mapTau > 0 && tau > 0 ? tau : mapTau };
    }
  }
  const known = category?.map_legend;
  if (known && finite(known.low) && finite(known.high) && finite(known.threshold) && known.high > known.low) return known;
  return null;
}

/** Map units → the score's scale: `tau / map_tau`, or 1 when either is not positive (calibration.score_factor). */
export function mapFactor(mapTau: number | null | undefined, tau: number | null | undefined): number {
  return finite(mapTau) && finite(tau) && mapTau > 0 && tau > 0 ? tau / mapTau : 1;
}

/** The verdict's map factor (1 without a map record: an EAGLE verdict, whose boxes carry patch scores). */
export function verdictMapFactor(verdict: Record<string, unknown>, tau: number | null): number {
  const map = verdict["map"];
  if (typeof map !== "object" || map === null) return 1;
  return mapFactor((map as Record<string, unknown>)["map_tau"] as number | undefined, tau);
}

/**
 * Where an anomalous verdict's boxes were cut, on the score's scale, when that is below the threshold; else null.
 * The calibrated rule boxes the map's pixels at or above `map_tau`; when no region reaches it (weak evidence
 * behind an anomalous score) the boxes are cut lower (`map.region_threshold`), so they sit on a colder region
 * than the threshold mark. verdict.py's `boxes_cut_below`, which the PNG's legend and `eagle inspect` use:
 * `region_threshold` times `tau / map_tau`. Null for a record without a map of its own (an MLLM inspection).
 */
export function boxesCutBelow(verdict: Record<string, unknown>, tau: number | null): number | null {
  const boxes = verdict["boxes"];
  const map = verdict["map"];
  if (verdict["decision"] !== "anomalous" || !Array.isArray(boxes) || boxes.length === 0) return null;
  if (typeof map !== "object" || map === null || !finite(tau)) return null;
  const cut = (map as Record<string, unknown>)["region_threshold"];
  const mapTau = (map as Record<string, unknown>)["map_tau"];
  if (!finite(cut) || !finite(mapTau) || !(cut < mapTau)) return null;
  return cut * mapFactor(mapTau, tau);
}

/** The inspection view's one line on boxes cut below the threshold (`eagle inspect` prints the same), or null. */
export function boxesCutLine(verdict: Record<string, unknown>, tau: number | null): string | null {
  const cut = boxesCutBelow(verdict, tau);
  if (cut === null) return null;
  const map = verdict["map"] as Record<string, unknown>;
  const peak = map["max"];
  // the map's peak under map_tau, or a few pixels over it that make no region (regions.find_boxes)
  const why = finite(peak) && peak >= (map["map_tau"] as number) ? "too few of the heatmap's pixels reach it to make a region" : "no region of the heatmap reaches it";
  return `Boxes cut at ${formatScore(cut)}, below the threshold ${formatScore(tau)}: ${why}, so they mark its strongest part (weak evidence).`;
}

/** Where `value` sits along the legend, 0 (cold end) to 1 (hot end), clamped. */
export function legendFraction(value: number, legend: MapLegend): number {
  const span = legend.high - legend.low;
  if (!(span > 0)) return 0;
  return Math.min(1, Math.max(0, (value - legend.low) / span));
}

/** matplotlib's `jet` as its segment data defines it: (position, value) breakpoints per channel. */
const JET: Record<"r" | "g" | "b", ReadonlyArray<readonly [number, number]>> = {
  r: [[0, 0], [0.35, 0], [0.66, 1], [0.89, 1], [1, 0.5]],
  g: [[0, 0], [0.125, 0], [0.375, 1], [0.64, 1], [0.91, 0], [1, 0]],
  b: [[0, 0.5], [0.11, 1], [0.34, 1], [0.65, 0], [1, 0]],
};

/** A channel at table entry `index` (0..255), interpolated in table units as matplotlib builds its table. */
function channel(points: ReadonlyArray<readonly [number, number]>, index: number): number {
  for (let i = 1; i < points.length; i++) {
    const [x1, y1] = points[i] as readonly [number, number];
    const [x0, y0] = points[i - 1] as readonly [number, number];
    if (index <= x1 * 255) return ((index - x0 * 255) / (x1 * 255 - x0 * 255)) * (y1 - y0) + y0;
  }
  return (points[points.length - 1] as readonly [number, number])[1];
}

/**
 * The jet colour at `t` in [0, 1] as `rgb(r, g, b)`: byte for byte what the heatmap PNG is painted in
 * (matplotlib looks `t` up in a 256-entry table and truncates to bytes).
 */
export function jetColour(t: number): string {
  const index = Math.min(255, Math.max(0, Math.floor(t * 256)));
  const [r, g, b] = (["r", "g", "b"] as const).map((c) => Math.floor(channel(JET[c], index) * 255));
  return `rgb(${r}, ${g}, ${b})`;
}

/** Gradient stops along the whole bar, at every breakpoint of the colour map (exact between them). */
export function jetStops(): Array<{ offset: number; colour: string }> {
  const offsets = [...new Set(Object.values(JET).flatMap((points) => points.map(([x]) => x)))].sort((a, b) => a - b);
  return offsets.map((offset) => ({ offset, colour: jetColour(offset) }));
}
