import { describe, expect, it } from "vitest";
import { NOTHING_SERVED, servedFigures } from "./served";

describe("servedFigures", () => {
  it("takes the figures the service sends", () => {
    expect(servedFigures({ far_above_s_max: 3, recent_s: 600, flagged_share: 0.2 }, NOTHING_SERVED)).toEqual({
      farAboveSMax: 3,
      recentS: 600,
      flaggedShare: 0.2,
    });
  });
  it("keeps what was said when an answer lacks a figure, or gives one that cannot be meant", () => {
    const said = { farAboveSMax: 2, recentS: 300, flaggedShare: 0.1 };
    expect(servedFigures({}, said)).toBe(said);
    expect(servedFigures({ far_above_s_max: null, recent_s: 0, flagged_share: -1 }, said)).toBe(said);
    expect(servedFigures({ far_above_s_max: Number.NaN, recent_s: -5 }, NOTHING_SERVED)).toBe(NOTHING_SERVED);
  });
  it("returns the same object when nothing changed (no page drawn anew every 15 s)", () => {
    const said = servedFigures({ far_above_s_max: 2, recent_s: 300, flagged_share: 0.1 }, NOTHING_SERVED);
    expect(servedFigures({ far_above_s_max: 2, recent_s: 300, flagged_share: 0.1 }, said)).toBe(said);
    expect(servedFigures({ far_above_s_max: 2.5, recent_s: 300 }, said)).toEqual({ farAboveSMax: 2.5, recentS: 300, flaggedShare: 0.1 });
    expect(servedFigures({ flagged_share: 0.25 }, said)).toEqual({ farAboveSMax: 2, recentS: 300, flaggedShare: 0.25 });
  });
});
