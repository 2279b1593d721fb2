/**
 * A JPEG decoder that gives the very bytes Pillow's `Image.open(f).convert("RGB")` gives, i.e. what
 * libjpeg-turbo's default decompression does: the "islow" integer IDCT (jidctint.c), libjpeg's range
 * limiting, "fancy" (triangle) chroma upsampling for 4:2:0, 4:2:2 and 4:4:0 (jdsample.c, box replication
 * for other ratios), the fixed-point YCbCr->RGB tables (jdcolor.c), libjpeg's colour-space guess (JFIF,
 * Adobe transform, component ids), and Pillow's CMYK handling (Adobe-inverted, then its own CMYK->RGB).
 *
 * Why not jpeg-js: it upsamples chroma by nearest neighbour and converts colour in floating point, so on a
 * 4:2:0 photograph up to half the pixels differ from Pillow's, by as much as 26 levels at colour edges.
 * The exposure gain of a dark product (about 4.8 on the tire) turns that into score differences of more
 * than 10, i.e. changed verdicts. Decoding the same way removes the difference instead of warning about it.
 *
 * Huffman coding only (baseline, extended and progressive), 8-bit samples: arithmetic-coded, lossless,
 * hierarchical and 12-bit JPEGs are refused with a clear message (Pillow reads the arithmetic ones; they are
 * rare enough that an honest refusal beats an unverified decoder).
 */
import { EagleLocalError } from "./errors.js";
import { checkSize } from "./limits.js";

/** The zigzag order: ZIGZAG[k] is the natural (row-major) index of the k-th coefficient in the stream. */
const ZIGZAG = new Int32Array([
  0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21,
  28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61,
  54, 47, 55, 62, 63,
]);

interface Huffman {
  /** lookup by (length, code): maxcode[l] is the largest code of length l (-1 when none), valptr the first value index. */
  maxcode: Int32Array;
  mincode: Int32Array;
  valptr: Int32Array;
  values: Uint8Array;
  /**
   * Why libjpeg would refuse the table when a scan uses it (jpeg_make_d_derived_tbl: more codes than the
   * code space holds, or a DC symbol over 15), undefined when it is sound. libjpeg checks at use, not at
   * definition, so a broken table that no scan uses is no error.
   */
  problem?: string | undefined;
}

interface Component {
  id: number;
  h: number;
  v: number;
  tq: number;
  /** the quantization table, copied when the component's first scan starts (libjpeg's latch_quant_tables) */
  quant?: Uint16Array | undefined;
  /** downsampled size in samples, and in blocks (libjpeg's downsampled_width, width_in_blocks). */
  width: number;
  height: number;
  blocksWide: number;
  blocksHigh: number;
  /** blocks allocated (whole MCUs): rows of `stride` blocks, each 64 coefficients in natural order. */
  stride: number;
  coefs: Int16Array;
  dcPred: number;
  dcTable?: Huffman | undefined;
  acTable?: Huffman | undefined;
}

interface Frame {
  width: number;
  height: number;
  progressive: boolean;
  components: Component[];
  maxH: number;
  maxV: number;
  mcusWide: number;
  mcusHigh: number;
}

class Truncated extends Error {}

function corrupt(name: string, reason: string): EagleLocalError {
  return new EagleLocalError(`${name}: image data is truncated or corrupt (${reason})`);
}

function buildHuffman(counts: Uint8Array, values: Uint8Array, dc: boolean): Huffman {
  const maxcode = new Int32Array(18).fill(-1);
  const mincode = new Int32Array(17);
  const valptr = new Int32Array(17);
  let problem: string | undefined;
  let code = 0;
  let k = 0;
  for (let length = 1; length <= 16; length++) {
    const n = counts[length - 1] as number;
    if (n > 0) {
      valptr[length] = k;
      mincode[length] = code;
      code += n;
      k += n;
      maxcode[length] = code - 1;
    }
    // no code may be all ones, so the codes of each length must fit in its bits with one to spare
    if (code >= 1 << length) problem ??= `more Huffman codes of ${length} bits than there is room for`;
    code <<= 1;
  }
  if (dc && values.some((v) => v > 15)) problem ??= "a DC Huffman table with a symbol over 15";
  maxcode[17] = 0x7fffffff; // a sentinel: libjpeg stops at 16 bits and reports a bad code
  return { maxcode, mincode, valptr, values, problem };
}

/**
 * The JPEG standard's example Huffman tables (ITU T.81 Annex K.3): 16 code counts, then the symbols, as hex;
 * [DC, AC] for table 0 (luminance) and table 1 (chrominance). libjpeg-turbo decodes a sequential scan that
 * names table 0 or 1 without a DHT defining it with these (Motion-JPEG frames carry none); Pillow therefore
 * reads such files, and so must this decoder.
 */
const STANDARD_TABLES: readonly (readonly [string, string])[] = [
  [
    "00010501010101010100000000000000000102030405060708090a0b",
    "0002010303020403050504040000017d01020300041105122131410613516107227114328191a1082342b1c11552d1f02433627282" +
      "090a161718191a25262728292a3435363738393a434445464748494a535455565758595a636465666768696a737475767778797a" +
      "838485868788898a92939495969798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9bac2c3c4c5c6c7c8c9cad2d3d4d5d6d7d8d9da" +
      "e1e2e3e4e5e6e7e8e9eaf1f2f3f4f5f6f7f8f9fa",
  ],
  [
    "00030101010101010101010000000000000102030405060708090a0b",
    "00020102040403040705040400010277000102031104052131061241510761711322328108144291a1b1c109233352f0156272d1" +
      "0a162434e125f11718191a262728292a35363738393a434445464748494a535455565758595a636465666768696a737475767778" +
      "797a82838485868788898a92939495969798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9bac2c3c4c5c6c7c8c9cad2d3d4d5d6" +
      "d7d8d9dae2e3e4e5e6e7e8e9eaf2f3f4f5f6f7f8f9fa",
  ],
];

function standardTable(id: number, dc: boolean): Huffman {
  const bytes = Buffer.from((STANDARD_TABLES[id] as readonly [string, string])[dc ? 0 : 1], "hex");
  return buildHuffman(bytes.subarray(0, 16), bytes.subarray(16), dc);
}

