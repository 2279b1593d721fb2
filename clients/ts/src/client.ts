/**
 * The hand-written half of the client: one class over `fetch`, typed by the generated OpenAPI types.
 *
 * Why hand-written on top of generated types: the service's interesting routes are multipart uploads,
 * a server-sent-events stream and 429 back-pressure, which generic generated callers handle poorly;
 * the types stay generated (and CI checks they match the service), the behaviour lives here.
 */

import { EagleApiError, EagleError, EagleFitError, EagleNetworkError, PathSegmentError } from "./errors.js";
import type { components, operations } from "./generated/openapi.js";
import { isRetryableStatus, parseRetryAfter, retryDelayMs } from "./retry.js";
import { readSse } from "./sse.js";

type Schemas = components["schemas"];
export type Health = Schemas["Health"];
export type Category = Schemas["Category"];
/** A retired category: where its model folder went, the inspections the history keeps, and how to undo it. */
export type CategoryRetired = Schemas["CategoryRetired"];
export type ScoreDistribution = Schemas["ScoreDistribution"];
export type InspectionRecord = Schemas["InspectionRecord"];
/** A deleted inspection: which one, and the files (pictures, the kept upload) and bytes removed with it. */
export type InspectionDeleted = Schemas["InspectionDeleted"];
export type InspectionPage = Schemas["InspectionPage"];
export type ReviewPage = Schemas["ReviewPage"];
export type ReviewItem = Schemas["ReviewItem"];

/** A label's extras: the labeller's note, and (open local mode only) their name. */
export interface LabelOptions {
  note?: string | null;
  by?: string | null;
  /**
   * The record's `label_revision` the label is based on (`null` or 0: never labelled). If someone else
   * labelled the part since, the call throws an `EagleApiError` 409 `label_changed` whose message names who
   * and when (its `detail.label_changed` has the same as fields), and their label is kept. Left out (`undefined`): no check, the last label wins.
   */
  expectedRevision?: number | null;
  signal?: AbortSignal;
}
/** {@link EagleClient.deleteStation}'s options. */
export interface DeleteStationOptions {
  /** Delete it even though its sinks still owe deliveries (verdicts and refusals: pending, dead letters): they are dropped. */
  discardPending?: boolean;
  signal?: AbortSignal;
}
export interface UpdateStationOptions {
  /** Make the change even though a sink it removes (or renames) still owes verdicts (pending, dead letters): they are dropped. */
  discardPending?: boolean;
  signal?: AbortSignal;
}
/** {@link EagleClient.pauseStation} and {@link EagleClient.resumeStation}: why (kept in the audit row), and an abort signal. */
export interface PauseStationOptions {
  /** Why the station is paused or resumed (a jam, a changeover; at most 500 characters): the audit row says it. */
  why?: string;
  signal?: AbortSignal;
}
export type Job = Schemas["Job"];
export type JobEvent = Schemas["JobEvent"];
export type InspectionEvent = Schemas["InspectionEvent"];
export type JobStarted = Schemas["JobStarted"];
export type EvaluationRun = Schemas["EvaluationRun"];
export type ErrorBody = Schemas["ErrorBody"];
/** A 409 `label_changed` answer's `error.label_changed` (the `EagleApiError`'s `detail`): the label stored now. */
export type LabelChanged = Schemas["LabelChanged"];
/** A recorded threshold change: `tau` (a new threshold) or `restore` (the number of a change to undo), and why. */
export type ThresholdChange = Schemas["ThresholdChange"];
export type Reference = Schemas["Reference"];
/**
 * Normal images to fold into a category's model without a refit: inspections from the history (their kept
 * images, e.g. those labelled "actually normal") and/or a folder under the server's data root, and why.
 */
export type TeachRequest = Schemas["TeachRequest"];
/** The teach's record (kept in the model's history: images, scores, tau before and after) and the category. */
export type TeachAnswer = Schemas["TeachAnswer"];
/** A label's answer: the record as stored now and `notices`, what the labeller should know besides. */
export type LabelAnswer = Schemas["LabelAnswer"];
/** One saved version of a category's model: what made it (fit, threshold, teach, rollback), its thresholds, its disk. */
export type ModelVersion = Schemas["ModelVersion"];
export type VersionList = Schemas["VersionList"];
/** Make version `to` of a category's model current again, and why. */
export type RollbackRequest = Schemas["RollbackRequest"];
/** An image whose truth is known (a labelled history item or an evaluation run's test image) and its score. */
export type LabelledScore = Schemas["LabelledScore"];
export type CategoryEvidence = Schemas["CategoryEvidence"];
/** One UTC day of a category's history (or `day: "all"`): inspections, rejects, scores, labels vs verdicts. */
export type DayFigures = Schemas["DayFigures"];
export type CategoryDashboard = Schemas["CategoryDashboard"];
/**
 * A station to create (`POST /v1/stations`): a `[[station]]` table of a stations file as JSON, `sinks`
 * for its `[[station.sink]]` tables (docs/STATIONS.md). Path options (a hot folder, a folder sink) must
 * lie inside the service's `--data-root`; relative ones are resolved against it.
 */
