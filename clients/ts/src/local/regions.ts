/**
 * Anomaly map -> suspected defect boxes: a TypeScript port of eagle_iad/tgps/regions.py (docs/METHOD.md §2).
 *
 * Must give the very boxes the Python side draws (a test compares them on maps Python generates):
 * the same relative threshold with the median fallback, or calibrated threshold with its fallbacks (2/3
 * of the way from the baseline to the peak, then the peak's region grown to the minimum area), holes
 * filled as scipy's binary_fill_holes does (background reached from the border through 4-connected
 * steps), 8-connected regions numbered in raster order as scipy.ndimage.label numbers them (the order decides ties when
 * boxes are ranked), the strict area filter, and the greedy strongest-first merge.
 */
import { EagleLocalError } from "./errors.js";

/** A suspected defect region in original image pixels (`x1`/`y1` exclusive), as regions.Box.to_dict writes it. */
export interface Box {
  x0: number;
  y0: number;
  x1: number;
  y1: number;
  /** The region's largest max-normalised map value (1.0 for the image's strongest region). */
  peak: number;
  /** Pixel count, holes included, summed over merged regions. */
  area: number;
  /** The region's largest map value in score units. */
  score: number;
  /**
   * The region's largest patch score (the image score's scale: the box over the image's highest-scoring patch
   * carries the image's score), read from the patch grid drawn over the image (`ExtractOptions.patchValues`);
   * `null` without one (an export before schema 3, whose graph gives no patch grid).
   */
  patch_score: number | null;
}

/** A 2-D map, row-major. */
export interface FloatMap {
  width: number;
  height: number;
  data: Float32Array | Float64Array;
}

export const REGION_RULES = ["calibrated", "paper"] as const;

function validate(map: FloatMap): void {
  if (map.width * map.height === 0 || map.data.length !== map.width * map.height) {
    throw new EagleLocalError(`anomaly map is empty or not ${map.height}x${map.width}`);
  }
  for (const v of map.data) {
    if (!Number.isFinite(v)) throw new EagleLocalError("anomaly map contains NaN or infinite values");
  }
}

function extremes(data: ArrayLike<number>): [number, number] {
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = 0; i < data.length; i++) {
    const v = data[i] as number;
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  return [lo, hi];
}

/** numpy's median (the mean of the two middle values for an even count). */
function median(values: Float64Array): number {
  const sorted = Float64Array.from(values).sort();
  const n = sorted.length;
  const mid = n >> 1;
  return n % 2 === 1 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

/** scipy.ndimage.binary_fill_holes with its default (4-connected) structure. */
function fillHoles(binary: Uint8Array, width: number, height: number): Uint8Array {
  const outside = new Uint8Array(binary.length);
  const stack: number[] = [];
  const seed = (i: number): void => {
    if (binary[i] === 0 && outside[i] === 0) {
      outside[i] = 1;
      stack.push(i);
    }
  };
  for (let x = 0; x < width; x++) {
    seed(x);
    seed((height - 1) * width + x);
  }
  for (let y = 0; y < height; y++) {
    seed(y * width);
    seed(y * width + width - 1);
  }
  while (stack.length > 0) {
    const i = stack.pop() as number;
    const x = i % width;
    if (x > 0) seed(i - 1);
    if (x < width - 1) seed(i + 1);
    if (i >= width) seed(i - width);
    if (i + width < binary.length) seed(i + width);
  }
  const filled = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) filled[i] = outside[i] === 1 ? 0 : 1;
  return filled;
}

/** 8-connected labels numbered by first pixel in raster order (scipy.ndimage.label's numbering). */
function label8(mask: Uint8Array, width: number, height: number): { labels: Int32Array; count: number } {
  const labels = new Int32Array(mask.length);
  let count = 0;
  const stack: number[] = [];
  for (let start = 0; start < mask.length; start++) {
    if (mask[start] === 0 || labels[start] !== 0) continue;
    count++;
    labels[start] = count;
    stack.push(start);
    while (stack.length > 0) {
      const i = stack.pop() as number;
      const x = i % width;
      const y = (i - x) / width;
      for (let dy = -1; dy <= 1; dy++) {
        const ny = y + dy;
        if (ny < 0 || ny >= height) continue;
        for (let dx = -1; dx <= 1; dx++) {
          const nx = x + dx;
          if (nx < 0 || nx >= width) continue;
          const j = ny * width + nx;
          if (mask[j] === 1 && labels[j] === 0) {
            labels[j] = count;
            stack.push(j);
          }
        }
      }
    }
  }
  return { labels, count };
}

function iou(a: Box, b: Box): number {
  const ix = Math.min(a.x1, b.x1) - Math.max(a.x0, b.x0);
  const iy = Math.min(a.y1, b.y1) - Math.max(a.y0, b.y0);
  if (ix <= 0 || iy <= 0) return 0;
  const inter = ix * iy;
  const union = (a.x1 - a.x0) * (a.y1 - a.y0) + (b.x1 - b.x0) * (b.y1 - b.y0) - inter;
  return union > 0 ? inter / union : 0;
}