/** libjpeg-turbo's MIN_GET_BITS with its 64-bit bit buffer: how many bits jpeg_fill_bit_buffer loads. */
const MIN_GET_BITS = 57;

/**
 * Entropy-coded data, bit by bit. At a marker (or the end of the data) it feeds zeros, as libjpeg does.
 *
 * It also keeps count of what libjpeg's bit buffer (jdhuff.c) would hold, because two of libjpeg's outcomes
 * depend on it: a refill that meets the end of the file with no marker before it makes libjpeg wait for more
 * data, which Pillow reports as a truncated file, even when the bits already there would have done; and a
 * refill that meets a marker short of the bits needed marks the segment's data "insufficient", after which
 * libjpeg leaves the segment's remaining MCUs alone. (libjpeg-turbo's fast path, used far from the end of a
 * large scan, refills differently; it rejoins this count at the next restart or scan.)
 */
class BitReader {
  pos: number;
  private acc = 0;
  private bits = 0;
  /** how many of the buffered bits are zeros fed after the end of the file */
  private pad = 0;
  /** libjpeg's bits_left and read position, whether it stopped at a marker, and its two outcomes above */
  private ljBits = 0;
  private ljPos: number;
  private ljMarker = false;
  private waiting = false;
  private insufficient = false;
  constructor(
    private readonly data: Uint8Array,
    start: number,
  ) {
    this.pos = start;
    this.ljPos = start;
  }

  private fill(): void {
    while (this.bits <= 24) {
      let byte = 0;
      if (this.pos >= this.data.length) {
        this.pad += 8;
      } else if (this.data[this.pos] === 0xff) {
        const next = this.pos + 1 < this.data.length ? (this.data[this.pos + 1] as number) : -1;
        if (next === 0x00) {
          byte = 0xff;
          this.pos += 2;
        } else if (next === 0xff) {
          this.pos += 1; // fill bytes before a marker
          continue;
        } else if (next === -1) {
          this.pad += 8; // a lone 0xFF as the last byte
          this.pos += 1;
        }
        // a marker: leave it for the caller, feed zeros
      } else {
        byte = this.data[this.pos] as number;
        this.pos += 1;
      }
      this.acc = ((this.acc << 8) | byte) >>> 0;
      this.bits += 8;
    }
  }

  /** jpeg_fill_bit_buffer(nbits): up to MIN_GET_BITS bits, to a marker, or waiting at the end of the file. */
  private ljFill(nbits: number): void {
    const data = this.data;
    while (this.ljBits < MIN_GET_BITS && !this.ljMarker) {
      let at = this.ljPos;
      if (at >= data.length) {
        this.waiting = true;
        return;
      }
      if (data[at] === 0xff) {
        do at++;
        while (at < data.length && data[at] === 0xff);
        if (at >= data.length) {
          this.waiting = true;
          return;
        }
        if (data[at] !== 0x00) {
          this.ljMarker = true;
          break;
        }
      }
      this.ljPos = at + 1;
      this.ljBits += 8;
    }
    if (this.ljMarker && nbits > this.ljBits) {
      this.insufficient = true;
      this.ljBits = MIN_GET_BITS; // zeros stuffed in
    }
  }

  /** libjpeg's CHECK_BIT_BUFFER(n) then DROP_BITS(n). */
  private ljTake(n: number): void {
    if (this.ljBits < n) this.ljFill(n);
    this.ljBits -= n;
  }

  private rawBit(): number {
    if (this.bits === 0) this.fill();
    this.bits -= 1;
    return (this.acc >>> this.bits) & 1;
  }

  bit(): number {
    this.ljTake(1);
    return this.rawBit();
  }

  receive(n: number): number {
    if (n === 0) return 0;
    this.ljTake(n);
    if (this.bits < n) this.fill();
    this.bits -= n;
    return (this.acc >>> this.bits) & ((1 << n) - 1);
  }

  /** n bits, sign-extended as JPEG's EXTEND does. */
  extend(n: number): number {
    if (n === 0) return 0;
    const value = this.receive(n);
    return value < 1 << (n - 1) ? value - (1 << n) + 1 : value;
  }

  decode(table: Huffman): number {
    let code = this.rawBit();
    let length = 1;
    while (length <= 16 && code > (table.maxcode[length] as number)) {
      code = (code << 1) | this.rawBit();
      length++;
    }
    // libjpeg's HUFF_DECODE: refill below 8 bits, look 8 bits ahead; a longer code takes 9, then 1 at a time
    if (this.ljBits < 8) this.ljFill(0);
    if (this.ljBits >= 8 && length <= 8) {
      this.ljBits -= length;
    } else {
      const first = this.ljBits >= 8 ? 9 : 1;
      this.ljTake(first);
      for (let l = first + 1; l <= length; l++) this.ljTake(1);
    }
    if (length > 16) return 0; // libjpeg: "corrupt data", value 0
    return table.values[(table.valptr[length] as number) + code - (table.mincode[length] as number)] as number;
  }

  /** Whether the data ran out with no marker where libjpeg refills (Pillow refuses such a file as truncated). */
  pastEnd(): boolean {
    return this.pad > this.bits || this.waiting;
  }

  /** libjpeg's "insufficient data": the segment's data ran into a marker short of the bits needed. */
  ranShort(): boolean {
    return this.insufficient;
  }

  /** The marker byte at the reader's position (after reset()), -1 when none. */
  markerAt(): number {
    return this.pos + 1 < this.data.length && this.data[this.pos] === 0xff ? (this.data[this.pos + 1] as number) : -1;
  }

  /** Step over the marker at the reader's position (a restart marker, taken). */
  skipMarker(): void {
    this.pos += 2;
    this.ljPos = this.pos;
    this.ljMarker = false;
  }

  /** Drop buffered bits and move to the next marker (after a scan, or at a restart). */
  reset(): void {
    this.acc = 0;
    this.bits = 0;
    this.pad = 0;
    while (this.pos < this.data.length) {
      if (this.data[this.pos] === 0xff && this.pos + 1 < this.data.length) {
        const next = this.data[this.pos + 1] as number;
        if (next !== 0x00 && next !== 0xff) break;
      }
      this.pos++;
    }
    this.ljBits = 0;
    this.ljPos = this.pos;
    this.ljMarker = false;
    this.insufficient = false;
  }
}