export type StationBody = Schemas["StationBody"];
/** A station's state, figures (backlog, images/s, latency p50/p95/p99, last verdict, sinks) and warnings. */
export type StationInfo = Schemas["StationInfo"];
/** One sink of a station: deliveries (verdicts and refusals) pending, delivered, given up on (dead letters), and its last error. */
export type SinkInfo = Schemas["SinkInfo"];
/** Who the client's key is: name, role, what the role may do, and whether the service is open (no keys). */
export type Me = Schemas["Me"];
/** A role, ordered: each may do what the ones before it may. */
export type Role = Me["role"];
export const ROLES: readonly Role[] = ["viewer", "operator", "engineer", "admin"];
/** Whether `role` may do what `needed` may (roles are ordered). */
export function roleAllows(role: Role, needed: Role): boolean {
  return ROLES.indexOf(role) >= ROLES.indexOf(needed);
}
/** A named key as listed (never the key itself). */
export type KeyInfo = Schemas["KeyInfo"];
/** A key just added: the key itself is in `key`, shown this once. */
export type CreatedKey = Schemas["CreatedKey"];
/** One page of the audit log (who changed what), newest first. */
export type AuditPage = Schemas["AuditPage"];
export type AuditRow = Schemas["AuditRow"];

/** What {@link EagleClient.retryStation} put back in the sinks' queues. */
export type Requeued = Schemas["Requeued"];

/** A final decision as the history filters it (`unrecognised`: not like the training images; `undecided`:
 * none of these, an unparsable MLLM reply or a custom question): generated from the service's filter. */
export type Decision = NonNullable<NonNullable<operations["inspections_v1_inspections_get"]["parameters"]["query"]>["decision"]>;

/** Image bytes: a browser `File`/`Blob`, or bytes read in Node. */
export type ImageInput = Blob | Uint8Array | ArrayBuffer;

/**
 * Fit options the service accepts (everything else keeps the expert's defaults): generated from the
 * service's one table of fit options (`FIT_OPTIONS` holds their defaults, choices and help as values).
 * `tau` is the old name of `value`, the fixed rule's threshold.
 */
export type FitOptions = Partial<components["schemas"]["FitOptions"]>;

/** Where a fit reads its normal images: uploads (images or one zip) or a folder under the server's data root. */
export type FitSource = { files: Array<{ name: string; data: ImageInput }> } | { folder: string };

export interface ClientOptions {
  /** Service address, e.g. `http://127.0.0.1:8000`. In a browser the default is the page's own origin. */
  baseUrl?: string;
  /** Sent as `Authorization: Bearer <key>` when the service runs with `EAGLE_API_KEY`. */
  apiKey?: string;
  /** Retries of a 429/503 answer (honouring `Retry-After`) and of a GET that could not connect. Default 3. */
  maxRetries?: number;
  /** Longest single wait between retries, in seconds (a larger `Retry-After` is capped). Default 30. */
  maxRetryWaitS?: number;
  /** Injected for tests and custom agents. */
  fetch?: typeof fetch;
  /** Injected for tests (fake clock). */
  sleep?: (ms: number) => Promise<void>;
  /** Told about every retry, e.g. to show "queue full, retrying in 2 s". */
  onRetry?: (info: { attempt: number; waitMs: number; status: number | null; path: string }) => void;
}

export interface InspectOptions {
  /** A yes/no question for the MLLM (default: the anomaly question). Needs an MLLM on the service. */
  question?: string;
  /** Also capture attention and return per-layer overlays. Needs an MLLM on the service. */
  attention?: boolean;
  /** The name the history and picture files use (default: the File's name, else `image.png`). */
  filename?: string;
  /**
   * Names this upload for the service, which stores one record per key and answers a repeat with it
   * (`Idempotency-Key`). Default: a new random key per call, reused by this call's own retries (a
   * dropped connection is then retried too). Pass your own to survive a restart of your program,
   * e.g. a queued item's id: sending it again can never store the image twice.
   */
  idempotencyKey?: string;
  signal?: AbortSignal;
}

