/**
 * The inspection queue, above the router: a batch keeps going while the user is on another page,
 * and what is still waiting is kept in IndexedDB, so a reload picks it up again (see logic/queue.ts).
 */

import { createContext, useCallback, useContext, useEffect, useMemo, useRef, useState, type ReactNode } from "react";
import { newIdempotencyKey } from "@eagle-iad/client";
import { useApi } from "./api";
import { describeError, isUnauthorised } from "./logic/errors";
import { counts, finish, namedTooLarge, newItems, nextToRun, oversize, restore, retryItem, type Counts, type QueueItem } from "./logic/queue";
import { openQueueStore, type QueueStore } from "./logic/queueStore";
import { scoreLine } from "./logic/scale";
import { decisionView } from "./logic/verdict";

export interface QueueSettings {
  category: string;
  question: string | null;
  attention: boolean;
}

export interface InspectQueue {
  items: QueueItem[];
  counts: Counts;
  /** False until the saved queue has been read back. */
  ready: boolean;
  /** Whether the queue survives a reload (IndexedDB usable); null while unknown. */
  persistent: boolean | null;
  add: (files: ReadonlyArray<{ file: Blob; name: string }>, settings: QueueSettings) => void;
  retry: (id: string) => void;
  clearFinished: () => void;
  /** The last verdict or failure, for the screen-reader live region. */
  announcement: string;
}

const QueueContext = createContext<InspectQueue | null>(null);

export function useQueue(): InspectQueue {
  const queue = useContext(QueueContext);
  if (!queue) throw new Error("useQueue outside <QueueProvider>");
  return queue;
}

// Random 128-bit ids (also where crypto.randomUUID is missing: a console served over plain http on a LAN).
const makeId = newIdempotencyKey;

export function QueueProvider({ children }: { children: ReactNode }) {
  const { client, health, requireKey } = useApi();
  const uploadLimit = health?.max_upload_bytes ?? null;
  const [items, setItems] = useState<QueueItem[]>([]);
  const [ready, setReady] = useState(false);
  const [persistent, setPersistent] = useState<boolean | null>(null);
  const [announcement, setAnnouncement] = useState("");
  const store = useRef<QueueStore | null>(null);
  const saved = useRef(new Map<string, QueueItem>());
  const writes = useRef<Promise<void>>(Promise.resolve());

  // Read the saved queue once; items added meanwhile are kept after the restored ones.
  useEffect(() => {
    let live = true;
    openQueueStore()
      .then(async (opened) => {
        const restored = restore(await opened.load());
        if (!live) return;
        store.current = opened;
        for (const item of restored) saved.current.set(item.id, item);
        setItems((current) => [...restored.filter((r) => !current.some((c) => c.id === r.id)), ...current]);
        setPersistent(true);
      })
      .catch(() => live && setPersistent(false))
      .finally(() => live && setReady(true));
    return () => {
      live = false;
    };
  }, []);

  // Mirror every change into IndexedDB (only what changed), one transaction after another.
  useEffect(() => {
    const target = store.current;
    if (!ready || !target) return;
    const put = items.filter((item) => saved.current.get(item.id) !== item);
    const ids = new Set(items.map((i) => i.id));
    const remove = [...saved.current.keys()].filter((id) => !ids.has(id));
    if (put.length === 0 && remove.length === 0) return;
    for (const item of put) saved.current.set(item.id, item);
    for (const id of remove) saved.current.delete(id);
    writes.current = writes.current.then(() => target.save(put, remove)).catch(() => setPersistent(false));
  }, [items, ready]);

  // One image at a time, oldest first, whichever page is shown.
  useEffect(() => {
    if (!ready) return;
    const next = nextToRun(items);
    if (!next || !next.file) return;
    const tooBig = oversize(next.name, next.file.size, uploadLimit); // said at once, not after sending it all
    if (tooBig) {
      setItems((prev) => finish(prev, next.id, { error: tooBig }));
      setAnnouncement(`${next.name}: not inspected. ${tooBig.title}: ${tooBig.message}`);
      return;
    }
    const size = next.file.size;
    setItems((prev) => prev.map((i) => (i.id === next.id ? { ...i, status: "running" } : i)));
    // The item's id is its upload key: sent again after a reload, it answers with the first try's record.
    const options: { filename: string; idempotencyKey: string; question?: string; attention?: boolean } = {
      filename: next.name,
      idempotencyKey: next.id,
    };
    if (next.question !== null) options.question = next.question;
    if (next.attention) options.attention = true;
    client.inspect(next.file, next.category, options).then(
      (record) => {
        setItems((prev) => finish(prev, next.id, { record }));
        setAnnouncement(`${next.name}: ${decisionView(record.decision).label}, ${scoreLine(record.score, record.tau)}`);
      },
      (reason: unknown) => {
        if (isUnauthorised(reason)) requireKey(reason);
        const error = namedTooLarge(describeError(reason), next.name, size);
        setItems((prev) => finish(prev, next.id, { error }));
        setAnnouncement(`${next.name}: not inspected. ${error.title}: ${error.message}`);
      },
    );
  }, [items, ready, client, requireKey, uploadLimit]);

  const add = useCallback((files: ReadonlyArray<{ file: Blob; name: string }>, settings: QueueSettings) => {
    if (files.length === 0 || !settings.category) return;
    setItems((prev) => [...prev, ...newItems(files, settings, Date.now(), makeId)]);
  }, []);
  const retry = useCallback((id: string) => setItems((prev) => retryItem(prev, id)), []);
  const clearFinished = useCallback(() => setItems((prev) => prev.filter((i) => i.status === "queued" || i.status === "running")), []);

  const value = useMemo<InspectQueue>(
    () => ({ items, counts: counts(items), ready, persistent, add, retry, clearFinished, announcement }),
    [items, ready, persistent, add, retry, clearFinished, announcement],
  );
  return <QueueContext.Provider value={value}>{children}</QueueContext.Provider>;
}
