/**
 * The client against a real `eagle serve` (expert on real elpv solar cells, tiny random Qwen2.5-VL):
 * every route the client wraps, typed results, the fit's live events, and the service's errors.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";

import { EagleApiError, EagleClient, EagleFitError, newIdempotencyKey, type JobEvent } from "../src/index.js";
import { sharedServer } from "./fixture.js";

const PNG_MAGIC = [0x89, 0x50, 0x4e, 0x47];
let client: EagleClient;
let fixture: string;

beforeAll(() => {
  const server = sharedServer();
  client = new EagleClient({ baseUrl: server.baseUrl });
  fixture = server.fixtureDir;
});

describe("reading", () => {
  it("health says an MLLM is configured", async () => {
    const health = await client.health();
    expect(health.status).toBe("ok");
    expect(health.mllm).toBe(true);
    expect(health.mllm_queue_waiting).toBe(0);
  });

  it("lists the mono (elpv) category and describes it with every training score", async () => {
    const categories = await client.categories();
    const mono = categories.find((c) => c.name === "mono");
    expect(mono).toMatchObject({ backbone: "efficientnet_lite0", rule: "ksigma", train_images: 12 });
    expect(mono?.training_scores?.values ?? null).toBeNull(); // the list leaves the raw scores out
    const detail = await client.category("mono");
    const scores = detail.training_scores;
    expect(scores?.values).toHaveLength(12);
    expect(scores?.histogram?.counts.reduce((a, b) => a + b, 0)).toBe(12);
    expect(Math.max(...(scores?.values ?? []))).toBeCloseTo(detail.s_max ?? NaN, 6);
  });

  it("answers a missing category with 404 and its code", async () => {
    await expect(client.category("nope")).rejects.toMatchObject({ status: 404, code: "category_not_found" });
    await expect(client.category("../etc")).rejects.toMatchObject({ status: 404 });
  });

  it("lists the evaluation run with its metrics and a PNG figure", async () => {
    const runs = await client.evaluations();
    const run = runs.find((r) => r.name === "mono-expert");
    expect(run?.metrics?.category).toBe("mono");
    expect(typeof run?.metrics?.image_auroc).toBe("number");
    const link = run?.plots?.["histogram.png"];
    expect(link).toBe("/v1/evaluations/mono-expert/files/histogram.png");
    const picture = new Uint8Array(await (await client.picture(link as string)).arrayBuffer());
    expect([...picture.slice(0, 4)]).toEqual(PNG_MAGIC);
  });
});

describe("inspect", () => {
  it("returns the full EAGLE verdict with picture links, and stores it in the history", async () => {
    const before = (await client.history({ limit: 1 })).total;
    const image = await readFile(join(fixture, "sample-crack.png"));
    const record = await client.inspect(image, "mono", { filename: "crack 01.png" });
    expect(record.category).toBe("mono");
    expect(record.image_name).toBe("crack 01.png"); // the name as sent, spaces and all
    expect(record.score).toBeGreaterThan(0);
    expect(record.verdict.condition).toBe("eagle");
    expect(typeof record.answer).toBe("string"); // the tiny MLLM's (random) reply, never a canned one
    expect(["anomalous", "normal", "unparsable"]).toContain(record.decision);
    expect(record.in_band).toBe(record.score! >= record.tau! && record.score! < record.s_max!);
    expect(Object.keys(record.pictures)).toEqual(expect.arrayContaining(["heatmap", "box"]));
    const heatmap = new Uint8Array(await (await client.picture(record.pictures.heatmap as string)).arrayBuffer());
    expect([...heatmap.slice(0, 4)]).toEqual(PNG_MAGIC);
    const page = await client.history({ limit: 5 });
    expect(page.total).toBe(before + 1);
    expect(page.items[0]?.id).toBe(record.id);
  });

  it("stores one record per upload key: a repeat answers with it, another image under it is refused", async () => {
    const before = (await client.history({ limit: 1 })).total;
    const image = await readFile(join(fixture, "sample-crack.png"));
    const key = newIdempotencyKey();
    const first = await client.inspect(image, "mono", { filename: "again.png", idempotencyKey: key });
    const again = await client.inspect(image, "mono", { filename: "again.png", idempotencyKey: key });
    expect(again).toEqual(first);
    expect((await client.history({ limit: 1 })).total).toBe(before + 1);
    const other = await readFile(join(fixture, "sample-good.png"));
    await expect(client.inspect(other, "mono", { idempotencyKey: key })).rejects.toMatchObject({
      status: 422,
      code: "idempotency_key_reused",
    });
    expect((await client.history({ limit: 1 })).total).toBe(before + 1);
  });

  it("reads one inspection back and downloads its nearest normal reference", async () => {
    const image = await readFile(join(fixture, "sample-crack.png"));
    const record = await client.inspect(image, "mono", { filename: "lot/cut/003.png" });
    expect(await client.inspection(record.id)).toEqual(record);
    const reference = record.reference;
    expect(reference?.unavailable).toBeNull();
    expect(reference?.image).toMatch(/\.png$/);
    expect(record.pictures["reference"]).toBe(`/v1/files/${record.id}/003_reference.jpg`);
    const picture = await client.inspectionPicture(record.id, "reference");
    expect(picture.type).toBe("image/jpeg");
    expect([...picture.data.slice(0, 3)]).toEqual([0xff, 0xd8, 0xff]);
    const linked = new Uint8Array(await (await client.picture(record.pictures["reference"] as string)).arrayBuffer());
    expect(picture.data).toEqual(linked);
    const boxed = await client.inspectionPicture(record.id, "boxed");
    expect(boxed.type).toBe("image/png");
    await expect(client.inspection("nope")).rejects.toMatchObject({ status: 404, code: "not_found" });
    await expect(client.inspectionPicture("nope", "reference")).rejects.toMatchObject({ status: 404, code: "not_found" });
    await expect(client.inspectionPicture(record.id, "mask" as never)).rejects.toThrow('unknown picture kind "mask"');
  });

  it("returns attention overlays when asked", async () => {
    const image = await readFile(join(fixture, "sample-good.png"));
    const record = await client.inspect(image, "mono", { attention: true, question: "Is the cell cracked?" });
    expect(record.decision).toBeNull(); // a custom question has no anomaly decision
    expect(Object.keys(record.pictures).filter((k) => k.startsWith("attention_L")).length).toBeGreaterThan(0);
  });

  it("refuses a file that is not an image, with the service's message", async () => {
    const error = await client.inspect(new TextEncoder().encode("not an image"), "mono", { filename: "x.png" }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(EagleApiError);
    expect(error).toMatchObject({ status: 400, code: "invalid_image", message: "x.png: not a recognised image format" });
  });

  it("refuses an unknown category", async () => {
    const image = await readFile(join(fixture, "sample-good.png"));
    await expect(client.inspect(image, "missing")).rejects.toMatchObject({ status: 404, code: "category_not_found" });
  });
});

describe("history", () => {
  it("filters by category and decision and pages without gaps", async () => {
    const all = await client.history({ limit: 500 });
    const undecided = await client.history({ decision: "undecided", limit: 500 });
    const decided = ["anomalous", "normal", "unrecognised"];
    const expected = all.items.filter((r) => !decided.includes(r.decision ?? "")).map((r) => r.id);
    expect(undecided.items.map((r) => r.id)).toEqual(expected);
    const unrecognised = await client.history({ decision: "unrecognised", limit: 500 });
    const notRecognised = all.items.filter((r) => r.decision === "unrecognised").map((r) => r.id);
    expect(unrecognised.items.map((r) => r.id)).toEqual(notRecognised);
    expect((await client.history({ category: "missing" })).total).toBe(0);
    const paged: string[] = [];
    for await (const record of client.historyAll({ limit: 1 })) paged.push(record.id);
    expect(paged).toEqual(all.items.map((r) => r.id));
    await expect(client.history({ limit: 0 })).rejects.toMatchObject({ status: 400 });
  });

  it("labels an inspection (what the part actually was), filters by label and clears it", async () => {
    const [target] = (await client.history({ limit: 1 })).items;
    expect(target).toBeDefined();
    const labelled = await client.label(target!.id, "anomalous");
    expect(labelled).toMatchObject({ id: target!.id, label: "anomalous", decision: target!.decision, score: target!.score });
    expect(Number.isNaN(Date.parse(labelled.label_time ?? ""))).toBe(false);
    const found = await client.history({ label: "anomalous", limit: 500 });
    expect(found.items.map((r) => r.id)).toContain(target!.id);
    expect((await client.history({ label: "unlabelled", limit: 500 })).items.map((r) => r.id)).not.toContain(target!.id);
    const cleared = await client.label(target!.id, null);
    expect(cleared.label).toBeNull();
    expect((await client.history({ label: "labelled", limit: 500 })).items.map((r) => r.id)).not.toContain(target!.id);
    await expect(client.label("no-such-inspection", "normal")).rejects.toMatchObject({ status: 404, code: "not_found" });
    await expect(client.label(target!.id, "broken" as "normal")).rejects.toMatchObject({ status: 400 });
  });

  it("deletes an inspection: its pictures and its record gone, what was removed said; an unknown id is 404", async () => {
    const before = (await client.history({ limit: 1 })).total;
    const record = await client.inspect(await readFile(join(fixture, "sample-good.png")), "mono", { filename: "delete me.png" });
    const deleted = await client.deleteInspection(record.id, "a person in frame");
    expect(deleted).toMatchObject({ id: record.id, category: "mono", image_name: "delete me.png" });
    expect(deleted.files_removed).toBeGreaterThanOrEqual(Object.keys(record.pictures).length); // and the kept upload
    expect(deleted.bytes_removed).toBeGreaterThan(0);
    await expect(client.inspection(record.id)).rejects.toMatchObject({ status: 404, code: "not_found" });
    await expect(client.picture(record.pictures.heatmap as string)).rejects.toMatchObject({ status: 404 });
    expect((await client.history({ limit: 1 })).total).toBe(before);
    await expect(client.deleteInspection(record.id)).rejects.toMatchObject({ status: 404, code: "not_found" });
  });
});

describe("review", () => {
  it("lists the queue with each item's reasons, and a label with a note takes an item out", async () => {
    // The tiny random MLLM's replies cannot be read: its inspections have no decision, so they wait for a person.
    await client.inspect(await readFile(join(fixture, "sample-good.png")), "mono", { filename: "review me.png" });
    const before = await client.review({ category: "mono", limit: 500 });
    expect(before.total).toBeGreaterThan(0);
    expect(before.reasons.map((r) => r.code)).toEqual(["band", "close_call", "unrecognised", "disagreement", "undecided"]);
    const first = before.items[0]!;
    expect(first.reasons.length).toBeGreaterThan(0);
    const labelled = await client.label(first.record.id, "normal", { note: "checked under the lamp", by: "Anna (shift B)" });
    expect([labelled.label, labelled.label_note, labelled.label_by]).toEqual(["normal", "checked under the lamp", "Anna (shift B)"]); // no keys: the open mode records the name given
    const after = await client.review({ category: "mono", limit: 500 });
    expect(after.total).toBe(before.total - 1);
    expect(after.items.some((i) => i.record.id === first.record.id)).toBe(false);
  });
});

describe("live history", () => {
  it("tells each inspection as it is stored, and stops when aborted", async () => {
    const abort = new AbortController();
    let opened = 0;
    const feed = client.inspectionEvents({ category: "mono", signal: abort.signal, onOpen: () => opened++ })[Symbol.asyncIterator]();
    const next = feed.next(); // connects
    const deadline = Date.now() + 60_000;
    while (opened === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(opened).toBe(1);
    const record = await client.inspect(await readFile(join(fixture, "sample-good.png")), "mono", { filename: "live feed.png" });
    const { value } = await next;
    expect(value).toMatchObject({ id: record.id, category: "mono", image_name: "live feed.png", decision: record.decision, station: null });
    expect(typeof value?.seq).toBe("number");
    abort.abort();
    expect((await feed.next()).done).toBe(true);
  }, 180_000);
});

describe("fit", () => {
  it("fits from a server folder, reporting ordered progress, and the category appears", async () => {
    const events: JobEvent[] = [];
    const job = await client.fit("mono-folder", { folder: "mono-good" }, { coreset_ratio: 0.5 }, { onEvent: (e) => events.push(e) });
    expect(job.state).toBe("succeeded");
    expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => i));
    expect(events[0]).toMatchObject({ event: "state", state: "queued" });
    expect(events.at(-1)).toMatchObject({ event: "state", state: "succeeded" });
    const progress = events.filter((e) => e.event === "progress");
    expect(progress.length).toBeGreaterThan(0);
    for (const step of progress) expect(step.done).toBeLessThanOrEqual(step.total ?? 0);
    const detail = await client.category("mono-folder");
    expect(detail.train_images).toBe(6);
    expect(job.result?.tau).toBeCloseTo(detail.tau ?? NaN, 9);
  });

  it("changes the fitted category's threshold on the record and restores it", async () => {
    const fitted = await client.category("mono-folder");
    const changed = await client.changeThreshold("mono-folder", { tau: (fitted.tau ?? 0) + 5, why: "fewer false alarms", by: "qe" });
    expect(changed.tau).toBeCloseTo((fitted.tau ?? 0) + 5, 9);
    expect(changed.rule).toBe("fixed");
    expect(changed.history?.[0]).toMatchObject({ change: 1, by: "qe", why: "fewer false alarms", action: "set" });
    const restored = await client.changeThreshold("mono-folder", { restore: 1, why: "undo" });
    expect(restored.tau).toBe(fitted.tau);
    expect(restored.history).toHaveLength(2);
    await expect(client.changeThreshold("mono-folder", { why: "neither" })).rejects.toMatchObject({ status: 400 });
  });

  it("fits from uploaded images", async () => {
    const files = await Promise.all(
      ["00.png", "01.png", "02.png"].map(async (name) => ({ name, data: await readFile(join(fixture, "data", "mono-good", name)) })),
    );
    const job = await client.fit("mono-upload", { files });
    expect(job).toMatchObject({ state: "succeeded", images: 3 });
    expect((await client.category("mono-upload")).train_images).toBe(3);
  });

  it("refuses bad input before any job exists", async () => {
    await expect(client.startFit("bad name!", { folder: "mono-good" })).rejects.toMatchObject({ status: 400, code: "invalid_name" });
    await expect(client.startFit("x", { folder: "../.." })).rejects.toMatchObject({ status: 400, code: "invalid_path" });
    await expect(client.startFit("x", { folder: "mono-good" }, { rule: "bogus" as never })).rejects.toMatchObject({ status: 400 });
    const text = { name: "a.png", data: new TextEncoder().encode("nope") };
    await expect(client.startFit("x", { files: [text, text] })).rejects.toMatchObject({ status: 400, code: "invalid_image" });
  });

  it("reports a job that fails as EagleFitError with the service's reason, without host paths", async () => {
    const events: JobEvent[] = [];
    const error = await client.fit("broken", { folder: "broken" }, {}, { onEvent: (e) => events.push(e) }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(EagleFitError);
    const fitError = error as EagleFitError;
    expect(fitError.jobError).toMatch(/a\.png/);
    expect(fitError.jobError).not.toContain(fixture);
    expect(events.at(-1)).toMatchObject({ event: "state", state: "failed", error: fitError.jobError });
    await expect(client.category("broken")).rejects.toMatchObject({ status: 404 });
    await expect(client.waitForJob("0".repeat(32))).rejects.toMatchObject({ status: 404, code: "job_not_found" });
  });
});
