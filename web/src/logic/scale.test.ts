import { describe, expect, it } from "vitest";
import { bandSpan, formatScore, formatSignificant, fractionOf, positionOf, scaleDomain, zoneOf } from "./scale";

describe("scaleDomain", () => {
  it("pads the span of the values by a quarter on each side", () => {
    expect(scaleDomain([10, 20, 14])).toEqual({ lo: 7.5, hi: 22.5 });
  });
  it("never goes below zero for non-negative scores", () => {
    expect(scaleDomain([1, 9])).toEqual({ lo: 0, hi: 11 });
  });
  it("ignores null and non-finite values", () => {
    expect(scaleDomain([null, 4, Number.NaN, 8, undefined])).toEqual({ lo: 3, hi: 9 });
  });
  it("gives a unit domain when nothing is known, and a padded one for one value", () => {
    expect(scaleDomain([])).toEqual({ lo: 0, hi: 1 });
    expect(scaleDomain([50])).toEqual({ lo: 45, hi: 55 });
  });
});

describe("positionOf", () => {
  const domain = { lo: 0, hi: 200 };
  it("maps linearly onto the width", () => {
    expect(positionOf(50, domain, 400)).toEqual({ x: 100, clamped: null });
    expect(fractionOf(150, domain)).toBe(0.75);
  });
  it("clamps and flags values outside the domain", () => {
    expect(positionOf(-10, domain, 400)).toEqual({ x: 0, clamped: "low" });
    expect(positionOf(250, domain, 400)).toEqual({ x: 400, clamped: "high" });
  });
  it("is zero on a degenerate domain", () => {
    expect(fractionOf(5, { lo: 3, hi: 3 })).toBe(0);
  });
});

describe("bandSpan", () => {
  it("spans tau..s_max", () => {
    expect(bandSpan(100, 150, { lo: 50, hi: 250 }, 400)).toEqual({ x0: 100, x1: 200 });
  });
  it("is empty when s_max <= tau or either is unknown", () => {
    expect(bandSpan(100.97, 96.88, { lo: 0, hi: 200 }, 400)).toBeNull();
    expect(bandSpan(null, 5, { lo: 0, hi: 10 }, 100)).toBeNull();
  });
});

describe("zoneOf", () => {
  it("uses tau <= score < s_max for the band", () => {
    expect(zoneOf(99.9, 100, 120)).toBe("below");
    expect(zoneOf(100, 100, 120)).toBe("band");
    expect(zoneOf(120, 100, 120)).toBe("above");
    expect(zoneOf(101, 100, 96)).toBe("above");
  });
});

describe("formatScore", () => {
  it("keeps about four significant digits", () => {
    expect(formatScore(100.96977)).toBe("101.0");
    expect(formatScore(12.3456)).toBe("12.35");
    expect(formatScore(0.12345)).toBe("0.123");
    expect(formatScore(null)).toBe("–");
  });
});

describe("formatSignificant", () => {
  it("writes toPrecision's digits inside its range", () => {
    expect(formatSignificant(117.5045, 5)).toBe("117.50");
    expect(formatSignificant(5, 4)).toBe("5.000");
    expect(formatSignificant(-3.14159, 4)).toBe("-3.142");
    expect(formatSignificant(0.00001, 5)).toBe("0.000010000");
    expect(formatSignificant(12345.6, 5)).toBe("12346");
  });
  it("never switches to exponent notation, large or small, positive or negative", () => {
    expect(formatSignificant(1e9, 5)).toBe("1000000000"); // toPrecision: "1.0000e+9"
    expect(formatSignificant(-1e9, 4)).toBe("-1000000000");
    expect(formatSignificant(123456.7, 5)).toBe("123457"); // every integer digit, not "123460" nor "1.2346e+5"
    expect(formatSignificant(99999.5, 5)).toBe("100000");
    expect(formatSignificant(1e21, 5)).toBe("1000000000000000000000"); // where toFixed gives up too
    expect(formatSignificant(1e-7, 5)).toBe("0.00000010000"); // toPrecision: "1.0000e-7"
    expect(formatSignificant(-2.5e-8, 4)).toBe("-0.00000002500");
  });
  it("writes zero, a missing and a non-finite value plainly", () => {
    expect(formatSignificant(0, 4)).toBe("0.000");
    expect(formatSignificant(-0, 4)).toBe("0.000");
    expect(formatSignificant(Number.NaN, 4)).toBe("–");
    expect(formatSignificant(Number.POSITIVE_INFINITY, 4)).toBe("–");
    expect(formatSignificant(Number.NEGATIVE_INFINITY, 5)).toBe("–");
    expect(formatSignificant(null, 5)).toBe("–");
    expect(formatSignificant(undefined, 5)).toBe("–");
  });
});

