/**
 * What an input image is encoded as, and the warning a verdict on an input encoded unlike the model's
 * training images carries: eagle_iad.images `image_encoding` / `jpeg_quality` and
 * eagle_iad.expert.encodings `input_warning`, ported (docs/METHOD.md, "Exposure").
 *
 * Why: a JPEG's compression error is not in a lossless training image (nor a quality-75 JPEG's in a
 * quality-95 one), and on a dark, low-contrast product it can score as a defect. The export's sidecar
 * carries the model's training encodings (`verdict.encodings`); the header of each input says its own.
 *
 * Only the header is read (nothing is decoded), as Pillow reads it: a JPEG's markers up to its first scan,
 * a PNG's signature. The local runtime decodes PNG and JPEG alone (image.ts), so those are the formats named
 * here; anything else, or a header Pillow would not open, is unknown (`null`) and warns about nothing, as
 * Python's `input_warnings` says nothing where the header read fails.
 */

import { type ExposureRange, exposureWarning } from "./lighting.js";

/** Every lossless format Pillow reads (PNG here): no compression artefacts in the pixels. */
export const LOSSLESS = "lossless";

/** How far (in quality points) a JPEG's quality may lie outside the training JPEGs' before a verdict warns. */
export const QUALITY_MARGIN = 2;

/** Pillow's JpegImagePlugin.get_sampling codes (0, 1, 2) by component sampling factors, as images.py names them. */
const SAMPLINGS: Record<string, string> = { "1,1,1,1,1,1": "4:4:4", "2,1,1,1,1,1": "4:2:2", "2,2,1,1,1,1": "4:2:0" };

/** The IJG (libjpeg) luminance quantization table at quality 50 (images.py `_IJG_LUMINANCE`). */
const IJG_LUMINANCE = [
  16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
  14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
  18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
  49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
];

/** The luminance table libjpeg writes at each quality 1..100 (row q - 1), sorted: libjpeg's own scaling. */
const IJG_TABLES: number[][] = Array.from({ length: 100 }, (_, i) => {
  const quality = i + 1;
  const scale = quality < 50 ? Math.floor(5000 / quality) : 200 - 2 * quality;
  return IJG_LUMINANCE.map((v) => Math.min(255, Math.max(1, Math.floor((v * scale + 50) / 100)))).sort((a, b) => a - b);
});

/**
 * The quality (1-100) whose libjpeg luminance table is nearest (L1, both sorted) to `table`; ties to the lower
 * quality (images.py `jpeg_quality`).
 */
export function nearestQuality(table: ArrayLike<number>): number {
  const found = Array.from(table).sort((a, b) => a - b);
  let best = 0;
  let bestDistance = Infinity;
  IJG_TABLES.forEach((row, i) => {
    let distance = 0;
    for (let k = 0; k < 64; k++) distance += Math.abs((row[k] as number) - (found[k] as number));
    if (distance < bestDistance) {
      bestDistance = distance;
      best = i;
    }
  });
  return best + 1;
}

/** The markers Pillow's JpegImagePlugin knows (MARKER): a frame header (SOF), a segment it reads past, or none. */
function markerKind(marker: number): "sof" | "dqt" | "segment" | "bare" | null {
  if (marker === 0xffdb) return "dqt";
  if ((marker >= 0xffc0 && marker <= 0xffcf && marker !== 0xffc4 && marker !== 0xffc8 && marker !== 0xffcc) || marker === 0xffde) return "sof";
  if (marker === 0xffc4 || marker === 0xffcc || marker === 0xffda || (marker >= 0xffdc && marker <= 0xffdf) || (marker >= 0xffe0 && marker <= 0xffef) || marker === 0xfffe) {
    return "segment";
  }
  if (marker === 0xffc8 || (marker >= 0xffd0 && marker <= 0xffd9) || (marker >= 0xfff0 && marker <= 0xfffd)) return "bare";
  return null;
}

/** Thrown inside the JPEG reader where Pillow's would fail: the encoding is then unknown. */
class Unreadable extends Error {}

/**
 * A JPEG's encoding from its markers up to the first scan, read as Pillow's JpegImageFile._open reads them
 * (junk between markers skipped, fill bytes, the last frame header's component count, the first frame
 * header's components); `null` where Pillow would not open it.
 */
