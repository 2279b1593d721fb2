/**
 * Image decoding for the local runtime: PNG and JPEG to 8-bit RGB the way the Python side
 * (eagle_iad.images.load_rgb, i.e. Pillow's `convert("RGB")`) does it, without Python.
 *
 * Both give the very bytes Python sees: PNG through pngjs, then Pillow's own rules for every colour type and
 * bit depth; JPEG through ./jpeg.ts, which does what libjpeg-turbo does under Pillow (an approximate JPEG
 * decoder is not good enough: the exposure gain of a dark product magnifies a few levels into changed
 * verdicts).
 */
import { PNG } from "pngjs";

import { EagleLocalError } from "./errors.js";
import { decodeJpegExact } from "./jpeg.js";
import { checkSize } from "./limits.js";

/** An 8-bit RGB image, row-major, 3 bytes a pixel. */
export interface RgbImage {
  width: number;
  height: number;
  data: Uint8Array;
}

export { DEFAULT_MAX_ASPECT, DEFAULT_MAX_PIXELS, MIN_SIDE, checkSize } from "./limits.js";

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/**
 * The PNG without its tRNS chunk for grey and RGB images. pngjs paints the transparent colour black
 * (0,0,0,0), while Pillow's convert("RGB") keeps the stored colour; alpha is dropped anyway. Palette
 * images keep tRNS (it only adds alpha to the palette there).
 */
function withoutColourKey(data: Buffer, colourType: number): Buffer {
  if (colourType !== 0 && colourType !== 2) return data;
  const parts: Buffer[] = [data.subarray(0, 8)];
  let pos = 8;
  while (pos + 8 <= data.length) {
    const length = data.readUInt32BE(pos);
    const end = pos + 12 + length;
    const type = data.toString("latin1", pos + 4, pos + 8);
    if (type !== "tRNS") parts.push(data.subarray(pos, Math.min(end, data.length)));
    if (type === "IEND" || end > data.length) break;
    pos = end;
  }
  return Buffer.concat(parts);
}

/** sBIT entries read per colour type (grey, RGB, palette, grey + alpha, RGBA); alpha's, if any, follows. */
const SBIT_COLOURS: Record<number, number> = { 0: 1, 2: 3, 3: 3, 4: 1, 6: 3 };

/**
 * The sBIT chunk's largest colour entry (the chunks before the image data), null without one or with an
 * entry out of 1..depth (images.py `png_depth`).
 */
export function pngSignificantBits(data: Buffer, depth: number, colourType: number): number | null {
  let significant: number | null = null;
  let pos = 8;
  while (pos + 8 <= data.length) {
    const length = data.readUInt32BE(pos);
    const type = data.toString("latin1", pos + 4, pos + 8);
    if (type === "IDAT" || type === "IEND") break;
    const channels = SBIT_COLOURS[colourType] ?? 0;
    const body = data.subarray(pos + 8, Math.min(pos + 8 + length, data.length));
    if (type === "sBIT" && channels > 0 && body.length >= channels) {
      const entries = [...body.subarray(0, channels)];
      significant = entries.every((v) => v >= 1 && v <= depth) ? Math.max(...entries) : null;
    }
    pos += 12 + length;
  }
  return significant;
}

/**
 * Whether 16-bit grey samples (every 4th of pngjs's RGBA) hold `significant`-bit data in their low bits:
 * all below 2^significant and not all multiples of 2^(16 - significant) (images.py `low_aligned`).
 */
function lowAligned(src: ArrayLike<number>, pixels: number, significant: number | null): boolean {
  if (significant === null || significant < 1 || significant >= 16 || pixels === 0) return false;
  const top = (1 << significant) - 1;
  const step = 1 << (16 - significant);
  let offStep = false;
  for (let i = 0; i < pixels; i++) {
    const v = src[i * 4] as number;
    if (v > top) return false;
    if (v % step !== 0) offStep = true;
  }
  return offStep;
}

