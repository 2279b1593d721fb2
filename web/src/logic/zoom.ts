/**
 * Zoom and pan of a full-size picture: a scale and an offset (CSS pixels) applied as
 * `translate(x, y) scale(s)` with the origin at the top left, so zooming "at" a point keeps the
 * picture pixel under that point where it was.
 */

export interface View {
  scale: number;
  x: number;
  y: number;
}

export const MIN_SCALE = 1;
export const MAX_SCALE = 8;
export const STEP = 1.25;
export const FIT: View = { scale: 1, x: 0, y: 0 };

/** Zoom by `factor` around the point (cx, cy) of the viewport, within [MIN_SCALE, MAX_SCALE]. */
export function zoomAt(view: View, factor: number, cx: number, cy: number): View {
  const scale = Math.min(MAX_SCALE, Math.max(MIN_SCALE, view.scale * factor));
  if (scale === MIN_SCALE) return FIT;
  const k = scale / view.scale;
  return { scale, x: cx - (cx - view.x) * k, y: cy - (cy - view.y) * k };
}

/** Move by (dx, dy); at the fitted size there is nothing to pan. */
export function panBy(view: View, dx: number, dy: number): View {
  if (view.scale === MIN_SCALE) return view;
  return { ...view, x: view.x + dx, y: view.y + dy };
}

/**
 * The full-size viewer's title, which also names its dialog (aria-labelledby): which picture of which image,
 * as a sighted user reads it above the picture ("Boxed image of 00.png, full size", "Heatmap of 00.png, full
 * size"). `picture` is the toggle's own word ("Boxed", "Heatmap", "Attention L3", "Image"); "Boxed" alone, or a
 * kind the console has no word for ("input"), does not say it is the image.
 */
export function zoomTitle(picture: string, name: string): string {
  const words = picture === "Boxed" ? "Boxed image" : picture === "input" ? "Image" : picture;
  return `${words} of ${name}, full size`;
}
