/**
 * How bright and how contrasted an input photo is against the model's training images, and the warning a photo
 * far outside their range carries: eagle_iad.expert.lighting `image_statistics` / `statistics_warning`, ported
 * (docs/METHOD.md, "Exposure").
 *
 * Why: the exposure step evens every input's brightness and contrast out before the backbone, so a washed-out or
 * nearly black frame reaches the model looking like any other. The export's sidecar carries the range of the
 * training images' grey mean and spread (`verdict.exposure`); the decoded input gives its own, computed from a
 * 256-bin histogram with integer sums so that Node and Python get the very same doubles.
 */

/** The full scale of a decoded sample (lighting.py `FULL_SCALE`). */
export const FULL_SCALE = 255;

/** How far beyond the training range (a factor) a photo's mean, distance from white or spread may lie (lighting.py `FACTOR`). */
export const FACTOR = 2;

/** The range of a model's training images' statistics (lighting.py `ExposureRange`). */
export interface ExposureRange {
  images: number;
  mean: [number, number];
  spread: [number, number];
}

/**
 * `[mean, spread]` of every sample of a decoded 8-bit image in grey levels (lighting.py `image_statistics`):
 * sums over the histogram are whole numbers below 2^53, so exact, then the same IEEE operations as Python's.
 */
export function imageStatistics(rgb: { data: ArrayLike<number> }): [number, number] {
  const data = rgb.data;
  const counts = new Float64Array(256);
  for (let i = 0; i < data.length; i++) {
    const level = data[i] as number;
    counts[level] = (counts[level] as number) + 1;
  }
  let n = 0;
  let total = 0;
  let squares = 0;
  for (let level = 0; level < 256; level++) {
    const count = counts[level] as number;
    n += count;
    total += count * level;
    squares += count * level * level;
  }
  if (n === 0) return [0, 0];
  const mean = total / n;
  return [mean, Math.sqrt(Math.max(0, squares / n - mean * mean))];
}

/** Python's `f"{x:.1f}"`: as `toFixed(1)`, but an exact tie (x a multiple of 1/4 ending in .x5) goes to the even digit. */
export function fixed1(x: number): string {
  const quarters = x * 4;
  if (Number.isInteger(quarters) && quarters % 2 !== 0) {
    const up = Math.ceil(x * 10);
    const n = up % 2 === 0 ? up : up - 1;
    return (n / 10).toFixed(1);
  }
  return x.toFixed(1);
}

/** How much a range seen in few images is widened before the factor (lighting.py `WIDENING`). */
export const WIDENING = 2;

/** lighting.py `_factor`: FACTOR, widened by the range's own width (log scale) times WIDENING / (images + 1). */
function factorFor(low: number, high: number, images: number): number {
  if (low <= 0) return FACTOR;
  return FACTOR * (high / low) ** (WIDENING / (images + 1));
}

function outside(value: number, low: number, high: number, images: number): "below" | "above" | null {
  const factor = factorFor(low, high, images);
  if (value * factor < low) return "below";
  if (value > high * factor) return "above";
  return null;
}

/** A verdict's warning for a photo of these statistics far outside `trained` (lighting.py `statistics_warning`); null: within. */
export function statisticsWarning(trained: ExposureRange, mean: number, spread: number): string | null {
  const [low, high] = trained.mean;
  const n = trained.images;
  const darkness = outside(mean, low, high, n);
  const contrast = outside(spread, trained.spread[0], trained.spread[1], n);
  let how: string;
  if (darkness === "below") how = "far darker than";
  else if (darkness === "above" || outside(FULL_SCALE - mean, FULL_SCALE - high, FULL_SCALE - low, n) === "below") how = "far brighter than";
  else if (contrast === "below") how = "far flatter (less contrast) than";
  else if (contrast === "above") how = "far more contrasted than";
  else return null;
  return (
    `a photo of mean grey ${fixed1(mean)} and spread ${fixed1(spread)} inspected by a model whose training images' mean ` +
    `grey lies from ${fixed1(low)} to ${fixed1(high)} and spread from ${fixed1(trained.spread[0])} to ${fixed1(trained.spread[1])}: ` +
    `it is ${how} any of them (by more than a factor of ${FACTOR}), and the exposure step evens that out before the ` +
    "model sees it, so its clipped highlights or amplified noise can score as defects or hide them; check the " +
    "camera's exposure and lighting, or fit on images taken under this light (docs/METHOD.md, 'Exposure')"
  );
}

/** lighting.py `exposure_warning`: null where the range is unknown (an export of a model saved before schema 12). */
export function exposureWarning(trained: ExposureRange | null, rgb: { data: ArrayLike<number> } | null): string | null {
  if (trained === null || rgb === null) return null;
  return statisticsWarning(trained, ...imageStatistics(rgb));
}

/**
 * A stored range (the sidecar's `verdict.exposure`), checked as lighting.py `ExposureRange.parse` checks it (its
 * words, the value printed as JSON); a RangeError naming `field` for anything else.
 */
export function parseExposure(raw: unknown, field: string): ExposureRange {
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
    throw new RangeError(`${field} must be an object, not ${raw === null ? "NoneType" : Array.isArray(raw) ? "list" : typeof raw}`);
  }
  const record = raw as Record<string, unknown>;
  const images = record["images"];
  if (typeof images !== "number" || !Number.isInteger(images) || images < 1) {
    throw new RangeError(`${field}.images must be a whole number >= 1, not ${JSON.stringify(images ?? null)}`);
  }
  const pairs: [number, number][] = [];
  for (const key of ["mean", "spread"]) {
    const value = record[key];
    const ok =
      Array.isArray(value) &&
      value.length === 2 &&
      value.every((v) => typeof v === "number" && Number.isFinite(v) && v >= 0 && v <= FULL_SCALE) &&
      (value[0] as number) <= (value[1] as number);
    if (!ok) throw new RangeError(`${field}.${key} must be [low, high] with 0 <= low <= high <= 255, not ${JSON.stringify(value ?? null)}`);
    pairs.push([value[0] as number, value[1] as number]);
  }
  return { images, mean: pairs[0] as [number, number], spread: pairs[1] as [number, number] };
}
