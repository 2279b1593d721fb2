/**
 * The image limits of eagle_iad.images (same defaults, same environment variables, same messages), in a
 * module of their own so that both the header check (image.ts) and the JPEG decoder (jpeg.ts) apply them:
 * the decoder checks the frame it actually decodes, whatever a header walk found first.
 */
import { EagleLocalError } from "./errors.js";

/** Limits of eagle_iad.images (same defaults, same environment variables). */
export const DEFAULT_MAX_PIXELS = 40_000_000;
export const MIN_SIDE = 16;
export const DEFAULT_MAX_ASPECT = 32;

function envNumber(name: string, fallback: number, integer: boolean): number {
  const raw = process.env[name];
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (raw.trim() === "" || !Number.isFinite(value) || (integer && !Number.isInteger(value))) {
    throw new EagleLocalError(`${name} must be ${integer ? "an integer" : "a number"}, got ${JSON.stringify(raw)}`);
  }
  return value;
}

/** Refuse, from the header alone, what would cost too much (or make no sense) to decode and resize. */
export function checkSize(name: string, width: number, height: number): void {
  const limit = envNumber("EAGLE_MAX_PIXELS", DEFAULT_MAX_PIXELS, true);
  if (width * height > limit) {
    throw new EagleLocalError(
      `${name}: ${width}x${height} = ${((width * height) / 1e6).toFixed(1)} megapixels exceeds the limit of ` +
        `${(limit / 1e6).toFixed(1)} megapixels (set EAGLE_MAX_PIXELS to change it)`,
    );
  }
  if (Math.min(width, height) < MIN_SIDE) {
    throw new EagleLocalError(`${name}: ${width}x${height} is too small; each side must be at least ${MIN_SIDE} px`);
  }
  const aspect = Math.max(width, height) / Math.min(width, height);
  const maxAspect = envNumber("EAGLE_MAX_ASPECT", DEFAULT_MAX_ASPECT, false);
  if (aspect > maxAspect) {
    throw new EagleLocalError(
      `${name}: ${width}x${height} is too elongated (aspect ratio ${Math.round(aspect)}:1 exceeds the limit of ${maxAspect}:1; ` +
        "set EAGLE_MAX_ASPECT to change it)",
    );
  }
}