interface ScanParams {
  components: Component[];
  ss: number;
  se: number;
  ah: number;
  al: number;
  restart: number;
}

function decodeScan(frame: Frame, scan: ScanParams, reader: BitReader): void {
  const { components, ss, se, ah, al, restart } = scan;
  let eobrun = 0;

  const baseline = (c: Component, off: number): void => {
    const coefs = c.coefs;
    const t = reader.decode(c.dcTable as Huffman);
    const diff = t === 0 ? 0 : reader.extend(t);
    c.dcPred += diff;
    coefs[off] = c.dcPred;
    for (let k = 1; k < 64; ) {
      const rs = reader.decode(c.acTable as Huffman);
      const s = rs & 15;
      const r = rs >> 4;
      if (s === 0) {
        if (r < 15) break;
        k += 16;
        continue;
      }
      k += r;
      // a run past the block still reads its bits, and libjpeg's natural order maps it to the last coefficient
      coefs[off + (ZIGZAG[k > 63 ? 63 : k] as number)] = reader.extend(s);
      k++;
    }
  };
  const dcFirst = (c: Component, off: number): void => {
    const t = reader.decode(c.dcTable as Huffman);
    const diff = t === 0 ? 0 : reader.extend(t);
    c.dcPred += diff;
    c.coefs[off] = c.dcPred * (1 << al);
  };
  const dcRefine = (c: Component, off: number): void => {
    if (reader.bit()) c.coefs[off] = (c.coefs[off] as number) | (1 << al);
  };
  const acFirst = (c: Component, off: number): void => {
    if (eobrun > 0) {
      eobrun--;
      return;
    }
    for (let k = ss; k <= se; ) {
      const rs = reader.decode(c.acTable as Huffman);
      const s = rs & 15;
      const r = rs >> 4;
      if (s === 0) {
        if (r < 15) {
          eobrun = (1 << r) - 1;
          if (r) eobrun += reader.receive(r);
          break;
        }
        k += 16;
        continue;
      }
      k += r;
      c.coefs[off + (ZIGZAG[k > 63 ? 63 : k] as number)] = reader.extend(s) * (1 << al);
      k++;
    }
  };
  const acRefine = (c: Component, off: number): void => {
    // jdphuff.c decode_mcu_AC_refine
    const coefs = c.coefs;
    const p1 = 1 << al;
    const m1 = -1 << al;
    let k = ss;
    if (eobrun === 0) {
      for (; k <= se; k++) {
        const rs = reader.decode(c.acTable as Huffman);
        let r = rs >> 4;
        const s = rs & 15;
        let value = 0;
        if (s) {
          value = reader.bit() ? p1 : m1;
        } else if (r !== 15) {
          eobrun = 1 << r;
          if (r) eobrun += reader.receive(r);
          break; // the rest of the block is handled by the EOB run below
        }
        // advance over nonzero coefficients (appending their correction bits) and r still-zero ones
        do {
          const z = off + (ZIGZAG[k] as number);
          const coef = coefs[z] as number;
          if (coef !== 0) {
            if (reader.bit() && (coef & p1) === 0) coefs[z] = coef >= 0 ? coef + p1 : coef + m1;
          } else if (--r < 0) {
            break;
          }
          k++;
        } while (k <= se);
        if (value) coefs[off + (ZIGZAG[k > 63 ? 63 : k] as number)] = value;
      }
    }
    if (eobrun > 0) {
      for (; k <= se; k++) {
        const z = off + (ZIGZAG[k] as number);
        const coef = coefs[z] as number;
        if (coef !== 0 && reader.bit() && (coef & p1) === 0) coefs[z] = coef >= 0 ? coef + p1 : coef + m1;
      }
      eobrun--;
    }
  };

  let decode: (c: Component, off: number) => void;
  if (!frame.progressive) decode = baseline;
  else if (ss === 0) decode = ah === 0 ? dcFirst : dcRefine;
  else decode = ah === 0 ? acFirst : acRefine;

  const single = components.length === 1;
  const only = components[0] as Component;
  const total = single ? only.blocksWide * only.blocksHigh : frame.mcusWide * frame.mcusHigh;
  const unitsWide = single ? only.blocksWide : frame.mcusWide;
  for (const c of components) c.dcPred = 0;
  let nextRestart = 0;
  let short = false;
  for (let unit = 0; unit < total; unit++) {
    if (restart > 0 && unit > 0 && unit % restart === 0) {
      reader.reset();
      if (readRestartMarker(reader, nextRestart)) short = false;
      nextRestart = (nextRestart + 1) & 7;
      for (const c of components) c.dcPred = 0;
      eobrun = 0;
    }
    // once the segment's data ran short, libjpeg leaves its remaining MCUs as they are (zeros in a new block):
    // go straight to the next restart, or the end of the scan (an empty scan then costs next to nothing)
    if (short) {
      if (restart === 0) break;
      unit = (Math.floor(unit / restart) + 1) * restart - 1;
      continue;
    }
    const row = Math.floor(unit / unitsWide);
    const col = unit % unitsWide;
    if (single) {
      decode(only, (row * only.stride + col) * 64);
    } else {
      for (const c of components) {
        for (let y = 0; y < c.v; y++) {
          for (let x = 0; x < c.h; x++) {
            decode(c, ((row * c.v + y) * c.stride + col * c.h + x) * 64);
          }
        }
      }
    }
    if (reader.pastEnd()) throw new Truncated("the file ends inside the image data");
    short = reader.ranShort();
  }
}

/**
 * At a restart boundary (the reader at the next marker): take the expected RSTn, or resynchronise as
 * libjpeg's jpeg_resync_to_restart does: skip ahead past junk markers and restarts of the past, stop at one of
 * the next two restarts or any other valid marker (the segment then reads as empty), take the expected one or
 * one too far off to judge. Returns whether a marker was taken (libjpeg then clears "insufficient data");
 * the end of the file instead of a marker is a truncated file, as Pillow reports it.
 */
