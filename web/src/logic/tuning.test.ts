import { describe, expect, it } from "vitest";
import {
  confirmPhrase,
  dayGeometry,
  nearScores,
  formatPercent,
  formatRate,
  insideNormalsLine,
  knownScores,
  offScale,
  offScaleLine,
  previewThreshold,
  roundTo,
  sameFileLine,
  scoreRange,
  sliderRange,
  type Known,
} from "./tuning";

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

describe("insideNormalsLine: a threshold that calls more than the served share of the training images anomalous", () => {
  it("says so with the share, as the model's warning does once saved, and is silent at the share or less", () => {
    // The tester's 14 training images with tau 100: 5 at or above it (t-odd finding 3); the service's share 0.1.
    expect(insideNormalsLine(5, 14, 0.1)).toBe(
      "That is more than 10% of the training images, each a normal part: the threshold lies inside the normal parts' scores, so expect about 35.7% of normal parts flagged.",
    );
    expect(insideNormalsLine(1, 10, 0.1)).toBeNull(); // 10%: not more
    expect(insideNormalsLine(2, 10, 0.1)).not.toBeNull();
    expect(insideNormalsLine(1, 14, 0.1)).toBeNull();
    expect(insideNormalsLine(2, 14, 0.1)).not.toBeNull();
    expect(insideNormalsLine(0, 0, 0.1)).toBeNull();
  });
  it("judges by the share the service sends, and says nothing before it has said one", () => {
    expect(insideNormalsLine(2, 10, 0.25)).toBeNull(); // 20%: within a served quarter
    expect(insideNormalsLine(3, 10, 0.25)).toContain("more than 25% of the training images");
    expect(insideNormalsLine(5, 14, null)).toBeNull();
  });
});

describe("confirmPhrase: what saving a threshold is ticked for", () => {
  it("asks a tick inside the normal parts' scores as well as off the scale: 11 of 12 flagged as 12 of 12 is (t-console finding 3)", () => {
    // The tester's mono model: 86 flags 11 of its 12 training images, 85 all 12; the service's share 0.1.
    expect(confirmPhrase(null, 11, 12, 0.1)).toBe("flags about 91.7% of normal parts");
    expect(confirmPhrase("flags-every-normal", 12, 12, 0.1)).toBe("flags every normal part");
    expect(confirmPhrase("flags-nothing", 0, 12, 0.1)).toBe("flags nothing");
    expect(confirmPhrase(null, 2, 12, 0.1)).toBe("flags about 16.7% of normal parts"); // 115: more than 10%
  });
  it("asks none where the model would not warn: at the share or below it, and before the service said its share", () => {
    expect(confirmPhrase(null, 1, 12, 0.1)).toBeNull(); // 8.3%
    expect(confirmPhrase(null, 1, 10, 0.1)).toBeNull(); // 10%: not more
    expect(confirmPhrase(null, 0, 12, 0.1)).toBeNull();
    expect(confirmPhrase(null, 11, 12, null)).toBeNull();
  });
});

