import { describe, expect, it } from "vitest";
import { dayGeometry, formatPercent, formatRate, previewThreshold, roundTo, sameFileLine, sliderRange, type Known } from "./tuning";

const item = (id: string, score: number, label: Known["label"]): Known => ({ id, name: `${id}.png`, score, label });
// Normal images at 1, 5, 9 and 12; defects at 8, 10, 15 and 30.
const ITEMS: Known[] = [
  item("n1", 1, "normal"),
  item("d1", 8, "anomalous"),
  item("n2", 5, "normal"),
  item("d2", 10, "anomalous"),
  item("n3", 9, "normal"),
  item("d3", 15, "anomalous"),
  item("n4", 12, "normal"),
  item("d4", 30, "anomalous"),
];

describe("previewThreshold", () => {
  it("counts false alarms (normal, score >= tau) and misses (defect, score < tau)", () => {
    const p = previewThreshold(ITEMS, 10, null);
    expect([p.normals, p.anomalies]).toEqual([4, 4]);
    expect(p.falseAlarms.map((i) => i.id)).toEqual(["n4"]);
    expect(p.misses.map((i) => i.id)).toEqual(["d1"]);
    expect(p.flips).toEqual([]); // no current threshold: nothing to flip from
  });
  it("treats a score equal to the threshold as flagged", () => {
    expect(previewThreshold([item("n", 9, "normal")], 9, null).falseAlarms).toHaveLength(1);
    expect(previewThreshold([item("d", 9, "anomalous")], 9, null).misses).toHaveLength(0);
  });
  it("lists the images that flip between the current and the candidate threshold, and whether that helps", () => {
    const p = previewThreshold(ITEMS, 8.5, 12.5);
    expect(p.falseAlarms.map((i) => i.id)).toEqual(["n3", "n4"]);
    expect(p.misses.map((i) => i.id)).toEqual(["d1"]);
    expect(p.flips.map((f) => [f.item.id, f.now, f.effect])).toEqual([
      ["d2", "flagged", "fixed"],
      ["n3", "flagged", "broken"],
      ["n4", "flagged", "broken"],
    ]);
    const back = previewThreshold(ITEMS, 12.5, 8.5);
    expect(back.flips.map((f) => [f.item.id, f.now, f.effect])).toEqual([
      ["d2", "passed", "broken"],
      ["n3", "passed", "fixed"],
      ["n4", "passed", "fixed"],
    ]);
    expect([back.falseAlarms.length, back.misses.length]).toEqual([0, 2]);
  });
  it("skips a non-finite score", () => {
    const p = previewThreshold([item("x", Number.NaN, "normal"), item("y", 3, "normal")], 2, 4);
    expect([p.normals, p.falseAlarms.length, p.flips.length]).toEqual([1, 1, 1]);
  });
});

describe("formatting", () => {
  it("writes rates as counts and percentages", () => {
    expect(formatRate(1, 4)).toBe("1 of 4 (25%)");
    expect(formatRate(1, 3)).toBe("1 of 3 (33.3%)");
    expect(formatRate(0, 0)).toBe("none labelled");
    expect(formatPercent(null)).toBe("–");
    expect(formatPercent(0.5)).toBe("50%");
  });
});

describe("sliderRange", () => {
  it("covers every value with a margin and a power-of-ten step", () => {
    expect(sliderRange([100, 140, 120])).toEqual({ min: 98, max: 142, step: 0.01 });
    expect(sliderRange([0.2, 0.3])).toEqual({ min: 0.195, max: 0.305, step: 0.0001 });
    expect(sliderRange([])).toEqual({ min: 0, max: 1, step: 0.001 });
    expect(sliderRange([5, null, 5])).toEqual({ min: 4.75, max: 5.25, step: 0.001 });
  });
  it("rounds to the step's decimals", () => {
    expect(roundTo(0.1 + 0.2, 0.01)).toBe(0.3);
    expect(roundTo(123.456, 1)).toBe(123);
  });
});

describe("dayGeometry", () => {
  it("places reject-rate bars and score ranges per day", () => {
    const g = dayGeometry(
      [
        { day: "2026-11-29", inspections: 4, scored: 4, rejected: 1, score_min: 10, score_mean: 15, score_max: 20 },
        { day: "2026-11-30", inspections: 0, scored: 0, rejected: 0, score_min: null, score_mean: null, score_max: null },
      ],
      200,
      100,
      [30],
    );
    expect([g.lo, g.hi]).toEqual([10, 30]);
    expect(g.days.map((d) => [d.x, d.rate, d.rateY])).toEqual([
      [50, 0.25, 75],
      [150, 0, 100],
    ]);
    expect(g.days[0]?.range).toEqual({ top: 50, bottom: 100, mean: 75 });
    expect(g.days[1]?.range).toBeNull();
  });
});

describe("sameFileLine", () => {
  it("names evaluation entries and counts other inspections", () => {
    expect(sameFileLine(["mono-expert/good/001.png"])).toBe("the same file is also evaluation mono-expert/good/001.png (counted once)");
    expect(sameFileLine(["d5f35b0386e4", "ab12", "run-2/crack/003.png"])).toBe(
      "the same file is also 2 more inspections of it and evaluation run-2/crack/003.png (counted once)",
    );
    expect(sameFileLine(["d5f35b0386e4"])).toBe("the same file is also 1 more inspection of it (counted once)");
  });
});
