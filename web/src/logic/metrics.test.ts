import { describe, expect, it } from "vitest";
import { flattenMetrics, formatMetric, metricExplanation } from "./metrics";

describe("flattenMetrics", () => {
  it("flattens nested objects to dotted keys in order", () => {
    const metrics = { category: "tire", image_auroc: 0.8333, at_tau: { tau: 100.9, counts: { tp: 2, fp: 0 } }, list: [1, 2] };
    expect(flattenMetrics(metrics)).toEqual([
      ["category", "tire"],
      ["image_auroc", 0.8333],
      ["at_tau.tau", 100.9],
      ["at_tau.counts.tp", 2],
      ["at_tau.counts.fp", 0],
      ["list", [1, 2]],
    ]);
  });
  it("keeps null values and empty objects as rows, and gives nothing for a non-object root", () => {
    expect(flattenMetrics({ a: null, b: {} })).toEqual([
      ["a", null],
      ["b", {}],
    ]);
    expect(flattenMetrics(3)).toEqual([]);
    expect(flattenMetrics(null)).toEqual([]);
  });
});

describe("formatMetric", () => {
  it("shows fractions with 3 decimals and integers as they are", () => {
    expect(formatMetric(0.8333333333333334)).toBe("0.833");
    expect(formatMetric(0.9995)).toBe("1.000");
    expect(formatMetric(100.96977229852686)).toBe("100.970");
    expect(formatMetric(2)).toBe("2");
    expect(formatMetric(Number.NaN)).toBe("NaN");
  });
  it("formats other values readably", () => {
    expect(formatMetric(null)).toBe("–");
    expect(formatMetric(true)).toBe("yes");
    expect(formatMetric("tire")).toBe("tire");
    expect(formatMetric([0.5, 1])).toBe("[0.500, 1]");
    expect(formatMetric(Array.from({ length: 10 }, (_, i) => i))).toBe("[0, 1, 2, 3, 4, 5, 6, 7, … 10 items]");
    expect(formatMetric({})).toBe("{}");
  });
});

import { formatMetricFor, metricLabel } from "./metrics";

describe("metric labels and formats", () => {
  it("names metrics in words, with their group", () => {
    expect(metricLabel("at_tau.fn")).toBe("Defects missed (at the threshold)");
    expect(metricLabel("image_auroc")).toBe("Image AUROC");
    expect(metricLabel("boxes.mean_best_iou")).toBe("Mean best box IoU (boxes)");
    expect(metricLabel("some.new_key")).toBe("New key (some)");
    expect(metricLabel("unrecognised_normals")).toBe("False alarms, unrecognised");
  });
  it("uses one format per kind: counts whole, rates 3 decimals, scores like the console", () => {
    expect(formatMetricFor("at_tau.fn", 4)).toBe("4");
    expect(formatMetricFor("image_auroc", 1)).toBe("1.000");
    expect(formatMetricFor("at_tau.f1", 0.33333333)).toBe("0.333");
    expect(formatMetricFor("tau", 142.34120897305476)).toBe("142.3");
    expect(formatMetricFor("pixel_auroc", null)).toBe("–");
  });
});

describe("metricExplanation", () => {
  it("explains a metric in one sentence, nested or not, and leaves counts of images alone", () => {
    expect(metricExplanation("image_auroc")).toBe(
      "How well the scores rank defective images above normal ones, whatever the threshold: 1 is perfect, 0.5 is chance.",
    );
    expect(metricExplanation("at_tau.fn")).toBe("Defective images called normal: the failure that costs most on a line.");
    expect(metricExplanation("n_normal")).toBeNull();
    // eval-expert's unrecognised counts (metrics.json) are named and explained, not shown as raw keys
    expect(metricExplanation("unrecognised_below_tau")).toBe(
      "Images scored below the threshold that are unrecognised all the same: the product would not pass them, but the counts at the threshold read the score alone and do.",
    );
  });
});
