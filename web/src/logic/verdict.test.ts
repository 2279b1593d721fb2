import { describe, expect, it } from "vitest";
import { decisionView, orderPictures, pictureLabel } from "./verdict";

describe("decisionView", () => {
  it("gives each decision a label and a symbol", () => {
    expect(decisionView("anomalous")).toEqual({ tone: "anomalous", label: "Anomalous", symbol: "✕" });
    expect(decisionView("normal").symbol).toBe("✓");
    expect(decisionView(null).tone).toBe("undecided");
    expect(decisionView("other").label).toBe("Undecided");
    expect(decisionView("unrecognised")).toEqual({ tone: "undecided", label: "Not recognised", symbol: "!" });
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

import { formatStrength, regionsHeading, regionsOf, regionStrength } from "./verdict";

describe("regionStrength", () => {
  it("reads the patch score (the image score's scale), else the map's value", () => {
    const box = { x0: 1, y0: 2, x1: 3, y1: 4, peak: 1, score: 161.5 };
    expect(regionStrength({ ...box, patch_score: 166.7 })).toBe(166.7);
    expect(regionStrength({ ...box, patch_score: null })).toBe(161.5);
    expect(regionStrength({ ...box, patch_score: null }, 2)).toBe(323); // an export's map value, on the score's scale
    expect(regionStrength({ ...box, patch_score: 166.7 }, 2)).toBe(166.7);
    expect(regionStrength({ x0: 1, y0: 2, x1: 3, y1: 4, peak: 1 })).toBeNull();
  });
});

describe("regionsOf", () => {
  it("reads boxes and candidates, skipping malformed entries", () => {
    const box = { x0: 1, y0: 2, x1: 3, y1: 4, peak: 5.5, area: 4, score: 1, rank: 1 };
    expect(regionsOf({ boxes: [box, { x0: 1 }], candidates: null })).toEqual({ boxes: [box], candidates: [] });
    expect(regionsOf({ boxes: [], candidates: [box] })).toEqual({ boxes: [], candidates: [box] });
  });
});

import { answeredByView } from "./verdict";

describe("answeredByView", () => {
  it("names the backend and its route, and says what became of CAAS in plain words", () => {
    expect(answeredByView({ backend: "hf:/models/qwen", route: "caas", caas: "applied" })).toEqual({
      backend: "hf:/models/qwen",
      how: "in-process CAAS",
      caas: "CAAS applied: the expert was unsure, so the model's attention to the image was sharpened.",
    });
    expect(answeredByView({ backend: "openai:http://e:8001/v1#qwen", route: "engine", caas: "not applied (backend cannot)" })).toEqual({
      backend: "openai:http://e:8001/v1#qwen",
      how: "serving engine",
      caas: "CAAS not applied: the expert was unsure, but this backend cannot sharpen attention, so it answered without CAAS.",
    });
    expect(answeredByView({ backend: "openai:http://e:8001/v1#qwen", route: "engine", caas: "not needed (outside the band)" })?.caas).toBe(
      "CAAS not needed: the expert's score is outside the unsure band.",
    );
  });

  it("tells a single backend's kind by its scheme, and reads conditions and unknown states as they are", () => {
    expect(answeredByView({ backend: "hf:/m", route: "single", caas: "off (condition plain)" })).toEqual({
      backend: "hf:/m",
      how: "in-process model",
      caas: "CAAS off: the “plain” condition does not use it.",
    });
    expect(answeredByView({ backend: "openai:http://e/v1#m", route: "single", caas: "later" })).toMatchObject({ how: "serving engine", caas: "CAAS: later." });
    expect(answeredByView({})).toEqual({ backend: "an unnamed backend", how: "in-process model", caas: "CAAS status not recorded." });
  });

  it("says nothing for an expert-only inspection", () => {
    expect(answeredByView(null)).toBeNull();
    expect(answeredByView(undefined)).toBeNull();
  });
});

describe("the box list says the order it is in", () => {
  const at = (rank: number, patch: number) => ({ x0: 0, y0: 0, x1: 1, y1: 1, peak: 1 / rank, score: 100, patch_score: patch, rank });

  it("keeps 'strongest first' where the record's order is the order of the strengths shown", () => {
    expect(regionsHeading([at(1, 148.2), at(2, 147.1), at(3, 145.5)])).toBe("3 regions boxed, strongest first.");
    expect(regionsHeading([at(1, 148.2)])).toBe("1 region boxed.");
  });

  it("says how the boxes are numbered where the strengths are not in that order", () => {
    // The tester's cell: #1 145.5, #2 148.2, #3 147.1 under "strongest first".
    const line = regionsHeading([at(1, 145.47), at(2, 148.24), at(3, 147.1)]);
    expect(line).not.toContain("strongest first");
    expect(line).toBe(
      "3 regions boxed, numbered as on the boxed picture: #1 is where the heat map, smoothed over neighbouring patches, is strongest. " +
        "A region's strength is its single highest patch score, so the numbers need not fall in order.",
    );
  });

  it("prints a strength as the picture's tag does: two decimals", () => {
    expect(formatStrength(145.4712)).toBe("145.47");
    expect(formatStrength(7.5)).toBe("7.50");
    expect(formatStrength(null)).toBe("–");
  });
});