function jpegEncoding(data: Uint8Array): string | null {
  let pos = 3;
  const u16 = (at: number): number => {
    if (at + 2 > data.length) throw new Unreadable();
    return ((data[at] as number) << 8) | (data[at + 1] as number);
  };
  /** The segment after a marker's length (Pillow: `_safe_read(fp, length - 2)`), and where the next byte is. */
  const segment = (): Uint8Array => {
    const size = u16(pos) - 2;
    pos += 2;
    if (size <= 0) return new Uint8Array(0);
    if (pos + size > data.length) throw new Unreadable();
    const s = data.subarray(pos, pos + size);
    pos += size;
    return s;
  };
  let layers = 0;
  let width = 0;
  let height = 0;
  const layer: Array<[number, number, number, number]> = []; // (id, h, v, table), every frame header's
  const tables = new Map<number, number[]>();
  try {
    let s: number | null = 0xff; // the byte in hand (Pillow's `s`), null at the end of the data
    const next = (): number | null => (pos < data.length ? (data[pos++] as number) : null);
    while (s !== null) {
      if (s !== 0xff) {
        s = next(); // junk between markers
        continue;
      }
      const second = next();
      if (second === null) break;
      const marker = 0xff00 | second;
      const kind = markerKind(marker);
      if (kind !== null) {
        if (kind === "sof") {
          const f = segment();
          if (f.length < 6) throw new Unreadable();
          [height, width] = [((f[1] as number) << 8) | (f[2] as number), ((f[3] as number) << 8) | (f[4] as number)];
          if (f[0] !== 8) throw new Unreadable(); // Pillow: cannot handle other bit depths
          layers = f[5] as number;
          if (layers !== 1 && layers !== 3 && layers !== 4) throw new Unreadable();
          for (let i = 6; i < f.length; i += 3) {
            if (i + 3 > f.length) throw new Unreadable();
            const sampling = f[i + 1] as number;
            layer.push([f[i] as number, sampling >> 4, sampling & 15, f[i + 2] as number]);
          }
        } else if (kind === "dqt") {
          let q = segment();
          while (q.length > 0) {
            const v = q[0] as number;
            const precision = v >> 4 === 0 ? 1 : 2;
            const size = 1 + precision * 64;
            if (q.length < size) throw new Unreadable();
            const values: number[] = [];
            for (let k = 0; k < 64; k++) {
              values.push(precision === 1 ? (q[1 + k] as number) : ((q[1 + 2 * k] as number) << 8) | (q[2 + 2 * k] as number));
            }
            tables.set(v & 15, values);
            q = q.subarray(size);
          }
        } else if (kind === "segment") {
          segment();
        }
        if (marker === 0xffda) break; // start of scan: the header ends here
        s = next();
      } else if (marker === 0xffff) {
        s = 0xff; // a fill byte: the next byte is the marker's
      } else if (marker === 0xff00) {
        s = next(); // an escaped 0xFF
      } else {
        throw new Unreadable(); // Pillow: no marker found
      }
    }
  } catch (error) {
    if (error instanceof Unreadable) return null;
    throw error;
  }
  if (layers === 0 || width <= 0 || height <= 0) return null; // no frame header: Pillow opens no image
  const first = layer[0];
  const luminance = tables.get(first === undefined ? 0 : first[3]);
  const suffix = luminance === undefined ? "" : ` q${nearestQuality(luminance)}`;
  if (layers === 1) return `jpeg grey${suffix}`;
  if (layers === 4) return `jpeg${suffix}`; // CMYK: Pillow names no sampling
  if (layer.length < 3) return null; // Pillow's get_sampling would fail
  const key = layer
    .slice(0, 3)
    .flatMap(([, h, v]) => [h, v])
    .join(",");
  const sampling = SAMPLINGS[key];
  return sampling === undefined ? `jpeg${suffix}` : `jpeg ${sampling}${suffix}`;
}

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

/**
 * How an image file is encoded, from its header alone (images.py `image_encoding`): `lossless` (PNG),
 * `jpeg 4:2:0 q95` / `jpeg 4:2:2 q90` / `jpeg 4:4:4 q75` / `jpeg grey q95` (its chroma subsampling and its
 * quality, the libjpeg quality whose luminance table is nearest), `jpeg` (a sampling Pillow does not name;
 * no quality where the file has no table). `null`: a format the local runtime does not read, or a header
 * Pillow would not open.
 */
export function imageEncoding(bytes: Uint8Array): string | null {
  if (bytes.length >= 8 && PNG_SIGNATURE.every((b, i) => bytes[i] === b)) return LOSSLESS;
  if (bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) return jpegEncoding(bytes);
  return null;
}

/** `lossless`, `jpeg` or `webp`: what decides whether compression artefacts are in the pixels. */
export function encodingFamily(encoding: string): string {
  const space = encoding.indexOf(" ");
  return space < 0 ? encoding : encoding.slice(0, space);
}

/** The JPEG quality an encoding names (`jpeg 4:2:0 q95` -> 95); `null` where it names none. */
export function encodingQuality(encoding: string): number | null {
  const last = encoding.slice(encoding.lastIndexOf(" ") + 1);
  return /^q[0-9]+$/.test(last) ? Number.parseInt(last.slice(1), 10) : null;
}

