/**
 * `@eagle-iad/client`: a typed client for the EAGLE-IAD inspection service, for Node 20+ and browsers.
 *
 * The response types are generated from the service's OpenAPI document (`src/generated/`); the
 * client class adds what generated code does badly: multipart uploads, the fit job's event stream,
 * and retries that honour the service's `Retry-After` when its MLLM queue is full.
 */
export {
  EagleClient,
  ROLES,
  newIdempotencyKey,
  roleAllows,
  type AuditPage,
  type AuditRow,
  type CreatedKey,
  type KeyInfo,
  type Me,
  type Role,
  PICTURE_KINDS,
  type Category,
  type CategoryRetired,
  type InspectionDeleted,
  type CategoryDashboard,
  type CategoryEvidence,
  type ClientOptions,
  type DayFigures,
  type Decision,
  type ErrorBody,
  type LabelChanged,
  type EvaluationRun,
  type FitOptions,
  type FitSource,
  type FitWatch,
  type InspectionEvent,
  type DeleteStationOptions,
  type UpdateStationOptions,
  type PauseStationOptions,
  type LabelOptions,
  type ReviewItem,
  type ReviewPage,
  type Health,
  type HistoryQuery,
  type ImageInput,
  type InspectOptions,
  type InspectionPage,
  type InspectionRecord,
  type Job,
  type JobEvent,
  type JobStarted,
  type Label,
  type LabelFilter,
  type Picture,
  type PictureKind,
  type Reference,
  type LabelledScore,
  type Requeued,
  type ScoreDistribution,
  type SinkInfo,
  type StationBody,
  type StationInfo,
  type ModelVersion,
  type RollbackRequest,
  type TeachAnswer,
  type LabelAnswer,
  type VersionList,
  type TeachRequest,
  type ThresholdChange,
} from "./client.js";
export { EagleApiError, EagleError, EagleFitError, EagleNetworkError, PathSegmentError } from "./errors.js";
export type { components, paths } from "./generated/openapi.js";
export { FIT_OPTIONS } from "./generated/fit-options.js";
export { STATION_DUPLICATES, STATION_SINKS, STATION_SOURCES } from "./generated/station-options.js";
export { isRetryableStatus, parseRetryAfter, retryDelayMs } from "./retry.js";
export { parseSseChunk, readSse, type SseEvent } from "./sse.js";
export { EXPORT_COLUMNS, csvField, exportRow, toCsv, toJsonLines, type ExportAnsweredBy, type ExportBox, type ExportRow } from "./export.js";
