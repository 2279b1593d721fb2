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

/**
 * A figure to `digits` significant digits in plain digits, as `toPrecision` writes it inside its range
 * ("117.50", "5.000") but never in exponent notation, which `toPrecision` switches to for a value of 10^digits or
 * more or below 1e-6: a tau set by hand to 1e9 reads "1000000000", not "1.0000e+9", and 1e-7 "0.00000010000". A value
 * of 10^digits or more is written whole: its integer digits are the figure. "–" for a missing or
 * non-finite value (the service's JSON can carry neither, but a figure the console derives could).
 */
export function formatSignificant(value: number | null | undefined, digits: number): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return "–";
  if (value === 0) return value.toPrecision(digits); // "0.0000", and -0 as 0 (Intl would write "-0.0000")
  // a value of more integer digits than `digits` keeps them all, rounded to a whole number ("123457", not "123460")
  if (Math.abs(value) >= 10 ** digits) return WHOLE.format(value);
  return significant(digits).format(value);
}

const WHOLE = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0, useGrouping: false });

const formats = new Map<number, Intl.NumberFormat>();

function significant(digits: number): Intl.NumberFormat {
  let format = formats.get(digits);
  if (format === undefined) {
    // en-US with no grouping: the same digits and "." as toPrecision, whatever the reader's locale
    format = new Intl.NumberFormat("en-US", { minimumSignificantDigits: digits, maximumSignificantDigits: digits, useGrouping: false });
    formats.set(digits, format);
  }
  return format;
}

/**
 * One fixed scale per category, so cards of the same category can be compared at a glance: from a
 * little below the lowest training score (or tau) to well above tau / s_max / the highest training
 * score, where anomalous scores land. Scores beyond it are clamped and flagged by `positionOf`.
 *
 * A tau far above the scores ({@link farAboveScores}: set by hand, 1e9) is left out, as the tuner leaves it out
 * of its chart: the scale keeps the scores' own range and the card marks the threshold off the scale at its
 * end, where taking it in would squash the training scores, s_max and the part's score into one line.
 */
export function categoryDomain(
  tau: number | null | undefined,
  sMax: number | null | undefined,
  trainMin?: number | null,
  trainMax?: number | null,
  farFactor?: number | null,
): Domain {
  const far = typeof tau === "number" && farAboveScores(tau, sMax, trainMax, farFactor);
  const known = [far ? null : tau, sMax, trainMin, trainMax].filter((v): v is number => typeof v === "number" && Number.isFinite(v));
  if (known.length === 0) return { lo: 0, hi: 1 };
  const top = Math.max(...known);
  const bottom = Math.min(...known);
  const span = top > bottom ? top - bottom : Math.max(Math.abs(top) * 0.1, 1);
  const lo = bottom >= 0 ? Math.max(0, bottom - span * 0.5) : bottom - span * 0.5;
  return { lo, hi: top + span };
}

/**
 * Whether a threshold lies far above every score a card knows of: above s_max and the highest training score,
 * and more than `farFactor` times s_max (the service's FAR_ABOVE_S_MAX, `far_above_s_max` of its /healthz, by
 * which the model warns that such a tau flags nothing). False while the factor or s_max is unknown: a tau
 * just above s_max is common (the rule's tau can lie there) and must stay on the scale.
 */
export function farAboveScores(
  tau: number,
  sMax: number | null | undefined,
  trainMax: number | null | undefined,
  farFactor: number | null | undefined,
): boolean {
  if (!Number.isFinite(tau) || typeof sMax !== "number" || !Number.isFinite(sMax) || typeof farFactor !== "number" || !(farFactor > 0)) return false;
  const highest = typeof trainMax === "number" && Number.isFinite(trainMax) ? Math.max(sMax, trainMax) : sMax;
  return tau > highest && tau > sMax * farFactor;
}

/**
 * The threshold's words on a score scale: its label on the mark ("threshold 81.8"; "threshold 1000000000.0 (off
 * the scale) →" where the mark stands at the end for a tau beyond the scale, as the tuner's chart says it) and the
 * words of the scale's summary read out ("; threshold 1000000000.0 (off the scale, far above the scores shown)").
 */
export function thresholdWords(tau: number | null, domain: Domain): { mark: string; summary: string } {
  if (tau === null) return { mark: "", summary: `threshold ${formatScore(tau)}` };
  const off = positionOf(tau, domain, 1).clamped;
  const value = `threshold ${formatScore(tau)}`;
  if (off === "high") return { mark: `${value} (off the scale) →`, summary: `${value} (off the scale, far above the scores shown)` };
  if (off === "low") return { mark: `← ${value} (off the scale)`, summary: `${value} (off the scale, below the scores shown)` };
  return { mark: value, summary: value };
}

export interface Stop {
  offset: number;
  colour: "normal" | "band" | "anomalous";
}

/**
 * Colour stops of the scale bar: the normal colour up to tau, the band colour over [tau, s_max),
 * the anomalous colour from the point where a score is anomalous. Never red before the threshold.
 */
export function scaleStops(tau: number | null, sMax: number | null, domain: Domain): Stop[] {
  if (tau === null) return [{ offset: 0, colour: "normal" }, { offset: 1, colour: "normal" }];
  const t = fractionOf(tau, domain);
  const stops: Stop[] = [{ offset: 0, colour: "normal" }, { offset: t, colour: "normal" }];
  if (sMax !== null && sMax > tau) {
    const s = fractionOf(sMax, domain);
    stops.push({ offset: t, colour: "band" }, { offset: s, colour: "band" }, { offset: s, colour: "anomalous" });
  } else {
    stops.push({ offset: t, colour: "anomalous" });
  }
  stops.push({ offset: 1, colour: "anomalous" });
  return stops;
}

/** "score 82.3 — threshold 81.8": the numbers a person reads after the verdict. */
export function scoreLine(score: number | null, tau: number | null): string {
  return `score ${formatScore(score)} — threshold ${formatScore(tau)}`;
}

/**
 * The caution on a verdict that could have gone either way, or null on a clear one. The service marks a
 * record `near_threshold` when its score is within one standard deviation of the category's training
 * scores of tau, on either side (README: "Reading a verdict"): a cracked part just under the threshold
 * gets it as surely as a normal one just over it, and a normal part far below gets none.
 */
export function cautionLine(nearThreshold: boolean | null | undefined, score: number | null, tau: number | null): string | null {
  if (nearThreshold !== true || score === null || tau === null) return null;
  const side = score >= tau ? "just above" : "just below";
  return `Close call: the score is ${side} the threshold, within the normal variation of this product's scores, so the verdict could have gone either way. A second look is advised.`;
}

/** What the unsure band did for this inspection, or null when its score is outside the band (or the band is empty). */
export function bandLine(score: number | null, tau: number | null, sMax: number | null, mllm: boolean): string | null {
  if (tau === null || sMax === null || !(sMax > tau) || score === null || !(score >= tau && score < sMax)) return null;
  const range = `${formatScore(tau)}–${formatScore(sMax)}`;
  return mllm
    ? `The score is in the unsure band ${range} (from the threshold to the highest normal training score), so the MLLM looked again with sharpened attention (CAAS).`
    : `The score is in the unsure band ${range}: above the threshold but not above every normal training image.`;
}