/** Where an encoding warning sends its reader for the measured figures (encodings.py `MEASURED`, word for word). */
const MEASURED = "(measured figures: docs/METHOD.md, 'Exposure', 'Inputs encoded otherwise')";

/**
 * The warning for a JPEG whose quality lies outside the training JPEGs' range (more than QUALITY_MARGIN
 * points, either way); `null` if inside, or where its quality or any training JPEG's is unknown.
 */
function qualityWarning(trained: Record<string, number>, encoding: string): string | null {
  const quality = encodingQuality(encoding);
  const family = encodingFamily(encoding);
  const known = Object.keys(trained)
    .filter((e) => encodingFamily(e) === family)
    .map(encodingQuality);
  if (quality === null || known.length === 0 || known.includes(null)) return null;
  const qualities = known as number[];
  const low = Math.min(...qualities);
  const high = Math.max(...qualities);
  if (low - QUALITY_MARGIN <= quality && quality <= high + QUALITY_MARGIN) return null;
  const fitted = low === high ? `quality ${low}` : `qualities ${low} to ${high}`;
  const more = quality < low ? "more" : "less";
  const name = family.toUpperCase();
  return (
    `a ${name} of quality ${quality} (${encoding}) inspected by a model fitted on ${name}s of ${fitted}: it has ${more} ` +
    "compression error than the training images, which can score as defects even a few quality points away; fit on " +
    `images from the line's own camera, saved as it saves them ${MEASURED}`
  );
}

/**
 * A verdict's warning when its input's encoding family is none of the training images' (or, a JPEG, its
 * quality lies outside theirs); `null` otherwise, and where either is unknown (encodings.py `input_warning`).
 */
export function inputWarning(trained: Record<string, number> | null, encoding: string | null): string | null {
  if (trained === null || Object.keys(trained).length === 0 || encoding === null) return null;
  const families = new Set(Object.keys(trained).map(encodingFamily));
  const family = encodingFamily(encoding);
  if (families.has(family)) return qualityWarning(trained, encoding);
  const fitted =
    families.size === 1 && families.has(LOSSLESS) ? "lossless images" : `${[...families].sort().join(" and ")} images`;
  const what = family === LOSSLESS ? "a lossless image" : `a ${family.toUpperCase()} (${encoding})`;
  const effect =
    family !== LOSSLESS
      ? "compression artefacts can score as defects, even at a high quality"
      : "the training images' compression artefacts are missing from it and it can score as unlike them";
  return (
    `${what} inspected by a model fitted on ${fitted}: ${effect}; fit on images from the line's own camera, ` +
    `saved as it saves them ${MEASURED}`
  );
}

/** `grey` where every pixel of a decoded image has R == G == B, else `colour` (images.py `colour_mode`). */
export function colourMode(rgb: { data: ArrayLike<number> }): "grey" | "colour" {
  const data = rgb.data;
  for (let i = 0; i + 2 < data.length; i += 3) {
    if (data[i] !== data[i + 1] || data[i + 1] !== data[i + 2]) return "colour";
  }
  return "grey";
}

/**
 * A verdict's warning when its input is greyscale and no training image was, or colour and none was; `null`
 * otherwise, and where either is unknown (encodings.py `colour_warning`).
 */
export function colourWarning(trained: Record<string, number> | null, mode: string | null): string | null {
  if (trained === null || Object.keys(trained).length === 0 || mode === null || mode in trained) return null;
  if (mode === "grey") {
    return (
      "a greyscale image inspected by a model fitted on colour images: its missing colour can score as a " +
      "defect, a good part's too; inspect images taken in colour, as the training images were, or fit on " +
      "greyscale images (docs/METHOD.md, 'Input', has it measured)"
    );
  }
  return (
    "a colour image inspected by a model fitted on greyscale images: its colour is new to the model and can " +
    "score as a defect; inspect greyscale images, as the training images were, or fit on colour images " +
    "(docs/METHOD.md, 'Input')"
  );
}

/**
 * How many frames the file holds (images.py `frame_count`, Pillow's `n_frames`): an animated PNG's `acTL` chunk
 * (before its image data) gives the animation's frames, and one more where no `fcTL` comes before the image data:
 * the default image is then not part of the animation (the APNG specification), yet it is the picture decoded and
 * inspected, so every animation frame is left out. Any other PNG, and a JPEG, holds one (the local runtime reads
 * those two only). As Pillow, an `acTL` of 0 or more than 2^31 frames, or a second `acTL`, is no animation.
 */
