import { describe, expect, it } from "vitest";
import { flattenMetrics } from "./metrics";
import { formatRate, perTypeTable, perTypeTables } from "./perType";

const entry = (n: number, auroc: number | null, recall: number, pointing: number | null) => ({
  n_images: n, image_auroc: auroc, recall_at_tau: recall, caught: Math.round(recall * n), missed: n - Math.round(recall * n),
  n_with_mask: n, pointing_accuracy: pointing, mean_best_iou: 0.2, n_with_boxes: n, median_area_ratio: 3, touch_rate: 1,
});
const perType = { version: 1, tau: 70, n_normal: 25, false_alarms: 2, types: { cut: entry(4, 0.5, 0.25, 0.75), hole: entry(2, 1, 1, null) } };

describe("perTypeTable", () => {
  it("reads each type's images, AUROC, recall and pointing in the file's order", () => {
    expect(perTypeTable(perType)).toEqual({
      scope: "",
      normals: 25,
      falseAlarms: 2,
      rows: [
        { type: "cut", images: 4, imageAuroc: 0.5, recallAtTau: 0.25, caught: 1, pointing: 0.75, withMask: 4 },
        { type: "hole", images: 2, imageAuroc: 1, recallAtTau: 1, caught: 2, pointing: null, withMask: 2 },
      ],
    });
  });
  it("gives nothing for runs without per_type, another version, or no types", () => {
    expect(perTypeTable(undefined)).toBeNull();
    expect(perTypeTable({ ...perType, version: 2 })).toBeNull();
    expect(perTypeTable({ ...perType, types: {} })).toBeNull();
    expect(perTypeTable({ ...perType, types: { cut: "broken" } })).toBeNull();
  });
});

describe("perTypeTables", () => {
  it("finds eval-expert's top-level table and eagle eval's per-class ones", () => {
    expect(perTypeTables({ image_auroc: 0.9, per_type: perType }).map((t) => t.scope)).toEqual([""]);
    const evalRun = { mllm: {}, expert: { tire: { per_type: perType }, old: { image_auroc: 0.7 } } };
    expect(perTypeTables(evalRun).map((t) => t.scope)).toEqual(["tire"]);
    expect(perTypeTables({ image_auroc: 0.9 })).toEqual([]);
    expect(perTypeTables(null)).toEqual([]);
  });
});

describe("flattenMetrics and per_type", () => {
  it("leaves per_type to its own table, wherever it is nested", () => {
    const keys = flattenMetrics({ image_auroc: 0.9, per_type: perType, expert: { tire: { tau: 1, per_type: perType } } }).map(([k]) => k);
    expect(keys).toEqual(["image_auroc", "expert.tire.tau"]);
  });
});

describe("formatRate", () => {
  it("uses 3 decimals and a dash for undefined", () => {
    expect(formatRate(1)).toBe("1.000");
    expect(formatRate(null)).toBe("–");
  });
});
