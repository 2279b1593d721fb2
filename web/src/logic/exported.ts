/**
 * A category the service runs as an export (`eagle serve --runtime onnx|openvino`, the category's `export`): the
 * service scores it from a graph and a sidecar, with no training images, training scores or versions. So its
 * threshold, teaching, versions and nearest normal reference need the fitted model; its dashboard and threshold
 * preview (the history read against the sidecar's threshold) do not. These lines say so in place of the
 * controls, before the user tries one and meets the service's 409 `needs_fitted_model`.
 */

/** "ONNX", "OpenVINO", or the format as the service names it. */
export function exportFormatName(format: string): string {
  const names: Record<string, string> = { onnx: "ONNX", openvino: "OpenVINO" };
  return names[format] ?? format;
}

/**
 * What an export cannot do, in one line: "Changing the threshold needs the fitted model: the service runs an
 * ONNX export of this category (eagle serve --runtime onnx), …". Null for a fitted model (`format` null).
 */
export function needsFittedModelLine(format: string | null | undefined, what: string): string | null {
  if (!format) return null;
  return (
    `${what} needs the fitted model: the service runs an ${exportFormatName(format)} export of this category ` +
    `(eagle serve --runtime ${format}), which keeps no training images or versions. Serve the fitted model ` +
    `(eagle serve --runtime torch) for that.`
  );
}
