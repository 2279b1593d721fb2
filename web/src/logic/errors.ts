/** Errors from the client mapped to what the console shows: a kind, a title and a specific message. */

import { EagleApiError, EagleFitError, EagleNetworkError, type LabelChanged } from "@eagle-iad/client";

export type ErrorKind =
  | "network"
  | "unauthorised"
  | "forbidden"
  | "invalid_image"
  | "busy"
  | "category_not_found"
  | "model_invalid"
  | "needs_fitted_model"
  | "label_changed"
  | "not_found"
  | "too_large"
  | "invalid_request"
  | "fit_failed"
  | "server"
  | "unknown";

export interface UserError {
  kind: ErrorKind;
  title: string;
  message: string;
  /** Whether trying the same thing again may help (offer a retry button). */
  retryable: boolean;
}

export function describeError(error: unknown): UserError {
  if (error instanceof EagleNetworkError) {
    return {
      kind: "network",
      title: "Service unreachable",
      message: `The EAGLE service did not answer. Check that \`eagle serve\` is running, then retry. (${error.message})`,
      retryable: true,
    };
  }
  if (error instanceof EagleFitError) {
    return { kind: "fit_failed", title: "Fit failed", message: error.jobError, retryable: false };
  }
  if (error instanceof EagleApiError) {
    const { status, code, message } = error;
    if (code === "revoked_api_key") {
      // The holder's own key, revoked: the service says when (an unknown key is told nothing more).
      return { kind: "unauthorised", title: "API key revoked", message, retryable: false };
    }
    if (status === 401 || code === "invalid_api_key") {
      return { kind: "unauthorised", title: "API key required", message: "The service needs a valid API key.", retryable: false };
    }
    if (status === 429 || code === "queue_full") {
      const wait = error.retryAfterS !== null ? ` The service asked to wait ${error.retryAfterS} s.` : "";
      const what =
        code === "too_many_inspections"
          ? "The service is at its limit of inspections in progress and stayed there after several retries."
          : "The MLLM queue is full and stayed full after several retries.";
      return {
        kind: "busy",
        title: code === "too_many_inspections" ? "The service is busy" : "The model is busy",
        message: `${what} Try again in a moment.${wait}`,
        retryable: true,
      };
    }
    if (code === "folder_finishing") {
      // A station deleted on that hot folder still finishes its last image past the service's shutdown grace:
      // the folder is free once it is done, so the same request goes through in a few seconds (not "stop that
      // one first", as folder_in_use says of a station that is still there).
      const wait = error.retryAfterS !== null ? ` The service asked to wait ${error.retryAfterS} s.` : "";
      return { kind: "busy", title: "Hot folder still finishing an image", message: `${message}${wait}`, retryable: true };
    }
    if (status === 403 || code === "forbidden") return { kind: "forbidden", title: "Not allowed for your role", message, retryable: false };
    if (code === "invalid_image") return { kind: "invalid_image", title: "Not a usable image", message, retryable: false };
    // Refused with 413 like a big image, but for its shape: a 1000x20 strip is not "too large".
    if (code === "image_too_elongated") return { kind: "invalid_image", title: "Image too elongated", message, retryable: false };
    if (code === "too_many_pixels") return { kind: "too_large", title: "Too many pixels", message, retryable: false };
    if (code === "payload_too_large") return { kind: "too_large", title: "File too large", message, retryable: false };
    if (code === "category_not_found") return { kind: "category_not_found", title: "Category not found", message, retryable: false };
    // A fitted category whose model cannot be read (edited by hand, a file deleted): a rollback recovers it.
    if (code === "model_invalid") return { kind: "model_invalid", title: "Model unreadable", message, retryable: false };
    // A change (threshold, teach, rollback) or a view (versions, nearest normal) an export cannot have: the
    // service runs an exported model (eagle serve --runtime onnx|openvino); its message says what to serve instead.
    if (code === "needs_fitted_model") return { kind: "needs_fitted_model", title: "Needs the fitted model", message, retryable: false };
    if (code === "label_changed") {
      // Someone else labelled the part since it was shown here: the service kept their label and says who and
      // when (as fields too); the page shows the part again as it is now, so this decision is made again on what
      // is stored. Worded here from the fields, the time in the reader's zone; an older service's message as is.
      const changed = labelChangedOf(error);
      return {
        kind: "label_changed",
        title: "Labelled by someone else meanwhile",
        message: changed ? labelChangedMessage(changed, null) : `${message} It is shown again here as it is stored now.`,
        retryable: false,
      };
    }
    if (code === "model_changed") {
      // Another change (someone's threshold, teach or rollback) was saved while this one was prepared: the service
      // names it, its author, time and version, and kept it; nothing of this one was saved. "Send the request
      // again" is the API's wording: here the user does it again from the page, which now shows the model as it is.
      const said = message.replace(/: send the request again\.?$/, "");
      return {
        kind: "invalid_request",
        title: "The model changed meanwhile",
        message: `${said}. The page now shows the model as it is: do it again if it is still wanted.`,
        retryable: false,
      };
    }
    if (status === 404) return { kind: "not_found", title: "Not found", message, retryable: false };
    if (status === 413) return { kind: "too_large", title: "Too large", message, retryable: false };
    if (status >= 500) return { kind: "server", title: `Service error (${status})`, message, retryable: true };
    return { kind: "invalid_request", title: `Request refused (${status})`, message, retryable: false };
  }
  if (error instanceof Error && error.name === "AbortError") {
    return { kind: "unknown", title: "Cancelled", message: "The request was cancelled.", retryable: true };
  }
  const message = error instanceof Error ? error.message : String(error);
  return { kind: "unknown", title: "Something went wrong", message, retryable: true };
}

