/** The client against a real `eagle serve` started with EAGLE_API_KEY: unauthorised without, served with. */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { EagleApiError, EagleClient } from "../src/index.js";
import { sharedServer } from "./fixture.js";
import { FIXTURE_WORK, startServer, type RunningServer } from "./server.js";

const KEY = "test-key-ÿ-not-ascii-safe?".replace("ÿ", "y");
let server: RunningServer;

beforeAll(async () => {
  sharedServer(); // the fixture's own error, not a second failed start
  server = await startServer({ EAGLE_API_KEY: KEY });
});

afterAll(async () => {
  await server?.stop();
});

describe("with EAGLE_API_KEY", () => {
  it("answers 401 without the key or with a wrong one, on every /v1 route the client uses", async () => {
    for (const apiKey of [undefined, "wrong"]) {
      const client = new EagleClient({ baseUrl: server.baseUrl, ...(apiKey ? { apiKey } : {}) });
      for (const call of [() => client.categories(), () => client.history(), () => client.evaluations(), () => client.category("mono")]) {
        const error = await call().catch((e: unknown) => e);
        expect(error).toBeInstanceOf(EagleApiError);
        expect(error).toMatchObject({ status: 401, code: "invalid_api_key" });
      }
    }
    // /healthz stays open for load balancers
    expect((await new EagleClient({ baseUrl: server.baseUrl }).health()).status).toBe("ok");
  });

  it("works with the key, pictures included", async () => {
    const client = new EagleClient({ baseUrl: server.baseUrl, apiKey: KEY });
    const record = await client.inspect(await readFile(join(FIXTURE_WORK, "sample-good.png")), "mono");
    const picture = await client.picture(record.pictures.box as string);
    expect(picture.size).toBeGreaterThan(1000);
    const plain = await fetch(server.baseUrl + (record.pictures.box as string));
    expect(plain.status).toBe(401);
  });
});
