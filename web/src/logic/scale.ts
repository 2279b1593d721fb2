/**
 * Geometry of the score scale: where a score, tau and s_max sit on a horizontal bar.
 *
 * The domain covers the three values with a margin; a score outside the drawn domain is clamped
 * to the edge and flagged so the marker can say "off scale" instead of silently lying.
 */

export interface Domain {
  lo: number;
  hi: number;
}

export interface Position {
  /** Pixel offset from the left edge, within [0, width]. */
  x: number;
  /** Where the value lay outside the domain, if it did. */
  clamped: "low" | "high" | null;
}

/** A domain that shows every finite value given, padded by `margin` of the span on each side. */
export function scaleDomain(values: ReadonlyArray<number | null | undefined>, margin = 0.25): Domain {
  const finite = values.filter((v): v is number => typeof v === "number" && Number.isFinite(v));
  if (finite.length === 0) return { lo: 0, hi: 1 };
  let lo = Math.min(...finite);
  let hi = Math.max(...finite);
  const span = hi - lo;
  const pad = span > 0 ? span * margin : Math.max(Math.abs(hi) * 0.1, 1);
  const allNonNegative = lo >= 0;
  lo -= pad;
  hi += pad;
  if (allNonNegative && lo < 0) lo = 0; // scores are distances: never draw negative room
  return { lo, hi };
}

/** Fraction of the domain, clamped to [0, 1]. */
export function fractionOf(value: number, domain: Domain): number {
  const span = domain.hi - domain.lo;
  if (!(span > 0) || !Number.isFinite(value)) return 0;
  return Math.min(1, Math.max(0, (value - domain.lo) / span));
}

/** A value's position on a bar `width` pixels wide. */
export function positionOf(value: number, domain: Domain, width: number): Position {
  const clamped = value < domain.lo ? "low" : value > domain.hi ? "high" : null;
  return { x: fractionOf(value, domain) * width, clamped };
}

/**
 * The low-confidence band [tau, s_max) as pixel x0..x1, or null when it is empty
 * (s_max <= tau happens: the rule's tau can lie above the largest training score).
 */
export function bandSpan(tau: number | null, sMax: number | null, domain: Domain, width: number): { x0: number; x1: number } | null {
  if (tau === null || sMax === null || !(sMax > tau)) return null;
  const x0 = positionOf(tau, domain, width).x;
  const x1 = positionOf(sMax, domain, width).x;
  return x1 > x0 ? { x0, x1 } : null;
}

/** Where a score falls relative to the thresholds (the service's own rule: tau <= score < s_max is the band). */
export function zoneOf(score: number, tau: number, sMax: number | null): "below" | "band" | "above" {
  if (score < tau) return "below";
  if (sMax !== null && score < sMax) return "band";
  return "above";
}

/** A short, fixed-width number for labels: 3 significant decimals for small values, 1 for large ones. */
export function formatScore(value: number | null | undefined): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return "–";
  const abs = Math.abs(value);
  if (abs >= 100) return value.toFixed(1);
  if (abs >= 10) return value.toFixed(2);
  return value.toFixed(3);
}
