/**
 * Histogram geometry: the service's `edges` (n+1 ascending) and `counts` (n) as SVG bars, plus the
 * x of any value (the tau and s_max lines) on the same axis.
 */

export interface Bar {
  x: number;
  y: number;
  width: number;
  height: number;
  count: number;
  lo: number;
  hi: number;
}

export interface HistogramGeometry {
  bars: Bar[];
  /** Value range of the x axis (may extend past the edges to show tau / s_max). */
  lo: number;
  hi: number;
  maxCount: number;
  xOf: (value: number) => number;
}

/** Validated bins: edges must be one longer than counts and ascending; otherwise null. */
export function validBins(edges: readonly number[], counts: readonly number[]): boolean {
  if (counts.length === 0 || edges.length !== counts.length + 1) return false;
  for (let i = 1; i < edges.length; i++) {
    const prev = edges[i - 1];
    const cur = edges[i];
    if (prev === undefined || cur === undefined || !Number.isFinite(cur) || !(cur >= prev)) return false;
  }
  return counts.every((c) => Number.isFinite(c) && c >= 0);
}

/**
 * Bars filling `width` x `height` (y grows downwards, bars stand on y = height). `extra` values
 * (tau, s_max) widen the axis so their lines stay visible; `gap` px separates neighbouring bars.
 */
export function histogramGeometry(
  edges: readonly number[],
  counts: readonly number[],
  width: number,
  height: number,
  extra: ReadonlyArray<number | null | undefined> = [],
  gap = 1,
): HistogramGeometry | null {
  if (!validBins(edges, counts)) return null;
  const first = edges[0] as number;
  const last = edges[edges.length - 1] as number;
  const finiteExtra = extra.filter((v): v is number => typeof v === "number" && Number.isFinite(v));
  let lo = Math.min(first, ...finiteExtra);
  let hi = Math.max(last, ...finiteExtra);
  if (hi === lo) {
    lo -= 0.5;
    hi += 0.5;
  } else if (finiteExtra.some((v) => v < first || v > last)) {
    const pad = (hi - lo) * 0.03; // a line exactly at the border would be hidden by the frame
    lo -= pad;
    hi += pad;
  }
  const span = hi - lo;
  const xOf = (value: number): number => ((value - lo) / span) * width;
  const maxCount = Math.max(...counts);
  const bars: Bar[] = counts.map((count, i) => {
    const a = edges[i] as number;
    const b = edges[i + 1] as number;
    const x0 = xOf(a);
    const x1 = xOf(b);
    const h = maxCount > 0 ? (count / maxCount) * height : 0;
    const w = Math.max(0, x1 - x0 - gap);
    return { x: x0 + Math.min(gap, x1 - x0) / 2, y: height - h, width: w, height: h, count, lo: a, hi: b };
  });
  return { bars, lo, hi, maxCount, xOf };
}

/** `n` evenly spaced tick values over [lo, hi], inclusive. */
export function ticks(lo: number, hi: number, n = 5): number[] {
  if (n < 2) return [lo];
  return Array.from({ length: n }, (_, i) => lo + ((hi - lo) * i) / (n - 1));
}

/**
 * The low-confidence band [tau, s_max) as an x span, or null when it is empty (tau >= s_max, docs/METHOD.md §2)
 * or a threshold is unknown.
 */
export function bandSpan(
  tau: number | null | undefined,
  sMax: number | null | undefined,
  xOf: (value: number) => number,
): { x: number; width: number } | null {
  if (typeof tau !== "number" || typeof sMax !== "number" || !(sMax > tau)) return null;
  return { x: xOf(tau), width: xOf(sMax) - xOf(tau) };
}

/**
 * Where a line goes on an axis that keeps the data's scale: the value itself, or the axis end it lies beyond
 * (`off` says which way), so that a threshold far outside the scores is marked at the edge with an arrow
 * rather than stretching the axis until the bars are a line.
 */
export function placeOnAxis(value: number, lo: number, hi: number): { value: number; off: "below" | "above" | null } {
  if (value < lo) return { value: lo, off: "below" };
  if (value > hi) return { value: hi, off: "above" };
  return { value, off: null };
}

/** A line's label to be placed above a chart: where its line stands and its text. */
export interface LineLabel {
  x: number;
  text: string;
  /** Which side of its line the label prefers (it switches side, or slides, to stay inside the plot's width). */
  prefer: "left" | "right";
}

export interface PlacedLabel {
  /** The text's anchor point and anchor. */
  x: number;
  anchor: "start" | "end";
  /** The row above the plot, 0 nearest it. */
  row: number;
  /** The span the text is taken to cover (its estimated width). */
  left: number;
  right: number;
}

