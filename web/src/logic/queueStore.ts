/**
 * The inspection queue kept in the browser's IndexedDB, so images still waiting survive a reload or
 * a closed tab. One object store, one row per item (the image as a Blob; a finished item keeps only
 * its record). Where IndexedDB is unavailable (some private modes) the queue lives in memory only,
 * and the console says so.
 */

import type { QueueItem } from "./queue";

const DB = "eagle-iad-console";
const STORE = "inspect-queue";
const VERSION = 1;

function request<T>(req: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error ?? new Error("IndexedDB request failed"));
  });
}

function open(): Promise<IDBDatabase> {
  return new Promise((resolve, reject) => {
    if (typeof indexedDB === "undefined") {
      reject(new Error("IndexedDB is not available"));
      return;
    }
    const req = indexedDB.open(DB, VERSION);
    req.onupgradeneeded = () => {
      if (!req.result.objectStoreNames.contains(STORE)) req.result.createObjectStore(STORE, { keyPath: "id" });
    };
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error ?? new Error("cannot open IndexedDB"));
    req.onblocked = () => reject(new Error("IndexedDB is blocked by another tab"));
  });
}

export interface QueueStore {
  load(): Promise<QueueItem[]>;
  /** Write the changed items and delete the removed ones; resolves when the transaction committed. */
  save(put: readonly QueueItem[], remove: readonly string[]): Promise<void>;
}

export async function openQueueStore(): Promise<QueueStore> {
  const db = await open();
  return {
    async load() {
      const tx = db.transaction(STORE, "readonly");
      return (await request(tx.objectStore(STORE).getAll())) as QueueItem[];
    },
    save(put, remove) {
      return new Promise((resolve, reject) => {
        const tx = db.transaction(STORE, "readwrite");
        const store = tx.objectStore(STORE);
        for (const item of put) store.put(item);
        for (const id of remove) store.delete(id);
        tx.oncomplete = () => resolve();
        tx.onerror = () => reject(tx.error ?? new Error("IndexedDB write failed"));
        tx.onabort = () => reject(tx.error ?? new Error("IndexedDB write aborted"));
      });
    },
  };
}
