/**
 * The host half of an exported inspection: what happens around the graph, ported from Python.
 *
 * Before the graph: the image is resized (Pillow's bilinear, resize.ts) to the fitted input, or, in
 * the paper's centre-crop mode, its shorter side is resized and a centre square cut
 * (eagle_iad.images.Geometry). After the graph: its map over the input goes back to the original
 * frame with torch's bilinear `F.interpolate(align_corners=False)` in float32 (outside a centre crop:
 * the map's minimum, that area reported as not inspected), then the verdict (decision, band, boxes,
 * map statistics) is built as eagle_iad.verdict.make_verdict builds it.
 */
import { EagleLocalError } from "./errors.js";
import { type Box, type FloatMap, findBoxes } from "./regions.js";
import type { RgbImage } from "./image.js";
import { resizeBilinear } from "./resize.js";

const f32 = Math.fround;

/** The feature grid's stride in input pixels (eagle_iad.expert.preprocess.FEATURE_STRIDE). */
export const FEATURE_STRIDE = 8;

/** Python's round(): halves go to the even neighbour. */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** How one image was turned into the graph's input, so its map can go back to the original frame. */
export interface ViewGeometry {
  /** Original size. */
  height: number;
  width: number;
  /** The map's shape over the input. */
  inputHeight: number;
  inputWidth: number;
  /** Centre-crop mode: the resized frame and where the crop sits in it. */
  crop?: { resizedHeight: number; resizedWidth: number; top: number; left: number; size: number };
}

/** Geometry of torchvision's Resize(resize) + CenterCrop(crop) (eagle_iad.images.Geometry.for_image). */
export function centreCropGeometry(height: number, width: number, resize: number, crop: number): ViewGeometry {
  if (crop > resize) throw new RangeError(`crop (${crop}) must not exceed resize (${resize})`);
  const [rh, rw] = height <= width ? [resize, Math.trunc((resize * width) / height)] : [Math.trunc((resize * height) / width), resize];
  return {
    height,
    width,
    inputHeight: crop,
    inputWidth: crop,
    crop: { resizedHeight: rh, resizedWidth: rw, top: roundHalfEven((rh - crop) / 2), left: roundHalfEven((rw - crop) / 2), size: crop },
  };
}

/** The graph's uint8 input for one image, and its geometry. */
export function prepareInput(
  rgb: RgbImage,
  mode: string,
  inputHeight: number,
  inputWidth: number,
  resize?: number,
): { input: RgbImage; geometry: ViewGeometry } {
  if (mode !== "center-crop") {
    return {
      input: resizeBilinear(rgb, inputWidth, inputHeight),
      geometry: { height: rgb.height, width: rgb.width, inputHeight, inputWidth },
    };
  }
  if (resize === undefined) throw new RangeError("centre-crop mode needs the resize side");
  const geometry = centreCropGeometry(rgb.height, rgb.width, resize, inputHeight);
  const c = geometry.crop as NonNullable<ViewGeometry["crop"]>;
  const resized = resizeBilinear(rgb, c.resizedWidth, c.resizedHeight);
  const out = new Uint8Array(c.size * c.size * 3);
  for (let y = 0; y < c.size; y++) {
    const from = ((y + c.top) * c.resizedWidth + c.left) * 3;
    out.set(resized.data.subarray(from, from + c.size * 3), y * c.size * 3);
  }
  return { input: { width: c.size, height: c.size, data: out }, geometry };
}

/**
 * torch's bilinear F.interpolate(align_corners=False) on one float32 channel, to the bit on the
 * fixtures: torch's CPU kernel is compiled with FMA contraction, so the source index is
 * fma(scale, d + 0.5, -0.5) and each lerp is fma(a, w0, b * w1), rounded to float32 once. A double
 * product is exact for float32 factors, so `f32(x * y + z)` is that fma (up to a double rounding
 * that moves a value by one float32 ulp in rare cases).
 */
