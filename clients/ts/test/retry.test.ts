import { describe, expect, it } from "vitest";

import { isRetryableStatus, parseRetryAfter, retryDelayMs } from "../src/retry.js";

describe("parseRetryAfter", () => {
  it("reads delta-seconds", () => {
    expect(parseRetryAfter("3")).toBe(3);
    expect(parseRetryAfter(" 0 ")).toBe(0);
    expect(parseRetryAfter("1.5")).toBe(1.5);
  });

  it("reads an HTTP date relative to now, never negative", () => {
    const now = Date.parse("Sat, 28 Nov 2026 18:00:00 GMT");
    expect(parseRetryAfter("Sat, 28 Nov 2026 18:00:04 GMT", now)).toBe(4);
    expect(parseRetryAfter("Sat, 28 Nov 2026 17:59:00 GMT", now)).toBe(0);
  });

  it("returns null for absent or unreadable values", () => {
    expect(parseRetryAfter(null)).toBeNull();
    expect(parseRetryAfter("")).toBeNull();
    expect(parseRetryAfter("soon")).toBeNull();
    expect(parseRetryAfter("-3")).toBeNull();
  });
});

describe("retryDelayMs", () => {
  it("uses Retry-After when given, capped by the maximum wait", () => {
    expect(retryDelayMs(1, 2, 30)).toBe(2000);
    expect(retryDelayMs(1, 120, 30)).toBe(30_000);
  });

  it("backs off exponentially from 0.5 s without Retry-After", () => {
    expect([1, 2, 3, 4].map((attempt) => retryDelayMs(attempt, null, 30))).toEqual([500, 1000, 2000, 4000]);
    expect(retryDelayMs(10, null, 30)).toBe(30_000);
  });
});

describe("isRetryableStatus", () => {
  it("retries only a full queue or a briefly unavailable service", () => {
    expect([400, 401, 404, 409, 413, 429, 500, 503].filter(isRetryableStatus)).toEqual([429, 503]);
  });
});
