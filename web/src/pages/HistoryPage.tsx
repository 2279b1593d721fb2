import { toCsv, toJsonLines, type InspectionRecord, type Label } from "@eagle-iad/client";
import { useCallback, useEffect, useId, useRef, useState, type FormEvent } from "react";
import { Picture } from "../components/Picture";
import { useApi, useAsync } from "../api";
import { ErrorBanner, Loading } from "../components/ErrorBanner";
import { RoleGate } from "../components/RoleGate";
import { DeleteInspection } from "../components/DeleteInspection";
import { DecisionBadge, InspectionView } from "../components/InspectionView";
import { SelectField } from "../components/SelectField";
import { useFocusAfterRender } from "../components/useFocusAfterRender";
import { DECISIONS, LABEL_FILTERS, decisionFilterOf, PAGE_SIZES, filterFromParams, knownCategories, filterToParams, missingCategory, pageInfo, withFilter, type HistoryFilter } from "../logic/query";
import { formatRoute } from "../logic/route";
import { ID_HINT, inspectionRoute, openFailed, routeIdProblem, typedInspectionId } from "../logic/inspectionId";
import { formatScore } from "../logic/scale";
import { modelVersionShort, modelVersionText } from "../logic/versions";
import { describeError, describeLabelError, isLabelChanged, isUnauthorised, unsavedLine, type UserError } from "../logic/errors";
import { answerNotices, storedLabelLine } from "../logic/review";
import { AnswerNotices } from "../components/AnswerNotices";
import { LabelNote } from "../components/LabelNote";
import { decisionView } from "../logic/verdict";

/** New records counted at most (then "999+"): a page left open all week must not grow without bound. */
const MAX_FRESH = 999;

/** The small picture of a row: the image as inspected (boxed when anomalous). */
function thumbnail(record: InspectionRecord): string | undefined {
  return record.pictures["box"] ?? record.pictures["heatmap"];
}

/**
 * History: every inspection a page at a time, and one opened by its id (`item`, from `#/history/<id>` or the
 * "Open by id" field), shown in the same detail as a row's.
 */