export function frameCount(bytes: Uint8Array): number {
  if (!(bytes.length >= 8 && PNG_SIGNATURE.every((b, i) => bytes[i] === b))) return 1;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let frames: number | null = null;
  let frameBeforeData = false;
  for (let pos = 8; pos + 8 <= bytes.length; ) {
    const length = view.getUint32(pos);
    const type = String.fromCharCode(...bytes.subarray(pos + 4, pos + 8));
    if (type === "IEND") return 1;
    if (type === "IDAT") return frames === null ? 1 : frames + (frameBeforeData ? 0 : 1);
    if (type === "acTL") {
      if (length < 8 || pos + 12 > bytes.length) return 1; // truncated: Pillow refuses the file, counted as one
      if (frames !== null) frames = null;
      else {
        const count = view.getUint32(pos + 8);
        if (count !== 0 && count <= 0x80000000) frames = count;
      }
    }
    if (type === "fcTL") frameBeforeData = true;
    pos += 12 + length;
  }
  return 1;
}

/**
 * What a record warns about its input (pipeline.py `input_warnings`): `null` for nothing, else the encoding's
 * warning, then the colour mode's (where the training colours and the decoded image are given), then the
 * exposure's (where the training images' range and the decoded image are given: lighting.ts), then a file of
 * several frames of which only the first was inspected.
 */
export function inputWarnings(
  trained: Record<string, number> | null,
  bytes: Uint8Array,
  trainColours: Record<string, number> | null = null,
  rgb: { data: ArrayLike<number> } | null = null,
  trainExposure: ExposureRange | null = null,
): string[] | null {
  const warned: string[] = [];
  if (trained !== null) {
    const warning = inputWarning(trained, imageEncoding(bytes));
    if (warning !== null) warned.push(warning);
  }
  if (trainColours !== null && rgb !== null) {
    const warning = colourWarning(trainColours, colourMode(rgb));
    if (warning !== null) warned.push(warning);
  }
  const exposure = exposureWarning(trainExposure, rgb);
  if (exposure !== null) warned.push(exposure);
  const frames = frameCount(bytes);
  if (frames > 1) {
    warned.push(`only the first of the file's ${frames} frames was inspected (an animation or a multi-page file; docs/USAGE.md, 'Images')`);
  }
  return warned.length > 0 ? warned : null;
}

/** A stored `{grey | colour: number of images}` (encodings.py `parse_colours`); a RangeError naming `field`. */
export function parseColours(raw: unknown, field: string): Record<string, number> {
  const colours = parseEncodings(raw, field);
  for (const key of Object.keys(colours)) {
    if (key !== "grey" && key !== "colour") {
      throw new RangeError(`${field} has ${pyRepr(key)}; the colour modes are 'grey' and 'colour'`);
    }
  }
  return colours;
}

/** Python's repr of a parsed JSON value, for messages that read as Python's. */
function pyRepr(value: unknown): string {
  if (value === null || value === undefined) return "None";
  if (value === true) return "True";
  if (value === false) return "False";
  if (typeof value === "string") {
    const quote = value.includes("'") && !value.includes('"') ? '"' : "'";
    return quote + value.replaceAll("\\", "\\\\").replaceAll(quote, `\\${quote}`) + quote;
  }
  if (Array.isArray(value)) return `[${value.map(pyRepr).join(", ")}]`;
  if (typeof value === "object") {
    return `{${Object.entries(value as Record<string, unknown>).map(([k, v]) => `${pyRepr(k)}: ${pyRepr(v)}`).join(", ")}}`;
  }
  return String(value);
}

/** Python's type name of a parsed JSON value. */
function pyType(value: unknown): string {
  if (value === null) return "NoneType";
  if (typeof value === "boolean") return "bool";
  if (typeof value === "number") return Number.isInteger(value) ? "int" : "float";
  if (typeof value === "string") return "str";
  return Array.isArray(value) ? "list" : "dict";
}

/**
 * A stored `{encoding: number of images}` (the sidecar's `verdict.encodings`), each count a whole number >= 1;
 * a RangeError naming `field` otherwise, in the words of encodings.py `parse_encodings` (a hand-edited or
 * corrupt count must not be read as another number).
 */
export function parseEncodings(raw: unknown, field: string): Record<string, number> {
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
    throw new RangeError(`${field} must be an object of counts, not ${pyType(raw)}`);
  }
  const encodings: Record<string, number> = {};
  for (const [key, value] of Object.entries(raw as Record<string, unknown>)) {
    if (typeof value !== "number" || !Number.isInteger(value) || value < 1) {
      throw new RangeError(`${field}[${pyRepr(key)}] must be a whole number >= 1, not ${pyRepr(value)}`);
    }
    encodings[key] = value;
  }
  return encodings;
}
