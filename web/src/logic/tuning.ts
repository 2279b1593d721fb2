/**
 * What a candidate threshold would do to images whose truth is known, and a day-by-day view of a
 * category's history. Pure functions: the category page draws them, the unit tests pin the counts.
 *
 * The expert flags an image iff `score >= tau` (docs/METHOD.md), so a false alarm is a normal image at
 * or above the threshold and a miss is a defective image below it.
 */

export interface Known {
  id: string;
  name: string;
  score: number;
  label: "normal" | "anomalous";
}

export interface Preview<T extends Known> {
  tau: number;
  normals: number;
  anomalies: number;
  falseAlarms: T[];
  misses: T[];
  /** Images whose verdict differs between the current threshold and the candidate. */
  flips: Array<{ item: T; now: "flagged" | "passed"; effect: "fixed" | "broken" }>;
}

export function flagged(score: number, tau: number): boolean {
  return score >= tau;
}

/**
 * The confusion at `candidate` and the images that flip relative to `current`; `effect` says whether the
 * flip makes that image right (`fixed`) or wrong (`broken`). Items keep their given order.
 */
export function previewThreshold<T extends Known>(items: readonly T[], candidate: number, current: number | null): Preview<T> {
  const falseAlarms: T[] = [];
  const misses: T[] = [];
  const flips: Preview<T>["flips"] = [];
  let normals = 0;
  let anomalies = 0;
  for (const item of items) {
    if (!Number.isFinite(item.score)) continue;
    const isDefect = item.label === "anomalous";
    if (isDefect) anomalies++;
    else normals++;
    const after = flagged(item.score, candidate);
    if (after && !isDefect) falseAlarms.push(item);
    if (!after && isDefect) misses.push(item);
    if (current !== null && flagged(item.score, current) !== after) {
      flips.push({ item, now: after ? "flagged" : "passed", effect: after === isDefect ? "fixed" : "broken" });
    }
  }
  return { tau: candidate, normals, anomalies, falseAlarms, misses, flips };
}

/**
 * Where else the same image file is in the evidence, in words: evaluation entries by run and name
 * (`<run>/<image>`), other inspections of it by count (their ids say nothing to a person).
 */
export function sameFileLine(also: readonly string[]): string {
  const runs = also.filter((id) => id.includes("/"));
  const inspections = also.length - runs.length;
  const parts = [
    ...(inspections > 0 ? [`${inspections} more inspection${inspections === 1 ? "" : "s"} of it`] : []),
    ...runs.map((entry) => `evaluation ${entry}`),
  ];
  return `the same file is also ${parts.join(" and ")} (counted once)`;
}

/** "2 of 5 (40%)", or "none labelled" when there is nothing to count against. */
export function formatRate(part: number, whole: number): string {
  if (whole === 0) return "none labelled";
  return `${part} of ${whole} (${formatPercent(part / whole)})`;
}

export function formatPercent(rate: number | null | undefined): string {
  if (rate === null || rate === undefined || !Number.isFinite(rate)) return "–";
  const percent = rate * 100;
  return `${percent === Math.round(percent) ? percent.toFixed(0) : percent.toFixed(1)}%`;
}

/**
 * A slider's range: every training and labelled score and both thresholds fit, with a step of about a
 * thousandth of the span rounded to a power of ten (so the number input and the slider agree).
 */
export function sliderRange(values: ReadonlyArray<number | null | undefined>): { min: number; max: number; step: number } {
  const finite = values.filter((v): v is number => typeof v === "number" && Number.isFinite(v));
  if (finite.length === 0) return { min: 0, max: 1, step: 0.001 };
  const lo = Math.min(...finite);
  const hi = Math.max(...finite);
  const span = hi - lo || Math.max(Math.abs(hi), 1);
  const step = Number(`1e${Math.floor(Math.log10(span / 1000))}`);
  const min = Math.max(0, Math.floor((lo - span * 0.05) / step) * step);
  const max = Math.ceil((hi + span * 0.05) / step) * step;
  return { min: roundTo(min, step), max: roundTo(max, step), step };
}

/** `value` rounded to the decimals of `step` (no 0.30000000000000004 in an input). */
export function roundTo(value: number, step: number): number {
  const decimals = Math.max(0, -Math.floor(Math.log10(step)));
  return Number(value.toFixed(decimals));
}

export interface DayLike {
  day: string;
  inspections: number;
  scored: number;
  rejected: number;
  score_min?: number | null;
  score_mean?: number | null;
  score_max?: number | null;
}

