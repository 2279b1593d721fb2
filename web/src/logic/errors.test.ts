import { EagleApiError, EagleFitError, EagleNetworkError } from "@eagle-iad/client";
import { describe, expect, it } from "vitest";
import { describeError, describeLabelError, isLabelChanged, isUnauthorised, labelChangedMessage, labelChangedOf } from "./errors";

describe("describeError", () => {
  it("maps a network failure to a retryable 'unreachable' state", () => {
    const e = describeError(new EagleNetworkError("cannot reach the EAGLE service at x: fetch failed"));
    expect(e.kind).toBe("network");
    expect(e.retryable).toBe(true);
    expect(e.message).toContain("fetch failed");
  });
  it("maps 401 to the key form", () => {
    const error = new EagleApiError("missing or wrong API key", 401, "invalid_api_key");
    expect(describeError(error).kind).toBe("unauthorised");
    expect(isUnauthorised(error)).toBe(true);
    expect(isUnauthorised(new EagleApiError("x", 403))).toBe(false);
  });
  it("says a revoked key was revoked, and when, in the service's words", () => {
    const message = "this key was revoked at 2026-01-02T03:04:05+00:00; ask an admin for a new key";
    const error = new EagleApiError(message, 401, "revoked_api_key");
    expect(describeError(error)).toEqual({ kind: "unauthorised", title: "API key revoked", message, retryable: false });
    expect(isUnauthorised(error)).toBe(true);
  });
  it("says a change of an export needs the fitted model, in the service's words, and not as 'not found'", () => {
    const message = "category 'mono' is an export this service runs (--runtime onnx): teaching needs the fitted model";
    expect(describeError(new EagleApiError(message, 409, "needs_fitted_model"))).toEqual({
      kind: "needs_fitted_model",
      title: "Needs the fitted model",
      message,
      retryable: false,
    });
  });
  it("shows the service's own message for an invalid image", () => {
    const e = describeError(new EagleApiError("x.png: cannot identify image file", 400, "invalid_image"));
    expect(e).toEqual({ kind: "invalid_image", title: "Not a usable image", message: "x.png: cannot identify image file", retryable: false });
    expect(describeError(new EagleApiError("vic is a viewer; this needs the operator role or above", 403, "forbidden"))).toEqual({
      kind: "forbidden",
      title: "Not allowed for your role",
      message: "vic is a viewer; this needs the operator role or above",
      retryable: false,
    });
  });
  it("says the service is busy when its inspection limit refused the request", () => {
    const e = describeError(new EagleApiError("16 inspections are in progress", 429, "too_many_inspections", 3));
    expect(e).toEqual({
      kind: "busy",
      title: "The service is busy",
      message:
        "The service is at its limit of inspections in progress and stayed there after several retries. Try again in a moment. The service asked to wait 3 s.",
      retryable: true,
    });
  });

  it("says a hot folder a deleted station still finishes an image in will be free in a moment, in the service's words", () => {
    const message =
      "station 'line-2': hot folder /data/incoming is still held by station 'line-1', which was deleted and is finishing an image past the shutdown grace; try again in a few seconds";
    expect(describeError(new EagleApiError(message, 409, "folder_finishing", 2))).toEqual({
      kind: "busy",
      title: "Hot folder still finishing an image",
      message: `${message} The service asked to wait 2 s.`,
      retryable: true,
    });
    // a folder another station runs on is not worded so: that one must be stopped first
    expect(describeError(new EagleApiError("taken by another station", 409, "folder_in_use")).kind).toBe("invalid_request");
  });

  it("says the model is busy on 429, with the requested wait", () => {
    const e = describeError(new EagleApiError("queue full", 429, "queue_full", 2));
    expect(e.kind).toBe("busy");
    expect(e.title).toBe("The model is busy");
    expect(e.message).toContain("wait 2 s");
    expect(describeError(new EagleApiError("queue full", 429)).message).not.toContain("wait");
  });
  it("tells a missing category from other 404s", () => {
    expect(describeError(new EagleApiError("no fitted category 'x'", 404, "category_not_found")).kind).toBe("category_not_found");
    expect(describeError(new EagleApiError("no job", 404, "job_not_found")).kind).toBe("not_found");
  });
  it("says a label was refused because someone else labelled the part meanwhile, naming them in the service's words", () => {
    // an older service: no fields, its message as it is
    const message = "inspection 3f2a: its label changed since you looked (you saw revision 0, it is at 1): now labelled anomalous by ana";
    const error = new EagleApiError(message, 409, "label_changed");
    expect(describeError(error)).toEqual({
      kind: "label_changed",
      title: "Labelled by someone else meanwhile",
      message: `${message} It is shown again here as it is stored now.`,
      retryable: false,
    });
    expect(isLabelChanged(error)).toBe(true);
    expect(isLabelChanged(new EagleApiError("changed", 409, "model_changed"))).toBe(false);
    expect(isLabelChanged(new EagleApiError("no inspection 'x'", 404, "not_found"))).toBe(false);
  });
  it("words a refused label from its fields: the image's name, the console's label words, the local time, no revisions", () => {
    const labelledAt = new Date(2026, 11, 6, 21, 59, 23, 274);
    const changed = {
      id: "8f8c43a9c2be489a861fa9dda83d884c", image_name: "cell0065.png", label: "anomalous" as const, labelled_by: "bert",
      labelled_at: labelledAt.toISOString(), label_note: null, label_revision: 1,
    };
    const error = new EagleApiError("cell0065.png was labelled defective by bert at …", 409, "label_changed", null, {
      message: "…", code: "label_changed", label_changed: changed,
    });
    expect(labelChangedOf(error)).toEqual(changed);
    const now = new Date(2026, 11, 6, 22, 5, 0);
    expect(labelChangedMessage(changed, "normal", now, "en-US")).toBe(
      "cell0065.png was labelled actually defective by bert at 9:59:23 PM while you were looking. Your “actually normal” " +
        "was not saved. It is shown again here as it is stored now: decide again if you still disagree.",
    );
    expect(labelChangedMessage({ ...changed, label_note: "crack", labelled_by: null }, null, now, "en-US")).toBe(
      "cell0065.png was labelled actually defective at 9:59:23 PM while you were looking. Their note: “crack”. Your label " +
        "was not saved. It is shown again here as it is stored now: decide again if you still disagree.",
    );
    expect(labelChangedMessage(changed, "clear", now, "en-US")).toContain("while you were looking. The label was not cleared.");
    expect(labelChangedMessage({ ...changed, label: null, labelled_by: null, labelled_at: null, label_revision: 2 }, "anomalous", now)).toMatch(
      /^cell0065\.png had its label cleared while you were looking\. Your “actually defective” was not saved\./,
    );
    const described = describeLabelError(error, "normal");
    expect(described.kind).toBe("label_changed");
    // the time is worded against today's date ("at 9:59:23 PM" today, "on 12/6/2026, 9:59:23 PM" another day)
    expect(described.message).toMatch(/^cell0065\.png was labelled actually defective by bert (at|on) /);
    expect(described.message).not.toMatch(/revision|8f8c43a9|anomalous|T21:59/);
    expect(describeError(error).message).toContain("Your label was not saved.");
    // another refusal is described as before
    expect(describeLabelError(new EagleApiError("no inspection 'x'", 404, "not_found"), "normal").kind).toBe("not_found");
  });
  it("tells a model that cannot be read (a rollback recovers it) from other refusals", () => {
    const e = describeError(new EagleApiError("category 'x' cannot be read: x: model.json is missing", 409, "model_invalid"));
    expect(e).toMatchObject({ kind: "model_invalid", title: "Model unreadable", retryable: false });
    expect(describeError(new EagleApiError("changed", 409, "model_changed")).kind).toBe("invalid_request");
  });
  it("says what changed meanwhile in the console's words, not the API's (no request to send again)", () => {
    const api =
      "category 'tire': version 9 (threshold set to 97.1 by sam at 04:39:20 UTC) was made while this teach was prepared; nothing was taught: send the request again";
    expect(describeError(new EagleApiError(api, 409, "model_changed"))).toEqual({
      kind: "invalid_request",
      title: "The model changed meanwhile",
      message:
        "category 'tire': version 9 (threshold set to 97.1 by sam at 04:39:20 UTC) was made while this teach was prepared; nothing was taught. The page now shows the model as it is: do it again if it is still wanted.",
      retryable: false,
    });
  });
  it("heads a too thin image by its shape, not as too large (the service answers 413 for both)", () => {
    const thin = new EagleApiError("thin.png: 1000x20 is too elongated (aspect ratio 50:1 exceeds the limit of 32:1; …)", 413, "image_too_elongated");
    expect(describeError(thin)).toMatchObject({ kind: "invalid_image", title: "Image too elongated", retryable: false });
  });
  it("maps the remaining statuses", () => {
    expect(describeError(new EagleApiError("too big", 413, "payload_too_large"))).toMatchObject({ kind: "too_large", title: "File too large" });
    expect(describeError(new EagleApiError("big.png: 9000x9000 = 81.0 megapixels exceeds", 413, "too_many_pixels")).title).toBe("Too many pixels");
    expect(describeError(new EagleApiError("zip expands beyond the limit of 8 MiB", 413, "zip_too_large")).title).toBe("Too large");
    expect(describeError(new EagleApiError("boom", 500)).kind).toBe("server");
    expect(describeError(new EagleApiError("bad name", 400, "invalid_name"))).toMatchObject({ kind: "invalid_request", title: "Request refused (400)" });
    expect(describeError(new EagleFitError("j1", "no images"))).toMatchObject({ kind: "fit_failed", message: "no images" });
    expect(describeError("weird")).toMatchObject({ kind: "unknown", message: "weird" });
  });
});
