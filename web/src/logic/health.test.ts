import { EagleApiError, EagleNetworkError, type Health } from "@eagle-iad/client";
import { describe, expect, it } from "vitest";
import { degradedReasons, healthFromAnswer, healthLine, isDegraded, readHealth } from "./health";
import { NOTHING_SERVED, servedFigures } from "./served";

const OK: Health = {
  status: "ok", version: "1.2.3", mllm: false, mllm_queue_waiting: 0, fit_jobs_pending: 0, history: "ok", storage: "ok",
  auth: "open", max_upload_bytes: 1024, far_above_s_max: 2, recent_s: 600, flagged_share: 0.1,
};
const REFUSING: Health = { ...OK, status: "degraded", storage: "refusing: writes are refused for lack of disk space (507)" };
const NO_HISTORY: Health = { ...OK, status: "degraded", history: "unavailable: the history database is unreachable", auth: null };

const answer = (status: number, body: unknown, statusText = "") =>
  (async () => new Response(typeof body === "string" ? body : JSON.stringify(body), { status, statusText })) as typeof fetch;

describe("healthFromAnswer", () => {
  it("reads a 200 and a degraded 503 alike", () => {
    expect(healthFromAnswer(200, OK)).toEqual(OK);
    expect(healthFromAnswer(503, REFUSING)).toEqual(REFUSING);
  });
  it("refuses a 503 that is not a degraded Health (a proxy's page, an error body, status ok)", () => {
    expect(healthFromAnswer(503, null)).toBeNull();
    expect(healthFromAnswer(503, { error: { message: "down" } })).toBeNull();
    expect(healthFromAnswer(503, { ...OK })).toBeNull();
    expect(healthFromAnswer(500, REFUSING)).toBeNull();
    expect(healthFromAnswer(200, [OK])).toBeNull();
  });
});

describe("readHealth", () => {
  it("returns a degraded 503's body, whose figures the tuner judges by", async () => {
    const health = await readHealth("http://x/healthz", undefined, answer(503, REFUSING, "Service Unavailable"));
    expect(isDegraded(health)).toBe(true);
    // A tab opened during the incident starts from nothing and gets the service's figures all the same.
    expect(servedFigures(health, NOTHING_SERVED)).toEqual({ farAboveSMax: 2, recentS: 600, flaggedShare: 0.1 });
  });
  it("throws an API error with the status for any other failed answer", async () => {
    const failed = readHealth("http://x/healthz", undefined, answer(503, "<html>bad gateway</html>", "Service Unavailable"));
    await expect(failed).rejects.toBeInstanceOf(EagleApiError);
    await expect(failed).rejects.toMatchObject({ status: 503, message: "HTTP 503 Service Unavailable" });
    await expect(readHealth("http://x/healthz", undefined, answer(500, { error: { message: "boom", code: "internal" } })))
      .rejects.toMatchObject({ status: 500, message: "boom", code: "internal" });
  });
  it("throws a network error when nothing answered", async () => {
    const refused = (async () => {
      throw new TypeError("Failed to fetch");
    }) as typeof fetch;
    await expect(readHealth("http://x/healthz", undefined, refused)).rejects.toBeInstanceOf(EagleNetworkError);
  });
});

describe("degradedReasons", () => {
  it("says nothing for a healthy service", () => {
    expect(degradedReasons(OK)).toEqual([]);
    expect(degradedReasons(null)).toEqual([]);
  });
  it("words a storage refusal: writes refused, the disk full, reads still work", () => {
    expect(degradedReasons(REFUSING)).toEqual([
      "writes refused: the service's disk is full, so inspections, fits and labels fail until room is made; " +
        "reading what is stored still works",
    ]);
    // Words of a newer service that say more are kept.
    expect(degradedReasons({ ...REFUSING, storage: "refusing: the models folder is read-only" })[0]).toContain(
      "(the service says: the models folder is read-only)",
    );
  });
  it("words a history outage with the service's reason", () => {
    expect(degradedReasons(NO_HISTORY)).toEqual([
      "history unavailable: the history database is unreachable; requests that read or write the history fail until it is back",
    ]);
  });
  it("gives both causes, and a generic line for a cause it does not know", () => {
    expect(degradedReasons({ ...REFUSING, history: NO_HISTORY.history })).toHaveLength(2);
    expect(degradedReasons({ ...OK, status: "degraded" })).toEqual(["the service says it is degraded, without a reason this console knows"]);
  });
});

describe("healthLine", () => {
  it("says degraded, not the version line and never unreachable", () => {
    expect(healthLine(OK)).toBe("service 1.2.3 · expert only");
    expect(healthLine({ ...OK, mllm: true })).toBe("service 1.2.3 · MLLM on");
    expect(healthLine(NO_HISTORY)).toBe("service degraded");
  });
});
