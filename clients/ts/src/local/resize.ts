/**
 * Pillow's uint8 bilinear resize (`Image.resize(size, Resampling.BILINEAR)`), byte for byte.
 *
 * The exported graph takes the image already resized on the host, so this must give exactly the
 * bytes Python feeds it, or scores drift. The algorithm is Pillow's separable convolution
 * (libImaging/Resample.c): for each output pixel a triangle filter whose support grows with the
 * reduction factor (antialiasing when shrinking), weights normalised to sum 1, then turned into
 * fixed-point integers with 22 fractional bits; a horizontal pass over the rows the vertical pass
 * needs, then a vertical pass, each rounding (+half) and clipping to 0..255.
 */
import type { RgbImage } from "./image.js";

const PRECISION_BITS = 32 - 8 - 2;
const HALF = 1 << (PRECISION_BITS - 1);

interface Coefficients {
  /** Taps per output pixel (the row stride of `weights`). */
  ksize: number;
  /** First input index and number of taps per output pixel. */
  bounds: Int32Array;
  /** Fixed-point weights, `ksize` per output pixel. */
  weights: Int32Array;
}

function triangle(x: number): number {
  const a = x < 0 ? -x : x;
  return a < 1 ? 1 - a : 0;
}

/** Pillow's precompute_coeffs + normalize_coeffs_8bpc for the box [0, inSize) (float box, double maths). */
function coefficients(inSize: number, outSize: number): Coefficients {
  const scale = inSize / outSize;
  const filterscale = scale < 1 ? 1 : scale;
  const support = 1.0 * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const bounds = new Int32Array(outSize * 2);
  const weights = new Int32Array(outSize * ksize);
  const inv = 1.0 / filterscale;
  const k = new Float64Array(ksize);
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    let ww = 0;
    // C's (int) cast truncates toward zero.
    const xmin = Math.max(0, Math.trunc(center - support + 0.5));
    const xmax = Math.min(inSize, Math.trunc(center + support + 0.5)) - xmin;
    for (let x = 0; x < xmax; x++) {
      const w = triangle((x + xmin - center + 0.5) * inv);
      k[x] = w;
      ww += w;
    }
    for (let x = 0; x < ksize; x++) {
      let value = x < xmax ? k[x] as number : 0;
      if (x < xmax && ww !== 0) value /= ww;
      weights[xx * ksize + x] = Math.trunc(value < 0 ? -0.5 + value * (1 << PRECISION_BITS) : 0.5 + value * (1 << PRECISION_BITS));
    }
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = xmax;
  }
  return { ksize, bounds, weights };
}

function clip8(sum: number): number {
  const v = sum >> PRECISION_BITS;
  return v < 0 ? 0 : v > 255 ? 255 : v;
}

/** Resize 8-bit RGB to `outWidth x outHeight` exactly as Pillow's BILINEAR does. */
export function resizeBilinear(image: RgbImage, outWidth: number, outHeight: number): RgbImage {
  const { width, height, data } = image;
  if (outWidth === width && outHeight === height) return { width, height, data: data.slice() };
  const vert = coefficients(height, outHeight);
  // Rows of the source the vertical pass reads: the horizontal pass only computes those.
  const first = vert.bounds[0] as number;
  const last = (vert.bounds[outHeight * 2 - 2] as number) + (vert.bounds[outHeight * 2 - 1] as number);
  let rows = data;
  let rowOffset = 0;
  if (outWidth !== width) {
    const horiz = coefficients(width, outWidth);
    const rowCount = last - first;
    rowOffset = first;
    rows = new Uint8Array(rowCount * outWidth * 3);
    for (let y = 0; y < rowCount; y++) {
      const inRow = (y + first) * width * 3;
      const outRow = y * outWidth * 3;
      for (let xx = 0; xx < outWidth; xx++) {
        const xmin = horiz.bounds[xx * 2] as number;
        const xmax = horiz.bounds[xx * 2 + 1] as number;
        const base = xx * horiz.ksize;
        let s0 = HALF;
        let s1 = HALF;
        let s2 = HALF;
        for (let x = 0; x < xmax; x++) {
          const w = horiz.weights[base + x] as number;
          const p = inRow + (x + xmin) * 3;
          s0 += (data[p] as number) * w;
          s1 += (data[p + 1] as number) * w;
          s2 += (data[p + 2] as number) * w;
        }
        rows[outRow + xx * 3] = clip8(s0);
        rows[outRow + xx * 3 + 1] = clip8(s1);
        rows[outRow + xx * 3 + 2] = clip8(s2);
      }
    }
  }
  if (outHeight === height) return { width: outWidth, height: outHeight, data: rows };
  const out = new Uint8Array(outWidth * outHeight * 3);
  const stride = outWidth * 3;
  for (let yy = 0; yy < outHeight; yy++) {
    const ymin = (vert.bounds[yy * 2] as number) - rowOffset;
    const ymax = vert.bounds[yy * 2 + 1] as number;
    const base = yy * vert.ksize;
    for (let i = 0; i < stride; i++) {
      let s = HALF;
      for (let y = 0; y < ymax; y++) s += (rows[(y + ymin) * stride + i] as number) * (vert.weights[base + y] as number);
      out[yy * stride + i] = clip8(s);
    }
  }
  return { width: outWidth, height: outHeight, data: out };
}
