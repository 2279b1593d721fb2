/** A model's training exposure in one line, for the category page: the same words `eagle info` prints. */
import type { Category } from "@eagle-iad/client";

/**
 * What a model that kept no exposure range says (expert/lighting.py `NOT_RECORDED`): saved before schema 12, or an
 * export of such a model. Said, not left blank, so "no warning about light" is not read as "the light is fine".
 */
export const NOT_RECORDED = "not recorded (the model was saved before schema 12; a refit records it)";

/**
 * The range of the training images' mean grey and spread and the factors a photo must lie beyond to warn
 * (expert/lighting.py `exposure_line`): the factor is 2 widened for few images, so the range alone would not
 * say when a verdict warns. A service older than the field answers nothing for it: "not recorded" too.
 */
export function exposureLine(exposure: Category["training_exposure"]): string {
  if (exposure === null || exposure === undefined) return NOT_RECORDED;
  const [low, high] = exposure.mean;
  const [flat, harsh] = exposure.spread;
  const images = `${exposure.images} image${exposure.images === 1 ? "" : "s"}`;
  return (
    `mean grey ${one(low)} to ${one(high)}, spread ${one(flat)} to ${one(harsh)} (${images}); a photo warns beyond ` +
    `them by a factor of ${exposure.mean_factor.toFixed(2)} (mean) or ${exposure.spread_factor.toFixed(2)} (spread)`
  );
}

function one(value: number | undefined): string {
  return value === undefined ? "–" : value.toFixed(1);
}