/** Bars (reject rate per day) and score ranges placed in a `width` x `height` plot, days left to right. */
export function dayGeometry(days: readonly DayLike[], width: number, height: number, scoreRef: ReadonlyArray<number | null | undefined> = []) {
  const n = days.length;
  const slot = n > 0 ? width / n : width;
  const scores = days.flatMap((d) => [d.score_min, d.score_max]).concat(scoreRef);
  const finite = scores.filter((v): v is number => typeof v === "number" && Number.isFinite(v));
  const lo = finite.length ? Math.min(...finite) : 0;
  const hi = finite.length ? Math.max(...finite) : 1;
  const span = hi - lo || 1;
  const yOf = (score: number) => height - ((score - lo) / span) * height;
  return {
    lo,
    hi,
    yOf,
    days: days.map((d, i) => {
      const rate = d.inspections > 0 ? d.rejected / d.inspections : 0;
      const x = i * slot + slot / 2;
      return {
        day: d.day,
        x,
        barWidth: Math.max(2, Math.min(40, slot * 0.6)),
        rate,
        rateY: height - rate * height,
        range:
          typeof d.score_min === "number" && typeof d.score_max === "number" && typeof d.score_mean === "number"
            ? { top: yOf(d.score_max), bottom: yOf(d.score_min), mean: yOf(d.score_mean) }
            : null,
      };
    }),
  };
}

/**
 * The tuner's words for a threshold that calls more than `share` of the training images anomalous (the
 * service's FLAGGED_SHARE, served by /healthz: src/eagle_iad/expert/model_warnings.py, where the model's own
 * warning says the same once a tau is saved); null otherwise, and null while the service has not said its share.
 * The default rule never flags more of its own training images (docs/METHOD.md, "Threshold rules").
 */
export function insideNormalsLine(flaggedTraining: number, training: number, share: number | null): string | null {
  if (share === null || training === 0 || flaggedTraining <= Math.floor(share * training)) return null;
  return (
    `That is more than ${formatPercent(share)} of the training images, each a normal part: the threshold lies inside the ` +
    `normal parts' scores, so expect about ${formatPercent(flaggedTraining / training)} of normal parts flagged.`
  );
}

/**
 * What saving a threshold must be confirmed for, as its tick says it ("Save 86.00 although it …"): a threshold
 * that flags nothing, one that flags every normal part ({@link offScale}), and one inside the normal parts' scores
 * ({@link insideNormalsLine}); null for a value saved without a tick. Why the third too: each of the three is one
 * the model itself then warns of (src/eagle_iad/expert/model_warnings.py, far_threshold_warnings), and 11 of 12
 * normal parts flagged does on the line what 12 of 12 does; a tick for the one and none for the other drew a line
 * at the lowest training score that no one could see.
 */
export function confirmPhrase(outside: OffScale | null, flaggedTraining: number, training: number, share: number | null): string | null {
  if (outside === "flags-nothing") return "flags nothing";
  if (outside === "flags-every-normal") return "flags every normal part";
  if (insideNormalsLine(flaggedTraining, training, share) !== null) return `flags about ${formatPercent(flaggedTraining / training)} of normal parts`;
  return null;
}

/**
 * What the tuner knows of a category's scores: the lowest training score, the highest of each kind the page
 * shows (training, images with known truth, inspections charted in "Over time"), and the highest of all.
 */
export interface KnownScores {
  /** The lowest training score: at or below it, every training image (each a normal part) is flagged. */
  lowestTraining: number | null;
  /** The highest score known: training images, labelled parts, evaluation images, inspections. */
  highest: number | null;
  /** The largest training score (s_max, or the largest of the training scores where s_max is not given). */
  highestTraining: number | null;
  /** The images with known truth (labelled history items, evaluation images): how many, and the highest score. */
  truth: { count: number; highest: number | null };
  /**
   * The highest score of an inspection, as "Over time" charts it (the dashboard's `totals.score_max`); null while
   * not loaded or with no inspection. Known so that the words and the chart beside them agree: the tuner said "the
   * highest is 127.9" above a chart showing an inspection at 153.5 (t-console finding 4).
   */
  highestInspected: number | null;
  sMax: number | null;
  /**
   * How far above s_max, and above every score known besides, a threshold may lie before the tuner calls it one
   * that flags nothing: the service's own factor (`far_above_s_max` of its /healthz, the model's warning's
   * FAR_ABOVE_S_MAX), served rather than copied so the two cannot drift. A fit's rules put tau near s_max
   * (docs/METHOD.md §2); that many times over is far past where any normal part scores. The model's warning uses
   * the factor alone, as it holds only the training scores, and says "likely flags nothing"; the tuner knows
   * labelled, evaluation and inspection scores too, so it also asks that the threshold lie above all of them
   * ({@link offScale}): one below a defect's known score still flags that defect and is counted. Null while the
   * service has not said (its health not read yet): no threshold is called one that flags nothing then.
   */
  farFactor: number | null;
}

