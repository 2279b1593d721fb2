import type { Category } from "@eagle-iad/client";
import { useCallback, useEffect, useId, useRef, useState, type DragEvent, type FormEvent } from "react";
import { useApi, useAsync } from "../api";
import { ErrorBanner, Loading } from "../components/ErrorBanner";
import { RoleGate } from "../components/RoleGate";
import { InspectionView } from "../components/InspectionView";
import { SelectField } from "../components/SelectField";
import { useFocusAfterRender } from "../components/useFocusAfterRender";
import { batchFilters, filterBatch, uploadName, type BatchFilter } from "../logic/queue";
import { useQueue } from "../queue";

const CATEGORY_KEY = "eagle-iad.category";
/** A dropped folder's images: the suffixes every folder listing takes (IMAGE_SUFFIXES in eagle_iad/choices.py;
 * tests/test_data_layouts.py keeps the two the same). */
const IMAGE_NAME = /\.(png|jpe?g|jpe|jfif|bmp|tiff?|gif|webp|p[gpbn]m|jp2|j2k)$/i;

/** Files of a drop, with their folder paths when folders were dropped (read recursively). */
async function droppedFiles(transfer: DataTransfer): Promise<Array<{ file: File; path?: string }>> {
  const entries = Array.from(transfer.items ?? [])
    .map((item) => (typeof item.webkitGetAsEntry === "function" ? item.webkitGetAsEntry() : null))
    .filter((entry): entry is FileSystemEntry => entry !== null);
  if (entries.length === 0 || entries.every((e) => e.isFile)) return Array.from(transfer.files, (file) => ({ file }));
  const out: Array<{ file: File; path?: string }> = [];
  const walk = async (entry: FileSystemEntry): Promise<void> => {
    if (entry.isFile) {
      const file = await new Promise<File>((resolve, reject) => (entry as FileSystemFileEntry).file(resolve, reject));
      if (IMAGE_NAME.test(file.name)) out.push({ file, path: entry.fullPath });
    } else if (entry.isDirectory) {
      const reader = (entry as FileSystemDirectoryEntry).createReader();
      for (;;) {
        const batch = await new Promise<FileSystemEntry[]>((resolve, reject) => reader.readEntries(resolve, reject));
        if (batch.length === 0) break;
        for (const child of batch) await walk(child);
      }
    }
  };
  for (const entry of entries) await walk(entry);
  return out;
}