function readRestartMarker(reader: BitReader, desired: number): boolean {
  const rst = (n: number): number => 0xd0 + (n & 7);
  for (;;) {
    const marker = reader.markerAt();
    if (marker === rst(desired)) {
      reader.skipMarker();
      return true;
    }
    if (marker < 0) throw new Truncated("the file ends inside the image data"); // libjpeg waits for more data
    let skip: boolean;
    if (marker < 0xc0) skip = true; // not a valid marker
    else if (marker < 0xd0 || marker > 0xd7) return false; // a valid non-restart marker: leave it
    else if (marker === rst(desired + 1) || marker === rst(desired + 2)) return false; // a restart to come
    else if (marker === rst(desired - 1) || marker === rst(desired - 2)) skip = true; // a restart of the past
    else skip = false; // too far off: take it and go on
    reader.skipMarker();
    if (!skip) return true;
    reader.reset();
  }
}

// jidctint.c constants (CONST_BITS 13)
const F0_298631336 = 2446;
const F0_390180644 = 3196;
const F0_541196100 = 4433;
const F0_765366865 = 6270;
const F0_899976223 = 7373;
const F1_175875602 = 9633;
const F1_501321110 = 12299;
const F1_847759065 = 15137;
const F1_961570560 = 16069;
const F2_053119869 = 16819;
const F2_562915447 = 20995;
const F3_072711026 = 25172;

/** libjpeg's post-IDCT range limit: `range_limit[x & 1023]` with its wrap-around for wild values. */
const RANGE_LIMIT = (() => {
  const table = new Uint8Array(1024);
  for (let i = 0; i < 1024; i++) {
    if (i < 128) table[i] = i + 128;
    else if (i < 512) table[i] = 255;
    else if (i < 896) table[i] = 0;
    else table[i] = i - 896;
  }
  return table;
})();

/**
 * libjpeg's DESCALE(x, 11) and DESCALE(x, 18) (on 64-bit longs): floor((x + 2^(n-1)) / 2^n), exact for any
 * double-precision integer; a 32-bit shift where it fits, which is always for real images (it is the hot spot).
 */
function descale11(x: number): number {
  const y = x + 1024;
  return y >= -2147483648 && y <= 2147483647 ? y >> 11 : Math.floor(y / 2048);
}
function descale18(x: number): number {
  const y = x + 131072;
  return y >= -2147483648 && y <= 2147483647 ? y >> 18 : Math.floor(y / 262144);
}

/** jpeg_idct_islow: dequantize and inverse-transform one block into `out` at `offset` with row pitch `pitch`. */
function idctIslow(coefs: Int16Array, at: number, quant: Uint16Array, ws: Float64Array, out: Uint8Array, offset: number, pitch: number): void {
  for (let col = 0; col < 8; col++) {
    const q = (i: number): number => (coefs[at + i * 8 + col] as number) * (quant[i * 8 + col] as number);
    let z2 = q(2);
    let z3 = q(6);
    let z1 = (z2 + z3) * F0_541196100;
    let tmp2 = z1 + z3 * -F1_847759065;
    let tmp3 = z1 + z2 * F0_765366865;
    z2 = q(0);
    z3 = q(4);
    let tmp0 = (z2 + z3) * 8192;
    let tmp1 = (z2 - z3) * 8192;
    const tmp10 = tmp0 + tmp3;
    const tmp13 = tmp0 - tmp3;
    const tmp11 = tmp1 + tmp2;
    const tmp12 = tmp1 - tmp2;
    tmp0 = q(7);
    tmp1 = q(5);
    tmp2 = q(3);
    tmp3 = q(1);
    z1 = tmp0 + tmp3;
    z2 = tmp1 + tmp2;
    z3 = tmp0 + tmp2;
    let z4 = tmp1 + tmp3;
    const z5 = (z3 + z4) * F1_175875602;
    tmp0 *= F0_298631336;
    tmp1 *= F2_053119869;
    tmp2 *= F3_072711026;
    tmp3 *= F1_501321110;
    z1 *= -F0_899976223;
    z2 *= -F2_562915447;
    z3 = z3 * -F1_961570560 + z5;
    z4 = z4 * -F0_390180644 + z5;
    tmp0 += z1 + z3;
    tmp1 += z2 + z4;
    tmp2 += z2 + z3;
    tmp3 += z1 + z4;
    // the work array is C `int`: wrap as it would (only reachable with corrupt data)
    ws[col] = descale11(tmp10 + tmp3) | 0;
    ws[56 + col] = descale11(tmp10 - tmp3) | 0;
    ws[8 + col] = descale11(tmp11 + tmp2) | 0;
    ws[48 + col] = descale11(tmp11 - tmp2) | 0;
    ws[16 + col] = descale11(tmp12 + tmp1) | 0;
    ws[40 + col] = descale11(tmp12 - tmp1) | 0;
    ws[24 + col] = descale11(tmp13 + tmp0) | 0;
    ws[32 + col] = descale11(tmp13 - tmp0) | 0;
  }
  for (let row = 0; row < 8; row++) {
    const w = row * 8;
    let z2 = ws[w + 2] as number;
    let z3 = ws[w + 6] as number;
    let z1 = (z2 + z3) * F0_541196100;
    let tmp2 = z1 + z3 * -F1_847759065;
    let tmp3 = z1 + z2 * F0_765366865;
    let tmp0 = ((ws[w] as number) + (ws[w + 4] as number)) * 8192;
    let tmp1 = ((ws[w] as number) - (ws[w + 4] as number)) * 8192;
    const tmp10 = tmp0 + tmp3;
    const tmp13 = tmp0 - tmp3;
    const tmp11 = tmp1 + tmp2;
    const tmp12 = tmp1 - tmp2;
    tmp0 = ws[w + 7] as number;
    tmp1 = ws[w + 5] as number;
    tmp2 = ws[w + 3] as number;
    tmp3 = ws[w + 1] as number;
    z1 = tmp0 + tmp3;
    z2 = tmp1 + tmp2;
    z3 = tmp0 + tmp2;
    let z4 = tmp1 + tmp3;
    const z5 = (z3 + z4) * F1_175875602;
    tmp0 *= F0_298631336;
    tmp1 *= F2_053119869;
    tmp2 *= F3_072711026;
    tmp3 *= F1_501321110;
    z1 *= -F0_899976223;
    z2 *= -F2_562915447;
    z3 = z3 * -F1_961570560 + z5;
    z4 = z4 * -F0_390180644 + z5;
    tmp0 += z1 + z3;
    tmp1 += z2 + z4;
    tmp2 += z2 + z3;
    tmp3 += z1 + z4;
    const o = offset + row * pitch;
    const lim = (x: number): number => RANGE_LIMIT[descale18(x) & 1023] as number;
    out[o] = lim(tmp10 + tmp3);
    out[o + 7] = lim(tmp10 - tmp3);
    out[o + 1] = lim(tmp11 + tmp2);
    out[o + 6] = lim(tmp11 - tmp2);
    out[o + 2] = lim(tmp12 + tmp1);
    out[o + 5] = lim(tmp12 - tmp1);
    out[o + 3] = lim(tmp13 + tmp0);
    out[o + 4] = lim(tmp13 - tmp0);
  }
}