export function knownScores(
  training: readonly number[],
  items: ReadonlyArray<{ score: number }>,
  sMax: number | null | undefined,
  farFactor: number | null | undefined,
  inspected: number | null | undefined = null,
): KnownScores {
  const finite = (values: ReadonlyArray<number | null | undefined>) => values.filter((v): v is number => typeof v === "number" && Number.isFinite(v));
  const highestOf = (values: readonly number[]) => (values.length > 0 ? Math.max(...values) : null);
  const trained = finite(training);
  const truth = finite(items.map((i) => i.score));
  const inspections = finite([inspected]);
  const all = [...trained, ...truth, ...inspections, ...finite([sMax])];
  return {
    lowestTraining: trained.length > 0 ? Math.min(...trained) : null,
    highest: highestOf(all),
    highestTraining: highestOf([...trained, ...finite([sMax])]),
    truth: { count: truth.length, highest: highestOf(truth) },
    highestInspected: highestOf(inspections),
    sMax: typeof sMax === "number" && Number.isFinite(sMax) ? sMax : null,
    farFactor: typeof farFactor === "number" && Number.isFinite(farFactor) && farFactor > 0 ? farFactor : null,
  };
}

/**
 * Whether a threshold lies outside the scores known, so that it does nothing useful: `flags-nothing` above
 * every score known and more than {@link KnownScores.farFactor} times s_max (no part, defective or not, would be
 * flagged), `flags-every-normal` at or below the lowest training score (every training image, each a normal
 * part, would be flagged). Null inside: a value worth trying. The tuner asks to confirm either before saving.
 */
export type OffScale = "flags-nothing" | "flags-every-normal";

export function offScale(threshold: number, known: KnownScores): OffScale | null {
  if (!Number.isFinite(threshold)) return null;
  if (known.lowestTraining !== null && threshold <= known.lowestTraining) return "flags-every-normal";
  // The service's factor not read yet: nothing is called "flags nothing" on a guess. A tau a little above every
  // score known (the rule's tau often is) would be warned of, boxed to confirm, until the answer came.
  if (known.farFactor === null) return null;
  const far = known.sMax !== null ? known.sMax * known.farFactor : null;
  if (known.highest !== null && threshold > known.highest && (far === null || threshold > far)) return "flags-nothing";
  return null;
}

/**
 * The range a chart and the slider span: the scores themselves (training, labelled, s_max) and a threshold
 * in use only when it lies among them, so that a threshold far off (1e9) does not squash the bars into a line.
 */
export function scoreRange(known: ReadonlyArray<number | null | undefined>, thresholds: ReadonlyArray<number | null | undefined>, scores: KnownScores) {
  const inside = thresholds.filter((t) => typeof t === "number" && Number.isFinite(t) && offScale(t, scores) === null);
  return sliderRange([...known, ...inside]);
}

/** What a threshold outside the scores would do, in words, for the preview and the confirm step. */
export function offScaleLine(kind: OffScale, threshold: string, known: KnownScores, formatScore: (v: number | null | undefined) => string): string {
  if (kind === "flags-nothing") {
    // Each kind of score by its name and highest, as the page shows them: "every score known here (the highest is
    // 127.9)" beside an inspection charted at 153.5 said something the page contradicted, and with no other
    // scores it said 127.9 twice.
    const times = known.farFactor === 2 ? "twice" : `${known.farFactor} times`;
    const training =
      known.sMax !== null && known.farFactor !== null
        ? `more than ${times} the largest training score (${formatScore(known.sMax)})`
        : known.highestTraining !== null
          ? `above every training score (the largest is ${formatScore(known.highestTraining)})`
          : null;
    const others = [
      ...(known.truth.count === 1 ? [`the image with known truth (${formatScore(known.truth.highest)})`] : []),
      ...(known.truth.count > 1 ? [`the ${known.truth.count} images with known truth (highest ${formatScore(known.truth.highest)})`] : []),
      ...(known.highestInspected !== null ? [`the inspections in “Over time” (highest ${formatScore(known.highestInspected)})`] : []),
    ];
    const beyond = others.length > 0 ? `above every ${training ? "other " : ""}score known here: ${others.join(" and ")}` : null;
    return `This flags nothing: ${threshold} is ${[training, beyond].filter(Boolean).join(" and ")}. The expert would pass every part, defective ones too.`;
  }
  return (
    `This flags every normal part: ${threshold} is at or below the lowest training score (${formatScore(known.lowestTraining)}), so every ` +
    `training image — each one a normal part — would be flagged, and so would nearly every part inspected.`
  );
}

/**
 * The thresholds a day chart's score axis takes in: a threshold within one span of the day scores (the axis then
 * shows where the scores sit against it), not one far beyond (1e9 would squash every day's range into a line;
 * the chart marks it "off the scale" at the edge instead).
 */
export function nearScores(days: readonly DayLike[], thresholds: ReadonlyArray<number | null | undefined>): number[] {
  const scores = days.flatMap((d) => [d.score_min, d.score_max]).filter((v): v is number => typeof v === "number" && Number.isFinite(v));
  const finite = thresholds.filter((t): t is number => typeof t === "number" && Number.isFinite(t));
  if (scores.length === 0) return finite;
  const lo = Math.min(...scores);
  const hi = Math.max(...scores);
  const span = hi - lo || Math.max(Math.abs(hi), 1);
  return finite.filter((t) => t >= lo - span && t <= hi + span);
}