function close(a: Box, b: Box, maxCentreDistance: number): boolean {
  const dx = (a.x0 + a.x1) / 2 - (b.x0 + b.x1) / 2;
  const dy = (a.y0 + a.y1) / 2 - (b.y0 + b.y1) / 2;
  // Half-integer differences: the sum of squares is exact, so sqrt rounds like Python's math.hypot.
  return Math.sqrt(dx * dx + dy * dy) < maxCentreDistance;
}

/** The larger of two patch scores, either of which may be unknown (regions._larger). */
function larger(a: number | null, b: number | null): number | null {
  if (a === null || b === null) return a === null ? b : a;
  return Math.max(a, b);
}

function union(a: Box, b: Box): Box {
  return {
    x0: Math.min(a.x0, b.x0),
    y0: Math.min(a.y0, b.y0),
    x1: Math.max(a.x1, b.x1),
    y1: Math.max(a.y1, b.y1),
    peak: Math.max(a.peak, b.peak),
    area: a.area + b.area,
    score: Math.max(a.score, b.score),
    patch_score: larger(a.patch_score, b.patch_score),
  };
}

/** Greedily merge overlapping or nearby boxes until no pair qualifies (regions.merge_boxes). */
export function mergeBoxes(boxes: readonly Box[], height: number, width: number, mergeIou = 0.3, mergeCentreFraction = 0.02): Box[] {
  const maxCentreDistance = mergeCentreFraction * Math.sqrt(height * height + width * width);
  let current = [...boxes];
  for (;;) {
    const kept: Box[] = [];
    // Array.prototype.sort is stable, like Python's sorted(reverse=True): equal peaks keep their order.
    for (const box of [...current].sort((a, b) => b.peak - a.peak)) {
      const index = kept.findIndex((anchor) => iou(anchor, box) > mergeIou || close(anchor, box, maxCentreDistance));
      if (index >= 0) kept[index] = union(kept[index] as Box, box);
      else kept.push(box);
    }
    if (kept.length === current.length) return kept;
    current = kept;
  }
}

export interface ExtractOptions {
  topK?: number;
  binariseRatio?: number;
  minAreaFraction?: number;
  mergeIou?: number;
  mergeCentreFraction?: number;
  /** Binarise at this absolute map value (the calibrated rule) instead of a fraction of the maximum. */
  threshold?: number | null;
  /**
   * The patch grid drawn cell by cell over the image, the map's shape ({@link patchMap} in host.ts): gives each
   * box its `patch_score`, the largest value under the region's own pixels. Absent or null: `patch_score` null.
   */
  patchValues?: FloatMap | null;
}

/** Boxes around the strongest anomalous regions of a map (regions.extract_regions). */
export function extractRegions(map: FloatMap, options: ExtractOptions = {}): Box[] {
  const topK = options.topK ?? 3;
  const ratio = options.binariseRatio ?? 2 / 3;
  const minAreaFraction = options.minAreaFraction ?? 0.001;
  const threshold = options.threshold ?? null;
  const patchValues = options.patchValues ?? null;
  validate(map);
  const { width, height, data } = map;
  if (patchValues !== null && (patchValues.width !== width || patchValues.height !== height || patchValues.data.length !== data.length)) {
    throw new EagleLocalError(`patch values ${patchValues.height}x${patchValues.width} do not match the map ${height}x${width}`);
  }
  const n = data.length;
  const [lo, top] = extremes(data);
  if (top <= 0 || lo === top) return [];
  const norm = new Float64Array(n);
  for (let i = 0; i < n; i++) norm[i] = (data[i] as number) / top;
  let binary = new Uint8Array(n);
  if (threshold !== null) {
    for (let i = 0; i < n; i++) binary[i] = (data[i] as number) >= threshold ? 1 : 0;
  } else {
    let passed = 0;
    for (let i = 0; i < n; i++) {
      const on = (norm[i] as number) >= ratio ? 1 : 0;
      binary[i] = on;
      passed += on;
    }
    if (passed * 2 > n) {
      const cut = median(norm);
      binary = new Uint8Array(n);
      for (let i = 0; i < n; i++) binary[i] = (norm[i] as number) > cut ? 1 : 0;
    }
  }
  const { labels, count } = label8(fillHoles(binary, width, height), width, height);
  if (count === 0) return [];
  const area = new Float64Array(count + 1);
  const x0 = new Int32Array(count + 1).fill(width);
  const y0 = new Int32Array(count + 1).fill(height);
  const x1 = new Int32Array(count + 1);
  const y1 = new Int32Array(count + 1);
  const peak = new Float64Array(count + 1).fill(-Infinity);
  const score = new Float64Array(count + 1).fill(-Infinity);
  const patch = new Float64Array(count + 1).fill(-Infinity);
  for (let i = 0; i < n; i++) {
    const l = labels[i] as number;
    if (l === 0) continue;
    const x = i % width;
    const y = (i - x) / width;
    area[l] = (area[l] as number) + 1;
    if (x < (x0[l] as number)) x0[l] = x;
    if (y < (y0[l] as number)) y0[l] = y;
    if (x + 1 > (x1[l] as number)) x1[l] = x + 1;
    if (y + 1 > (y1[l] as number)) y1[l] = y + 1;
    if ((norm[i] as number) > (peak[l] as number)) peak[l] = norm[i] as number;
    if ((data[i] as number) > (score[l] as number)) score[l] = data[i] as number;
    if (patchValues !== null && (patchValues.data[i] as number) > (patch[l] as number)) patch[l] = patchValues.data[i] as number;
  }
  const minArea = minAreaFraction * n;
  const boxes: Box[] = [];
  for (let l = 1; l <= count; l++) {
    if ((area[l] as number) > minArea) {
      boxes.push({
        x0: x0[l] as number,
        y0: y0[l] as number,
        x1: x1[l] as number,
        y1: y1[l] as number,
        peak: peak[l] as number,
        area: area[l] as number,
        score: score[l] as number,
        patch_score: patchValues !== null && Number.isFinite(patch[l]) ? (patch[l] as number) : null,
      });
    }
  }
  if (boxes.length === 0) return [];
  return mergeBoxes(boxes, height, width, options.mergeIou ?? 0.3, options.mergeCentreFraction ?? 0.02).slice(0, topK);
}

