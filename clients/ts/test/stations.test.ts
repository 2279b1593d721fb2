/**
 * Stations through the service, against the real `eagle serve` of the global setup: a hot folder
 * created for this run inside the fixture's data root (`<fixture>/data`), a folder sink beside it,
 * a real elpv cell dropped in, the figures read back, pause and resume, the service's refusals, delete.
 */
import { copyFileSync, existsSync, mkdirSync, readdirSync, renameSync, rmSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { EagleApiError, EagleClient, type StationInfo } from "../src/index.js";
import { sharedServer } from "./fixture.js";

let client: EagleClient;
let fixture: string;
/** Unique per run: the data root is shared by every server the fixture starts. */
const tag = `${process.pid}-${Date.now().toString(36)}`;
const name = `ts-client-${tag}`;
const hot = `ts-hot-${tag}`;
const sorted = `ts-sorted-${tag}`;
let created = false;

async function until(what: string, check: () => Promise<boolean>, timeoutMs = 90_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}`);
}

beforeAll(() => {
  const server = sharedServer();
  client = new EagleClient({ baseUrl: server.baseUrl });
  fixture = server.fixtureDir;
  mkdirSync(join(fixture, "data", hot), { recursive: true });
});

afterAll(async () => {
  if (created) await client.deleteStation(name, { discardPending: true }).catch(() => undefined);
  if (fixture) {
    rmSync(join(fixture, "data", hot), { recursive: true, force: true });
    rmSync(join(fixture, "data", sorted), { recursive: true, force: true });
  }
});

describe("stations", () => {
  it("creates a station on a hot folder, inspects a dropped cell, delivers it to a folder sink", async () => {
    const station = await client.createStation({
      name,
      category: "mono",
      backlog_limit: 50,
      deadline_s: 60,
      source: { kind: "folder", path: hot, settle_s: 0.2, poll_s: 0.1 },
      sinks: [{ kind: "folder", path: sorted }],
    });
    created = true;
    expect(station).toMatchObject({ station: name, category: "mono", state: "running", created_by: "api", inspected: 0, backlog: 0 });
    expect(station.spec).toMatchObject({ name, source: { kind: "folder", path: hot } });
    expect(Object.keys(station.sinks)).toEqual(["folder"]);
    expect(station.sinks["folder"]).toMatchObject({ kind: "folder", pending: 0, delivered: 0, dead_letters: 0, last_error: null });
    expect((await client.listStations()).map((s) => s.station)).toContain(name);

    // Written under a name the source never takes, then renamed in: the station never reads half a file.
    const target = join(fixture, "data", hot, "cell-01.png");
    copyFileSync(join(fixture, "sample-crack.png"), `${target}.part`);
    renameSync(`${target}.part`, target);

    let info: StationInfo = station;
    await until("the station to inspect the cell and deliver it", async () => {
      info = await client.getStation(name);
      return info.inspected === 1 && info.sinks["folder"]?.delivered === 1;
    });
    expect(info).toMatchObject({ inspected: 1, failed: 0, backlog: 0, warnings: [] });
    const last = info.last_verdict as { image: string; record_id: string; decision: string | null; score: number | null; time: number };
    expect(last.image).toBe("cell-01.png");
    expect(typeof last.score).toBe("number");
    expect(last.time * 1000).toBeGreaterThan(Date.now() - 10 * 60_000);
    expect(Object.keys(info.latency_s ?? {}).sort()).toEqual(["p50", "p95", "p99"]);
    expect(info.images_per_s).toBeGreaterThan(0);
    // The record is in the history, with where it came from; the sink has the cell and its record.
    const record = await client.inspection(last.record_id);
    expect(record.station).toBe(name);
    expect(record.score).toBe(last.score);
    const folder = join(fixture, "data", sorted, record.decision === "anomalous" || record.decision === "normal" ? record.decision : "undecided");
    expect(readdirSync(folder).sort()).toEqual([`${record.id}_cell-01.png`, `${record.id}_cell-01.png.json`]);
    expect(existsSync(join(fixture, "data", hot, "done", "cell-01.png"))).toBe(true);
    // /metrics has the station's figures.
    const metrics = await client.metrics();
    expect(metrics).toContain(`eagle_station_inspected_total{station="${name}"} 1`);
    expect(metrics).toMatch(new RegExp(`eagle_station_latency_seconds\\{station="${name}",quantile="0\\.95"\\} [\\d.]+`));
  });

  it("pauses and resumes a station, the why in the audit row", async () => {
    const paused = await client.pauseStation(name, { why: "jam at the conveyor" });
    expect(paused.state).toBe("paused");
    expect((await client.getStation(name)).state).toBe("paused");
    const resumed = await client.resumeStation(name);
    expect(resumed.state).toBe("running");
    const log = await client.audit({ limit: 2 });
    expect(log.items.map((row) => row.detail)).toEqual([`resumed ${name} (was paused)`, `paused ${name} (was running): jam at the conveyor`]);
    expect(await client.retryStation(name)).toEqual({ requeued: 0 }); // nothing was given up on
  });

  it("refuses a hot folder outside the data root with a 400 naming the field", async () => {
    const error = await client
      .createStation({ name: `${name}-out`, category: "mono", source: { kind: "folder", path: "/tmp" } })
      .catch((reason: unknown) => reason);
    expect(error).toBeInstanceOf(EagleApiError);
    expect(error).toMatchObject({ status: 400, code: "invalid_option" });
    expect((error as EagleApiError).message).toBe(
      `station '${name}-out': source: path '/tmp' is outside the service's data root (stations created through the service read and write only inside --data-root)`,
    );
    await expect(client.createStation({ name, category: "mono", source: { kind: "folder", path: hot } })).rejects.toMatchObject({
      status: 409,
      code: "station_exists",
    });
    await expect(client.triggerStation(name)).rejects.toMatchObject({ status: 409, code: "no_trigger" });
  });

  it("answers an unknown station with 404 station_not_found", async () => {
    for (const call of [
      () => client.getStation("no-such-station"),
      () => client.pauseStation("no-such-station"),
      () => client.deleteStation("no-such-station"),
    ]) {
      await expect(call()).rejects.toMatchObject({ status: 404, code: "station_not_found", message: "no station 'no-such-station'" });
    }
  });

  /**
   * Runs `body` on a new station whose one sink (a webhook nobody listens to) owes the verdict of one cell, and
   * removes the station and its folder afterwards whatever `body` left.
   */
  async function withOwingStation(suffix: string, cell: string, body: (owing: string) => Promise<void>): Promise<void> {
    const owing = `${name}-${suffix}`;
    const folder = `${hot}-${suffix}`;
    mkdirSync(join(fixture, "data", folder), { recursive: true });
    try {
      await client.createStation({
        name: owing,
        category: "mono",
        source: { kind: "folder", path: folder, settle_s: 0.2, poll_s: 0.1 },
        // nothing listens on port 9: the verdict stays pending
        sinks: [{ kind: "webhook", url: "http://127.0.0.1:9/down", max_attempts: 1000 }],
      });
      const target = join(fixture, "data", folder, cell);
      copyFileSync(join(fixture, "sample-crack.png"), `${target}.part`);
      renameSync(`${target}.part`, target);
      await until("the verdict to wait for delivery", async () => (await client.getStation(owing)).sinks["webhook"]?.pending === 1);
      await body(owing);
    } finally {
      await client.deleteStation(owing, { discardPending: true }).catch(() => undefined);
      rmSync(join(fixture, "data", folder), { recursive: true, force: true });
    }
  }

  it("refuses to delete a station whose sink still owes a verdict, unless told to drop it", async () => {
    await withOwingStation("owing", "cell-02.png", async (owing) => {
      const error = await client.deleteStation(owing).catch((reason: unknown) => reason);
      expect(error).toBeInstanceOf(EagleApiError);
      expect(error).toMatchObject({ status: 409, code: "station_undelivered" });
      expect((error as EagleApiError).message).toBe(
        `station '${owing}': its sinks still owe 1 delivery (a verdict or a refusal): 1 pending, 0 dead letters; deleting it would drop them. ` +
          `Let them be delivered (GET /v1/stations/${owing} shows each sink's pending; POST /v1/stations/${owing}/retry ` +
          "requeues dead letters), or delete it with ?discard_pending=true to drop them",
      );
      expect((await client.getStation(owing)).state).toBe("running");
      await client.deleteStation(owing, { discardPending: true });
      await expect(client.getStation(owing)).rejects.toMatchObject({ status: 404 });
    });
  });

  it("refuses a change that removes a sink still owing a verdict, unless told to drop it", async () => {
    await withOwingStation("removed", "cell-03.png", async (owing) => {
      const error = await client.updateStation(owing, { sinks: [null] }).catch((reason: unknown) => reason);
      expect(error).toMatchObject({ status: 409, code: "station_undelivered" });
      expect((error as EagleApiError).message).toContain(
        `station '${owing}': the change removes sinks that still owe 1 delivery (a verdict or a refusal) (sink 'webhook': 1 pending, 0 dead letters)`,
      );
      expect(Object.keys((await client.getStation(owing)).sinks)).toEqual(["webhook"]);
      const changed = await client.updateStation(owing, { sinks: [null] }, { discardPending: true });
      expect(changed.sinks).toEqual({});
      await client.deleteStation(owing); // nothing owed any more
    });
  });

  it("deletes a station: gone from the list, its inspection kept in the history", async () => {
    const before = await client.getStation(name);
    const recordId = (before.last_verdict as { record_id: string }).record_id;
    await client.deleteStation(name);
    created = false;
    expect((await client.listStations()).map((s) => s.station)).not.toContain(name);
    await expect(client.getStation(name)).rejects.toMatchObject({ status: 404 });
    expect((await client.inspection(recordId)).station).toBe(name);
  });
});