export function resizeMap(map: FloatMap, outHeight: number, outWidth: number): FloatMap {
  const { width: inW, height: inH, data } = map;
  if (inW === outWidth && inH === outHeight) return { width: inW, height: inH, data: Float32Array.from(data) };
  const axis = (inSize: number, outSize: number): { i0: Int32Array; i1: Int32Array; w0: Float32Array; w1: Float32Array } => {
    const scale = f32(inSize / outSize);
    const i0 = new Int32Array(outSize);
    const i1 = new Int32Array(outSize);
    const w0 = new Float32Array(outSize);
    const w1 = new Float32Array(outSize);
    for (let d = 0; d < outSize; d++) {
      const real = Math.max(f32(scale * (d + 0.5) - 0.5), 0);
      const index = Math.min(Math.floor(real), inSize - 1);
      const lambda = Math.min(Math.max(f32(real - index), 0), 1);
      i0[d] = index;
      i1[d] = index + (index < inSize - 1 ? 1 : 0);
      w1[d] = lambda;
      w0[d] = f32(1 - lambda);
    }
    return { i0, i1, w0, w1 };
  };
  const ys = axis(inH, outHeight);
  const xs = axis(inW, outWidth);
  const out = new Float32Array(outHeight * outWidth);
  for (let y = 0; y < outHeight; y++) {
    const r0 = (ys.i0[y] as number) * inW;
    const r1 = (ys.i1[y] as number) * inW;
    const h0 = ys.w0[y] as number;
    const h1 = ys.w1[y] as number;
    for (let x = 0; x < outWidth; x++) {
      const a = xs.i0[x] as number;
      const b = xs.i1[x] as number;
      const wa = xs.w0[x] as number;
      const wb = xs.w1[x] as number;
      const t0 = f32((data[r0 + a] as number) * wa + f32((data[r0 + b] as number) * wb));
      const t1 = f32((data[r1 + a] as number) * wa + f32((data[r1 + b] as number) * wb));
      out[y * outWidth + x] = f32(t0 * h0 + f32(t1 * h1));
    }
  }
  return { width: outWidth, height: outHeight, data: out };
}

/** The graph's map over the input, placed back over the original image (ViewGeometry.to_original). */
export function mapToOriginal(inputMap: FloatMap, geometry: ViewGeometry): FloatMap {
  const c = geometry.crop;
  if (c === undefined) return resizeMap(inputMap, geometry.height, geometry.width);
  let low = Infinity;
  for (const v of inputMap.data) if (v < low) low = v;
  const frame = new Float32Array(c.resizedHeight * c.resizedWidth).fill(low);
  for (let y = 0; y < c.size; y++) {
    frame.set(inputMap.data.subarray(y * c.size, (y + 1) * c.size), (y + c.top) * c.resizedWidth + c.left);
  }
  return resizeMap({ width: c.resizedWidth, height: c.resizedHeight, data: frame }, geometry.height, geometry.width);
}

/** The share of original pixels the expert saw (pixel centres inside the crop window); 1 for whole-frame modes. */
export function inspectedFraction(geometry: ViewGeometry): number {
  const c = geometry.crop;
  if (c === undefined) return 1;
  const sy = c.resizedHeight / geometry.height;
  const sx = c.resizedWidth / geometry.width;
  let rows = 0;
  for (let y = 0; y < geometry.height; y++) {
    const v = (y + 0.5) * sy;
    if (v >= c.top && v < c.top + c.size) rows++;
  }
  let cols = 0;
  for (let x = 0; x < geometry.width; x++) {
    const v = (x + 0.5) * sx;
    if (v >= c.left && v < c.left + c.size) cols++;
  }
  return (rows * cols) / (geometry.height * geometry.width);
}

/** numpy's quantile (linear method) of a float32 array, which numpy computes in float32. */
function quantile32(data: Float32Array, q: number): number {
  const sorted = Float32Array.from(data).sort();
  const position = q * (sorted.length - 1);
  const lo = Math.floor(position);
  const hi = Math.min(lo + 1, sorted.length - 1);
  const t = position - lo;
  const a = sorted[lo] as number;
  const b = sorted[hi] as number;
  const diff = f32(b - a);
  return t >= 0.5 ? f32(b - f32(diff * f32(1 - f32(t)))) : f32(a + f32(diff * f32(t)));
}