/** A component's samples, `width` x `height` (its downsampled size), row pitch `pitch`. */
interface Plane {
  data: Uint8Array;
  pitch: number;
  width: number;
  height: number;
}

function componentPlane(c: Component, quant: Uint16Array): Plane {
  const pitch = c.blocksWide * 8;
  const data = new Uint8Array(pitch * c.blocksHigh * 8);
  const ws = new Float64Array(64);
  for (let by = 0; by < c.blocksHigh; by++) {
    for (let bx = 0; bx < c.blocksWide; bx++) {
      idctIslow(c.coefs, (by * c.stride + bx) * 64, quant, ws, data, by * 8 * pitch + bx * 8, pitch);
    }
  }
  return { data, pitch, width: c.width, height: c.height };
}

/** Upsample a plane to the full `outW` x `outH` like jdsample.c (fancy for 2:1 ratios, else replication). */
function upsample(p: Plane, hx: number, vx: number, outW: number, outH: number): Uint8Array {
  const out = new Uint8Array(outW * outH);
  const at = (x: number, y: number): number => p.data[Math.min(y, p.height - 1) * p.pitch + x] as number;
  // libjpeg's context rows: the row above the first is the first, rows below the last repeat the last
  const rowAt = (y: number): number => Math.max(0, Math.min(y, p.height - 1));
  const w = p.width;
  if (hx === 1 && vx === 1) {
    for (let y = 0; y < outH; y++) for (let x = 0; x < outW; x++) out[y * outW + x] = at(x, y);
  } else if (hx === 2 && vx === 1 && w > 2) {
    // h2v1_fancy_upsample
    const row = new Uint8Array(2 * w);
    for (let y = 0; y < outH; y++) {
      const s = Math.min(y, p.height - 1) * p.pitch;
      const d = p.data;
      row[0] = d[s] as number;
      row[1] = ((d[s] as number) * 3 + (d[s + 1] as number) + 2) >> 2;
      for (let i = 1; i < w - 1; i++) {
        const v = (d[s + i] as number) * 3;
        row[2 * i] = (v + (d[s + i - 1] as number) + 1) >> 2;
        row[2 * i + 1] = (v + (d[s + i + 1] as number) + 2) >> 2;
      }
      row[2 * w - 2] = ((d[s + w - 1] as number) * 3 + (d[s + w - 2] as number) + 1) >> 2;
      row[2 * w - 1] = d[s + w - 1] as number;
      out.set(row.subarray(0, outW), y * outW);
    }
  } else if (hx === 1 && vx === 2) {
    // h1v2_fancy_upsample
    for (let y = 0; y < outH; y++) {
      const near = rowAt(y >> 1);
      const far = rowAt((y & 1) === 0 ? (y >> 1) - 1 : (y >> 1) + 1);
      const bias = (y & 1) === 0 ? 1 : 2;
      for (let x = 0; x < outW; x++) {
        out[y * outW + x] = ((p.data[near * p.pitch + x] as number) * 3 + (p.data[far * p.pitch + x] as number) + bias) >> 2;
      }
    }
  } else if (hx === 2 && vx === 2 && w > 2) {
    // h2v2_fancy_upsample
    const sums = new Int32Array(w);
    const row = new Uint8Array(2 * w);
    for (let y = 0; y < outH; y++) {
      const near = rowAt(y >> 1) * p.pitch;
      const far = rowAt((y & 1) === 0 ? (y >> 1) - 1 : (y >> 1) + 1) * p.pitch;
      for (let i = 0; i < w; i++) sums[i] = (p.data[near + i] as number) * 3 + (p.data[far + i] as number);
      row[0] = ((sums[0] as number) * 4 + 8) >> 4;
      row[1] = ((sums[0] as number) * 3 + (sums[1] as number) + 7) >> 4;
      for (let i = 1; i < w - 1; i++) {
        const t = (sums[i] as number) * 3;
        row[2 * i] = (t + (sums[i - 1] as number) + 8) >> 4;
        row[2 * i + 1] = (t + (sums[i + 1] as number) + 7) >> 4;
      }
      row[2 * w - 2] = ((sums[w - 1] as number) * 3 + (sums[w - 2] as number) + 8) >> 4;
      row[2 * w - 1] = ((sums[w - 1] as number) * 4 + 7) >> 4;
      out.set(row.subarray(0, outW), y * outW);
    }
  } else {
    // int_upsample / h2v1_upsample / h2v2_upsample: replication (vertically within the padded block rows)
    for (let y = 0; y < outH; y++) {
      const s = Math.floor(y / vx) * p.pitch;
      for (let x = 0; x < outW; x++) out[y * outW + x] = p.data[s + Math.floor(x / hx)] as number;
    }
  }
  return out;
}

/** Pillow's cmyk2rgb (Convert.c): MULDIV255 arithmetic, on the inverted (Adobe) values it reads. */
function muldiv255(a: number, b: number): number {
  const t = a * b + 128;
  return ((t >> 8) + t) >> 8;
}

/** libjpeg's limits: JPEG_MAX_DIMENSION, D_MAX_BLOCKS_IN_MCU (an interleaved scan's blocks per MCU). */
const MAX_DIMENSION = 65500;
const MAX_BLOCKS_IN_MCU = 10;