/** A label refused because the part was labelled (or cleared) by someone else since it was shown: reload it. */
export function isLabelChanged(error: unknown): boolean {
  return error instanceof EagleApiError && error.status === 409 && error.code === "label_changed";
}

export function isUnauthorised(error: unknown): boolean {
  return error instanceof EagleApiError && error.status === 401;
}

/** A stored label in the console's words ("actually defective" / "actually normal"). */
export function labelWords(label: string): string {
  return label === "anomalous" || label === "defective" ? "actually defective" : "actually normal";
}

/** A decision refused with the key (401): said on the key form, so it is not lost without a word. */
export function unsavedLine(imageName: string, label: string): string {
  return `Your “${labelWords(label)}” for ${imageName} was not saved: with a working key, decide it again.`;
}

/**
 * A time as a person here reads it: "at" the clock time if it is today, else "on" the date and time, in the
 * browser's zone; with `recent`, "just now" within the last minute (a label someone gave while the page was open).
 */
export function whenSaid(iso: string, now: Date = new Date(), locale?: string, recent = false): string {
  const at = new Date(iso);
  if (Number.isNaN(at.getTime())) return `at ${iso}`;
  const ago = now.getTime() - at.getTime();
  if (recent && ago >= -5_000 && ago < 60_000) return "just now";
  return at.toDateString() === now.toDateString() ? `at ${at.toLocaleTimeString(locale)}` : `on ${at.toLocaleString(locale)}`;
}

/** The label stored now that a 409 `label_changed` answer carries (`error.label_changed`); null from an older service. */
export function labelChangedOf(error: unknown): LabelChanged | null {
  if (!(error instanceof EagleApiError) || error.code !== "label_changed") return null;
  const changed = error.detail?.["label_changed"];
  if (typeof changed !== "object" || changed === null) return null;
  const fields = changed as Partial<LabelChanged>;
  return typeof fields.image_name === "string" && typeof fields.label_revision === "number" ? (changed as LabelChanged) : null;
}

/**
 * What a refused label says, from the label stored now: "cell0065.png was labelled actually defective by bert
 * at 9:59:23 PM while you were looking. Your “actually normal” was not saved…". `tried`: the label this person
 * gave ("clear": a clear; null: unknown); the time is the browser's, never the service's UTC.
 */
export function labelChangedMessage(changed: LabelChanged, tried: string | null, now: Date = new Date(), locale?: string): string {
  const name = changed.image_name;
  let what: string;
  if (changed.label === null) {
    what = changed.label_revision > 0 ? `${name} had its label cleared while you were looking.` : `${name} is not labelled now.`;
  } else {
    const by = changed.labelled_by ? ` by ${changed.labelled_by}` : "";
    const when = changed.labelled_at ? ` ${whenSaid(changed.labelled_at, now, locale)}` : "";
    const note = changed.label_note ? ` Their note: “${changed.label_note}”.` : "";
    what = `${name} was labelled ${labelWords(changed.label)}${by}${when} while you were looking.${note}`;
  }
  const yours = tried === "clear" ? "The label was not cleared." : tried ? `Your “${labelWords(tried)}” was not saved.` : "Your label was not saved.";
  return `${what} ${yours} It is shown again here as it is stored now: decide again if you still disagree.`;
}

/** {@link describeError} for a label request, naming the label this person tried when the service refused it. */
export function describeLabelError(error: unknown, tried: string | null): UserError {
  const described = describeError(error);
  const changed = labelChangedOf(error);
  return changed ? { ...described, message: labelChangedMessage(changed, tried) } : described;
}
