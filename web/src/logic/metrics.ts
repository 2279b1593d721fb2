/** Evaluation metrics: nested objects flattened to dotted keys, values formatted for a table. */
import { formatScore } from "./scale";

export type Flat = Array<[key: string, value: unknown]>;

/** Keys shown in tables of their own (./perType), not as rows of the flat metrics table. */
const OWN_TABLE_KEYS = new Set(["per_type"]);

/**
 * `{at_tau: {f1: 0.5}}` -> `[["at_tau.f1", 0.5]]`, in the object's own key order; arrays stay values.
 * `per_type` objects are left out at any depth: they have a table of their own.
 */
export function flattenMetrics(value: unknown, prefix = ""): Flat {
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    return prefix ? [[prefix, value]] : [];
  }
  const out: Flat = [];
  const entries = Object.entries(value as Record<string, unknown>);
  if (entries.length === 0 && prefix) return [[prefix, {}]];
  for (const [key, inner] of entries) {
    if (OWN_TABLE_KEYS.has(key)) continue;
    const path = prefix ? `${prefix}.${key}` : key;
    out.push(...flattenMetrics(inner, path));
  }
  return out;
}

/** Numbers with 3 decimals (integers, e.g. counts, stay integers); booleans, strings, arrays readable. */
export function formatMetric(value: unknown): string {
  if (typeof value === "number") {
    if (!Number.isFinite(value)) return String(value);
    return Number.isInteger(value) ? String(value) : value.toFixed(3);
  }
  if (value === null || value === undefined) return "–";
  if (typeof value === "boolean") return value ? "yes" : "no";
  if (typeof value === "string") return value;
  if (Array.isArray(value)) {
    const shown = value.slice(0, 8).map(formatMetric).join(", ");
    return value.length > 8 ? `[${shown}, … ${value.length} items]` : `[${shown}]`;
  }
  return JSON.stringify(value);
}

const LEAF_LABELS: Record<string, string> = {
  category: "Category",
  n_normal: "Normal test images",
  n_anomalous: "Defective test images",
  image_auroc: "Image AUROC",
  pixel_auroc: "Pixel AUROC",
  aupro: "AUPRO",
  tau: "Threshold",
  s_max: "Unsure band end",
  balanced_accuracy: "Balanced accuracy",
  accuracy: "Accuracy",
  precision: "Precision",
  recall: "Recall (defects caught)",
  f1: "F1",
  false_alarm_rate: "False-alarm rate",
  miss_rate: "Miss rate",
  tp: "Defects caught",
  fp: "False alarms",
  tn: "Normal images passed",
  fn: "Defects missed",
  n_anomalous_with_mask: "Defective images with a mask",
  n_anomalous_with_boxes: "Defective images with boxes",
  pointing_accuracy: "Pointing accuracy",
  mean_best_iou: "Mean best box IoU",
  median_area_ratio: "Median box area ratio",
  touch_rate: "Boxes touching the defect",
  normal_boxes: "Boxes on normal images",
  normal_images_with_boxes: "Normal images with boxes",
  defects_without_mask: "Defective images without a mask",
  unrecognised_defects: "Defects caught, unrecognised",
  unrecognised_normals: "False alarms, unrecognised",
  unrecognised_below_tau: "Unrecognised images below the threshold",
};

/** One sentence per metric, for a reader who does not know the term (shown under its name). */
const EXPLANATIONS: Record<string, string> = {
  image_auroc: "How well the scores rank defective images above normal ones, whatever the threshold: 1 is perfect, 0.5 is chance.",
  pixel_auroc: "The same ranking for single pixels: do pixels inside the defect masks score higher than the rest?",
  aupro: "How much of each defect region the heatmap covers before too many normal pixels light up (1 is best).",
  tau: "The decision threshold: a score at or above it is called defective. Set from normal images alone.",
  s_max: "The highest score of a normal training image; between the threshold and this, the expert is unsure.",
  balanced_accuracy: "The mean of the share of defects caught and the share of normal images passed: 0.5 is chance.",
  accuracy: "The share of test images called right.",
  precision: "Of the images called defective, the share that really were.",
  recall: "Of the defective images, the share that were caught.",
  f1: "One number balancing precision and recall (their harmonic mean).",
  false_alarm_rate: "Of the normal images, the share wrongly called defective.",
  miss_rate: "Of the defective images, the share let through as normal.",
  tp: "Defective images called defective.",
  fp: "Normal images called defective.",
  tn: "Normal images called normal.",
  fn: "Defective images called normal: the failure that costs most on a line.",
  pointing_accuracy: "Of the defective images with a mask, the share whose strongest box lies on the defect.",
  mean_best_iou: "How well the best box overlaps the defect's own box, averaged (1 is a perfect fit).",
  median_area_ratio: "Box area over defect area, the middle value: near 1 means tight boxes, large means loose ones.",
  touch_rate: "The share of boxes that touch a defect at all.",
  normal_boxes: "Boxes drawn on normal test images (there should be few).",
  unrecognised_defects: "Of the defects caught, those the product calls unrecognised (not like the training images): they get no boxes.",
  unrecognised_normals: "Of the false alarms, those the product calls unrecognised (not like the training images): a new look of normal parts, which teaching fixes.",
  unrecognised_below_tau:
    "Images scored below the threshold that are unrecognised all the same: the product would not pass them, but the counts at the threshold read the score alone and do.",
};

/** The sentence under a metric's name, or null for one that needs none (counts of images, names). */
export function metricExplanation(key: string): string | null {
  const parts = key.split(".");
  return EXPLANATIONS[parts[parts.length - 1] ?? key] ?? null;
}

const GROUP_LABELS: Record<string, string> = {
  at_tau: "at the threshold",
  boxes: "boxes",
  expert: "expert alone",
  eagle: "EAGLE",
};

function humanize(key: string): string {
  const words = key.replace(/[_.]+/g, " ").trim();
  return words ? words[0]!.toUpperCase() + words.slice(1) : key;
}

/** `at_tau.fn` -> "Defects missed (at the threshold)"; unknown keys are spelled out from their words. */
export function metricLabel(key: string): string {
  const parts = key.split(".");
  const leaf = parts[parts.length - 1] ?? key;
  const label = LEAF_LABELS[leaf] ?? humanize(leaf);
  const groups = parts.slice(0, -1).map((g) => GROUP_LABELS[g] ?? humanize(g).toLowerCase());
  return groups.length > 0 ? `${label} (${groups.join(", ")})` : label;
}

const COUNT_KEYS = /^(n_.*|tp|fp|tn|fn|.*_boxes|.*_with_.*|defects_without_mask)$/;
const SCORE_KEYS = /^(tau|s_max|.*score.*)$/;

/**
 * A metric in the one format its kind uses everywhere: counts as integers, scores like the rest of
 * the console (formatScore), rates and areas with exactly 3 decimals (1.000, not 1).
 */
export function formatMetricFor(key: string, value: unknown): string {
  if (typeof value !== "number" || !Number.isFinite(value)) return formatMetric(value);
  const leaf = key.split(".").pop() ?? key;
  if (COUNT_KEYS.test(leaf) && Number.isInteger(value)) return String(value);
  if (SCORE_KEYS.test(leaf)) return formatScore(value);
  return value.toFixed(3);
}
