import { describe, expect, it } from "vitest";
import { boxesCutBelow, boxesCutLine, jetColour, jetStops, legendFraction, legendOf, mapFactor, verdictMapFactor } from "./legend";

describe("legendOf", () => {
  it("puts the record's map threshold on tau: the colour scale times tau / map_tau", () => {
    const verdict = { map: { colour_scale: [60, 120], map_tau: 100 } };
    const legend = legendOf(verdict, 150, null);
    expect(legend).toEqual({ low: 90, high: 180, threshold: 150 });
    expect(legendFraction(150, legend!)).toBeCloseTo(2 / 3);
  });

  it("falls back to the category's legend when the record has no map (an MLLM inspection)", () => {
    const category = { map_legend: { low: 1, high: 4, threshold: 3 } };
    expect(legendOf({ boxes: [] }, 3, category)).toEqual(category.map_legend);
    expect(legendOf({}, null, null)).toBeNull();
    expect(legendOf({ map: { colour_scale: [1, "x"], map_tau: 2 } }, 3, { map_legend: null })).toBeNull();
  });

  it("keeps a map without a positive threshold in its own units, its own threshold marked", () => {
    expect(legendOf({ map: { colour_scale: [0, 3], map_tau: 0 } }, 2, null)).toEqual({ low: 0, high: 3, threshold: 0 });
    expect(mapFactor(0, 2)).toBe(1);
    expect(mapFactor(100, 150)).toBe(1.5);
    expect(verdictMapFactor({ map: { map_tau: 100 } }, 150)).toBe(1.5);
    expect(verdictMapFactor({ boxes: [] }, 150)).toBe(1);
  });
});

describe("legendFraction", () => {
  it("clamps to the bar's ends", () => {
    const legend = { low: 10, high: 20, threshold: 15 };
    expect([legendFraction(5, legend), legendFraction(12.5, legend), legendFraction(30, legend)]).toEqual([0, 0.25, 1]);
  });
});

describe("jetColour", () => {
  it("is matplotlib's jet (colormaps['jet'](t, bytes=True))", () => {
    // Printed by colormaps['jet']([0, 0.25, 0.5, 0.75, 1], bytes=True) with matplotlib 3.x.
    expect([0, 0.25, 0.5, 0.75, 1].map(jetColour)).toEqual([
      "rgb(0, 0, 127)",
      "rgb(0, 128, 255)",
      "rgb(124, 255, 121)",
      "rgb(255, 148, 0)",
      "rgb(127, 0, 0)",
    ]);
    expect(jetStops()[0]).toEqual({ offset: 0, colour: "rgb(0, 0, 127)" });
    expect(jetStops().at(-1)).toEqual({ offset: 1, colour: "rgb(127, 0, 0)" });
  });
});

describe("jetColour at every tenth", () => {
  it("matches matplotlib byte for byte", () => {
    // colormaps['jet'](np.linspace(0, 1, 11), bytes=True)
    const expected = [[0, 0, 127], [0, 0, 241], [0, 76, 255], [0, 176, 255], [41, 255, 205], [124, 255, 121], [205, 255, 41], [255, 196, 0], [255, 103, 0], [241, 7, 0], [127, 0, 0]];
    expect(Array.from({ length: 11 }, (_, i) => jetColour(i / 10))).toEqual(expected.map(([r, g, b]) => `rgb(${r}, ${g}, ${b})`));
  });
});

describe("boxesCutBelow", () => {
  // elpv cell0002 on a small model (tests/test_evidence.py WEAK_CELLS): anomalous, its map's peak under map_tau
  const box = { x0: 41, y0: 77, x1: 154, y1: 178, strength: 131.88 };
  const map = { region_threshold: 106.83614603678384, map_tau: 124.80938397102163, max: 121.25670242309570 };
  const weak = { decision: "anomalous", boxes: [box], map };

  it("is the region threshold on the score's scale when the boxes were cut below map_tau", () => {
    const tau = 128.61908066365993;
    expect(boxesCutBelow(weak, tau)).toBeCloseTo(110.0972254465, 8);
    expect(boxesCutLine(weak, tau)).toBe(
      "Boxes cut at 110.1, below the threshold 128.6: no region of the heatmap reaches it, so they mark its strongest part (weak evidence).",
    );
    // a peak over map_tau whose few pixels above it made no region
    expect(boxesCutLine({ ...weak, map: { ...map, max: 125 } }, tau)).toBe(
      "Boxes cut at 110.1, below the threshold 128.6: too few of the heatmap's pixels reach it to make a region, so they mark its strongest part (weak evidence).",
    );
  });

  it("says nothing for boxes cut at map_tau, a normal verdict, no boxes, or a record without a map", () => {
    expect(boxesCutBelow({ ...weak, map: { ...map, region_threshold: map.map_tau } }, 128.6)).toBeNull();
    expect(boxesCutBelow({ ...weak, decision: "normal" }, 128.6)).toBeNull();
    expect(boxesCutBelow({ ...weak, boxes: [] }, 128.6)).toBeNull();
    expect(boxesCutBelow({ decision: "anomalous", boxes: [box] }, 128.6)).toBeNull();
    expect(boxesCutBelow({ ...weak, map: { ...map, region_threshold: null } }, 128.6)).toBeNull();
    expect(boxesCutBelow(weak, null)).toBeNull();
    expect(boxesCutLine({ ...weak, decision: "normal" }, 128.6)).toBeNull();
  });
});