/**
 * The most scans a JPEG may have. Each scan runs over the whole frame, so a file of tiny scans costs CPU out
 * of all proportion to its size (at 40 megapixels, milliseconds a scan: a 1 MB file of 100,000 scans would
 * take minutes). libjpeg and Pillow set no limit; libjpeg-turbo's tools offer one (djpeg -maxscans,
 * TurboJPEG's scan limit) for untrusted files. Encoders write about 10 (libjpeg's progressive script) to a few
 * dozen, so 1,000 refuses nothing real; such a file is one Pillow reads and the local runtime refuses.
 */
export const MAX_SCANS = 1000;

/** Whether a marker is one libjpeg reads without a length (TEM, RSTn; SOI and EOI are handled apart). */
function standalone(marker: number): boolean {
  return marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7);
}

/**
 * Decode a JPEG's bytes to 8-bit RGB exactly as Pillow (libjpeg-turbo defaults) does; `name` for messages.
 *
 * The marker walk is libjpeg's (jdmarker.c), and so are its refusals: bad segment lengths, Huffman tables
 * that over-fill the code space, scan parameters out of range, components or tables never defined, unknown
 * markers. Pillow refuses such files ("broken data stream"), so the local runtime gives no verdict on them
 * either. The frame's size is checked against the image limits (checkSize, as image.ts does from the header)
 * before anything is allocated from it: the size a header walk reports cannot be trusted to be the size
 * decoded. The number of scans is not capped, as libjpeg's and Pillow's is not (see the README).
 */