/** numpy's float32 sum: pairwise, blocks of 8 accumulators below 128 elements, every step rounded to float32. */
function pairwiseSum32(data: Float32Array, start: number, n: number): number {
  if (n < 8) {
    let sum = 0;
    for (let i = start; i < start + n; i++) sum = f32(sum + (data[i] as number));
    return sum;
  }
  if (n <= 128) {
    const r = Array.from(data.subarray(start, start + 8));
    let i = 8;
    for (; i < n - (n % 8); i += 8) {
      for (let j = 0; j < 8; j++) r[j] = f32((r[j] as number) + (data[start + i + j] as number));
    }
    const [r0, r1, r2, r3, r4, r5, r6, r7] = r as [number, number, number, number, number, number, number, number];
    let sum = f32(f32(f32(r0 + r1) + f32(r2 + r3)) + f32(f32(r4 + r5) + f32(r6 + r7)));
    for (; i < n; i++) sum = f32(sum + (data[start + i] as number));
    return sum;
  }
  let half = Math.floor(n / 2);
  half -= half % 8;
  return f32(pairwiseSum32(data, start, half) + pairwiseSum32(data, start + half, n - half));
}

/** What the sidecar says about deciding and drawing, besides the preprocessing. */
export interface DecisionParams {
  category: string;
  tau: number;
  sMax: number;
  /** The region rule the model was fitted with (`paper` when it has no map calibration). */
  regionRule: string;
  /** The pixel threshold (map calibration), or null for an uncalibrated model. */
  mapTau: number | null;
  /** The colour scale [low, high]; low is the calibrated rule's baseline. */
  colourScale: [number, number];
  /** Whether the model has a map calibration (without one the boxes use the paper's rule). */
  calibrated: boolean;
  preprocess: string;
  /**
   * The close-call margin (sidecar `verdict.near_margin`, schema 3): `|score - tau| < nearMargin` is a close
   * call. Absent or null: unknown (an export before schema 3, or a model without two training scores).
   */
  nearMargin?: number | null;
  /**
   * The coverage (sidecar `verdict.coverage`, schema 3): an image with a share `>= limit` of its patch grid's
   * finite cells beyond `radius` is unrecognised. Absent or null: unknown (before schema 3, or under 10 images).
   */
  coverage?: { radius: number; limit: number } | null;
}

export interface BoxRecord extends Box {
  rank: number;
  /**
   * The number a person reads for the box (regions.Box.strength), on the image score's scale: its
   * `patch_score`, as the torch path shows; without a patch grid (an export before schema 3), the region's
   * map peak (`score`) times `tau / map_tau`.
   */
  strength: number;
}

/** Map units -> the image score's scale (calibration.score_factor): 1 where either is not positive. */
export function scoreFactor(mapTau: number, tau: number): number {
  return mapTau > 0 && tau > 0 ? tau / mapTau : 1.0;
}

/** The expert verdict as eagle_iad.verdict.ExpertVerdict.to_dict writes it (a type alias: it is a JSON object). */
export type ExpertVerdictRecord = {
  image: string;
  category: string;
  score: number;
  tau: number;
  s_max: number;
  decision: "anomalous" | "normal" | "unrecognised";
  in_band: boolean;
  boxes: BoxRecord[];
  width: number;
  height: number;
  pictures: Record<string, string>;
  candidates: BoxRecord[];
  region_rule: string;
  map: Record<string, unknown>;
  /** Always null here: an export's graph gives scores and maps, not the nearest bank rows (nor pictures). */
  reference: null;
  /** Null where the export does not say (before schema 3; see DecisionParams), as Python's runtime says. */
  near_threshold: boolean | null;
  foreign_share: number | null;
  unrecognised: boolean | null;
};

/** The share of a patch grid's finite cells beyond the coverage radius (expert/coverage.py `Coverage.share`). */
export function foreignShare(patches: Float32Array, radius: number): number | null {
  let finite = 0;
  let beyond = 0;
  for (const v of patches) {
    if (!Number.isFinite(v)) continue;
    finite += 1;
    if (v > radius) beyond += 1;
  }
  return finite === 0 ? null : beyond / finite;
}

/**
 * The graph's stitched patch grid drawn cell by cell over the original image (verdict.patch_map): what a box's
 * `patch_score` reads, so the box over the image's highest-scoring patch carries the image's score as under
 * torch. The grid is `inputHeight/8 x inputWidth/8` (the graph's `patches` output for one image); cells no tile
 * reached take the smallest finite value. `null` when no cell is finite.
 */