function decodePng(data: Buffer, name: string): RgbImage {
  if (data.length < 33 || data.toString("latin1", 12, 16) !== "IHDR") {
    throw new EagleLocalError(`${name}: cannot be read as an image (PNG header is truncated)`);
  }
  const width = data.readUInt32BE(16);
  const height = data.readUInt32BE(20);
  const depth = data[24] as number;
  const colourType = data[25] as number;
  checkSize(name, width, height);
  let png: { width: number; height: number; data: ArrayLike<number> };
  try {
    png = PNG.sync.read(withoutColourKey(data, colourType), { skipRescale: true });
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new EagleLocalError(`${name}: image data is truncated or corrupt (${reason})`);
  }
  const pixels = width * height;
  const src = png.data;
  const out = new Uint8Array(pixels * 3);
  // pngjs gives RGBA with grey replicated and palettes applied, at the file's own bit depth.
  let convert: (v: number) => number;
  if (colourType === 3 || depth === 8) {
    convert = (v) => v;
  } else if (depth === 16 && colourType === 0) {
    // Pillow opens 16-bit grey as I;16; load_rgb scales it: rint(v / full * 255) (never a tie), full 65535 or,
    // where sBIT says the data sits in the low bits, 2^significant - 1.
    const significant = pngSignificantBits(data, depth, colourType);
    const full = lowAligned(src, pixels, significant) ? (1 << (significant as number)) - 1 : 65535;
    convert = (v) => Math.round((v / full) * 255);
  } else if (depth === 16) {
    // 16-bit RGB, RGBA and grey+alpha: Pillow's unpackers keep the high byte. Where sBIT says fewer bits and
    // every high byte fits in them, the data may sit in the low bits: refused, as load_rgb refuses it.
    const significant = pngSignificantBits(data, depth, colourType);
    if (significant !== null && significant < 16) {
      const limit = ((1 << significant) - 1) >> 8;
      const channels = colourType === 4 ? 1 : 3;
      let high = 0;
      for (let i = 0; i < pixels && high <= limit; i++) {
        for (let c = 0; c < channels; c++) high = Math.max(high, (src[i * 4 + c] as number) >> 8);
      }
      if (high <= limit) {
        throw new EagleLocalError(
          `${name}: a 16-bit colour PNG whose sBIT chunk declares ${significant} significant bits, and whose values fit in ` +
            `them: eagle reads 16-bit colour by each sample's high byte, which would leave it ` +
            `${Math.max(1, 1 << Math.max(significant - 8, 0))} levels of 256; save it as 8-bit, or as 16-bit greyscale`,
        );
      }
    }
    convert = (v) => v >> 8;
  } else {
    // 1-, 2- and 4-bit grey: Pillow's unpackers spread the levels over 0..255 (x255, x85, x17).
    const scale = 255 / ((1 << depth) - 1);
    convert = (v) => v * scale;
  }
  for (let i = 0; i < pixels; i++) {
    out[i * 3] = convert(src[i * 4] as number);
    out[i * 3 + 1] = convert(src[i * 4 + 1] as number);
    out[i * 3 + 2] = convert(src[i * 4 + 2] as number);
  }
  return applyOrientation({ width, height, data: out }, pngOrientation(data));
}

/** Markers Pillow's JPEG header parser (JpegImagePlugin.MARKER) knows but reads no length for. */
function pillowStandalone(marker: number): boolean {
  return marker === 0xc8 || (marker >= 0xd0 && marker <= 0xd9) || (marker >= 0xf0 && marker <= 0xfd);
}

/** Markers whose segment Pillow's header parser reads as a frame header (its SOF handler, DHP included). */
function pillowFrame(marker: number): boolean {
  return (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) || marker === 0xde;
}

/**
 * The segments of a JPEG's header as Pillow's parser (JpegImageFile._open) walks them, up to and including
 * the first SOS: stray bytes, fill bytes and escaped 0xFF skipped, standalone markers (SOI, RSTn, ...) read
 * without a length, every other marker's segment skipped by its length. A marker Pillow does not know (TEM,
 * 0xFF02..0xFFBF) makes Pillow refuse the file as "not a recognised image format", and so does this.
 */
function* pillowSegments(data: Buffer, name: string): Generator<{ marker: number; at: number; length: number }> {
  let pos = 2;
  while (pos + 2 <= data.length) {
    if (data[pos] !== 0xff) {
      pos++; // a stray byte between segments: Pillow (and libjpeg) skip it
      continue;
    }
    const marker = data[pos + 1] as number;
    if (marker === 0xff || marker === 0x00) {
      pos += marker === 0xff ? 1 : 2; // a fill byte, or an escaped 0xFF outside a scan
      continue;
    }
    if (pillowStandalone(marker)) {
      pos += 2;
      continue;
    }
    if (marker < 0xc0) {
      const hex = marker.toString(16).toUpperCase().padStart(2, "0");
      throw new EagleLocalError(`${name}: not a recognised image format (JPEG marker 0xFF${hex} at byte ${pos}, which Pillow does not read)`);
    }
    if (pos + 4 > data.length) return;
    const length = data.readUInt16BE(pos + 2);
    yield { marker, at: pos, length };
    if (marker === 0xda) return; // start of scan: Pillow's header ends here
    pos += 2 + Math.max(length, 2); // a length under 2 skips nothing (Pillow's _safe_read, libjpeg's skip_variable)
  }
}

/**
 * The JPEG's frame size as Pillow's header parser finds it (the last frame header before the first SOS),
 * without decoding the scan, so that the size checked here is the size Python checks. The decoder checks
 * the frame it decodes again (jpeg.ts): a header walk that disagrees with it cannot let a larger frame
 * through.
 */
function jpegSize(data: Buffer, name: string): [number, number] {
  let size: [number, number] | undefined;
  for (const { marker, at } of pillowSegments(data, name)) {
    if (pillowFrame(marker) && at + 9 <= data.length) size = [data.readUInt16BE(at + 7), data.readUInt16BE(at + 5)];
  }
  if (size) return size;
  throw new EagleLocalError(`${name}: cannot be read as an image (JPEG has no frame header)`);
}

