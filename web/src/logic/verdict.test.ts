import { describe, expect, it } from "vitest";
import { decisionView, orderPictures, pictureLabel } from "./verdict";

describe("decisionView", () => {
  it("gives each decision a label and a symbol", () => {
    expect(decisionView("anomalous")).toEqual({ tone: "anomalous", label: "Anomalous", symbol: "✕" });
    expect(decisionView("normal").symbol).toBe("✓");
    expect(decisionView(null).tone).toBe("undecided");
    expect(decisionView("other").label).toBe("Undecided");
  });
});

describe("orderPictures", () => {
  it("puts box, heatmap, then attention layers numerically", () => {
    expect(orderPictures(["attention_L12", "heatmap", "zzz", "attention_L3", "box"])).toEqual([
      "box",
      "heatmap",
      "attention_L3",
      "attention_L12",
      "zzz",
    ]);
    expect(pictureLabel("attention_L12")).toBe("Attention L12");
    expect(pictureLabel("box")).toBe("Boxed");
  });
});

import { regionsOf } from "./verdict";

describe("regionsOf", () => {
  it("reads boxes and candidates, skipping malformed entries", () => {
    const box = { x0: 1, y0: 2, x1: 3, y1: 4, peak: 5.5, area: 4, score: 1, rank: 1 };
    expect(regionsOf({ boxes: [box, { x0: 1 }], candidates: null })).toEqual({ boxes: [box], candidates: [] });
    expect(regionsOf({ boxes: [], candidates: [box] })).toEqual({ boxes: [], candidates: [box] });
  });
});
