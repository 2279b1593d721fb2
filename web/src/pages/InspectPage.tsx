import type { Category, InspectionRecord } from "@eagle-iad/client";
import { useCallback, useEffect, useId, useRef, useState, type DragEvent, type FormEvent } from "react";
import { useApi, useAsync } from "../api";
import { ErrorBanner, Loading } from "../components/ErrorBanner";
import { InspectionView } from "../components/InspectionView";
import { SelectField } from "../components/SelectField";
import { describeError, isUnauthorised, type UserError } from "../logic/errors";

interface Item {
  id: number;
  file: File;
  category: string;
  question: string | null;
  attention: boolean;
  status: "queued" | "running" | "done" | "failed";
  record?: InspectionRecord;
  error?: UserError;
}

const CATEGORY_KEY = "eagle-iad.category";

export function InspectPage() {
  const { client, health, requireKey } = useApi();
  const categories = useAsync((signal) => client.categories(signal), [client]);
  const usable = (categories.data ?? []).filter((c: Category) => !c.error);
  const [category, setCategory] = useState<string>(() => sessionStorage.getItem(CATEGORY_KEY) ?? "");
  const [question, setQuestion] = useState("");
  const [attention, setAttention] = useState(false);
  const [items, setItems] = useState<Item[]>([]);
  const [dragging, setDragging] = useState(false);
  const nextId = useRef(1);
  const input = useRef<HTMLInputElement>(null);
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

  const add = useCallback(
    (files: FileList | File[]) => {
      const list = Array.from(files);
      if (list.length === 0 || !category) return;
      const q = mllm && question.trim() ? question.trim() : null;
      setItems((prev) => [
        ...prev,
        ...list.map((file) => ({ id: nextId.current++, file, category, question: q, attention: mllm && attention, status: "queued" as const })),
      ]);
    },
    [category, question, attention, mllm],
  );

  // One image at a time, in the order they were added.
  const running = items.some((i) => i.status === "running");
  useEffect(() => {
    if (running) return;
    const next = items.find((i) => i.status === "queued");
    if (!next) return;
    setItems((prev) => prev.map((i) => (i.id === next.id ? { ...i, status: "running" } : i)));
    const options: { question?: string; attention?: boolean } = {};
    if (next.question !== null) options.question = next.question;
    if (next.attention) options.attention = true;
    client.inspect(next.file, next.category, options).then(
      (record) => setItems((prev) => prev.map((i) => (i.id === next.id ? { ...i, status: "done", record } : i))),
      (reason: unknown) => {
        if (isUnauthorised(reason)) requireKey();
        setItems((prev) => prev.map((i) => (i.id === next.id ? { ...i, status: "failed", error: describeError(reason) } : i)));
      },
    );
  }, [items, running, client, requireKey]);

  const retry = (id: number) =>
    setItems((prev) => prev.map((i) => (i.id === id ? { id: i.id, file: i.file, category: i.category, question: i.question, attention: i.attention, status: "queued" } : i)));

  const onDrop = (event: DragEvent) => {
    event.preventDefault();
    setDragging(false);
    add(event.dataTransfer.files);
  };

  const pending = items.filter((i) => i.status === "queued" || i.status === "running").length;
  const failed = items.filter((i) => i.status === "failed").length;
  const done = items.filter((i) => i.status === "done").length;

  return (
    <section aria-labelledby="inspect-title">
      <div className="page-head">
        <h1 id="inspect-title">Inspect</h1>
        <p className="lede">Score images with a fitted category{mllm ? " and ask the MLLM about them" : ""}. Several images are inspected one after another.</p>
      </div>
      {categories.error ? <ErrorBanner error={categories.error} onRetry={categories.reload} /> : null}
      {categories.loading && !categories.data ? <Loading label="Loading categories…" /> : null}
      {categories.data && usable.length === 0 ? (
        <div className="notice">
          No category is fitted yet. <a href="#/categories">Fit one on the Categories page.</a>
        </div>
      ) : null}
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
            if (e.target.files) add(e.target.files);
            e.target.value = "";
          }}
        />
      </form>

      {items.length > 0 ? (
        <div className="results-head">
          <h2>Results</h2>
          <p className="muted" role="status">
            {pending > 0 ? `${pending} image${pending === 1 ? "" : "s"} left · ` : ""}
            {done} inspected{failed > 0 ? ` · ${failed} failed` : ""}
          </p>
          <button type="button" className="button secondary" onClick={() => setItems((prev) => prev.filter((i) => i.status === "running" || i.status === "queued"))}>
            Clear finished
          </button>
        </div>
      ) : null}
      <ol className="results">
        {[...items].reverse().map((item) => (
          <li key={item.id} className="result">
            {item.status === "done" && item.record ? (
              <InspectionView record={item.record} />
            ) : (
              <div className="result-pending">
                <h3 className="inspection-title">{item.file.name}</h3>
                {item.status === "queued" ? <p className="muted">Waiting…</p> : null}
                {item.status === "running" ? <Loading label={`Inspecting with ${item.category}…`} /> : null}
                {item.status === "failed" && item.error ? <ErrorBanner error={item.error} onRetry={() => retry(item.id)} /> : null}
              </div>
            )}
          </li>
        ))}
      </ol>
    </section>
  );
}