/**
 * Labels of vertical lines (the threshold, the band end, a threshold tried), set in rows above the plot so that no
 * label is drawn over a bar, over another label, or across another label's line. Why: drawn inside the plot beside
 * their lines, at phone width "band end 127.9" and "new 115.0" stood over the bars and each other (t-console
 * finding 7). Each line runs from its label's row down into the plot, so it crosses the rows below its label: a
 * label goes in the lowest row where it keeps `gap` px from the labels there, where its line crosses no label of a
 * lower row, and where it spans no line coming down from a higher row; on its preferred side of its line, else the
 * other side, slid inward where neither fits within [0, plotWidth]. The width is estimated as `charWidth` px a
 * character (12 px bold digits measure about 7; 7.5 leaves a margin): the browser test measures the drawn boxes.
 */
export function stackLabels(labels: readonly LineLabel[], plotWidth: number, charWidth = 7.5, gap = 8, offset = 4): PlacedLabel[] {
  // Placed one after the other, the order decides (a label placed first can stand over a line that then has nowhere
  // to go): every order of the few labels is tried, and the one with no line across a label, in the fewest rows, kept.
  // Each label's side is tried too (its preferred one, or the other): a label on its preferred side can stand across
  // the next line all the same.
  let best: { placed: PlacedLabel[]; score: number } | null = null;
  for (const order of orders(labels.length)) {
    for (let flips = 0; flips < 1 << labels.length; flips++) {
      const flipped = order.map((_, k) => (flips & (1 << k)) !== 0);
      const tried = stackInOrder(
        order.map((i) => labels[i] as LineLabel),
        flipped,
        plotWidth,
        charWidth,
        gap,
        offset,
      );
      const rows = Math.max(0, ...tried.placed.map((p) => p.row + 1));
      // No line across a label first, then the fewest rows, then the fewest labels off their preferred side.
      const score = tried.crossed * 1000 + rows * 10 + flipped.filter(Boolean).length;
      if (!best || score < best.score) {
        const back: PlacedLabel[] = new Array<PlacedLabel>(labels.length);
        order.forEach((i, k) => (back[i] = tried.placed[k] as PlacedLabel));
        best = { placed: back, score };
      }
    }
  }
  return best?.placed ?? [];
}

/** Every order of 0..n-1 (n is at most 3 or 4 here: the lines of one chart). */
function orders(n: number): number[][] {
  if (n <= 1) return [Array.from({ length: n }, (_, i) => i)];
  return orders(n - 1).flatMap((rest) => Array.from({ length: n }, (_, at) => [...rest.slice(0, at), n - 1, ...rest.slice(at)]));
}

function stackInOrder(
  labels: readonly LineLabel[],
  flipped: readonly boolean[],
  plotWidth: number,
  charWidth: number,
  gap: number,
  offset: number,
): { placed: PlacedLabel[]; crossed: number } {
  let crossed = 0;
  const placed: Array<PlacedLabel & { line: number }> = [];
  const clear = 3; // px kept between a line and a label it passes
  const sides = (label: LineLabel, width: number) =>
    (label.prefer === "right" ? (["right", "left"] as const) : (["left", "right"] as const)).map((side) => {
      const raw = side === "right" ? label.x + offset : label.x - offset - width;
      const left = Math.max(0, Math.min(raw, plotWidth - width));
      return { side, left, right: left + width, fits: left === raw };
    });
  for (const [k, label] of labels.entries()) {
    const width = label.text.length * charWidth;
    // A side that fits first (the preferred, or flipped the other), then one slid inward.
    const ranked = sides(label, width);
    if (flipped[k]) ranked.reverse();
    const options = [ranked.sort((a, b) => Number(b.fits) - Number(a.fits))[0] as (typeof ranked)[number]];
    const free = (row: number, o: { left: number; right: number }) =>
      placed.every((p) => {
        if (p.row === row) return o.right + gap <= p.left || o.left >= p.right + gap;
        if (p.row < row) return label.x < p.left - clear || label.x > p.right + clear; // my line crosses its row
        return p.line < o.left - clear || p.line > o.right + clear; // its line crosses my row
      });
    let chosen: { row: number; side: "left" | "right"; left: number; right: number } | null = null;
    for (let row = 0; row <= placed.length && !chosen; row++) {
      const option = options.find((o) => free(row, o));
      if (option) chosen = { row, ...option };
    }
    // Always found by the row above every other (no line comes down through it), unless this line runs through a
    // label below: then that top row all the same.
    if (!chosen) crossed++;
    const { row, side, left, right } = chosen ?? { row: placed.length, ...(options[0] as { side: "left" | "right"; left: number; right: number }) };
    // Anchored at the side nearest its line, so a slid label still ends (or starts) as close to it as it can.
    const at: PlacedLabel = side === "right" || left > label.x ? { x: left, anchor: "start", row, left, right } : { x: right, anchor: "end", row, left, right };
    placed.push({ ...at, line: label.x });
  }
  return { placed: placed.map(({ x, anchor, row, left, right }) => ({ x, anchor, row, left, right })), crossed };
}
