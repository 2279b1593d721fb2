import { describe, expect, it } from "vitest";
import { exposureLine, NOT_RECORDED } from "./exposure";

describe("exposureLine", () => {
  it("says the ranges and the widened factors, as eagle info does", () => {
    const four = { images: 4, mean: [40, 80], spread: [10, 12.5], mean_factor: 2.6390158215457884, spread_factor: 2.186724 };
    expect(exposureLine(four)).toBe(
      "mean grey 40.0 to 80.0, spread 10.0 to 12.5 (4 images); a photo warns beyond them by a factor of 2.64 (mean) or 2.19 (spread)",
    );
    const one = { images: 1, mean: [50.04, 50.04], spread: [0, 0], mean_factor: 2, spread_factor: 2 };
    expect(exposureLine(one)).toBe(
      "mean grey 50.0 to 50.0, spread 0.0 to 0.0 (1 image); a photo warns beyond them by a factor of 2.00 (mean) or 2.00 (spread)",
    );
  });
  it("says 'not recorded' for a model saved before schema 12 (null) or a service that sends no range", () => {
    expect(exposureLine(null)).toBe("not recorded (the model was saved before schema 12; a refit records it)");
    expect(exposureLine(undefined)).toBe(NOT_RECORDED);
  });
});
