import { describe, expect, it } from "vitest";
import { FIT, MAX_SCALE, panBy, zoomAt } from "./zoom";

describe("zoom", () => {
  it("keeps the point under the cursor in place", () => {
    const view = zoomAt(FIT, 2, 100, 50);
    expect(view).toEqual({ scale: 2, x: -100, y: -50 });
    // the picture pixel at (100, 50) is drawn at x * scale + offset = 100 * 2 - 100 = 100
    expect(100 * view.scale + view.x).toBe(100);
  });
  it("stays between the fitted size and the largest zoom", () => {
    expect(zoomAt(FIT, 0.5, 10, 10)).toEqual(FIT);
    expect(zoomAt({ scale: 6, x: 0, y: 0 }, 4, 0, 0).scale).toBe(MAX_SCALE);
    expect(zoomAt({ scale: 2, x: -40, y: -40 }, 0.5, 0, 0)).toEqual(FIT);
  });
  it("pans only when zoomed in", () => {
    expect(panBy(FIT, 10, 10)).toEqual(FIT);
    expect(panBy({ scale: 2, x: 0, y: 0 }, 10, -5)).toEqual({ scale: 2, x: 10, y: -5 });
  });
});
