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

export interface Counts {
  waiting: number;
  done: number;
  failed: number;
}

export function counts(items: readonly QueueItem[]): Counts {
  return {
    waiting: items.filter((i) => i.status === "queued" || i.status === "running").length,
    done: items.filter((i) => i.status === "done").length,
    failed: items.filter((i) => i.status === "failed").length,
  };
}
