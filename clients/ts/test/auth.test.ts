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

  it("names keys with roles: each is refused what its role cannot do, and the audit log names who changed what", async () => {
    const admin = new EagleClient({ baseUrl: server.baseUrl, apiKey: KEY });
    expect(await admin.me()).toMatchObject({ name: "EAGLE_API_KEY", role: "admin", open: false });
    const suffix = Date.now().toString(36);
    const viewerKey = await admin.addKey(`vic-${suffix}`, "viewer");
    const operatorKey = await admin.addKey(`anna-${suffix}`, "operator");
    expect(viewerKey.key).toMatch(/^eagle_/);
    const viewer = new EagleClient({ baseUrl: server.baseUrl, apiKey: viewerKey.key });
    const operator = new EagleClient({ baseUrl: server.baseUrl, apiKey: operatorKey.key });
    expect(await viewer.me()).toMatchObject({ name: `vic-${suffix}`, role: "viewer", may: ["viewer"] });
    const image = await readFile(join(FIXTURE_WORK, "sample-good.png"));
    await expect(viewer.inspect(image, "mono")).rejects.toMatchObject({
      status: 403,
      code: "forbidden",
      message: `vic-${suffix} is a viewer; this needs the operator role or above`,
    });
    expect((await viewer.categories()).length).toBeGreaterThan(0); // reading is a viewer's
    const record = await operator.inspect(image, "mono");
    const labelled = await operator.label(record.id, "normal");
    expect(labelled.label_by).toBe(`anna-${suffix}`);
    await expect(operator.keys()).rejects.toMatchObject({ status: 403, code: "forbidden" });
    await admin.revokeKey(`vic-${suffix}`);
    await expect(viewer.categories()).rejects.toMatchObject({ status: 401, code: "revoked_api_key" }); // told it was revoked, not that it is wrong
    const log = await admin.audit({ limit: 10 });
    expect(log.items.slice(0, 4).map((row) => [row.actor, row.method, row.route])).toEqual([
      ["EAGLE_API_KEY", "DELETE", "/v1/keys/{name}"],
      [`anna-${suffix}`, "PUT", "/v1/inspections/{inspection_id}/label"],
      ["EAGLE_API_KEY", "POST", "/v1/keys"],
      ["EAGLE_API_KEY", "POST", "/v1/keys"],
    ]);
    const csv = await admin.auditCsv(`anna-${suffix}`);
    expect(csv.split("\r\n")[0]).toBe("seq,time,actor,role,method,route,path,status,detail");
    expect(csv.split("\r\n")[1]).toMatch(/,"?label normal \(normal\) of /);
    expect(csv.trim().split("\r\n")).toHaveLength(2);
  });
});