/** The boxes a region rule drew and the absolute map value it cut at (`null`: relative to the max). */
export interface Regions {
  boxes: Box[];
  threshold: number | null;
}

/**
 * The boxes a region rule draws on a map (regions.find_boxes).
 *
 * `paper` (or a model without calibration) binarises at 2/3 of the map's own maximum; `calibrated` at
 * `mapTau`. A map that nowhere reaches it, or whose pixels above it form no region over the minimum
 * area, is cut two thirds of the way from `baseline` to its own maximum; should that leave no region
 * either, the peak's own region is grown until it covers one ({@link peakLevel}). A flat map: no boxes.
 * `patchValues`: as in {@link ExtractOptions}.
 */
export function findBoxes(
  map: FloatMap,
  rule: string,
  mapTau: number | null,
  baseline: number | null = null,
  topK = 3,
  minAreaFraction = 0.001,
  patchValues: FloatMap | null = null,
): Regions {
  if (!(REGION_RULES as readonly string[]).includes(rule)) {
    throw new EagleLocalError(`unknown region rule ${JSON.stringify(rule)}; choose one of ${REGION_RULES.map((r) => `'${r}'`).join(", ")}`);
  }
  if (rule === "paper" || mapTau === null) return { boxes: extractRegions(map, { topK, patchValues }), threshold: null };
  validate(map);
  const [lo, top] = extremes(map.data);
  if (top <= 0 || lo === top) return { boxes: [], threshold: null }; // a flat map: nothing stands out
  const floor = baseline === null ? mapTau : Math.min(baseline, top);
  const relative = floor + (2.0 / 3.0) * (top - floor);
  for (const threshold of top >= mapTau ? [mapTau, relative] : [relative]) {
    const boxes = extractRegions(map, { topK, minAreaFraction, threshold, patchValues });
    if (boxes.length > 0) return { boxes, threshold };
  }
  const threshold = peakLevel(map, relative, minAreaFraction * map.data.length);
  return { boxes: extractRegions(map, { topK: 1, minAreaFraction: 0, threshold, patchValues }), threshold };
}

/**
 * The highest level at or below `start` whose region around the map's peak covers over `minArea` pixels
 * (regions._peak_level): the same 40 bisection steps from the same ends, so the very same level. The
 * peak is the first maximum in raster order (numpy's argmax); the region external (holes filled),
 * 8-connected.
 */
function peakLevel(map: FloatMap, start: number, minArea: number): number {
  const { width, height, data } = map;
  const n = data.length;
  let peak = 0;
  for (let i = 1; i < n; i++) if ((data[i] as number) > (data[peak] as number)) peak = i;
  const area = (level: number): number => {
    const binary = new Uint8Array(n);
    for (let i = 0; i < n; i++) binary[i] = (data[i] as number) >= level ? 1 : 0;
    const { labels } = label8(fillHoles(binary, width, height), width, height);
    const own = labels[peak] as number;
    let count = 0;
    for (let i = 0; i < n; i++) if (labels[i] === own) count++;
    return count;
  };
  const [min, max] = extremes(data);
  let low = min;
  let high = Math.min(start, max);
  if (area(high) > minArea) return high;
  for (let step = 0; step < 40; step++) {
    const middle = (low + high) / 2.0;
    if (area(middle) > minArea) low = middle;
    else high = middle;
  }
  return low;
}
