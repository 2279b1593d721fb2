/**
 * `@eagle-iad/client/local`: inspect images with an exported expert in Node (onnxruntime-node), no
 * Python and no service. Node only: image decoding uses Buffer and zlib, and the runtime is native.
 */
export { EagleLocalError } from "./errors.js";
export { LocalExpert, readSidecar, decisionParams, MAX_OPSET, SIDECAR, type ExportSidecar, type LocalInspectionRecord } from "./session.js";
export { colourMode, colourWarning, imageEncoding, inputWarning, inputWarnings, parseColours, parseEncodings } from "./encodings.js";
export { exposureWarning, imageStatistics, parseExposure, statisticsWarning, type ExposureRange } from "./lighting.js";
export { decodeImage, type RgbImage } from "./image.js";
export { resizeBilinear } from "./resize.js";
export { mapToOriginal, makeVerdict, patchMap, prepareInput, resizeMap, type DecisionParams, type ExpertVerdictRecord, type ViewGeometry } from "./host.js";
export { extractRegions, findBoxes, mergeBoxes, type Box, type FloatMap, type Regions } from "./regions.js";
