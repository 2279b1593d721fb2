/**
 * Errors the client throws. Callers branch on the class (and `status`/`code`) instead of parsing
 * messages: the console shows "unauthorised", "queue full" or "invalid image" states from these.
 */

/** Base class of every error this package throws. */
export class EagleError extends Error {
  override name = "EagleError";
}

/** The service answered with an error status; `message` is the service's own explanation. */
export class EagleApiError extends EagleError {
  override name = "EagleApiError";
  constructor(
    message: string,
    /** HTTP status (400 invalid input, 401 key, 404 unknown, 409 unreadable model, 413 too large, 429 queue full). */
    readonly status: number,
    /** The service's machine-readable code (`invalid_image`, `invalid_api_key`, `queue_full`, ...), when it sent one. */
    readonly code: string | null = null,
    /** Seconds the service asked to wait (429 answers), when it said. */
    readonly retryAfterS: number | null = null,
    /**
     * The answer's whole error object (`{"error": {...}}`), for the fields some codes add beside the message:
     * 409 `label_changed` carries `label_changed` (the label stored now, who gave it and when). null: not JSON.
     */
    readonly detail: Readonly<Record<string, unknown>> | null = null,
  ) {
    super(message);
  }
}

/** The service could not be reached (down, wrong address, connection dropped). */
export class EagleNetworkError extends EagleError {
  override name = "EagleNetworkError";
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** A fit job ended in the `failed` state; `jobError` is the reason the service gave. */
export class EagleFitError extends EagleError {
  override name = "EagleFitError";
  constructor(
    readonly jobId: string,
    readonly jobError: string,
  ) {
    super(`fit job ${jobId} failed: ${jobError}`);
  }
}

/**
 * A name or id that cannot be one path segment of a route (empty, `.` or `..`): a URL would drop it and the request
 * would reach another route. A `TypeError`, as any wrong argument, thrown before a request is sent.
 */
export class PathSegmentError extends TypeError {
  constructor(readonly value: string) {
    super(`${JSON.stringify(value)} cannot name a category, inspection, job, station or key: a URL would drop it from the path`);
    this.name = "PathSegmentError";
  }
}
