import { describe, expect, it } from "vitest";
import { FIT, MAX_SCALE, panBy, zoomAt, zoomTitle } from "./zoom";

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

describe("zoomTitle", () => {
  it("says which picture of which image, as a title reads", () => {
    expect(zoomTitle("Boxed", "00.png")).toBe("Boxed image of 00.png, full size");
    expect(zoomTitle("Heatmap", "00.png")).toBe("Heatmap of 00.png, full size");
    expect(zoomTitle("Attention L3", "lot7/cut/003.png")).toBe("Attention L3 of lot7/cut/003.png, full size");
    expect(zoomTitle("input", "a.png")).toBe("Image of a.png, full size");
  });
});