export function patchMap(patches: Float32Array, geometry: ViewGeometry): FloatMap | null {
  const rows = Math.floor(geometry.inputHeight / FEATURE_STRIDE);
  const cols = Math.floor(geometry.inputWidth / FEATURE_STRIDE);
  if (rows * cols !== patches.length) {
    throw new EagleLocalError(`the patch grid has ${patches.length} cells, expected ${rows}x${cols} for a ${geometry.inputHeight}x${geometry.inputWidth} input`);
  }
  let low = Infinity;
  for (const v of patches) if (Number.isFinite(v) && v < low) low = v;
  if (low === Infinity) return null;
  const { inputHeight: height, inputWidth: width } = geometry;
  // numpy's repeat by ceil(size / cells), then cut to the input: cell (y, x) covers rows y*ry.., columns x*rx..
  const ry = Math.ceil(height / rows);
  const rx = Math.ceil(width / cols);
  const cells = new Float32Array(height * width);
  for (let y = 0; y < height; y++) {
    const row = Math.floor(y / ry) * cols;
    for (let x = 0; x < width; x++) {
      const v = patches[row + Math.floor(x / rx)] as number;
      cells[y * width + x] = Number.isFinite(v) ? v : low;
    }
  }
  return mapToOriginal({ width, height, data: cells }, geometry);
}

/**
 * The verdict for one image from its score and its map in original pixels (verdict.make_verdict). `patches`
 * (the graph's patch grid, schema 3) gives the boxes their patch scores and the coverage its share.
 */
export function makeVerdict(
  name: string,
  score: number,
  originalMap: FloatMap,
  geometry: ViewGeometry,
  params: DecisionParams,
  patches: Float32Array | null = null,
): ExpertVerdictRecord {
  const rule = params.calibrated ? params.regionRule : "paper";
  const mapTau = params.calibrated ? params.mapTau : null;
  const baseline = params.calibrated ? params.colourScale[0] : null;
  const cellFraction = Math.min(0.001, (FEATURE_STRIDE / geometry.inputHeight) * (FEATURE_STRIDE / geometry.inputWidth));
  const found = findBoxes(originalMap, rule, mapTau, baseline, 3, cellFraction, patches === null ? null : patchMap(patches, geometry));
  const anomalous = score >= params.tau;
  const mapTauRecorded = params.mapTau ?? params.tau;
  const factor = scoreFactor(mapTauRecorded, params.tau);
  // The keys in the order verdict.ExpertVerdict.to_dict writes them: the box's, then rank, then strength.
  const ranked = (boxes: Box[]): BoxRecord[] =>
    boxes.map((box, i) => ({ ...box, rank: i + 1, strength: box.patch_score ?? box.score * factor }));
  const values = Float32Array.from(originalMap.data);
  let min = Infinity;
  let max = -Infinity;
  for (const v of values) {
    if (v < min) min = v;
    if (v > max) max = v;
  }
  const inspected = inspectedFraction(geometry);
  const coverage = params.coverage ?? null;
  const share = coverage === null || patches === null ? null : foreignShare(patches, coverage.radius);
  const unrecognised = coverage === null || share === null ? null : share >= coverage.limit;
  const margin = params.nearMargin ?? null;
  const near = margin === null || !Number.isFinite(score) ? null : Math.abs(score - params.tau) < margin;
  const decided = unrecognised ? "unrecognised" : anomalous ? "anomalous" : "normal";
  return {
    image: name,
    category: params.category,
    score,
    tau: params.tau,
    s_max: params.sMax,
    decision: decided,
    // not a defect of this product: no band, no box around everything (verdict.make_verdict)
    in_band: !unrecognised && params.tau <= score && score < params.sMax,
    boxes: decided === "anomalous" ? ranked(found.boxes) : [],
    width: geometry.width,
    height: geometry.height,
    pictures: {},
    candidates: decided === "normal" ? ranked(found.boxes) : [],
    region_rule: rule,
    map: {
      min,
      max,
      // The statistics of numpy's float32 reductions (pairwise sum; quantile in float32), to the bit.
      mean: f32(pairwiseSum32(values, 0, values.length) / values.length),
      p99: quantile32(values, 0.99),
      map_tau: mapTauRecorded,
      colour_scale: params.colourScale,
      inspected_fraction: inspected,
      preprocess: params.preprocess,
      input: [geometry.inputHeight, geometry.inputWidth],
      whole_frame: geometry.crop === undefined,
      region_threshold: found.threshold,
    },
    reference: null,
    near_threshold: unrecognised ? false : near,
    foreign_share: share,
    unrecognised,
  };
}
