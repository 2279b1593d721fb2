import { describe, expect, it } from "vitest";
import { bandSpan, histogramGeometry, placeOnAxis, stackLabels, ticks, validBins } from "./histogram";

describe("validBins", () => {
  it("needs one more edge than counts, ascending", () => {
    expect(validBins([0, 1, 2], [3, 4])).toBe(true);
    expect(validBins([0, 1], [3, 4])).toBe(false);
    expect(validBins([0, 2, 1], [3, 4])).toBe(false);
    expect(validBins([0], [])).toBe(false);
    expect(validBins([0, 1, 2], [3, -1])).toBe(false);
  });
});

describe("histogramGeometry", () => {
  it("scales bars to the tallest count and the edges to the width", () => {
    const g = histogramGeometry([0, 10, 20, 30, 40], [1, 4, 2, 0], 400, 100, [], 0);
    expect(g).not.toBeNull();
    const bars = g!.bars;
    expect(bars.map((b) => b.x)).toEqual([0, 100, 200, 300]);
    expect(bars.map((b) => b.width)).toEqual([100, 100, 100, 100]);
    expect(bars.map((b) => b.height)).toEqual([25, 100, 50, 0]);
    expect(bars.map((b) => b.y)).toEqual([75, 0, 50, 100]);
    expect(g!.maxCount).toBe(4);
    expect(g!.xOf(25)).toBe(250);
  });
  it("leaves a gap between bars, centred", () => {
    const g = histogramGeometry([0, 10, 20], [1, 1], 200, 50, [], 2)!;
    expect(g.bars[0]).toMatchObject({ x: 1, width: 98 });
    expect(g.bars[1]).toMatchObject({ x: 101, width: 98 });
  });
  it("widens the axis (3% padding) so a threshold beyond the last edge stays visible", () => {
    const g = histogramGeometry([0, 50, 100], [2, 2], 1000, 10, [130, null], 0)!;
    expect(g.lo).toBeCloseTo(-3.9, 9);
    expect(g.hi).toBeCloseTo(133.9, 9);
    expect(g.xOf(130)).toBeLessThan(1000);
    expect(g.xOf(130)).toBeGreaterThan(g.bars[1]!.x + g.bars[1]!.width);
  });
  it("does not pad when thresholds lie inside the edges", () => {
    const g = histogramGeometry([0, 50, 100], [2, 2], 1000, 10, [60], 0)!;
    expect([g.lo, g.hi]).toEqual([0, 100]);
    expect(g.xOf(60)).toBe(600);
  });
  it("handles all-zero counts and a single-value range", () => {
    const g = histogramGeometry([5, 5], [0], 100, 10, [], 0)!;
    expect(g.lo).toBe(4.5);
    expect(g.hi).toBe(5.5);
    expect(g.bars[0]!.height).toBe(0);
  });
  it("refuses malformed bins", () => {
    expect(histogramGeometry([0, 1], [1, 2], 10, 10)).toBeNull();
  });
});

describe("ticks", () => {
  it("spaces n ticks evenly, both ends included", () => {
    expect(ticks(0, 100, 5)).toEqual([0, 25, 50, 75, 100]);
    expect(ticks(3, 9, 1)).toEqual([3]);
  });
});

describe("bandSpan", () => {
  const xOf = (v: number) => v * 10;
  it("spans [tau, s_max) when tau < s_max", () => {
    expect(bandSpan(2, 5, xOf)).toEqual({ x: 20, width: 30 });
  });
  it("is empty when tau >= s_max or a threshold is unknown", () => {
    expect(bandSpan(5, 2, xOf)).toBeNull();
    expect(bandSpan(3, 3, xOf)).toBeNull();
    expect(bandSpan(null, 3, xOf)).toBeNull();
    expect(bandSpan(2, undefined, xOf)).toBeNull();
  });
});

describe("stackLabels: the lines' labels in rows above the plot", () => {
  const overlap = (a: { left: number; right: number; row: number }, b: { left: number; right: number; row: number }) =>
    a.row === b.row && a.left < b.right && b.left < a.right;

  it("keeps labels far apart in one row, on their preferred side", () => {
    const [a, b] = stackLabels(
      [
        { x: 100, text: "threshold 139.2", prefer: "right" },
        { x: 400, text: "band end 127.9", prefer: "left" },
      ],
      1200,
    );
    expect(a).toMatchObject({ x: 104, anchor: "start", row: 0 });
    expect(b).toMatchObject({ x: 396, anchor: "end", row: 0 });
  });

  it("puts crowding labels in rows of their own: the tester's 390 px tuner (band end 127.9, new 115.0, threshold 139.2)", () => {
    // A 330 px plot from 81 to 143.7: the three lines lie within 80 px of each other.
    const x = (v: number) => ((v - 81) / (143.7 - 81)) * 330;
    const placed = stackLabels(
      [
        { x: x(139.2), text: "threshold 139.2", prefer: "right" },
        { x: x(127.9), text: "band end 127.9", prefer: "left" },
        { x: x(115), text: "new 115.0", prefer: "right" },
      ],
      330,
    );
    for (const [i, a] of placed.entries()) for (const b of placed.slice(i + 1)) expect(overlap(a, b)).toBe(false);
    // No line crosses a label: each runs down from its own label's row, through the rows below it.
    const lines = [x(139.2), x(127.9), x(115)];
    for (const [i, p] of placed.entries())
      for (const [j, q] of placed.entries()) if (i !== j && q.row < p.row) expect(lines[i]! > q.left && lines[i]! < q.right).toBe(false);
    expect(new Set(placed.map((p) => p.row)).size).toBeGreaterThan(1);
    for (const p of placed) expect(p.left >= 0 && p.right <= 330).toBe(true);
  });

  it("switches side at the plot's edges, and slides a label inward where neither side fits", () => {
    expect(stackLabels([{ x: 580, text: "band end 127.9", prefer: "right" }], 580)[0]).toMatchObject({ x: 576, anchor: "end" });
    expect(stackLabels([{ x: 20, text: "band end 127.9", prefer: "left" }], 580)[0]).toMatchObject({ x: 24, anchor: "start" });
    // "new 1000000000.0 (off the scale) →" at the right end of a 280 px plot: ends at most at the plot's end.
    const [far] = stackLabels([{ x: 280, text: "new 1000000000.0 (off the scale) →", prefer: "right" }], 280);
    expect(far!.right).toBeLessThanOrEqual(280);
    expect(far!.left).toBeGreaterThanOrEqual(0);
    const [wide] = stackLabels([{ x: 150, text: "x".repeat(30), prefer: "right" }], 240); // 225 px: fits only slid
    expect([wide!.left, wide!.right]).toEqual([15, 240]);
  });
});

describe("placeOnAxis", () => {
  it("puts a value beyond the axis at its end, saying which way", () => {
    expect(placeOnAxis(1e9, 95, 150)).toEqual({ value: 150, off: "above" });
    expect(placeOnAxis(0.001, 95, 150)).toEqual({ value: 95, off: "below" });
    expect(placeOnAxis(120, 95, 150)).toEqual({ value: 120, off: null });
  });
});