/** A random key for one upload: 128 bits as hex (`getRandomValues` also exists outside secure contexts). */
export function newIdempotencyKey(): string {
  const bytes = globalThis.crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** What the user says an inspected part actually was; `null` clears it. */
export type Label = "normal" | "anomalous";

/** The pictures {@link EagleClient.inspectionPicture} downloads. */
export const PICTURE_KINDS = ["boxed", "heatmap", "reference"] as const;
export type PictureKind = (typeof PICTURE_KINDS)[number];

/** A downloaded picture: its bytes and the media type the service sent (`image/png`, `image/jpeg`). */
export interface Picture {
  data: Uint8Array;
  type: string;
}
/** The history's label filter: one label, either, or none yet. */
export type LabelFilter = Label | "labelled" | "unlabelled";

export interface HistoryQuery {
  limit?: number;
  offset?: number;
  category?: string;
  decision?: Decision;
  label?: LabelFilter;
  signal?: AbortSignal;
}

export interface FitWatch {
  /** Every event of the job as it happens (state changes and progress steps). */
  onEvent?: (event: JobEvent) => void;
  signal?: AbortSignal;
}

type Method = "GET" | "POST" | "PUT" | "PATCH" | "DELETE";

/**
 * One path segment of a route (a category, an inspection id, a station): encoded, and refused where a URL would
 * not keep it a segment. `.` and `..` (however encoded) are dot segments a URL resolves away, so
 * `inspection(".")` would ask for `/v1/inspections/` (the history's list, answered as if it were a record) and
 * `category("..")` for another route; an empty one names the collection. Refused before any request is sent.
 */
export function segment(value: string): string {
  if (value === "" || value === "." || value === "..") {
    throw new PathSegmentError(value);
  }
  return encodeURIComponent(value);
}

const sleepMs = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

function toBlob(data: ImageInput): Blob {
  if (data instanceof Blob) return data;
  const bytes = data instanceof Uint8Array ? data : new Uint8Array(data);
  // Copy into a fresh ArrayBuffer: a Uint8Array view over shared memory is not a valid BlobPart.
  return new Blob([bytes.slice().buffer]);
}

function defaultBaseUrl(): string {
  const location = (globalThis as { location?: { origin?: string } }).location;
  return location?.origin ?? "";
}

/** The service's answer as an error; the message is the service's own (`{"error": {"message"}}`). */
async function apiError(response: Response): Promise<EagleApiError> {
  let message = `HTTP ${response.status} ${response.statusText}`.trim();
  let code: string | null = null;
  let detail: Record<string, unknown> | null = null;
  try {
    const body = (await response.json()) as Partial<ErrorBody>;
    if (body.error?.message) message = body.error.message;
    code = body.error?.code ?? null;
    if (typeof body.error === "object" && body.error !== null) detail = body.error as Record<string, unknown>;
  } catch {
    // not JSON (a proxy's page): keep the status line
  }
  return new EagleApiError(message, response.status, code, parseRetryAfter(response.headers.get("retry-after")), detail);
}

export class EagleClient {
  readonly baseUrl: string;
  private readonly apiKey: string | undefined;
  private readonly maxRetries: number;
  private readonly maxRetryWaitS: number;
  private readonly fetchImpl: typeof fetch;
  private readonly sleep: (ms: number) => Promise<void>;
  private readonly onRetry: ClientOptions["onRetry"];

  constructor(options: ClientOptions = {}) {
    const base = options.baseUrl ?? defaultBaseUrl();
    if (base !== "" && !/^https?:\/\//.test(base)) {
      throw new TypeError(`baseUrl must start with http:// or https:// (got ${JSON.stringify(base)})`);
    }
    if (base === "" && defaultBaseUrl() === "") {
      throw new TypeError("baseUrl is required outside a browser, e.g. http://127.0.0.1:8000");
    }
    this.baseUrl = base.replace(/\/+$/, "");
    this.apiKey = options.apiKey || undefined;
    this.maxRetries = options.maxRetries ?? 3;
    this.maxRetryWaitS = options.maxRetryWaitS ?? 30;
    this.fetchImpl = options.fetch ?? ((input, init) => fetch(input, init));
    this.sleep = options.sleep ?? sleepMs;
    this.onRetry = options.onRetry;
  }

  /** An absolute URL for a service path (picture links in records are service paths). */
  url(path: string): string {
    return `${this.baseUrl}${path.startsWith("/") ? "" : "/"}${path}`;
  }

  private headers(extra: Record<string, string> = {}): Record<string, string> {
    return this.apiKey ? { ...extra, Authorization: `Bearer ${this.apiKey}` } : extra;
  }

  /**
   * One request with retries. `body` is a factory so every attempt sends a fresh body (a consumed
   * stream cannot be re-sent). Only GETs and requests carrying an `Idempotency-Key` are retried after
   * a connection failure: any other POST that may have reached the service is not repeated behind the
   * caller's back, while a keyed one is answered with the first try's result if it did.
   */
  private async send(
    method: Method,
    path: string,
    body?: () => BodyInit,
    extraHeaders: Record<string, string> = {},
    signal?: AbortSignal,
  ): Promise<Response> {
    for (let attempt = 0; ; attempt++) {
      let response: Response;
      try {
        const init: RequestInit = { method, headers: this.headers(extraHeaders) };
        if (body) init.body = body();
        if (signal) init.signal = signal;
        response = await this.fetchImpl(this.url(path), init);
      } catch (error) {
        if (signal?.aborted) throw error;
        const repeatable = method === "GET" || "Idempotency-Key" in extraHeaders;
        if (repeatable && attempt < this.maxRetries) {
          const waitMs = retryDelayMs(attempt + 1, null, this.maxRetryWaitS);
          this.onRetry?.({ attempt: attempt + 1, waitMs, status: null, path });
          await this.sleep(waitMs);
          continue;
        }
        const reason = error instanceof Error ? error.message : String(error);
        throw new EagleNetworkError(`cannot reach the EAGLE service at ${this.baseUrl || "this page's origin"}: ${reason}`, {
          cause: error,
        });
      }
      if (response.ok) return response;
      if (isRetryableStatus(response.status) && attempt < this.maxRetries) {
        const retryAfter = parseRetryAfter(response.headers.get("retry-after"));
        const waitMs = retryDelayMs(attempt + 1, retryAfter, this.maxRetryWaitS);
        await response.body?.cancel();
        this.onRetry?.({ attempt: attempt + 1, waitMs, status: response.status, path });
        await this.sleep(waitMs);
        continue;
      }
      throw await apiError(response);
    }
  }

  private async json<T>(method: Method, path: string, body?: () => BodyInit, headers?: Record<string, string>,
    signal?: AbortSignal): Promise<T> {
    const response = await this.send(method, path, body, headers, signal);
    return (await response.json()) as T;
  }

  /** `/healthz`: version, whether an MLLM is configured, queue depth (no key needed). */
  health(signal?: AbortSignal): Promise<Health> {
    return this.json<Health>("GET", "/healthz", undefined, {}, signal);
  }

  /** Fitted categories with their thresholds and training-score summary. */
  async categories(signal?: AbortSignal): Promise<Category[]> {
    const list = await this.json<Schemas["CategoryList"]>("GET", "/v1/categories", undefined, {}, signal);
    return list.categories;
  }

  /** One category, with every training score (for the histogram). */
  category(name: string, signal?: AbortSignal): Promise<Category> {
    return this.json<Category>("GET", `/v1/categories/${segment(name)}`, undefined, {}, signal);
  }

  /** Change a category's threshold on the record (who/when/why kept in its `history`); used at once. */
  changeThreshold(name: string, change: ThresholdChange, signal?: AbortSignal): Promise<Category> {
    const body = JSON.stringify(change);
    return this.json<Category>("POST", `/v1/categories/${segment(name)}/threshold`, () => body,
      { "Content-Type": "application/json" }, signal);
  }

  /**
   * Teach a category's model normal images (false alarms, a new batch) in seconds, on the record. Refused (400)
   * when an image looks defective or is labelled so, or a labelled defect would then pass, unless `force`;
   * 409 when the model changed meanwhile. The next inspection uses the taught model.
   */
  teach(name: string, request: TeachRequest, signal?: AbortSignal): Promise<TeachAnswer> {
    const body = JSON.stringify(request);
    return this.json<TeachAnswer>("POST", `/v1/categories/${segment(name)}/teach`, () => body,
      { "Content-Type": "application/json" }, signal);
  }

  /** Every version of a category's model, oldest first, and the disk the folder takes with all of them. */
  versions(name: string, signal?: AbortSignal): Promise<VersionList> {
    return this.json<VersionList>("GET", `/v1/categories/${segment(name)}/versions`, undefined, {}, signal);
  }

  /** Make an earlier version current again (saved as a new version that says so); the next inspection uses it. */
  rollback(name: string, request: RollbackRequest, signal?: AbortSignal): Promise<Category> {
    const body = JSON.stringify(request);
    return this.json<Category>("POST", `/v1/categories/${segment(name)}/rollback`, () => body,
      { "Content-Type": "application/json" }, signal);
  }

  /**
   * Retire a category (admin): its model folder, every version with it, moves whole to
   * `<models>/.retired/<name>-<UTC time>/`; the history keeps its inspections. 409 `category_in_use` names the
   * station, fit, teach, threshold change or rollback that uses it. Undone by moving the folder back.
   */
  retireCategory(name: string, signal?: AbortSignal): Promise<CategoryRetired> {
    return this.json<CategoryRetired>("DELETE", `/v1/categories/${segment(name)}`, undefined, {}, signal);
  }

  /** Scores with known truth for a category (labelled history, evaluation runs): a threshold preview's evidence. */
  categoryEvidence(name: string, signal?: AbortSignal): Promise<CategoryEvidence> {
    return this.json<CategoryEvidence>("GET", `/v1/categories/${segment(name)}/evidence`, undefined, {}, signal);
  }

  /** A category's history per UTC day: reject rate, score range, false alarms and misses on labelled items. */
  categoryDashboard(name: string, signal?: AbortSignal): Promise<CategoryDashboard> {
    return this.json<CategoryDashboard>("GET", `/v1/categories/${segment(name)}/dashboard`, undefined, {}, signal);
  }

  /** Inspect one image: the expert's verdict, or the full EAGLE verdict when the service has an MLLM. */
  inspect(image: ImageInput, category: string, options: InspectOptions = {}): Promise<InspectionRecord> {
    const filename = options.filename ?? (image instanceof File ? image.name : "image.png");
    const form = (): FormData => {
      const data = new FormData();
      data.append("image", toBlob(image), filename);
      data.append("category", category);
      if (options.question !== undefined) data.append("question", options.question);
      if (options.attention) data.append("attention", "true");
      return data;
    };
    const key = { "Idempotency-Key": options.idempotencyKey ?? newIdempotencyKey() };
    return this.json<InspectionRecord>("POST", "/v1/inspect", form, key, options.signal);
  }

  /** Start a fit job and return at once; follow it with {@link jobEvents} or {@link waitForJob}. */
  startFit(name: string, source: FitSource, options: FitOptions = {}, signal?: AbortSignal): Promise<JobStarted> {
    const path = `/v1/categories/${segment(name)}/fit`;
    if ("folder" in source) {
      const body = JSON.stringify({ folder: source.folder, options });
      return this.json<JobStarted>("POST", path, () => body, { "Content-Type": "application/json" }, signal);
    }
    if (source.files.length === 0) throw new TypeError("fit needs at least one file (normal images, or one zip)");
    const form = (): FormData => {
      const data = new FormData();
      for (const file of source.files) data.append("files", toBlob(file.data), file.name);
      for (const [key, value] of Object.entries(options)) {
        if (value !== undefined) data.append(key, String(value));
      }
      return data;
    };
    return this.json<JobStarted>("POST", path, form, {}, signal);
  }

  /** A fit job's current state. */
  job(id: string, signal?: AbortSignal): Promise<Job> {
    return this.json<Job>("GET", `/v1/jobs/${segment(id)}`, undefined, {}, signal);
  }

  /**
   * Every event of a fit job until it has finished. A dropped stream is resumed with `Last-Event-ID`,
   * so no event is lost or repeated.
   */
  async *jobEvents(id: string, signal?: AbortSignal): AsyncGenerator<JobEvent> {
    let lastId: string | null = null;
    let finished = false;
    for (let reconnects = 0; !finished; reconnects++) {
      const headers: Record<string, string> = { Accept: "text/event-stream" };
      if (lastId !== null) headers["Last-Event-ID"] = lastId;
      const response = await this.send("GET", `/v1/jobs/${segment(id)}/events`, undefined, headers, signal);
      if (!response.body) throw new EagleNetworkError("the job's event stream has no body");
      for await (const frame of readSse(response.body)) {
        if (frame.id !== null) lastId = frame.id;
        const event = JSON.parse(frame.data) as JobEvent;
        yield event;
        if (event.event === "state" && (event.state === "succeeded" || event.state === "failed")) finished = true;
      }
      if (!finished && reconnects >= this.maxRetries) {
        throw new EagleNetworkError(`the event stream of job ${id} kept ending before the job finished`);
      }
    }
  }

  /**
   * Each inspection stored from now on (or of one `category`), as it is stored: the history's live feed.
   * Runs until `signal` aborts; a dropped stream (a restart, a network blip) is resumed with
   * `Last-Event-ID`, so no inspection is missed or told twice. `onOpen` is called each time the feed is
   * (re)connected, e.g. to say "live" in a UI.
   */
  async *inspectionEvents(options: { category?: string; signal?: AbortSignal; onOpen?: () => void } = {}): AsyncGenerator<InspectionEvent> {
    let lastId: string | null = null;
    const query = options.category ? `?category=${encodeURIComponent(options.category)}` : "";
    for (let failures = 0; !options.signal?.aborted; ) {
      const headers: Record<string, string> = { Accept: "text/event-stream" };
      if (lastId !== null) headers["Last-Event-ID"] = lastId;
      try {
        const response = await this.send("GET", `/v1/inspections/events${query}`, undefined, headers, options.signal);
        if (!response.body) throw new EagleNetworkError("the history's event stream has no body");
        options.onOpen?.();
        failures = 0;
        for await (const frame of readSse(response.body)) {
          if (frame.id !== null) lastId = frame.id; // the opening frame and heartbeats carry the position too
          if (frame.event !== "inspection") continue;
          yield JSON.parse(frame.data) as InspectionEvent;
        }
      } catch (error) {
        if (options.signal?.aborted) return;
        // The service's own refusal (401, 403, 400) will not change by asking again; a dropped connection may.
        if (error instanceof EagleApiError || ++failures > this.maxRetries) throw error;
      }
      if (options.signal?.aborted) return;
      await this.sleep(retryDelayMs(failures + 1, null, this.maxRetryWaitS));
    }
  }

  /** Follow a job to its end; resolves with the finished job, throws {@link EagleFitError} if it failed. */
  async waitForJob(id: string, watch: FitWatch = {}): Promise<Job> {
    for await (const event of this.jobEvents(id, watch.signal)) watch.onEvent?.(event);
    const job = await this.job(id, watch.signal);
    if (job.state === "failed") throw new EagleFitError(id, job.error ?? "unknown error");
    return job;
  }

  /** Fit a category and wait for it, reporting progress; resolves with the finished job. */
  async fit(name: string, source: FitSource, options: FitOptions = {}, watch: FitWatch = {}): Promise<Job> {
    const started = await this.startFit(name, source, options, watch.signal);
    return this.waitForJob(started.job.id, watch);
  }

  /** One page of the inspection history, newest first. */
  history(query: HistoryQuery = {}): Promise<InspectionPage> {
    const params = new URLSearchParams();
    if (query.limit !== undefined) params.set("limit", String(query.limit));
    if (query.offset !== undefined) params.set("offset", String(query.offset));
    if (query.category) params.set("category", query.category);
    if (query.decision) params.set("decision", query.decision);
    if (query.label) params.set("label", query.label);
    const suffix = params.size > 0 ? `?${params.toString()}` : "";
    return this.json<InspectionPage>("GET", `/v1/inspections${suffix}`, undefined, {}, query.signal);
  }

  /**
   * Record what an inspected part actually was (`normal` / `anomalous`), or clear it with `null`.
   * The verdict stays as it was; resolves with the updated record and its `notices` (someone gave the same label
   * meanwhile, a part labelled defective is a training image of the current model). Pass `expectedRevision` (the record's
   * `label_revision` as you read it) so that a label someone else gave meanwhile is not overwritten unseen.
   */
  label(id: string, label: Label | null, options: AbortSignal | LabelOptions = {}): Promise<LabelAnswer> {
    const { note, by, expectedRevision, signal }: LabelOptions = options instanceof AbortSignal ? { signal: options } : options;
    const body = JSON.stringify({
      label,
      ...(note ? { note } : {}),
      ...(by ? { by } : {}),
      // null is sent as null (never labelled: the service checks it as revision 0); undefined is no check
      ...(expectedRevision !== undefined ? { expected_revision: expectedRevision } : {}),
    });
    return this.json<LabelAnswer>("PUT", `/v1/inspections/${segment(id)}/label`, () => body,
      { "Content-Type": "application/json" }, signal);
  }

  /**
   * Delete one inspection (admin): its files (the kept upload, heatmap, boxed picture) first, then its record with
   * its label and its place in the review queue; audited with `why`. 404 `not_found` for an unknown id.
   */
  deleteInspection(id: string, why?: string, signal?: AbortSignal): Promise<InspectionDeleted> {
    const query = why ? `?${new URLSearchParams({ why }).toString()}` : "";
    return this.json<InspectionDeleted>("DELETE", `/v1/inspections/${segment(id)}${query}`, undefined, {}, signal);
  }

  /**
   * The review queue, oldest first: unlabelled inspections a person should look at (unsure band, close
   * call, not recognised, the MLLM disagreeing with the expert, no decision), each with its reasons.
   * Labelling one takes it out.
   */
  review(query: { limit?: number; offset?: number; category?: string; signal?: AbortSignal } = {}): Promise<ReviewPage> {
    const params = new URLSearchParams();
    if (query.limit !== undefined) params.set("limit", String(query.limit));
    if (query.offset !== undefined) params.set("offset", String(query.offset));
    if (query.category) params.set("category", query.category);
    const suffix = params.size > 0 ? `?${params.toString()}` : "";
    return this.json<ReviewPage>("GET", `/v1/review${suffix}`, undefined, {}, query.signal);
  }

  /** One stored inspection by id (404 `not_found` for an unknown id). */
  inspection(id: string, signal?: AbortSignal): Promise<InspectionRecord> {
    return this.json<InspectionRecord>("GET", `/v1/inspections/${segment(id)}`, undefined, {}, signal);
  }

  /**
   * One of an inspection's pictures as bytes with its media type: `boxed` (the verdict's picture,
   * boxes only on an anomalous verdict), `heatmap` (with its legend) or `reference` (the nearest
   * normal training image; a 404 `no_reference` error says why there is none).
   */
  async inspectionPicture(id: string, kind: PictureKind, signal?: AbortSignal): Promise<Picture> {
    if (!(PICTURE_KINDS as readonly string[]).includes(kind)) {
      throw new TypeError(`unknown picture kind ${JSON.stringify(kind)}; choose one of ${PICTURE_KINDS.map((k) => `'${k}'`).join(", ")}`);
    }
    let link: string;
    if (kind === "reference") {
      link = `/v1/inspections/${segment(id)}/reference`;
    } else {
      const record = await this.inspection(id, signal);
      const found = record.pictures[kind === "boxed" ? "box" : kind];
      if (found === undefined) throw new EagleError(`inspection ${id} has no ${kind} picture`);
      link = found;
    }
    const response = await this.send("GET", link, undefined, {}, signal);
    const type = response.headers.get("content-type") ?? "application/octet-stream";
    return { data: new Uint8Array(await response.arrayBuffer()), type };
  }

  /** Every matching history record, page by page (newest first). */
  async *historyAll(query: Omit<HistoryQuery, "offset"> = {}): AsyncGenerator<InspectionRecord> {
    let offset: number | null = 0;
    while (offset !== null) {
      const page: InspectionPage = await this.history({ ...query, offset });
      yield* page.items;
      offset = page.next_offset ?? null;
    }
  }

  /** Evaluation runs (`eagle eval` / `eagle eval-expert` outputs) with their metrics and figure links. */
  async evaluations(signal?: AbortSignal): Promise<EvaluationRun[]> {
    const list = await this.json<Schemas["EvaluationList"]>("GET", "/v1/evaluations", undefined, {}, signal);
    return list.runs;
  }

  /**
   * A picture the service links to (heatmap, boxed image, attention overlay, evaluation figure).
   * Fetched with the key, so it works when `<img src>` cannot send one; use `URL.createObjectURL`.
   */
  async picture(link: string, signal?: AbortSignal): Promise<Blob> {
    if (!link.startsWith("/v1/")) throw new TypeError(`not a service picture link: ${link}`);
    const response = await this.send("GET", link, undefined, {}, signal);
    return response.blob();
  }

  /** A request whose answer has no body to read (202, 204): resolves once the service said yes. */
  private async empty(method: Method, path: string, signal?: AbortSignal): Promise<void> {
    const response = await this.send(method, path, undefined, {}, signal);
    await response.body?.cancel();
  }

  private stationPath(name: string, action = ""): string {
    return `/v1/stations/${segment(name)}${action ? `/${action}` : ""}`;
  }

  /** Every station the service runs (created through the API or from a stations file), with its figures. */
  listStations(signal?: AbortSignal): Promise<StationInfo[]> {
    return this.json<StationInfo[]>("GET", "/v1/stations", undefined, {}, signal);
  }

  /** One station's state, figures and warnings (404 `station_not_found` for an unknown name). */
  getStation(name: string, signal?: AbortSignal): Promise<StationInfo> {
    return this.json<StationInfo>("GET", this.stationPath(name), undefined, {}, signal);
  }

  /**
   * Create and start a station; the service keeps it and starts it again after a restart. A 400 names
   * the field at fault (a path outside the data root, an unknown category or option); 409
   * `station_exists` when the name is taken, `folder_in_use` when another station takes the images of its
   * hot folder (or a camera's frames folder and name prefix), `source_in_use` when another station has the same
   * plugin source with the very same options, `folder_finishing` (with `Retry-After`) while a station deleted on that folder still finishes
   * its last image.
   */
  createStation(body: StationBody, signal?: AbortSignal): Promise<StationInfo> {
    const text = JSON.stringify(body);
    return this.json<StationInfo>("POST", "/v1/stations", () => text, { "Content-Type": "application/json" }, signal);
  }

  /**
   * Change a station created through the API in place (its name, records and undelivered deliveries stay), and
   * start it with the change: `patch` holds only the fields to change, `null` removing one, and `sinks` one
   * object per sink by position (`{ sinks: [{}, { verify_tls: null }] }` changes the second sink only). It is
   * what fixes a kept station that a newer check refuses at the start (its state `error: not started: ...`
   * names the patch). A 400 names the field at fault and leaves the station as it was. A sink the patch removes
   * (or renames) takes its queue with it: while it still owes verdicts the call throws an `EagleApiError` 409
   * `station_undelivered` naming each sink and what it owes, the station as it was; pass
   * `{ discardPending: true }` to make the change anyway, dropping them. Deliveries already owed to a sink
   * removed earlier (a warning of the station's) refuse only a patch that gives a sink that name; any patch with
   * `{ discardPending: true }` drops them.
   */
  updateStation(
    name: string,
    patch: Record<string, unknown>,
    options: AbortSignal | UpdateStationOptions = {},
  ): Promise<StationInfo> {
    const { discardPending, signal }: UpdateStationOptions = options instanceof AbortSignal ? { signal: options } : options;
    const text = JSON.stringify(patch);
    const headers = { "Content-Type": "application/json" };
    const suffix = discardPending ? "?discard_pending=true" : "";
    return this.json<StationInfo>("PATCH", `${this.stationPath(name)}${suffix}`, () => text, headers, signal);
  }

  /** Stop taking images (the image in hand is finished; deliveries go on); resolves with the station. */
  pauseStation(name: string, options: AbortSignal | PauseStationOptions = {}): Promise<StationInfo> {
    return this.setPaused(name, "pause", options);
  }

  /** Take images again after {@link pauseStation}; resolves with the station. */
  resumeStation(name: string, options: AbortSignal | PauseStationOptions = {}): Promise<StationInfo> {
    return this.setPaused(name, "resume", options);
  }

  private setPaused(name: string, action: "pause" | "resume", options: AbortSignal | PauseStationOptions): Promise<StationInfo> {
    const { why, signal }: PauseStationOptions = options instanceof AbortSignal ? { signal: options } : options;
    if (why === undefined) return this.json<StationInfo>("POST", this.stationPath(name, action), undefined, {}, signal);
    const text = JSON.stringify({ why });
    return this.json<StationInfo>("POST", this.stationPath(name, action), () => text, { "Content-Type": "application/json" }, signal);
  }

  /** Put a station's dead letters back in their sinks' queues, tries counted afresh (the receiver was fixed). */
  retryStation(name: string, signal?: AbortSignal): Promise<Requeued> {
    return this.json<Requeued>("POST", this.stationPath(name, "retry"), undefined, {}, signal);
  }

  /** Take the next frame now (a camera source with `trigger = "http"`; 409 `no_trigger` for any other source). */
  triggerStation(name: string, signal?: AbortSignal): Promise<void> {
    return this.empty("POST", this.stationPath(name, "trigger"), signal);
  }

  /**
   * Stop and forget a station created through the API (409 `station_from_file` for one a stations file
   * declares): its intake and outbox go, so a station created again under the name starts clean; its
   * inspections stay in the history. While its sinks still owe deliveries (verdicts and refusals, pending or dead
   * letters) the call throws an `EagleApiError` 409 `station_undelivered` naming how many, and the station runs
   * on; pass `{ discardPending: true }` to delete it anyway, dropping them.
   */
  deleteStation(name: string, options: AbortSignal | DeleteStationOptions = {}): Promise<void> {
    const { discardPending, signal }: DeleteStationOptions = options instanceof AbortSignal ? { signal: options } : options;
    const suffix = discardPending ? "?discard_pending=true" : "";
    return this.empty("DELETE", `${this.stationPath(name)}${suffix}`, signal);
  }

  /** Who this client's key is, and its role (the console shows it and hides what the role cannot do). */
  me(signal?: AbortSignal): Promise<Me> {
    return this.json<Me>("GET", "/v1/me", undefined, {}, signal);
  }

  /** Every named key (admin). */
  async keys(signal?: AbortSignal): Promise<KeyInfo[]> {
    return (await this.json<Schemas["KeyList"]>("GET", "/v1/keys", undefined, {}, signal)).keys;
  }

  /** Add a named key with a role (admin); the answer's `key` is the only time the key is shown. */
  addKey(name: string, role: Role, signal?: AbortSignal): Promise<CreatedKey> {
    const body = JSON.stringify({ name, role });
    return this.json<CreatedKey>("POST", "/v1/keys", () => body, { "Content-Type": "application/json" }, signal);
  }

  /** Revoke a key (admin): refused from its next request on. */
  revokeKey(name: string, signal?: AbortSignal): Promise<KeyInfo> {
    return this.json<KeyInfo>("DELETE", `/v1/keys/${segment(name)}`, undefined, {}, signal);
  }

  /**
   * One page of the audit log, newest first (engineer: a shift's supervisor reads it; keys stay admin). `actor`:
   * one person's rows; `category`: the category's rows (its threshold, teaches, rollbacks, and the labels and
   * deletions of its inspections).
   */
  audit(query: { limit?: number; offset?: number; actor?: string; category?: string } = {}, signal?: AbortSignal): Promise<AuditPage> {
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries(query)) if (value !== undefined) params.set(key, String(value));
    const search = params.size ? `?${params}` : "";
    return this.json<AuditPage>("GET", `/v1/audit${search}`, undefined, {}, signal);
  }

  /** The whole audit log as CSV, oldest first (engineer): one person's rows (a name), or `{ actor, category }`. */
  async auditCsv(filter?: string | { actor?: string; category?: string }, signal?: AbortSignal): Promise<string> {
    const { actor, category } = typeof filter === "string" ? { actor: filter, category: undefined } : (filter ?? {});
    const params = new URLSearchParams();
    if (actor) params.set("actor", actor);
    if (category) params.set("category", category);
    const search = params.size ? `?${params}` : "";
    return (await this.send("GET", `/v1/audit.csv${search}`, undefined, {}, signal)).text();
  }

  /** Prometheus metrics text (with each station's figures: `eagle_station_*`). */
  async metrics(signal?: AbortSignal): Promise<string> {
    return (await this.send("GET", "/metrics", undefined, {}, signal)).text();
  }
}