export function InspectPage() {
  const { client, health, requireKey } = useApi();
  const categories = useAsync((signal) => client.categories(signal), [client]);
  const usable = (categories.data ?? []).filter((c: Category) => !c.error);
  const [category, setCategory] = useState<string>(() => sessionStorage.getItem(CATEGORY_KEY) ?? "");
  const [question, setQuestion] = useState("");
  const [attention, setAttention] = useState(false);
  const queue = useQueue();
  const items = queue.items;
  const [dragging, setDragging] = useState(false);
  const input = useRef<HTMLInputElement>(null);
  const dropzone = useRef<HTMLButtonElement>(null);
  const clearedLine = useRef<HTMLParagraphElement>(null);
  const [cleared, setCleared] = useState<string | null>(null);
  const focusAfterRender = useFocusAfterRender();
  const folderInput = useRef<HTMLInputElement>(null);
  const ids = { category: useId(), question: useId(), attention: useId(), files: useId() };
  const mllm = health?.mllm ?? false;

  // Default to the first fitted category (or keep the remembered one while it exists).
  useEffect(() => {
    if (usable.length === 0) return;
    if (!usable.some((c) => c.name === category)) setCategory(usable[0]!.name);
  }, [usable, category]);

  useEffect(() => {
    if (category) sessionStorage.setItem(CATEGORY_KEY, category);
  }, [category]);

  const { add: enqueue } = queue;
  const [filter, setFilter] = useState<BatchFilter>("all");
  const add = useCallback(
    (files: ReadonlyArray<{ file: File; path?: string }>) => {
      if (files.length === 0 || !category) return;
      setFilter("all"); // new images are never hidden behind an earlier filter
      const q = mllm && question.trim() ? question.trim() : null;
      enqueue(
        files.map(({ file, path }) => ({ file, name: uploadName(file, path) })),
        { category, question: q, attention: mllm && attention },
      );
    },
    [category, question, attention, mllm, enqueue],
  );

  const onDrop = (event: DragEvent) => {
    event.preventDefault();
    setDragging(false);
    void droppedFiles(event.dataTransfer).then(add);
  };

  const { waiting: pending, failed, done } = queue.counts;
  // "Clear finished" takes the results away, and with no image waiting the button goes too: the keyboard would
  // fall to the page. It goes to the drop zone (the next thing to do), or to the line saying what was cleared.
  const clearFinished = () => {
    const finished = done + failed;
    queue.clearFinished();
    setCleared(`Cleared ${finished} finished result${finished === 1 ? "" : "s"}.`);
    if (pending === 0) focusAfterRender(() => (dropzone.current && !dropzone.current.disabled ? dropzone.current : clearedLine.current));
  };
  const filters = batchFilters(queue.counts);
  const active = filters.some((f) => f.filter === filter) ? filter : "all"; // a filter whose items were cleared falls back
  const shownItems = filterBatch(items, active);
  const decided = [
    done > 0 ? `${queue.counts.anomalous} anomalous` : "",
    done > 0 ? `${queue.counts.normal} normal` : "",
    queue.counts.unrecognised > 0 ? `${queue.counts.unrecognised} not recognised` : "",
    queue.counts.undecided > 0 ? `${queue.counts.undecided} undecided` : "",
  ].filter(Boolean);

  return (
    <section aria-labelledby="inspect-title">
      <div className="page-head">
        <h1 id="inspect-title">Inspect</h1>
        <p className="lede">Score images with a fitted category{mllm ? " and ask the MLLM about them" : ""}. Several images (or a whole folder) are inspected one after another; the batch keeps going while you look at other pages.</p>
      </div>
      {categories.error ? <ErrorBanner error={categories.error} onRetry={categories.reload} /> : null}
      {categories.loading && !categories.data ? <Loading label="Loading categories…" /> : null}
      {categories.data && usable.length === 0 ? (
        <div className="notice">
          No category is fitted yet. <a href="#/categories">Fit one on the Categories page.</a>
        </div>
      ) : null}
      <RoleGate needed="operator" what="Inspecting images">
      <form className="panel inspect-form" onSubmit={(e: FormEvent) => e.preventDefault()}>
        <SelectField id={ids.category} label="Category" value={category} options={usable.map((c) => c.name)}
          disabled={usable.length === 0} onChange={setCategory} />
        {mllm ? (
          <>
            <div className="field grow">
              <label htmlFor={ids.question}>Question (optional)</label>
              <input
                id={ids.question}
                type="text"
                maxLength={1000}
                placeholder="Is there any defect in the object?"
                value={question}
                onChange={(e) => setQuestion(e.target.value)}
              />
            </div>
            <div className="field checkbox">
              <input id={ids.attention} type="checkbox" checked={attention} onChange={(e) => setAttention(e.target.checked)} />
              <label htmlFor={ids.attention}>Attention overlays</label>
            </div>
          </>
        ) : (
          <p className="muted small field grow">The service runs without an MLLM: the expert's verdict only.</p>
        )}
        <button
          ref={dropzone}
          type="button"
          className={`dropzone${dragging ? " dragging" : ""}`}
          onClick={() => input.current?.click()}
          onDragOver={(e) => {
            e.preventDefault();
            setDragging(true);
          }}
          onDragLeave={() => setDragging(false)}
          onDrop={onDrop}
          disabled={!category}
          aria-describedby={ids.files}
        >
          <span className="dropzone-icon" aria-hidden="true">⇪</span>
          <span className="dropzone-title">Drop images here, or choose files</span>
          <span className="muted small" id={ids.files}>
            PNG, JPEG, TIFF, BMP… inspected against “{category || "no category"}”
          </span>
        </button>
        <input
          ref={input}
          type="file"
          accept="image/*"
          multiple
          hidden
          data-testid="inspect-files"
          onChange={(e) => {
            if (e.target.files) add(Array.from(e.target.files, (file) => ({ file })));
            e.target.value = "";
          }}
        />
        <button type="button" className="button secondary" onClick={() => folderInput.current?.click()} disabled={!category}>
          Choose a folder…
        </button>
        <input
          ref={folderInput}
          type="file"
          multiple
          hidden
          data-testid="inspect-folder"
          {...{ webkitdirectory: "" }}
          onChange={(e) => {
            const images = Array.from(e.target.files ?? []).filter((file) => IMAGE_NAME.test(file.name));
            add(images.map((file) => ({ file })));
            e.target.value = "";
          }}
        />
      </form>
      </RoleGate>

      {items.length > 0 ? (
        <div className="results-head">
          <h2>Results</h2>
          <p className="muted" role="status" data-testid="queue-status">
            {pending > 0 ? `${pending} image${pending === 1 ? "" : "s"} waiting · ` : ""}
            {done} inspected{decided.length > 0 ? ` (${decided.join(", ")})` : ""}
            {failed > 0 ? ` · ${failed} failed` : ""}
            {pending > 0 ? (queue.persistent === false ? " · kept in this tab only" : " · kept if you leave or reload") : ""}
          </p>
          <button type="button" className="button secondary" onClick={clearFinished}>
            Clear finished
          </button>
        </div>
      ) : null}
      <p className="muted small" role="status" ref={clearedLine} tabIndex={-1} data-testid="cleared-status">
        {items.length === 0 ? cleared : null}
      </p>
      {items.length > 0 ? (
        <div className="toggle-group batch-filter" role="group" aria-label="Show results">
          {filters.map((f) => (
            <button key={f.filter} type="button" className="toggle" aria-pressed={active === f.filter} onClick={() => setFilter(f.filter)}>
              {f.label} <span className="count">{f.count}</span>
            </button>
          ))}
        </div>
      ) : null}
      {items.length > 0 && shownItems.length === 0 ? <p className="muted" data-testid="filter-empty">None in this batch.</p> : null}
      <ol className="results">
        {[...shownItems].reverse().map((item) => (
          <li key={item.id} className="result">
            {item.status === "done" && item.record ? (
              <InspectionView record={item.record} />
            ) : (
              <div className="result-pending">
                <h3 className="inspection-title">{item.name}</h3>
                {item.status === "queued" ? <p className="muted">Waiting…</p> : null}
                {item.status === "running" ? <Loading label={`Inspecting with ${item.category}…`} /> : null}
                {item.status === "failed" && item.error ? (
                  // Retry only where trying again can help (a busy or unreachable service), never for a file
                  // that cannot succeed (not an image, too large, no such category).
                  <ErrorBanner error={item.error} onRetry={() => queue.retry(item.id)} />
                ) : null}
              </div>
            )}
          </li>
        ))}
      </ol>
    </section>
  );
}
