/**
 * A real `eagle serve` whose MLLM queue holds one request (`--mllm-queue 1`): concurrent inspections
 * overflow it, the service answers 429 with Retry-After, and the client either reports it (no
 * retries) or waits as told and gets every verdict (default retries).
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { EagleApiError, EagleClient } from "../src/index.js";
import { sharedServer } from "./fixture.js";
import { FIXTURE_WORK, startServer, type RunningServer } from "./server.js";

let server: RunningServer;
let image: Uint8Array;

beforeAll(async () => {
  sharedServer(); // the fixture's own error, not a second failed start
  [server, image] = await Promise.all([startServer({}, 180_000, ["--mllm-queue", "1"]), readFile(join(FIXTURE_WORK, "sample-good.png"))]);
});

afterAll(async () => {
  await server?.stop();
});

describe("a full MLLM queue", () => {
  it("answers 429 with the service's code and Retry-After when the client does not retry", async () => {
    const client = new EagleClient({ baseUrl: server.baseUrl, maxRetries: 0 });
    const results = await Promise.allSettled(Array.from({ length: 8 }, () => client.inspect(image, "mono")));
    const refused = results.filter((r): r is PromiseRejectedResult => r.status === "rejected").map((r) => r.reason as unknown);
    expect(refused.length).toBeGreaterThan(0);
    expect(results.some((r) => r.status === "fulfilled")).toBe(true);
    for (const error of refused) {
      expect(error).toBeInstanceOf(EagleApiError);
      const apiError = error as EagleApiError;
      expect(apiError.status).toBe(429);
      expect(apiError.code).toBe("queue_full");
      expect(apiError.retryAfterS).toBeGreaterThanOrEqual(1);
    }
  });

  it("gets every verdict when it retries after Retry-After, and the history has each exactly once", async () => {
    const before = (await new EagleClient({ baseUrl: server.baseUrl }).history({ limit: 1 })).total;
    const retries: number[] = [];
    const client = new EagleClient({ baseUrl: server.baseUrl, maxRetries: 20, onRetry: (r) => retries.push(r.waitMs) });
    const records = await Promise.all(Array.from({ length: 6 }, (_, i) => client.inspect(image, "mono", { filename: `busy-${i}.png` })));
    expect(records.map((r) => r.image_name).sort()).toEqual(["busy-0.png", "busy-1.png", "busy-2.png", "busy-3.png", "busy-4.png", "busy-5.png"]);
    expect(retries.length).toBeGreaterThan(0);
    for (const wait of retries) expect(wait).toBeGreaterThanOrEqual(1000); // the service's Retry-After, in whole seconds
    const page = await client.history({ limit: 6 });
    expect(page.total).toBe(before + 6);
    expect(new Set(page.items.map((r) => r.id)).size).toBe(6);
  });
});