describe("offScale: a threshold outside the scores known", () => {
  // Training scores 100..127.9 (s_max 127.9); a labelled defect at 148.2: the tester's mono category.
  // The factor the service serves (far_above_s_max of /healthz): 2 today.
  const known = knownScores([100, 110, 120, 127.9], [{ score: 148.2 }, { score: 105 }], 127.9, 2);
  const fmt = (v: number | null | undefined) => (typeof v === "number" ? v.toFixed(1) : "–");

  it("knows the lowest training score and the highest score of any kind", () => {
    expect(known).toEqual({
      lowestTraining: 100,
      highest: 148.2,
      highestTraining: 127.9,
      truth: { count: 2, highest: 148.2 },
      highestInspected: null,
      sMax: 127.9,
      farFactor: 2,
    });
  });

  it("takes in the inspections' highest score, as “Over time” charts it (t-console finding 4)", () => {
    // The tester's far model: 12 training scores up to 127.9, no labels, an inspection charted at 153.5.
    const far = knownScores([100, 127.9], [], 127.9, 2, 153.5);
    expect([far.highest, far.highestInspected]).toEqual([153.5, 153.5]);
    expect(offScaleLine("flags-nothing", "1000000000.0", far, fmt)).toBe(
      "This flags nothing: 1000000000.0 is more than twice the largest training score (127.9) and above every other score known here: " +
        "the inspections in “Over time” (highest 153.5). The expert would pass every part, defective ones too.",
    );
    // Training scores alone: said once, not "the highest is 127.9 … the largest training score (127.9)".
    const alone = offScaleLine("flags-nothing", "1000000000.0", knownScores([100, 127.9], [], 127.9, 2), fmt);
    expect(alone).toBe("This flags nothing: 1000000000.0 is more than twice the largest training score (127.9). The expert would pass every part, defective ones too.");
    // An inspection above the far factor's reach: a threshold below it still flags that part, so it flags something.
    const strong = knownScores([100, 127.9], [], 127.9, 2, 400);
    expect(offScale(300, strong)).toBeNull();
    expect(offScale(401, strong)).toBe("flags-nothing");
  });

  it("calls a threshold above every score and far above s_max one that flags nothing", () => {
    expect(offScale(1e9, known)).toBe("flags-nothing");
    expect(offScale(255.9, known)).toBe("flags-nothing"); // just past twice s_max (255.8)
    expect(offScaleLine("flags-nothing", "1000000000.0", known, fmt)).toBe(
      "This flags nothing: 1000000000.0 is more than twice the largest training score (127.9) and above every other score known here: " +
        "the 2 images with known truth (highest 148.2). The expert would pass every part, defective ones too.",
    );
  });

  it("calls a threshold at or below the lowest training score one that flags every normal part", () => {
    expect(offScale(0.001, known)).toBe("flags-every-normal");
    expect(offScale(100, known)).toBe("flags-every-normal"); // score >= tau: the lowest training image is flagged too
    expect(offScaleLine("flags-every-normal", "0.001", known, fmt)).toMatch(/^This flags every normal part: 0.001 is at or below the lowest training score \(100.0\)/);
  });

  it("leaves alone the values worth trying: among the scores, or above them by less than the margin", () => {
    for (const tau of [100.01, 127.9, 144.3, 148.2, 200, 255.8]) expect(offScale(tau, known)).toBeNull();
    // A defect scoring above twice s_max: a threshold below it still flags it, so it is worth trying.
    const strong = knownScores([100, 127.9], [{ score: 400 }], 127.9, 2);
    expect(offScale(300, strong)).toBeNull();
    expect(offScale(401, strong)).toBe("flags-nothing");
    expect(offScale(Number.NaN, known)).toBeNull();
  });

  it("judges by the factor the service sends, not one of its own", () => {
    // Served as 3: 300 (past twice s_max, under three times) is worth trying; past 383.7 it flags nothing.
    const wider = knownScores([100, 110, 120, 127.9], [{ score: 148.2 }], 127.9, 3);
    expect(offScale(300, wider)).toBeNull();
    expect(offScale(383.8, wider)).toBe("flags-nothing");
    expect(offScaleLine("flags-nothing", "400.0", wider, fmt)).toContain("is more than 3 times the largest training score (127.9) and ");
    // Not said yet (health unread): nothing is called one that flags nothing on a guess (a tau just above every
    // score known would be warned of until the answer came), while "flags every normal part" needs no factor.
    const unsaid = knownScores([100, 110, 120, 127.9], [{ score: 148.2 }], 127.9, null);
    expect(unsaid.farFactor).toBeNull();
    expect(offScale(150, unsaid)).toBeNull();
    expect(offScale(1e9, unsaid)).toBeNull();
    expect(offScale(0.001, unsaid)).toBe("flags-every-normal");
    expect(offScaleLine("flags-nothing", "200.0", unsaid, fmt)).toBe(
      "This flags nothing: 200.0 is above every training score (the largest is 127.9) and above every other score known here: " +
        "the image with known truth (148.2). The expert would pass every part, defective ones too.",
    );
  });

  it("keeps the chart's range on the scores when the threshold in use is far off", () => {
    const scores = [100, 110, 120, 127.9, 148.2];
    expect(scoreRange(scores, [1e9], known)).toEqual(sliderRange(scores));
    expect(scoreRange(scores, [0.001], known)).toEqual(sliderRange(scores));
    expect(scoreRange(scores, [200], known)).toEqual(sliderRange([...scores, 200]));
  });
});

describe("nearScores: the thresholds a day chart's axis takes in", () => {
  const days = [
    { day: "2026-12-05", inspections: 2, scored: 2, rejected: 1, score_min: 100, score_max: 150 },
    { day: "2026-12-06", inspections: 1, scored: 1, rejected: 0, score_min: 110, score_max: 120 },
  ];
  it("keeps a threshold near the scores and leaves out one far beyond them", () => {
    expect(nearScores(days, [139.2])).toEqual([139.2]);
    expect(nearScores(days, [1e9, 0.001, null])).toEqual([]);
    expect(nearScores(days, [60])).toEqual([60]); // within one span below
    expect(nearScores([], [1e9])).toEqual([1e9]); // no scores: nothing to keep a scale for
  });
});
