import { EagleApiError, type InspectionRecord } from "@eagle-iad/client";
import { describe, expect, it } from "vitest";
import { describeError } from "./errors";
import { batchFilters, counts, filterBatch, finish, namedTooLarge, newItems, nextToRun, outcomeOf, oversize, restore, retryItem, sizeText, uploadName, type QueueItem } from "./queue";

const blob = new Blob(["x"]);
let n = 0;
const makeId = () => `i${++n}`;
const batch = () =>
  newItems(
    [
      { file: blob, name: "cut/003.png" },
      { file: blob, name: "hole/003.png" },
    ],
    { category: "tire", question: null, attention: false },
    1000,
    makeId,
  );

describe("inspection queue", () => {
  it("keeps the folder of a picked file in its name", () => {
    expect(uploadName({ name: "003.png", webkitRelativePath: "lot/cut/003.png" })).toBe("lot/cut/003.png");
    expect(uploadName({ name: "003.png", webkitRelativePath: "" })).toBe("003.png");
    expect(uploadName({ name: "003.png" }, "/lot/hole/003.png")).toBe("lot/hole/003.png");
  });

  it("runs one item at a time, oldest first, and counts what is left", () => {
    const items = batch();
    expect(nextToRun(items)?.name).toBe("cut/003.png");
    const running = items.map((i, k) => (k === 0 ? { ...i, status: "running" as const } : i));
    expect(nextToRun(running)).toBeNull();
    expect(counts(running)).toEqual({ waiting: 2, done: 0, failed: 0, anomalous: 0, normal: 0, unrecognised: 0, undecided: 0 });
  });

  it("drops the image once inspected, keeps it for a retry when failed", () => {
    const items = batch();
    const record = { id: "r" } as InspectionRecord;
    const done = finish(items, items[0]!.id, { record });
    expect(done[0]).toMatchObject({ status: "done", file: null, record });
    const error = { kind: "busy" as const, title: "Busy", message: "queue full", retryable: true };
    const failed = finish(done, items[1]!.id, { error });
    expect(failed[1]).toMatchObject({ status: "failed", error, file: blob });
    expect(counts(failed)).toEqual({ waiting: 0, done: 1, failed: 1, anomalous: 0, normal: 0, unrecognised: 0, undecided: 1 });
    expect(retryItem(failed, items[1]!.id)[1]).toMatchObject({ status: "queued", error: undefined });
    const broken = { kind: "invalid_image" as const, title: "Not a usable image", message: "not an image", retryable: false };
    const refused = finish(done, items[1]!.id, { error: broken });
    expect(retryItem(refused, items[1]!.id)[1]).toMatchObject({ status: "failed", error: broken }); // never succeeds
  });

  it("restores a saved queue in order, running again the item a reload interrupted", () => {
    const [a, b] = batch() as [QueueItem, QueueItem];
    const saved = [{ ...b }, { ...a, status: "running" as const }, { ...a, id: "broken", status: "done" as const }];
    expect(restore(saved).map((i) => [i.id, i.status])).toEqual([
      [a.id, "queued"],
      [b.id, "queued"],
    ]);
  });

  it("brings back only the newest finished results, but every waiting image", () => {
    const record = { id: "r" } as InspectionRecord;
    const old = batch().map((i, k) => ({ ...i, id: `d${k}`, added: k, status: "done" as const, file: null, record }));
    const waiting = { ...batch()[0]!, id: "w", added: 0.5 };
    expect(restore([...old, waiting], 1).map((i) => i.id)).toEqual(["w", "d1"]);
  });
});

describe("a batch's counts and filters", () => {
  const item = (id: string, status: QueueItem["status"], record?: Partial<InspectionRecord>): QueueItem => ({
    id,
    name: `${id}.png`,
    file: null,
    category: "mono",
    question: null,
    attention: false,
    status,
    added: 0,
    ...(record ? { record: record as InspectionRecord } : {}),
  });
  const items = [
    item("a1", "done", { decision: "anomalous" }),
    item("n1", "done", { decision: "normal" }),
    item("a2", "done", { decision: "anomalous" }),
    item("u1", "done", { decision: "unrecognised", unrecognised: true }),
    item("x1", "done", { decision: null }),
    item("f1", "failed"),
    item("w1", "queued"),
  ];

  it("counts each outcome once", () => {
    expect(items.map(outcomeOf)).toEqual(["anomalous", "normal", "anomalous", "unrecognised", "undecided", "failed", "waiting"]);
    expect(counts(items)).toEqual({ waiting: 1, done: 5, failed: 1, anomalous: 2, normal: 1, unrecognised: 1, undecided: 1 });
  });

  it("offers a filter per outcome present, and filters by it", () => {
    expect(batchFilters(counts(items)).map((f) => `${f.label} ${f.count}`)).toEqual([
      "All 7",
      "Anomalous 2",
      "Normal 1",
      "Not recognised 1",
      "Undecided 1",
      "Failed 1",
    ]);
    expect(batchFilters(counts(items.slice(0, 3))).map((f) => f.filter)).toEqual(["all", "anomalous", "normal"]);
    expect(filterBatch(items, "anomalous").map((i) => i.id)).toEqual(["a1", "a2"]);
    expect(filterBatch(items, "failed").map((i) => i.id)).toEqual(["f1"]);
    expect(filterBatch(items, "all")).toHaveLength(7);
  });
});

describe("files too large to send", () => {
  const MIB = 1024 * 1024;
  it("words sizes in KiB and MiB, as the service words its limit", () => {
    expect([sizeText(300), sizeText(512 * 1024), sizeText(32 * MIB), sizeText(81_000_000)]).toEqual(["1 KiB", "512 KiB", "32 MiB", "77.2 MiB"]);
  });
  it("refuses a file over the service's limit before sending it, naming the file and both sizes", () => {
    expect(oversize("huge.png", 81_000_000, 32 * MIB)).toEqual({
      kind: "too_large",
      title: "File too large",
      message: "huge.png is 77.2 MiB; the limit is 32 MiB (the service's --max-upload-mb). Make the image smaller, or ask whoever runs the service to raise the limit.",
      retryable: false,
    });
    expect(oversize("ok.png", 32 * MIB, 32 * MIB)).toBeNull();
    expect(oversize("huge.png", 81_000_000, null)).toBeNull(); // an older service that does not say: it checks itself
  });
  it("puts the file's name and size in front of the service's own refusal, which knows neither", () => {
    const refused = describeError(new EagleApiError("request body of 38.2 MiB exceeds the limit of 32 MiB", 413, "payload_too_large"));
    expect(namedTooLarge(refused, "huge.png", 40_000_000).message).toBe(
      "huge.png is 38.1 MiB; the service refused it: request body of 38.2 MiB exceeds the limit of 32 MiB.",
    );
    const pixels = describeError(new EagleApiError("big.png: 9000x9000 = 81.0 megapixels exceeds the limit of 40.0 megapixels", 413, "too_many_pixels"));
    expect(namedTooLarge(pixels, "big.png", 1000)).toBe(pixels); // names its file already
  });
});
