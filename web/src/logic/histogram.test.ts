import { describe, expect, it } from "vitest";
import { bandSpan, histogramGeometry, labelPlacement, placeOnAxis, ticks, validBins } from "./histogram";

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

describe("labelPlacement", () => {
  it("keeps the preferred side while the text fits", () => {
    expect(labelPlacement(100, 580, "right")).toEqual({ x: 104, anchor: "start" });
    expect(labelPlacement(300, 580, "left")).toEqual({ x: 296, anchor: "end" });
  });
  it("flips to the other side at the plot's edges", () => {
    expect(labelPlacement(580, 580, "right")).toEqual({ x: 576, anchor: "end" }); // s_max = the last edge
    expect(labelPlacement(20, 580, "left")).toEqual({ x: 24, anchor: "start" });
  });
});

describe("placeOnAxis", () => {
  it("puts a value beyond the axis at its end, saying which way", () => {
    expect(placeOnAxis(1e9, 95, 150)).toEqual({ value: 150, off: "above" });
    expect(placeOnAxis(0.001, 95, 150)).toEqual({ value: 95, off: "below" });
    expect(placeOnAxis(120, 95, 150)).toEqual({ value: 120, off: null });
  });
});