export function decodeJpegExact(data: Uint8Array, name: string): { width: number; height: number; data: Uint8Array } {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const u16 = (at: number): number => {
    if (at + 2 > data.length) throw new Truncated("the file ends inside a marker");
    return view.getUint16(at);
  };
  const quant: (Uint16Array | undefined)[] = [];
  const dcTables: (Huffman | undefined)[] = [];
  const acTables: (Huffman | undefined)[] = [];
  let frame: Frame | undefined;
  let restart = 0;
  let jfif = false;
  let adobe: number | undefined;
  let sawScan = false;
  let scans = 0;
  /** whether libjpeg reads the whole file before output (progressive, or the first scan lacks components) */
  let multiScan = false;
  let pos = 2;
  try {
    for (;;) {
      if (pos >= data.length) {
        // no EOI: a single-scan image was output line by line, so Pillow keeps it; a multi-scan one is still
        // waiting for scans when the data runs out, and Pillow calls that truncated
        if (!sawScan || multiScan) throw new Truncated("the file ends before its end marker");
        break;
      }
      if (data[pos] !== 0xff) {
        pos++; // junk between markers: libjpeg skips it with a warning
        continue;
      }
      const marker = data[pos + 1];
      if (marker === undefined) throw new Truncated("the file ends inside a marker");
      if (marker === 0xff) {
        pos++;
        continue;
      }
      if (marker === 0x00) {
        pos += 2; // an escaped 0xFF outside a scan: libjpeg's next_marker discards it
        continue;
      }
      const at = pos;
      pos += 2;
      if (marker === 0xd9) break; // EOI
      if (marker === 0xd8) throw corrupt(name, "a second start-of-image marker");
      if (standalone(marker)) continue;
      const hex = `0xFF${marker.toString(16).toUpperCase().padStart(2, "0")}`;
      if (marker < 0xc0 || marker === 0xde || marker === 0xdf || (marker >= 0xf0 && marker <= 0xfd)) {
        throw corrupt(name, `unknown JPEG marker ${hex} at byte ${at}`);
      }
      const isFrame = marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xcc;
      if (isFrame && marker !== 0xc0 && marker !== 0xc1 && marker !== 0xc2) {
        const kind =
          marker === 0xc3 || marker === 0xc7 || marker === 0xcb || marker === 0xcf
            ? "lossless"
            : marker === 0xc8
              ? "JPEG-extension (0xFFC8)"
              : marker >= 0xc9
                ? "arithmetic-coded"
                : "hierarchical";
        throw new EagleLocalError(
          `${name}: ${kind} JPEGs cannot be read by the local runtime (it reads baseline and progressive ones; ` +
            "convert the file, or inspect it with eagle)",
        );
      }
      if (isFrame && frame) throw corrupt(name, "more than one frame header");
      // after a single-scan image libjpeg has output every line: a marker segment cut short by the end of the
      // file only ends it early (libjpeg waits for more data, and Pillow keeps the image), unless what is there
      // is already wrong
      const complete = sawScan && !multiScan;
      if (pos + 2 > data.length && complete) break;
      const length = u16(pos);
      // a length under 2 skips nothing (libjpeg's skip_variable); the segments libjpeg parses refuse it below
      const end = pos + Math.max(length, 2);
      const body = pos + 2;
      const badLength = (): EagleLocalError => corrupt(name, `bad length ${length} of the ${hex} segment at byte ${at}`);
      // the segments libjpeg parses refuse a length that does not even cover itself, and DRI any but 4
      const parsed = isFrame || marker === 0xc4 || marker === 0xcc || marker === 0xda || marker === 0xdb || marker === 0xdd;
      if ((parsed && length < 2) || (marker === 0xdd && length !== 4)) throw badLength();
      if (marker === 0xcc) {
        // DAC (arithmetic-coding conditioning), parsed by libjpeg even in a Huffman-coded file: pairs of a table
        // index under 8 and, for a DC table, a lower bound no larger than the upper one
        const stop = Math.min(end, data.length - 1);
        for (let p = body; p < stop; p += 2) {
          const index = data[p] as number;
          const value = data[p + 1] as number;
          if (index >= 8 || (index < 4 && (value & 15) > value >> 4)) throw corrupt(name, `bad arithmetic-coding conditioning at byte ${p}`);
        }
        if (end <= data.length && (end - body) % 2 !== 0) throw badLength();
      }
      if (end > data.length) {
        if (!complete) throw new Truncated("the file ends inside a marker segment");
        // libjpeg reads DQT and DHT a table at a time: a bad table id, or more codes than fit, before the data
        // runs out is an error, not a wait for more data
        let p = body;
        if (marker === 0xdb) {
          for (; p < data.length; p += 1 + ((data[p] as number) >> 4 ? 128 : 64)) {
            if (((data[p] as number) & 15) > 3) throw corrupt(name, `bad quantization table id ${(data[p] as number) & 15}`);
          }
        } else if (marker === 0xc4) {
          while (end - p > 16 && p + 17 <= data.length) {
            let total = 0;
            for (let i = 1; i <= 16; i++) total += data[p + i] as number;
            if (total > 256 || total > end - p - 17) throw corrupt(name, "bad Huffman table (more codes than symbols)");
            if (p + 17 + total > data.length) break;
            const index = data[p] as number;
            if ((index & 0x10 ? index - 0x10 : index) > 3) throw corrupt(name, `bad Huffman table id 0x${index.toString(16)}`);
            p += 17 + total;
          }
        }
        break;
      }
      if (marker === 0xe0 && length >= 16 && String.fromCharCode(...data.subarray(body, body + 5)) === "JFIF\0") {
        jfif = true;
      } else if (marker === 0xee && length >= 14 && String.fromCharCode(...data.subarray(body, body + 5)) === "Adobe") {
        adobe = data[body + 11] as number;
      } else if (marker === 0xdb) {
        let p = body;
        while (p < end) {
          const pq = (data[p] as number) >> 4;
          const tq = (data[p] as number) & 15;
          if (tq > 3) throw corrupt(name, `bad quantization table id ${tq}`);
          const size = pq ? 128 : 64;
          if (p + 1 + size > end) throw badLength();
          const table = new Uint16Array(64);
          p++;
          for (let k = 0; k < 64; k++) {
            table[ZIGZAG[k] as number] = pq ? u16(p + 2 * k) : (data[p + k] as number);
          }
          p += size;
          quant[tq] = table;
        }
        if (p !== end) throw badLength();
      } else if (marker === 0xc4) {
        // jdmarker.c get_dht: tables while more than 16 bytes remain, then exactly nothing left
        let p = body;
        while (end - p > 16) {
          const index = data[p] as number;
          const counts = data.subarray(p + 1, p + 17);
          let total = 0;
          for (const n of counts) total += n;
          if (total > 256 || total > end - p - 17) throw corrupt(name, "bad Huffman table (more codes than symbols)");
          const ac = (index & 0x10) !== 0;
          const th = ac ? index - 0x10 : index;
          if (th > 3) throw corrupt(name, `bad Huffman table id 0x${index.toString(16)}`);
          const values = data.slice(p + 17, p + 17 + total);
          (ac ? acTables : dcTables)[th] = buildHuffman(counts, values, !ac);
          p += 17 + total;
        }
        if (p !== end) throw badLength();
      } else if (marker === 0xdd) {
        restart = u16(body);
      } else if (isFrame) {
        if (data[body] !== 8) {
          throw new EagleLocalError(`${name}: ${data[body]}-bit JPEGs cannot be read by the local runtime (it reads 8-bit ones)`);
        }
        const height = u16(body + 1);
        const width = u16(body + 3);
        const count = data[body + 5] as number;
        if (width === 0 || height === 0) throw corrupt(name, "the frame has no size (DNL is not supported)");
        if (length !== 8 + 3 * count) throw badLength();
        if (count !== 1 && count !== 3 && count !== 4) throw corrupt(name, `${count} colour components`);
        if (width > MAX_DIMENSION || height > MAX_DIMENSION) {
          throw corrupt(name, `${width}x${height}: libjpeg reads at most ${MAX_DIMENSION} pixels a side`);
        }
        // the limits before any allocation: this is the frame decoded, whatever a header walk found
        checkSize(name, width, height);
        const components: Component[] = [];
        for (let i = 0; i < count; i++) {
          const p = body + 6 + i * 3;
          const hv = data[p + 1] as number;
          const h = hv >> 4;
          const v = hv & 15;
          if (h < 1 || h > 4 || v < 1 || v > 4) throw corrupt(name, "bad sampling factors");
          components.push({ id: data[p] as number, h, v, tq: data[p + 2] as number, width: 0, height: 0, blocksWide: 0, blocksHigh: 0, stride: 0, coefs: new Int16Array(0), dcPred: 0 });
        }
        const maxH = Math.max(...components.map((c) => c.h));
        const maxV = Math.max(...components.map((c) => c.v));
        for (const c of components) {
          if (maxH % c.h !== 0 || maxV % c.v !== 0) throw corrupt(name, "fractional sampling factors");
        }
        const mcusWide = Math.ceil(width / (8 * maxH));
        const mcusHigh = Math.ceil(height / (8 * maxV));
        for (const c of components) {
          c.width = Math.ceil((width * c.h) / maxH);
          c.height = Math.ceil((height * c.v) / maxV);
          c.blocksWide = Math.ceil(c.width / 8);
          c.blocksHigh = Math.ceil(c.height / 8);
          c.stride = mcusWide * c.h;
          c.coefs = new Int16Array(c.stride * mcusHigh * c.v * 64);
        }
        frame = { width, height, progressive: marker === 0xc2, components, maxH, maxV, mcusWide, mcusHigh };
      } else if (marker === 0xda) {
        if (!frame) throw corrupt(name, "image data before the frame header");
        const f: Frame = frame;
        const count = data[body] as number;
        if (length !== 6 + 2 * count || count < 1 || count > 4) throw badLength();
        if (sawScan && !multiScan) throw corrupt(name, "a second scan after a scan of every component of a sequential image");
        if (++scans > MAX_SCANS) {
          throw new EagleLocalError(
            `${name}: JPEG has more than ${MAX_SCANS} scans, which the local runtime refuses (encoders write a few dozen ` +
              "at most; each scan costs a pass over the whole image)",
          );
        }
        const components: Component[] = [];
        const tables: number[] = [];
        for (let i = 0; i < count; i++) {
          const id = data[body + 1 + i * 2] as number;
          const c = f.components.find((x) => x.id === id && !components.includes(x));
          if (!c) throw corrupt(name, `a scan names component ${id}, which the frame lacks (or names it twice)`);
          components.push(c);
          tables.push(data[body + 2 + i * 2] as number);
        }
        const p = body + 1 + count * 2;
        const ss = data[p] as number;
        const se = data[p + 1] as number;
        const ah = (data[p + 2] as number) >> 4;
        const al = (data[p + 2] as number) & 15;
        if (f.progressive) {
          // jdphuff.c start_pass_phuff_decoder
          const bad = (ss === 0 ? se !== 0 : ss > se || se > 63 || count !== 1) || (ah !== 0 && al !== ah - 1) || al > 13;
          if (bad) throw corrupt(name, `invalid progressive parameters Ss=${ss} Se=${se} Ah=${ah} Al=${al}`);
        }
        if (count > 1 && components.reduce((sum, c) => sum + c.h * c.v, 0) > MAX_BLOCKS_IN_MCU) {
          throw corrupt(name, "sampling factors too large for an interleaved scan");
        }
        // the tables libjpeg derives for this scan (jdhuff.c, jdphuff.c), each checked as it does
        const needDc = !f.progressive || (ss === 0 && ah === 0);
        const needAc = !f.progressive || ss > 0;
        components.forEach((c, i) => {
          const t = tables[i] as number;
          if (!f.progressive) {
            // libjpeg-turbo: a sequential scan's undefined table 0 or 1 is the standard's (Motion-JPEG)
            if (t >> 4 < 2) dcTables[t >> 4] ??= standardTable(t >> 4, true);
            if ((t & 15) < 2) acTables[t & 15] ??= standardTable(t & 15, false);
          }
          c.dcTable = dcTables[t >> 4];
          c.acTable = acTables[t & 15];
          for (const [need, table] of [[needDc, c.dcTable], [needAc, c.acTable]] as const) {
            if (!need) continue;
            if (!table) throw corrupt(name, "a scan uses an undefined Huffman table");
            if (table.problem) throw corrupt(name, `bad Huffman table (${table.problem})`);
          }
          // libjpeg copies a component's quantization table when its first scan starts
          if (!c.quant) {
            c.quant = c.tq < 4 ? quant[c.tq]?.slice() : undefined;
            if (!c.quant) throw corrupt(name, `a component uses quantization table ${c.tq}, which is not defined`);
          }
        });
        if (!sawScan) multiScan = f.progressive || count < f.components.length;
        const reader = new BitReader(data, end);
        decodeScan(f, { components, ss, se, ah, al, restart }, reader);
        reader.reset();
        pos = reader.pos;
        sawScan = true;
        continue;
      }
      pos = end;
    }
  } catch (error) {
    if (error instanceof Truncated) throw corrupt(name, error.message);
    if (error instanceof RangeError) throw corrupt(name, error.message);
    throw error;
  }
  if (!frame || !sawScan) throw corrupt(name, "no image data");
  const f: Frame = frame;
  const planes: Uint8Array[] = f.components.map((c) => {
    // a component no scan named has no table and all-zero coefficients: libjpeg's zeroed multipliers give grey
    const plane = componentPlane(c, c.quant ?? new Uint16Array(64));
    return upsample(plane, f.maxH / c.h, f.maxV / c.v, f.width, f.height);
  });
  const pixels = f.width * f.height;
  const out = new Uint8Array(pixels * 3);
  const clamp = (x: number): number => (x < 0 ? 0 : x > 255 ? 255 : x);
  if (planes.length === 1) {
    const y = planes[0] as Uint8Array;
    for (let i = 0; i < pixels; i++) out[i * 3] = out[i * 3 + 1] = out[i * 3 + 2] = y[i] as number;
    return { width: f.width, height: f.height, data: out };
  }
  let ycc: boolean;
  if (planes.length === 3) {
    const ids = f.components.map((c) => c.id).join(",");
    if (jfif) ycc = true;
    else if (adobe !== undefined) ycc = adobe !== 0;
    else ycc = ids !== "82,71,66";
  } else {
    ycc = adobe !== undefined && adobe !== 0;
  }
  const [p0, p1, p2] = planes as [Uint8Array, Uint8Array, Uint8Array];
  // jdcolor.c's tables: SCALEBITS 16, ONE_HALF rounding folded into the red, blue and green terms
  const crR = new Int32Array(256);
  const cbB = new Int32Array(256);
  const crG = new Float64Array(256);
  const cbG = new Float64Array(256);
  for (let i = 0; i < 256; i++) {
    const x = i - 128;
    crR[i] = Math.floor((91881 * x + 32768) / 65536);
    cbB[i] = Math.floor((116130 * x + 32768) / 65536);
    crG[i] = -46802 * x;
    cbG[i] = -22554 * x + 32768;
  }
  const convert = (i: number, o: Uint8Array, at: number): void => {
    const y = p0[i] as number;
    const cb = p1[i] as number;
    const cr = p2[i] as number;
    o[at] = clamp(y + (crR[cr] as number));
    o[at + 1] = clamp(y + Math.floor(((cbG[cb] as number) + (crG[cr] as number)) / 65536));
    o[at + 2] = clamp(y + (cbB[cb] as number));
  };
  if (planes.length === 3) {
    for (let i = 0; i < pixels; i++) {
      if (ycc) convert(i, out, i * 3);
      else {
        out[i * 3] = p0[i] as number;
        out[i * 3 + 1] = p1[i] as number;
        out[i * 3 + 2] = p2[i] as number;
      }
    }
    return { width: f.width, height: f.height, data: out };
  }
  // CMYK or YCCK: libjpeg gives CMYK (YCCK via 255 - RGB), Pillow reads it Adobe-inverted ("CMYK;I") and
  // converts with cmyk2rgb.
  const p3 = planes[3] as Uint8Array;
  const rgb = new Uint8Array(3);
  for (let i = 0; i < pixels; i++) {
    let c: number;
    let m: number;
    let yy: number;
    if (ycc) {
      convert(i, rgb, 0);
      c = 255 - (rgb[0] as number);
      m = 255 - (rgb[1] as number);
      yy = 255 - (rgb[2] as number);
    } else {
      c = p0[i] as number;
      m = p1[i] as number;
      yy = p2[i] as number;
    }
    // Pillow's "CMYK;I": every channel inverted
    const ic = 255 - c;
    const im = 255 - m;
    const iy = 255 - yy;
    const nk = 255 - (255 - (p3[i] as number));
    out[i * 3] = clamp(nk - muldiv255(ic, nk));
    out[i * 3 + 1] = clamp(nk - muldiv255(im, nk));
    out[i * 3 + 2] = clamp(nk - muldiv255(iy, nk));
  }
  return { width: f.width, height: f.height, data: out };
}