import { bandLine, cautionLine, categoryDomain, farAboveScores, scaleStops, scoreLine, thresholdWords } from "./scale";

describe("categoryDomain", () => {
  it("is fixed by the category alone: below the lowest training score to one span above the top", () => {
    // bottom 80, top 100 (s_max), span 20: lo 70, hi 120
    expect(categoryDomain(90, 100, 80, 95)).toEqual({ lo: 70, hi: 120 });
    expect(categoryDomain(90, 100, 80, 95)).toEqual(categoryDomain(90, 100, 80, 95));
  });
  it("never starts below zero for distances, and survives missing values", () => {
    expect(categoryDomain(10, null, 2, 8)).toEqual({ lo: 0, hi: 18 });
    expect(categoryDomain(null, null)).toEqual({ lo: 0, hi: 1 });
    expect(categoryDomain(50, 50)).toEqual({ lo: 47.5, hi: 55 });
  });
  it("keeps the scores' scale under a far-off tau (1e9) by the factor the service sends, and marks tau off it", () => {
    // Training 100..127.9, s_max 127.9: the scale the scores alone give.
    const scores = categoryDomain(null, 127.9, 100, 127.9);
    expect(categoryDomain(1e9, 127.9, 100, 127.9, 2)).toEqual(scores);
    expect(scores.hi).toBeLessThan(200);
    const words = thresholdWords(1e9, scores);
    expect(words.mark).toBe("threshold 1000000000.0 (off the scale) →");
    expect(words.summary).toBe("threshold 1000000000.0 (off the scale, far above the scores shown)");
    // Within the factor (255.8 is twice s_max), or the factor not said: tau stays on the scale and stretches it.
    expect(categoryDomain(250, 127.9, 100, 127.9, 2).hi).toBeGreaterThan(250);
    expect(categoryDomain(1e9, 127.9, 100, 127.9, null).hi).toBeGreaterThan(1e9);
    // Another factor served is the one judged by: 300 is far above at 2, not at 3.
    expect(farAboveScores(300, 127.9, 127.9, 2)).toBe(true);
    expect(farAboveScores(300, 127.9, 127.9, 3)).toBe(false);
    // Above twice s_max but not above the highest training score: not far above the scores.
    expect(farAboveScores(300, 127.9, 400, 2)).toBe(false);
    expect(farAboveScores(1e9, null, 127.9, 2)).toBe(false);
    // A tau on the scale reads as before.
    expect(thresholdWords(120, scores)).toEqual({ mark: "threshold 120.0", summary: "threshold 120.0" });
  });
});

describe("scaleStops", () => {
  const domain = { lo: 0, hi: 200 };
  it("stays the normal colour up to tau, band colour to s_max, anomalous after", () => {
    expect(scaleStops(100, 150, domain)).toEqual([
      { offset: 0, colour: "normal" },
      { offset: 0.5, colour: "normal" },
      { offset: 0.5, colour: "band" },
      { offset: 0.75, colour: "band" },
      { offset: 0.75, colour: "anomalous" },
      { offset: 1, colour: "anomalous" },
    ]);
  });
  it("goes anomalous at tau when the band is empty", () => {
    expect(scaleStops(100, 90, domain).map((s) => `${s.offset}:${s.colour}`)).toEqual(["0:normal", "0.5:normal", "0.5:anomalous", "1:anomalous"]);
  });
});

describe("plain language", () => {
  it("reads score and threshold", () => {
    expect(scoreLine(182.345, 181.8)).toBe("score 182.3 — threshold 181.8");
  });
  it("explains the unsure band only for a score inside it", () => {
    expect(bandLine(110, 100, 90, true)).toBeNull(); // an empty band
    expect(bandLine(50, 100, 120, true)).toBeNull(); // below the band: nothing to say
    expect(bandLine(120, 100, 120, false)).toBeNull(); // at s_max: above every training score
    expect(bandLine(110, 100, 120, true)).toBe(
      "The score is in the unsure band 100.0–120.0 (from the threshold to the highest normal training score), so the MLLM looked again with sharpened attention (CAAS).",
    );
    expect(bandLine(110, 100, 120, false)).toBe("The score is in the unsure band 100.0–120.0: above the threshold but not above every normal training image.");
  });
  it("cautions on a close call on either side of the threshold, never on a clear verdict", () => {
    expect(cautionLine(true, 99, 100)).toMatch(/^Close call: the score is just below the threshold, .* A second look is advised\.$/);
    expect(cautionLine(true, 101, 100)).toMatch(/^Close call: the score is just above the threshold, /);
    expect(cautionLine(false, 20, 100)).toBeNull();
    expect(cautionLine(null, 99, 100)).toBeNull(); // stored before the service said
    expect(cautionLine(undefined, 99, 100)).toBeNull();
  });
});
