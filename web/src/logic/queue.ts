/**
 * The inspection queue's state, apart from React and storage: what an item is, how a batch is added,
 * and how a saved queue comes back after a reload (an item that was being inspected is sent again,
 * since its answer never arrived; its id is the upload's Idempotency-Key, so if the first try did
 * reach the service the repeat answers with that record instead of storing the image twice).
 */

import type { InspectionRecord } from "@eagle-iad/client";
import type { UserError } from "./errors";

export type ItemStatus = "queued" | "running" | "done" | "failed";

export interface QueueItem {
  /** Unique per item, kept in IndexedDB with it: also the upload's Idempotency-Key. */
  id: string;
  /** The name the service records: the path inside a picked folder, else the file name. */
  name: string;
  /** The image, until it has been inspected (kept in IndexedDB so a reload does not lose it). */
  file: Blob | null;
  category: string;
  question: string | null;
  attention: boolean;
  status: ItemStatus;
  /** When it was added (ms since the epoch): the queue's order. */
  added: number;
  record?: InspectionRecord;
  error?: UserError;
}

/** Bytes as a person reads them: "512 KiB", "32 MiB", "77.2 MiB" (the service words its limit the same way). */
export function sizeText(bytes: number): string {
  const MIB = 1024 * 1024;
  if (bytes < MIB) return `${Math.max(1, Math.round(bytes / 1024))} KiB`;
  return `${(bytes / MIB).toFixed(1).replace(/\.0$/, "")} MiB`;
}

/**
 * The refusal of a file bigger than the service takes (`max_upload_bytes` of its /healthz), said before it is
 * sent: sending 80 MiB only to hear "too large" wastes the time and the line, and the service's own refusal
 * cannot name the file (it stops reading before the file's part). Null when it fits, or the limit is unknown.
 */
export function oversize(name: string, bytes: number, limit: number | null | undefined): UserError | null {
  if (limit === null || limit === undefined || bytes <= limit) return null;
  return {
    kind: "too_large",
    title: "File too large",
    message: `${name} is ${sizeText(bytes)}; the limit is ${sizeText(limit)} (the service's --max-upload-mb). Make the image smaller, or ask whoever runs the service to raise the limit.`,
    retryable: false,
  };
}

/** A service's "request body too large" refusal, with the file's name and size in front (it knows neither). */
export function namedTooLarge(error: UserError, name: string, bytes: number | null): UserError {
  if (error.kind !== "too_large" || error.title !== "File too large") return error;
  const size = bytes === null ? "" : ` is ${sizeText(bytes)}`;
  return { ...error, message: `${name}${size}; the service refused it: ${error.message}.` };
}

/** A file's name with its folders when it came from a folder pick or drop (`lot/cut/003.png`). */
export function uploadName(file: { name: string; webkitRelativePath?: string }, path?: string): string {
  const relative = (path ?? file.webkitRelativePath ?? "").replace(/^\/+/, "");
  return relative || file.name;
}

export function newItems(
  files: ReadonlyArray<{ file: Blob; name: string }>,
  settings: { category: string; question: string | null; attention: boolean },
  now: number,
  makeId: () => string,
): QueueItem[] {
  return files.map(({ file, name }, i) => ({
    id: makeId(),
    name,
    file,
    category: settings.category,
    question: settings.question,
    attention: settings.attention,
    status: "queued",
    added: now + i / 1000,
  }));
}

/** Finished results shown again after a reload (the history keeps them all). */
export const KEEP_DONE = 100;

/**
 * Items read back after a reload, in order; one that was running is queued again, and only the
 * newest `keepDone` finished results come back (every waiting or failed image does).
 */
export function restore(saved: readonly QueueItem[], keepDone = KEEP_DONE): QueueItem[] {
  const items = [...saved]
    .filter((item) => (item.status === "done" ? item.record !== undefined : item.file !== null))
    .map((item) => (item.status === "running" ? { ...item, status: "queued" as const } : item))
    .sort((a, b) => a.added - b.added);
  const done = items.filter((i) => i.status === "done");
  const dropped = new Set(done.slice(0, Math.max(0, done.length - keepDone)).map((i) => i.id));
  return items.filter((i) => !dropped.has(i.id));
}

/** The next item to inspect (oldest queued), unless one is running already. */
export function nextToRun(items: readonly QueueItem[]): QueueItem | null {
  if (items.some((i) => i.status === "running")) return null;
  return items.find((i) => i.status === "queued") ?? null;
}

export function finish(items: readonly QueueItem[], id: string, outcome: { record: InspectionRecord } | { error: UserError }): QueueItem[] {
  return items.map((i) => {
    if (i.id !== id) return i;
    if ("record" in outcome) return { ...i, status: "done", record: outcome.record, file: null, error: undefined };
    return { ...i, status: "failed", error: outcome.error };
  });
}

/** Queue a failed item again, if its failure was one a retry can cure (`retryable`). */
export function retryItem(items: readonly QueueItem[], id: string): QueueItem[] {
  return items.map((i) =>
    i.id === id && i.status === "failed" && i.file && i.error?.retryable !== false ? { ...i, status: "queued", error: undefined } : i,
  );
}

/** What became of an item, as a batch's counts and filters group it. */
export type Outcome = "waiting" | "anomalous" | "normal" | "unrecognised" | "undecided" | "failed";

export function outcomeOf(item: QueueItem): Outcome {
  if (item.status === "queued" || item.status === "running") return "waiting";
  if (item.status === "failed") return "failed";
  const record = item.record;
  if (record?.unrecognised === true || record?.decision === "unrecognised") return "unrecognised";
  if (record?.decision === "anomalous") return "anomalous";
  if (record?.decision === "normal") return "normal";
  return "undecided";
}

export interface Counts {
  waiting: number;
  done: number;
  failed: number;
  /** Of the done ones, by decision. */
  anomalous: number;
  normal: number;
  unrecognised: number;
  undecided: number;
}

export function counts(items: readonly QueueItem[]): Counts {
  const of = (outcome: Outcome) => items.filter((i) => outcomeOf(i) === outcome).length;
  return {
    waiting: of("waiting"),
    done: items.filter((i) => i.status === "done").length,
    failed: of("failed"),
    anomalous: of("anomalous"),
    normal: of("normal"),
    unrecognised: of("unrecognised"),
    undecided: of("undecided"),
  };
}

/** A batch's filters: everything, or one outcome. */
export type BatchFilter = "all" | Exclude<Outcome, "waiting">;

/** The filters worth offering for these counts (an outcome nothing has is left out), with their labels. */
export function batchFilters(c: Counts): Array<{ filter: BatchFilter; label: string; count: number }> {
  const all = c.waiting + c.done + c.failed;
  const options: Array<{ filter: BatchFilter; label: string; count: number }> = [
    { filter: "all", label: "All", count: all },
    { filter: "anomalous", label: "Anomalous", count: c.anomalous },
    { filter: "normal", label: "Normal", count: c.normal },
    { filter: "unrecognised", label: "Not recognised", count: c.unrecognised },
    { filter: "undecided", label: "Undecided", count: c.undecided },
    { filter: "failed", label: "Failed", count: c.failed },
  ];
  return options.filter((o) => o.filter === "all" || o.filter === "anomalous" || o.filter === "normal" || o.count > 0);
}

export function filterBatch(items: readonly QueueItem[], filter: BatchFilter): QueueItem[] {
  return filter === "all" ? [...items] : items.filter((i) => outcomeOf(i) === filter);
}
