import { describe, expect, it } from "vitest";
import { exportFormatName, needsFittedModelLine } from "./exported";

describe("a category the service runs as an export", () => {
  it("says what needs the fitted model, and nothing for a fitted model", () => {
    expect(needsFittedModelLine("onnx", "Changing the threshold")).toBe(
      "Changing the threshold needs the fitted model: the service runs an ONNX export of this category " +
        "(eagle serve --runtime onnx), which keeps no training images or versions. Serve the fitted model " +
        "(eagle serve --runtime torch) for that.",
    );
    expect(needsFittedModelLine("openvino", "The versions")).toContain("an OpenVINO export of this category (eagle serve --runtime openvino)");
    expect(needsFittedModelLine(null, "Changing the threshold")).toBeNull();
    expect(needsFittedModelLine(undefined, "Teaching")).toBeNull();
    expect(exportFormatName("tflite")).toBe("tflite");
  });
});
