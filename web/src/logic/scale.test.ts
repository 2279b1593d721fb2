import { describe, expect, it } from "vitest";
import { bandSpan, formatScore, fractionOf, positionOf, scaleDomain, zoneOf } from "./scale";

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