/** The orientation tag (1..8) of an EXIF TIFF block starting at `tiff`; 1 when absent or unreadable. */
function tiffOrientation(data: Buffer, tiff: number): number {
  const little = data.toString("latin1", tiff, tiff + 2) === "II";
  const u16 = (at: number): number => (little ? data.readUInt16LE(at) : data.readUInt16BE(at));
  const u32 = (at: number): number => (little ? data.readUInt32LE(at) : data.readUInt32BE(at));
  try {
    const ifd = tiff + u32(tiff + 4);
    const count = u16(ifd);
    for (let i = 0; i < count; i++) {
      const entry = ifd + 2 + i * 12;
      if (u16(entry) === 0x0112) {
        const value = u16(entry + 8);
        return value >= 1 && value <= 8 ? value : 1;
      }
    }
  } catch {
    return 1; // a broken EXIF block: Pillow ignores it too
  }
  return 1;
}

/** The EXIF orientation (1..8) of a JPEG (its first APP1 "Exif" before the first SOS), 1 when it has none. */
export function jpegOrientation(data: Buffer): number {
  try {
    for (const { marker, at } of pillowSegments(data, "")) {
      if (marker === 0xe1 && data.toString("latin1", at + 4, at + 10) === "Exif\0\0") return tiffOrientation(data, at + 10);
    }
  } catch {
    return 1; // a header Pillow would not read at all: decodeImage refuses it before asking
  }
  return 1;
}

/** The EXIF orientation (1..8) of a PNG (its eXIf chunk, which Pillow's exif_transpose reads too), 1 when none. */
export function pngOrientation(data: Buffer): number {
  let pos = 8;
  while (pos + 8 <= data.length) {
    const length = data.readUInt32BE(pos);
    const type = data.toString("latin1", pos + 4, pos + 8);
    if (type === "eXIf" && pos + 8 + length <= data.length) {
      const start = data.toString("latin1", pos + 8, pos + 14) === "Exif\0\0" ? pos + 14 : pos + 8;
      return tiffOrientation(data, start);
    }
    if (type === "IDAT" || type === "IEND") break; // eXIf must come before the image data
    pos += 12 + length;
  }
  return 1;
}

/** Apply an EXIF orientation like Pillow's ImageOps.exif_transpose. */
export function applyOrientation(image: RgbImage, orientation: number): RgbImage {
  if (orientation <= 1 || orientation > 8) return image;
  const { width: w, height: h, data } = image;
  const swap = orientation >= 5;
  const outW = swap ? h : w;
  const outH = swap ? w : h;
  const out = new Uint8Array(data.length);
  for (let y = 0; y < outH; y++) {
    for (let x = 0; x < outW; x++) {
      let sx: number;
      let sy: number;
      switch (orientation) {
        case 2: [sx, sy] = [w - 1 - x, y]; break; // flip left-right
        case 3: [sx, sy] = [w - 1 - x, h - 1 - y]; break; // rotate 180
        case 4: [sx, sy] = [x, h - 1 - y]; break; // flip top-bottom
        case 5: [sx, sy] = [y, x]; break; // transpose
        case 6: [sx, sy] = [y, h - 1 - x]; break; // rotate 90 clockwise
        case 7: [sx, sy] = [w - 1 - y, h - 1 - x]; break; // transverse
        default: [sx, sy] = [w - 1 - y, x]; break; // 8: rotate 90 counter-clockwise
      }
      const s = (sy * w + sx) * 3;
      const d = (y * outW + x) * 3;
      out[d] = data[s] as number;
      out[d + 1] = data[s + 1] as number;
      out[d + 2] = data[s + 2] as number;
    }
  }
  return { width: outW, height: outH, data: out };
}

function decodeJpeg(data: Buffer, name: string): RgbImage {
  const [width, height] = jpegSize(data, name);
  checkSize(name, width, height);
  const decoded = decodeJpegExact(data, name);
  return applyOrientation({ width: decoded.width, height: decoded.height, data: decoded.data }, jpegOrientation(data));
}

/**
 * Decode a PNG or JPEG file's bytes to 8-bit RGB; anything else, or a broken file, is an
 * EagleLocalError naming the file and the problem (the messages of eagle_iad.images).
 */
export function decodeImage(bytes: Uint8Array, name: string): RgbImage {
  const data = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (data.length === 0) throw new EagleLocalError(`${name}: file is empty (0 bytes)`);
  if (data.length >= 8 && data.subarray(0, 8).equals(PNG_SIGNATURE)) return decodePng(data, name);
  if (data.length >= 3 && data[0] === 0xff && data[1] === 0xd8 && data[2] === 0xff) return decodeJpeg(data, name);
  throw new EagleLocalError(`${name}: not a recognised image format (the local runtime reads PNG and JPEG)`);
}