export function HistoryPage({ params, item = null }: { params: URLSearchParams; item?: string | null }) {
  const { client, requireKey } = useApi();
  const id = useId();
  const filter = filterFromParams(params);
  const key = filterToParams(filter).toString();
  // The inspection the route names: asked for by id, whatever page of the list is shown.
  // Not asked for where it is no id (`#/history/..` would fetch the list as if a record): said instead.
  const itemProblem = item === null ? null : routeIdProblem(item);
  const opened = useAsync(
    (signal) => (item === null || itemProblem !== null ? Promise.resolve(null) : client.inspection(item, signal)),
    [client, item],
  );
  const categories = useAsync((signal) => client.categories(signal), [client]);
  const page = useAsync(
    (signal) => {
      const query: Parameters<typeof client.history>[0] = { limit: filter.limit, offset: filter.offset, signal };
      if (filter.category) query.category = filter.category;
      if (filter.decision) query.decision = filter.decision;
      if (filter.label) query.label = filter.label;
      return client.history(query);
    },
    [client, key],
  );
  const [selected, setSelected] = useState<InspectionRecord | null>(null);
  useEffect(() => {
    if (opened.data) setSelected(opened.data);
  }, [opened.data]);
  // Said above the list once an inspection was deleted from its detail, and the keyboard lands on it.
  const [deleted, setDeleted] = useState<string | null>(null);
  const deletedNote = useRef<HTMLParagraphElement>(null);
  useEffect(() => {
    if (deleted !== null) deletedNote.current?.focus();
  }, [deleted]);
  // The history as it grows (a live feed of the category shown): ids of inspections stored since this
  // page's rows were loaded, for a "N new" line rather than rows jumping under the reader's eyes.
  const [fresh, setFresh] = useState<string[]>([]);
  const [live, setLive] = useState(false);
  // New records are unlabelled: under a label filter other than "unlabelled" none would ever be listed.
  const countable = !filter.label || filter.label === "unlabelled";
  useEffect(() => {
    setFresh([]); // other filters, other rows: count afresh
    setLive(false);
    if (!countable) return;
    const abort = new AbortController();
    const options: Parameters<typeof client.inspectionEvents>[0] = { signal: abort.signal, onOpen: () => setLive(true) };
    if (filter.category) options.category = filter.category;
    const wanted = filter.decision;
    void (async () => {
      try {
        for await (const event of client.inspectionEvents(options)) {
          const decision = decisionFilterOf(event.decision);
          if (wanted && decision !== wanted) continue; // the list would not show it
          setFresh((ids) => (ids.includes(event.id) || ids.length >= MAX_FRESH ? ids : [...ids, event.id]));
        }
      } catch {
        setLive(false); // the feed gave up (the service is gone, or the key lost its access): Refresh still works
      }
    })();
    return () => abort.abort();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [client, key]);
  const reload = page.reload;
  const showNew = useCallback(() => {
    setFresh([]);
    if (filter.offset > 0) window.location.hash = formatRoute("history", null, filterToParams({ ...filter, offset: 0 }));
    else reload();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [reload, key]);
  const detailRef = useRef<HTMLElement>(null);
  const headingRef = useRef<HTMLHeadingElement>(null);
  // The detail opens below the table: move there (scroll and focus) so keyboard and screen-reader
  // users land on it; Escape or Close return focus to the row's button.
  useEffect(() => {
    if (!selected) return;
    detailRef.current?.scrollIntoView({ block: "start" });
    headingRef.current?.focus({ preventScroll: true });
    // Only when another inspection opens: a label change updates the record but keeps the focus.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [selected?.id]);
  const focusAfterRender = useFocusAfterRender();
  const selectedId = selected?.id ?? null;
  const close = useCallback(() => {
    setSelected(null);
    // an inspection opened by id: the route forgets it, so the list stays as it was and a reload opens nothing
    if (item !== null) window.location.hash = formatRoute("history", null, filterToParams(filter));
    // back to the row's button once the detail is gone, or (opened by id, not on this page) to the id field
    if (selectedId !== null)
      focusAfterRender(
        () => document.querySelector<HTMLElement>(`[data-show="${CSS.escape(selectedId)}"]`) ?? document.getElementById(`${id}-open`),
      );
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [selectedId, focusAfterRender, item, key, id]);
  /** A row's inspection shown; one opened by id before leaves the route, so the address never names another. */
  const show = (record: InspectionRecord) => {
    setSelected(record);
    if (item !== null && item !== record.id) window.location.hash = formatRoute("history", null, filterToParams(filter));
  };
  useEffect(() => {
    if (!selected) return;
    const onKey = (event: KeyboardEvent) => {
      // Escape inside the full-size viewer closes only the viewer.
      if (event.target instanceof Element && event.target.closest("dialog")) return;
      if (event.key === "Escape") {
        event.preventDefault();
        close();
      }
    };
    document.addEventListener("keydown", onKey);
    return () => document.removeEventListener("keydown", onKey);
  }, [selected, close]);
  const [exporting, setExporting] = useState<"csv" | "jsonl" | null>(null);
  const [exportError, setExportError] = useState<UserError | null>(null);
  // Every inspection matching the filters (all pages), as the same file `eagle-client history --format` writes.
  const download = async (format: "csv" | "jsonl") => {
    setExporting(format);
    setExportError(null);
    try {
      const records: InspectionRecord[] = [];
      const query: Parameters<typeof client.historyAll>[0] = { limit: 500 };
      if (filter.category) query.category = filter.category;
      if (filter.decision) query.decision = filter.decision;
      if (filter.label) query.label = filter.label;
      for await (const record of client.historyAll(query)) records.push(record);
      const base = client.baseUrl || window.location.origin;
      const text = format === "csv" ? toCsv(records, base) : toJsonLines(records, base);
      const blob = new Blob([text], { type: format === "csv" ? "text/csv" : "application/x-ndjson" });
      const url = URL.createObjectURL(blob);
      const link = document.createElement("a");
      const parts = ["history", filter.category, filter.decision, filter.label].filter(Boolean).join("-");
      link.href = url;
      link.download = `eagle-${parts}.${format === "csv" ? "csv" : "jsonl"}`;
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10_000);
    } catch (reason) {
      if (isUnauthorised(reason)) requireKey(reason);
      setExportError(describeError(reason));
    } finally {
      setExporting(null);
    }
  };
  const onDeleted = (line: string) => {
    setSelected(null);
    setDeleted(line);
    if (item !== null) window.location.hash = formatRoute("history", null, filterToParams(filter)); // it is gone
    page.reload();
  };
  const go = (next: HistoryFilter) => {
    setSelected(null);
    setDeleted(null);
    window.location.hash = formatRoute("history", null, filterToParams(next));
  };
  const data = page.data;
  const info = data ? pageInfo(data.total, filter.limit, filter.offset, data.items.length) : null;
  const missing = missingCategory(categories.data, filter, data?.total);
  const unseen = fresh.filter((freshId) => !data?.items.some((r) => r.id === freshId)).length;

  return (
    <section aria-labelledby="history-title">
      <div className="page-head">
        <h1 id="history-title">History</h1>
        <p className="lede">Every inspection, newest first.</p>
      </div>
      <form className="panel filters" onSubmit={(e) => e.preventDefault()} aria-label="Filters">
        <SelectField
          id={`${id}-cat`}
          label="Category"
          value={missing?.unknown ? "" : (filter.category ?? "")}
          empty="All categories"
          options={knownCategories(categories.data ?? [], missing?.unknown ? null : filter.category)}
          onChange={(value) => go(withFilter(filter, { category: value || null }))}
        />
        <SelectField
          id={`${id}-dec`}
          label="Decision"
          value={filter.decision ?? ""}
          empty="All decisions"
          options={DECISIONS.map((decision) => [decision, decisionView(decision).label] as const) /* the badges' words */}
          onChange={(value) => go(withFilter(filter, { decision: DECISIONS.find((d) => d === value) ?? null }))}
        />
        <SelectField
          id={`${id}-label`}
          label="Label"
          value={filter.label ?? ""}
          empty="All labels"
          options={LABEL_FILTERS}
          onChange={(value) => go(withFilter(filter, { label: LABEL_FILTERS.find(([v]) => v === value)?.[0] ?? null }))}
        />
        <SelectField
          id={`${id}-size`}
          label="Rows per page"
          value={String(filter.limit)}
          options={PAGE_SIZES.map(String)}
          onChange={(value) => go(withFilter(filter, { limit: Number(value) }))}
        />
        <div className="field actions-end">
          <button type="button" className="button secondary" onClick={showNew}>
            Refresh
          </button>
        </div>
        <div className="field actions-end export-actions" role="group" aria-label="Export the filtered history">
          <button type="button" className="button secondary" onClick={() => void download("csv")} disabled={exporting !== null}>
            {exporting === "csv" ? "Exporting…" : "Download CSV"}
          </button>
          <button type="button" className="button secondary" onClick={() => void download("jsonl")} disabled={exporting !== null}>
            {exporting === "jsonl" ? "Exporting…" : "Download JSON lines"}
          </button>
        </div>
      </form>
      <OpenById fieldId={`${id}-open`} current={item} onOpen={(typed) => {
        setDeleted(null);
        if (typed === item) opened.reload(); // the same id again (after a refusal): ask again
        else window.location.hash = inspectionRoute(typed, filterToParams(filter));
      }} />
      {item !== null && opened.loading ? <Loading label={`Opening inspection ${item}…`} /> : null}
      {item !== null && opened.error ? <ErrorBanner error={openFailed(item, opened.error)} onRetry={opened.reload} /> : null}
      {itemProblem !== null ? <ErrorBanner error={itemProblem} /> : null}
      {/* Announced once when new records start arriving, not at every one (a busy line stores one a second). */}
      <p className="sr-only" role="status">
        {unseen > 0 ? "New inspections have arrived; Show the newest lists them." : ""}
      </p>
      <div className="live-line" data-testid="live-status">
        {unseen > 0 ? (
          <>
            <strong data-testid="new-count">
              {unseen >= MAX_FRESH ? `${MAX_FRESH}+` : unseen} new inspection{unseen === 1 ? "" : "s"}
              {filter.category ? ` of ${filter.category}` : ""}
            </strong>{" "}
            since this list was loaded.{" "}
            <button type="button" className="link-button" onClick={showNew}>
              Show the newest
            </button>
          </>
        ) : live ? (
          <span className="muted small">Live: new inspections are counted here as they are stored.</span>
        ) : null}
      </div>
      {missing ? (
        <div className={missing.unknown ? "notice warn" : "notice"} role={missing.unknown ? "alert" : "status"} data-testid="missing-category">
          {missing.text}{" "}
          {missing.unknown ? (
            <a href={formatRoute("history", null, filterToParams(withFilter(filter, { category: null })))}>Show every category's inspections</a>
          ) : null}
        </div>
      ) : null}
      {deleted !== null ? (
        <p className="notice" role="status" tabIndex={-1} ref={deletedNote} data-testid="deleted-note">
          {deleted}
        </p>
      ) : null}
      {exportError ? <ErrorBanner error={exportError} /> : null}
      {page.error ? <ErrorBanner error={page.error} onRetry={page.reload} /> : null}
      {page.loading && !data ? <Loading label="Loading history…" /> : null}
      {data && info ? (
        <>
          <div className="table-wrap panel flush">
            <table className="data-table history-table" aria-label="Inspection history">
              <thead>
                <tr>
                  <th scope="col" className="thumb-cell">
                    <span className="sr-only">Picture</span>
                  </th>
                  <th scope="col">Image</th>
                  <th scope="col" className="num">Score</th>
                  <th scope="col">Decision</th>
                  <th scope="col" className="wide-only">Label</th>
                  <th scope="col" className="wide-only">Time</th>
                  <th scope="col" className="wide-only">Category</th>
                  <th scope="col" className="wide-only">Model</th>
                  <th scope="col" className="wide-only">CAAS</th>
                </tr>
              </thead>
              <tbody aria-busy={page.loading}>
                {data.items.length === 0 ? (
                  <tr>
                    <td colSpan={9} className="empty">
                      {missing?.unknown ? `No category “${filter.category}”.` : "No inspections match these filters."}
                    </td>
                  </tr>
                ) : null}
                {data.items.map((r) => (
                  <tr
                    key={r.id}
                    className={`clickable${selected?.id === r.id ? " selected" : ""}`}
                    onClick={() => show(r)}
                    aria-selected={selected?.id === r.id}
                  >
                    <td className="thumb-cell">
                      {thumbnail(r) ? <Picture link={thumbnail(r) as string} alt="" className="thumb" /> : null}
                    </td>
                    <td className="image-cell">
                      <button type="button" className="link-button" data-show={r.id} onClick={(e) => (e.stopPropagation(), show(r))}
                        aria-label={`Show ${r.image_name} from ${r.time}`}>
                        {r.image_name}
                      </button>
                      {/* At phone width the wide-only columns (label, time, category, model) fold into this line. */}
                      <span className="narrow-only muted small">
                        {r.category}
                        {typeof r.model_version === "number" ? (
                          <>
                            {" · "}
                            <span className="nowrap" data-field="model-version-narrow">
                              <span aria-hidden="true">model {modelVersionShort(r.model_version)}</span>
                              <span className="sr-only">model {modelVersionText(r.model_version)}</span>
                            </span>
                          </>
                        ) : null}
                        {" · "}
                        {new Date(r.time).toLocaleString()}
                        {r.label ? (
                          <>
                            {" · "}
                            <LabelBadge label={r.label} />
                          </>
                        ) : null}
                      </span>
                    </td>
                    <td className="num">{formatScore(r.score)}</td>
                    <td>
                      <DecisionBadge decision={r.decision} size="small" />
                    </td>
                    <td className="wide-only">
                      <LabelBadge label={r.label ?? null} />
                    </td>
                    <td className="nowrap wide-only">{new Date(r.time).toLocaleString()}</td>
                    <td className="wide-only">{r.category}</td>
                    <td className="wide-only nowrap" data-field="model-version" title={modelVersionText(r.model_version)}>
                      {modelVersionShort(r.model_version)}
                    </td>
                    <td className="wide-only">{r.caas_applied ? "applied" : "–"}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          <nav className="pagination" aria-label="History pages">
            <button type="button" className="button secondary" disabled={info.prevOffset === null} onClick={() => info.prevOffset !== null && go({ ...filter, offset: info.prevOffset })}>
              ← Newer
            </button>
            <span role="status">
              {info.from}–{info.to} of {data.total} · page {info.page} of {info.pages}
            </span>
            <button type="button" className="button secondary" disabled={info.nextOffset === null} onClick={() => info.nextOffset !== null && go({ ...filter, offset: info.nextOffset })}>
              Older →
            </button>
          </nav>
        </>
      ) : null}
      {selected ? (
        <section className="panel detail" aria-label="Selected inspection" ref={detailRef}>
          <div className="detail-head">
            <h2 className="detail-title" tabIndex={-1} ref={headingRef}>
              {selected.image_name}
            </h2>
            <button type="button" className="button secondary" onClick={close} aria-keyshortcuts="Escape">
              Close
            </button>
          </div>
          <p className="muted small detail-id">
            Inspection <a href={inspectionRoute(selected.id)} title="A link to this inspection, to copy or bookmark">{selected.id}</a>
            {selected.station ? ` · taken by station ${selected.station} from ${selected.source ?? "its source"}` : ""} · Escape closes
          </p>
          <RoleGate needed="operator" what="Labelling an inspection">
            {/* keyed: a refusal shown for one inspection does not stay when another is opened */}
            <LabelControl key={selected.id} record={selected} onLabelled={(updated) => (setSelected(updated), page.reload())} />
          </RoleGate>
          <InspectionView key={selected.id} record={selected} headingLevel={3} />
          <DeleteInspection key={`delete-${selected.id}`} record={selected} onDeleted={onDeleted} />
        </section>
      ) : null}
    </section>
  );
}

/**
 * "Open by id": an id from a sink message, the audit or a log line, typed or pasted, opens that inspection in
 * the detail below. What cannot be an id (nothing typed, a slash) is said at the field; the rest goes to the
 * service, whose reason for an unknown id the page shows.
 */
function OpenById({ fieldId, current, onOpen }: { fieldId: string; current: string | null; onOpen: (id: string) => void }) {
  const [typed, setTyped] = useState(current ?? "");
  const [problem, setProblem] = useState<string | null>(null);
  // another id in the address (a link, the back button): the field shows it, and an earlier refusal goes
  useEffect(() => {
    setTyped(current ?? "");
    setProblem(null);
  }, [current]);
  const submit = (event: FormEvent) => {
    event.preventDefault();
    const read = typedInspectionId(typed);
    if ("problem" in read) {
      setProblem(read.problem);
      document.getElementById(fieldId)?.focus();
      return;
    }
    setProblem(null);
    setTyped(read.id);
    onOpen(read.id);
  };
  return (
    <form className="panel open-by-id" onSubmit={submit} aria-label="Open an inspection by id" noValidate>
      <div className="field">
        <label htmlFor={fieldId}>Open by id</label>
        <div className="open-by-id-row">
          <input
            id={fieldId}
            value={typed}
            onChange={(e) => (setTyped(e.target.value), setProblem(null))}
            maxLength={200}
            autoComplete="off"
            spellCheck={false}
            placeholder="inspection id"
            aria-invalid={problem !== null || undefined}
            aria-describedby={`${fieldId}-hint`}
            data-testid="open-by-id"
          />
          <button type="submit" className="button secondary">
            Open
          </button>
        </div>
        <span id={`${fieldId}-hint`} className={problem ? "hint invalid" : "hint"} role={problem ? "alert" : undefined} data-testid="open-by-id-hint">
          {problem ?? ID_HINT}
        </span>
      </div>
    </form>
  );
}

const LABEL_WORDS: Record<Label, string> = { normal: "Actually normal", anomalous: "Actually defective" };

function LabelBadge({ label }: { label: string | null }) {
  if (label !== "normal" && label !== "anomalous") return <span className="muted">–</span>;
  return <span className={`label-badge label-${label}`}>{LABEL_WORDS[label]}</span>;
}

/**
 * "Correct the verdict": what the part actually was, stored beside the verdict (never replacing it). Each label
 * names the revision shown, so one given meanwhile by someone else is not replaced unseen: the refusal says
 * who and when, and the inspection is shown again as stored (its label, the revision to decide on). The line
 * says who labelled it and when; clearing a label (pressing it again) asks first, naming whose label goes, since
 * a cleared part goes back to the review queue and one key press must not undo someone else's decision.
 */
function LabelControl({ record, onLabelled }: { record: InspectionRecord; onLabelled: (record: InspectionRecord) => void }) {
  const { client, requireKey } = useApi();
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<UserError | null>(null);
  const [confirming, setConfirming] = useState(false);
  // What the last label's answer said besides (its notices): shown under the label line until the next one.
  const [notices, setNotices] = useState<string[]>([]);
  const keepRef = useRef<HTMLButtonElement>(null);
  const groupRef = useRef<HTMLDivElement>(null);
  const current = record.label ?? null;
  useEffect(() => {
    if (confirming) keepRef.current?.focus(); // the safe choice first: Enter again keeps the label
  }, [confirming]);
  const set = async (label: Label | null) => {
    setBusy(true);
    setError(null);
    setConfirming(false);
    setNotices([]);
    try {
      const stored = await client.label(record.id, label, { expectedRevision: record.label_revision ?? 0 });
      setNotices(answerNotices(stored));
      onLabelled(stored);
    } catch (reason) {
      if (isUnauthorised(reason)) requireKey(reason, label ? unsavedLine(record.image_name, label) : `Clearing the label of ${record.image_name} was not saved.`);
      setError(describeLabelError(reason, label ?? "clear"));
      if (isLabelChanged(reason)) {
        try {
          onLabelled(await client.inspection(record.id)); // the same key: this refusal stays shown beside it
        } catch {
          /* the refusal's message stands; reopening the inspection shows it as stored */
        }
      }
    } finally {
      setBusy(false);
    }
  };
  const backToLabel = () => {
    setConfirming(false);
    groupRef.current?.querySelector<HTMLButtonElement>('[aria-pressed="true"]')?.focus();
  };
  return (
    <div className="label-control">
      <div className="toggle-group" role="group" aria-label="What the part actually was" ref={groupRef}>
        {(["normal", "anomalous"] as const).map((label) => (
          // aria-disabled, not disabled: a pressed button that turned disabled dropped the keyboard focus.
          <button key={label} type="button" className="toggle" aria-pressed={current === label} aria-disabled={busy}
            onClick={() => {
              if (busy) return;
              if (current === label) setConfirming(true);
              else void set(label);
            }}>
            {LABEL_WORDS[label]}
          </button>
        ))}
      </div>
      <p className="muted small" role="status" data-testid="label-line">
        {current
          ? `${storedLabelLine(record)} The verdict is kept beside it. Press it again to clear it.`
          : "Not labelled: mark what the part actually was to correct the verdict."}
      </p>
      {current ? (
        <p className="small">
          <LabelNote record={record} />
        </p>
      ) : null}
      <AnswerNotices testId="label-notices" notices={notices} />
      {confirming && current ? (
        <div className="notice small label-confirm" role="group" aria-label="Clear the label?"
          onKeyDown={(event) => {
            if (event.key === "Escape") {
              event.preventDefault();
              event.stopPropagation(); // Escape here keeps the label; it does not close the inspection
              backToLabel();
            }
          }}>
          <p>
            Clear the label “{LABEL_WORDS[current as Label].toLowerCase()}”{record.label_by ? ` that ${record.label_by} gave` : ""}? The
            part goes back to the review queue.
          </p>
          <button type="button" className="button secondary" ref={keepRef} onClick={backToLabel}>
            Keep the label
          </button>{" "}
          <button type="button" className="button danger" onClick={() => void set(null)}>
            Clear the label
          </button>
        </div>
      ) : null}
      {error ? <ErrorBanner error={error} /> : null}
    </div>
  );
}
