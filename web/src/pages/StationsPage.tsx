import { EagleApiError, STATION_DUPLICATES, type StationInfo } from "@eagle-iad/client";
import { useCallback, useEffect, useId, useRef, useState, type FormEvent, type KeyboardEvent } from "react";
import { useApi, useAsync } from "../api";
import { ErrorBanner, Loading } from "../components/ErrorBanner";
import { RoleGate } from "../components/RoleGate";
import { allows } from "../logic/access";
import { DecisionBadge } from "../components/InspectionView";
import { SelectField } from "../components/SelectField";
import { describeError, isUnauthorised, type UserError } from "../logic/errors";
import { formatScore } from "../logic/scale";
import {
  DEFAULT_BACKLOG_LIMIT,
  DEFAULT_DEADLINE_S,
  EMPTY_FORM,
  MORE_OPTIONS,
  REFRESH_MS,
  SINKS,
  SOURCES,
  STATION_NAME,
  STATION_NAME_RULE,
  allWarnings,
  deadLetters,
  duplicatesText,
  formatImagesPerSecond,
  formatSeconds,
  formatVerdictTime,
  isPaused,
  lastVerdictOf,
  latencyScope,
  noLatencyText,
  plainWords,
  recentLatency,
  limitsOf,
  runByText,
  sinkCounts,
  sinksOf,
  sourceText,
  stateView,
  stationBody,
  choiceLabel,
  defaultText,
  emptyPart,
  foldedOptions,
  isRequired,
  limitsText,
  namesFolded,
  optionLabel,
  refusedField,
  shownOptions,
  stationFormIssue,
  triggerChoices,
  type FormIssue,
  type Kinds,
  type PartForm,
  type StationForm,
} from "../logic/stations";

/** Below this width the stations are cards, not table rows (the table has nine columns). */
const NARROW = "(max-width: 1100px)";

/** ``discard``: delete a station whose sinks still owe deliveries, dropping them (after a 409 said how many). */
type Action = "pause" | "resume" | "retry" | "delete" | "discard";

/** A delete refused because the station's sinks still owe deliveries (verdicts and refusals): the service's message, naming how many. */
interface Owing {
  name: string;
  message: string;
}

/** Whether the browser tab is visible: the page stops asking for figures while it is hidden. */
function useVisible(): boolean {
  const [visible, setVisible] = useState(() => document.visibilityState !== "hidden");
  useEffect(() => {
    const update = () => setVisible(document.visibilityState !== "hidden");
    document.addEventListener("visibilitychange", update);
    return () => document.removeEventListener("visibilitychange", update);
  }, []);
  return visible;
}

/** Whether a media query matches, kept current (one layout is rendered, not both hidden by CSS). */
function useMedia(query: string): boolean {
  const [matches, setMatches] = useState(() => window.matchMedia(query).matches);
  useEffect(() => {
    const list = window.matchMedia(query);
    const update = () => setMatches(list.matches);
    update();
    list.addEventListener("change", update);
    return () => list.removeEventListener("change", update);
  }, [query]);
  return matches;
}

/**
 * The stations, asked for again {@link REFRESH_MS} after each answer while the tab is visible (never two
 * requests at once); stops when the page unmounts. An error stays shown until an answer succeeds.
 */
function useStationList() {
  const { client, requireKey } = useApi();
  const visible = useVisible();
  const [stations, setStations] = useState<StationInfo[] | undefined>(undefined);
  const [error, setError] = useState<UserError | null>(null);
  const [updated, setUpdated] = useState<Date | null>(null);
  const [nonce, setNonce] = useState(0);

  useEffect(() => {
    if (!visible) return;
    const controller = new AbortController();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const tick = () => {
      client
        .listStations(controller.signal)
        .then(
          (list) => {
            if (controller.signal.aborted) return;
            setStations(list);
            setError(null);
            setUpdated(new Date());
          },
          (reason: unknown) => {
            if (controller.signal.aborted) return;
            if (isUnauthorised(reason)) requireKey(reason);
            setError(describeError(reason));
          },
        )
        .finally(() => {
          if (!controller.signal.aborted) timer = setTimeout(tick, REFRESH_MS);
        });
    };
    tick();
    return () => {
      controller.abort();
      clearTimeout(timer);
    };
  }, [client, requireKey, visible, nonce]);

  const reload = useCallback(() => setNonce((n) => n + 1), []);
  const replace = useCallback((info: StationInfo) => {
    setStations((list) => {
      if (!list) return [info];
      return list.some((s) => s.station === info.station) ? list.map((s) => (s.station === info.station ? info : s)) : [...list, info];
    });
  }, []);
  const remove = useCallback((name: string) => setStations((list) => list?.filter((s) => s.station !== name)), []);
  return { stations, error, updated, reload, replace, remove };
}

function nameId(name: string): string {
  return `station-${name}`;
}

export function StationsPage() {
  const { client, requireKey } = useApi();
  const { stations, error, updated, reload, replace, remove } = useStationList();
  const narrow = useMedia(NARROW);
  const [busy, setBusy] = useState<string | null>(null);
  const [confirming, setConfirming] = useState<string | null>(null);
  const [owing, setOwing] = useState<Owing | null>(null);
  const [actionError, setActionError] = useState<UserError | null>(null);
  const [notice, setNotice] = useState("");
  const headingRef = useRef<HTMLHeadingElement>(null);

  const act = async (info: StationInfo, action: Action) => {
    if (busy !== null) return;
    const name = info.station;
    setBusy(name);
    setActionError(null);
    setNotice("");
    try {
      if (action === "pause" || action === "resume") {
        const next = action === "pause" ? await client.pauseStation(name) : await client.resumeStation(name);
        replace(next);
        setNotice(action === "pause" ? `${name} is paused: it takes no new images (deliveries go on).` : `${name} takes images again.`);
      } else if (action === "retry") {
        const { requeued } = await client.retryStation(name);
        setNotice(`${requeued} dead letter${requeued === 1 ? "" : "s"} of ${name} back in their queues.`);
        // The Retry button goes with the dead letters: keep the keyboard where it was, on the station.
        document.getElementById(nameId(name))?.focus();
      } else {
        await client.deleteStation(name, { discardPending: action === "discard" });
        setConfirming(null);
        setOwing(null);
        remove(name);
        setNotice(`${name} is deleted; its inspections stay in the history.`);
        headingRef.current?.focus();
      }
      reload();
    } catch (reason) {
      if (isUnauthorised(reason)) requireKey(reason);
      if (action === "delete" && reason instanceof EagleApiError && reason.code === "station_undelivered") {
        // Asked again, with what deleting would drop: the station runs on until the user says to drop them.
        setOwing({ name, message: reason.message });
        return;
      }
      setActionError(describeError(reason));
      if (action === "delete" || action === "discard") {
        setConfirming(null);
        setOwing(null);
      }
    } finally {
      setBusy(null);
    }
  };

  const controls: ActionsProps = {
    busy,
    confirming,
    owing,
    onAct: (info, action) => void act(info, action),
    onAskDelete: (name) => (setConfirming(name), setOwing(null)),
    onCancelDelete: () => (setConfirming(null), setOwing(null)),
  };
  const warnings = allWarnings(stations ?? []);

  return (
    <section aria-labelledby="stations-title">
      <div className="page-head">
        <h1 id="stations-title" ref={headingRef} tabIndex={-1}>
          Stations
        </h1>
        <p className="lede">
          Stations on the line: each image a station takes (a complete file in its hot folder, or a camera's frame) is inspected and its verdict delivered to the station's sinks. The figures refresh every{" "}
          {REFRESH_MS / 1000} s while this page is visible{updated ? ` (last at ${updated.toLocaleTimeString()})` : ""}.
        </p>
      </div>
      {error ? <ErrorBanner error={error} onRetry={reload} /> : null}
      {!stations && !error ? <Loading label="Loading stations…" /> : null}
      <div role="status" className="station-warnings" data-testid="station-warnings">
        {warnings.length > 0 ? (
          <ul aria-label="Warnings">
            {warnings.map(({ station, warning }) => (
              <li key={`${station}:${warning}`} className="warning">
                <span aria-hidden="true">⚠ </span>
                <strong>{station}</strong>: {plainWords(warning)}
              </li>
            ))}
          </ul>
        ) : null}
      </div>
      {actionError ? <ErrorBanner error={actionError} /> : null}
      <p className="muted small station-notice" role="status" data-testid="station-notice">
        {notice}
      </p>
      {stations && stations.length === 0 ? (
        <p className="notice">No station yet: create one below, or start the service with a stations file.</p>
      ) : null}
      {stations && stations.length > 0 ? (
        narrow ? (
          <StationCards stations={stations} controls={controls} />
        ) : (
          <StationTable stations={stations} controls={controls} />
        )
      ) : null}
      <RoleGate needed="engineer" what="Creating a station">
        <CreateStationForm onCreated={(info) => (replace(info), reload())} />
      </RoleGate>
    </section>
  );
}

interface ActionsProps {
  busy: string | null;
  confirming: string | null;
  /** The delete of this station was refused: its sinks still owe deliveries (offer to drop them). */
  owing: Owing | null;
  onAct: (info: StationInfo, action: Action) => void;
  onAskDelete: (name: string) => void;
  onCancelDelete: () => void;
}

function StationTable({ stations, controls }: { stations: StationInfo[]; controls: ActionsProps }) {
  return (
    <div className="table-wrap panel flush">
      <table className="data-table stations-table" aria-label="Stations">
        <thead>
          <tr>
            <th scope="col">Station</th>
            <th scope="col">State</th>
            <th scope="col" className="num">Inspected</th>
            <th scope="col" className="num">Backlog</th>
            <th scope="col" className="num">Images/s</th>
            <th scope="col">Latency</th>
            <th scope="col">Last verdict</th>
            <th scope="col">Sinks</th>
            <th scope="col">Actions</th>
          </tr>
        </thead>
        <tbody>
          {stations.map((info) => {
            const limits = limitsOf(info);
            return (
              <tr key={info.station} data-station={info.station} className={info.warnings.length > 0 ? "has-warning" : undefined}>
                <th scope="row" className="station-name">
                  <strong id={nameId(info.station)} tabIndex={-1}>
                    {info.station}
                  </strong>
                  <span className="muted small">
                    {info.category} · <SourceText info={info} />
                  </span>
                  <RowWarnings info={info} />
                </th>
                <td>
                  <StateBadge state={info.state} />
                </td>
                <td className="num" data-field="inspected">
                  {info.inspected}
                  {info.failed > 0 ? <span className="muted small block">{info.failed} refused</span> : null}
                </td>
                <td className="num" data-field="backlog">
                  <span className={info.backlog > limits.backlog ? "over" : undefined}>{info.backlog}</span>
                  <span className="muted small block">limit {limits.backlog}</span>
                </td>
                <td className="num" data-field="images-per-s">
                  {formatImagesPerSecond(info.images_per_s)}
                </td>
                <td data-field="latency">
                  <Latency info={info} deadlineS={limits.deadlineS} />
                </td>
                <td data-field="last-verdict">
                  <LastVerdictView info={info} />
                </td>
                <td data-field="sinks">
                  <SinksView info={info} />
                </td>
                <td>
                  <StationActions info={info} {...controls} />
                </td>
              </tr>
            );
          })}
        </tbody>
      </table>
    </div>
  );
}

function StationCards({ stations, controls }: { stations: StationInfo[]; controls: ActionsProps }) {
  return (
    <ul className="station-cards" aria-label="Stations">
      {stations.map((info) => {
        const limits = limitsOf(info);
        return (
          <li key={info.station}>
            <article
              className={`panel station-card${info.warnings.length > 0 ? " has-warning" : ""}`}
              aria-labelledby={nameId(info.station)}
              data-station={info.station}
            >
              <header className="detail-head">
                <h2 id={nameId(info.station)} tabIndex={-1} className="detail-title">
                  {info.station}
                </h2>
                <StateBadge state={info.state} />
              </header>
              <p className="muted small station-source">
                {info.category} · <SourceText info={info} />
              </p>
              <RowWarnings info={info} />
              <dl className="facts station-facts">
                <div>
                  <dt>Inspected</dt>
                  <dd data-field="inspected">
                    {info.inspected}
                    {info.failed > 0 ? ` (${info.failed} refused)` : ""}
                  </dd>
                </div>
                <div>
                  <dt>Backlog</dt>
                  <dd data-field="backlog">
                    <span className={info.backlog > limits.backlog ? "over" : undefined}>{info.backlog}</span>
                    <span className="muted small"> of {limits.backlog}</span>
                  </dd>
                </div>
                <div>
                  <dt>Images/s</dt>
                  <dd data-field="images-per-s">{formatImagesPerSecond(info.images_per_s)}</dd>
                </div>
                <div>
                  <dt>Latency</dt>
                  <dd data-field="latency">
                    <Latency info={info} deadlineS={limits.deadlineS} />
                  </dd>
                </div>
                <div>
                  <dt>Last verdict</dt>
                  <dd data-field="last-verdict">
                    <LastVerdictView info={info} />
                  </dd>
                </div>
              </dl>
              <h3 className="station-sinks-title">Sinks</h3>
              <div data-field="sinks">
                <SinksView info={info} />
              </div>
              <StationActions info={info} {...controls} />
            </article>
          </li>
        );
      })}
    </ul>
  );
}

/** The source named by its kind (see `sourceText`), and who runs the station. */
function SourceText({ info }: { info: StationInfo }) {
  return (
    <span className="station-path">
      {sourceText(info)}
      {info.run_by ? ` · ${runByText(info) ?? ""}` : info.created_by === "file" ? " · from a stations file" : ""}
    </span>
  );
}

function RowWarnings({ info }: { info: StationInfo }) {
  if (info.warnings.length === 0) return null;
  return (
    <ul className="row-warnings" aria-label={`Warnings of ${info.station}`}>
      {info.warnings.map((warning) => (
        <li key={warning}>
          <span aria-hidden="true">⚠ </span>
          {plainWords(warning)}
        </li>
      ))}
    </ul>
  );
}

const STATE_SYMBOL = { running: "▶", paused: "❚❚", waiting: "…", error: "!", stopped: "■" } as const;

function StateBadge({ state }: { state: string }) {
  const view = stateView(state);
  return (
    <span className="state-cell">
      <span className={`state-badge state-${view.tone}`} data-testid="station-state">
        <span aria-hidden="true" className="state-symbol">
          {STATE_SYMBOL[view.tone]}
        </span>
        {view.label}
      </span>
      {view.detail ? <span className="small state-detail">{plainWords(view.detail)}</span> : null}
    </span>
  );
}

/**
 * The percentiles over the last 1,000 images, then the p95 of the last minutes that the deadline warning judges
 * (marked while the service warns), each with what it covers: the marked number is the warning's own.
 */
function Latency({ info, deadlineS }: { info: StationInfo; deadlineS: number }) {
  const { figures } = useApi();
  const latency = info.latency_s;
  if (!latency) return <span className="muted small">{noLatencyText(info)}</span>;
  const recent = recentLatency(info, figures.recentS);
  return (
    <span className="latency">
      <span>p50 {formatSeconds(latency["p50"])}</span>
      <span>p95 {formatSeconds(latency["p95"])}</span>
      <span>p99 {formatSeconds(latency["p99"])}</span>
      <span className="muted small" data-field="latency-scope">
        {latencyScope(info.latency_images)}
      </span>
      <span data-field="latency-recent">
        <span className={recent.over ? "over" : undefined}>{recent.text}</span>
        <span className="muted small"> {recent.scope}</span>
      </span>
      <span className="muted small">deadline {formatSeconds(deadlineS)}</span>
    </span>
  );
}

function LastVerdictView({ info }: { info: StationInfo }) {
  const last = lastVerdictOf(info);
  if (!last) return <span className="muted small">none yet</span>;
  return (
    <span className="last-verdict" data-testid="last-verdict">
      <DecisionBadge decision={last.decision} size="small" />
      <span className="nowrap">score {formatScore(last.score)}</span>
      <span className="muted small">
        {/* local time to read; the exact UTC instant in dateTime (machines) and title (a hover) */}
        {last.timeIso ? (
          <time dateTime={last.timeIso} title={last.timeIso} data-testid="last-verdict-time">
            {formatVerdictTime(last.time)}
          </time>
        ) : (
          formatVerdictTime(last.time)
        )}
        {last.image ? ` · ${last.image}` : ""}
      </span>
    </span>
  );
}

function SinksView({ info }: { info: StationInfo }) {
  const sinks = sinksOf(info);
  if (sinks.length === 0) return <span className="muted small">no sinks</span>;
  return (
    <ul className="sinks">
      {sinks.map(([name, sink]) => (
        <li key={name} data-sink={name}>
          <strong>{name}</strong>
          {sink.kind !== name ? <span className="muted small"> ({sink.kind})</span> : null}
          <span className="block small">
            {sinkCounts(sink).map((part, index) => (
              <span key={part.text}>
                {index > 0 ? " · " : ""}
                <span className={part.warn ? "over nowrap" : "nowrap"}>{part.text}</span>
              </span>
            ))}
          </span>
          {sink.last_error ? <span className="block small sink-error">last error: {plainWords(sink.last_error)}</span> : null}
        </li>
      ))}
    </ul>
  );
}

function StationActions({ info, busy, confirming, owing, onAct, onAskDelete, onCancelDelete }: { info: StationInfo } & ActionsProps) {
  const name = info.station;
  const paused = isPaused(info);
  const dead = deadLetters(info);
  const isConfirming = confirming === name;
  // aria-disabled, not disabled: a focused button that turns disabled drops the keyboard focus.
  const waiting = busy !== null;
  const cancelRef = useRef<HTMLButtonElement>(null);
  const deleteRef = useRef<HTMLButtonElement>(null);
  const wasConfirming = useRef(false);
  const questionId = useId();

  const isOwing = isConfirming && owing?.name === name;

  useEffect(() => {
    // Asked (or asked again, with what deleting would drop): the focus on Cancel, the safe answer.
    if (isConfirming) cancelRef.current?.focus();
    else if (wasConfirming.current) deleteRef.current?.focus();
    wasConfirming.current = isConfirming;
  }, [isConfirming, isOwing]);

  const run = (action: Action) => {
    if (!waiting) onAct(info, action);
  };
  // Escape answers "no", as Cancel does (the focus goes back to Delete).
  const cancelOnEscape = (event: KeyboardEvent) => {
    if (event.key !== "Escape") return;
    event.preventDefault();
    onCancelDelete();
  };
  const { me } = useApi();
  const operate = allows(me, "operator");
  const manage = allows(me, "engineer");

  if (info.run_by) {
    // Run by `eagle station run` on a machine, not by this service: the API refuses every change (409).
    return (
      <div className="station-actions" role="group" aria-label={`Actions for ${name}`}>
        <span className="muted small" data-testid="run-by">
          {`Read-only here: run by eagle station run on ${info.run_by.host}; change, pause or retry it there (${info.run_by.file}).`}
        </span>
      </div>
    );
  }

  if (isOwing && owing) {
    return (
      <div className="station-actions confirm" role="group" aria-labelledby={questionId} onKeyDown={cancelOnEscape}>
        <span id={questionId} className="small" role="alert">
          Delete {name} anyway? {owing.message}
        </span>
        <button type="button" className="button danger small-button" aria-disabled={waiting} onClick={() => run("discard")}>
          {busy === name ? "Deleting…" : "Delete and drop them"}
        </button>
        <button type="button" ref={cancelRef} className="button secondary small-button" onClick={onCancelDelete}>
          Cancel
        </button>
      </div>
    );
  }
  if (isConfirming) {
    return (
      <div className="station-actions confirm" role="group" aria-labelledby={questionId} onKeyDown={cancelOnEscape}>
        <span id={questionId} className="small">
          Delete {name}? It stops taking images; its inspections stay in the history.
        </span>
        <button type="button" className="button danger small-button" aria-disabled={waiting} onClick={() => run("delete")}>
          {busy === name ? "Deleting…" : "Yes, delete"}
        </button>
        <button type="button" ref={cancelRef} className="button secondary small-button" onClick={onCancelDelete}>
          Cancel
        </button>
      </div>
    );
  }
  return (
    <div className="station-actions" role="group" aria-label={`Actions for ${name}`}>
      {operate ? (
        <button type="button" className="button secondary small-button" aria-disabled={waiting} aria-label={`${paused ? "Resume" : "Pause"} ${name}`}
          onClick={() => run(paused ? "resume" : "pause")}>
          {paused ? "Resume" : "Pause"}
        </button>
      ) : (
        <span className="muted small">Pausing needs the operator role.</span>
      )}
      {dead > 0 && operate ? (
        <button type="button" className="button secondary small-button" aria-disabled={waiting}
          aria-label={`Retry ${dead} dead letter${dead === 1 ? "" : "s"} of ${name}`} onClick={() => run("retry")}>
          Retry {dead} dead letter{dead === 1 ? "" : "s"}
        </button>
      ) : null}
      {info.created_by === "file" ? (
        <span className="muted small">From a stations file: remove it there.</span>
      ) : !manage ? null : (
        <button type="button" ref={deleteRef} className="button secondary small-button" aria-disabled={waiting} aria-label={`Delete ${name}`}
          onClick={() => !waiting && onAskDelete(name)}>
          Delete
        </button>
      )}
    </div>
  );
}

/** Where a problem (the form's own, or the service's 400) is shown: beside the field it names. */
interface FieldNote {
  field: string;
  message: string;
}

function CreateStationForm({ onCreated }: { onCreated: (info: StationInfo) => void }) {
  const { client, requireKey } = useApi();
  const id = useId();
  const categories = useAsync((signal) => client.categories(signal), [client]);
  const [form, setForm] = useState<StationForm>(EMPTY_FORM);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<UserError | null>(null);
  /** The service's refusal, beside the field its message names (until that field is changed). */
  const [refused, setRefused] = useState<FieldNote | null>(null);
  const [created, setCreated] = useState<StationInfo | null>(null);
  const [sinkKind, setSinkKind] = useState<string>(SINKS.order[0] ?? "folder");

  const names = (categories.data ?? []).filter((c) => !c.error).map((c) => c.name);
  const issue = stationFormIssue(form);
  const problem = busy ? "Creating the station…" : (issue?.message ?? null);
  const nameInvalid = form.name !== "" && !STATION_NAME.test(form.name);
  const edit = (field: string, change: (f: StationForm) => StationForm) => {
    setForm(change);
    if (refused?.field === field || refused?.field.startsWith(`${field}.`)) setRefused(null);
  };
  const set = (key: "name" | "category" | "backlogLimit" | "deadlineS", field: string) => (value: string) => edit(field, (f) => ({ ...f, [key]: value }));

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    if (problem !== null) return;
    setBusy(true);
    setError(null);
    setRefused(null);
    setCreated(null);
    try {
      const info = await client.createStation(stationBody(form));
      setCreated(info);
      setForm((f) => ({ ...EMPTY_FORM, category: f.category }));
      onCreated(info);
    } catch (reason) {
      if (isUnauthorised(reason)) requireKey(reason);
      setError(describeError(reason));
      if (reason instanceof EagleApiError && reason.status === 400) {
        const field = refusedField(reason.message);
        if (field !== null) setRefused({ field, message: reason.message });
      }
    } finally {
      setBusy(false);
    }
  };

  const sourceSchema = SOURCES.kinds[form.source.kind];
  return (
    <section className="panel" aria-labelledby={`${id}-title`}>
      <h2 id={`${id}-title`}>Create a station</h2>
      <p className="muted small">
        A hot folder inside the service's data root (relative to it; the folder must exist): each image written into it is inspected once it has
        not changed for the settle time, then moved to <code>done/</code>. Or a camera: a video file in the data root, a stream or a USB
        camera, a frame taken every N frames, every so many milliseconds, on each API trigger or on a PLC's signal over OPC UA. The service
        keeps the station and starts it again after a restart.
      </p>
      <form onSubmit={submit} className="fit-form station-form" aria-labelledby={`${id}-title`} noValidate>
        <div className="field-row">
          <div className="field">
            <label htmlFor={`${id}-name`}>Name</label>
            <input id={`${id}-name`} value={form.name} onChange={(e) => set("name", "name")(e.target.value)} placeholder="e.g. line-1"
              aria-invalid={nameInvalid || refused?.field === "name"} aria-describedby={`${id}-name-hint${refused?.field === "name" ? ` ${id}-refused` : ""}`}
              autoComplete="off" required />
            <span id={`${id}-name-hint`} className={`hint${nameInvalid ? " invalid" : ""}`}>
              {STATION_NAME_RULE}
            </span>
            <Refused note={refused} field="name" id={`${id}-refused`} />
          </div>
          <SelectField id={`${id}-category`} label="Category" value={form.category} options={names} empty="Choose a category"
            onChange={set("category", "category")} />
        </div>
        <Refused note={refused} field="category" id={`${id}-refused`} />
        {categories.error ? <ErrorBanner error={categories.error} onRetry={categories.reload} compact /> : null}
        <fieldset className="field station-source">
          <legend>Source</legend>
          <SelectField id={`${id}-source-kind`} label="Takes images from" value={form.source.kind}
            options={SOURCES.order.map((kind) => [kind, SOURCES.kinds[kind]?.title ?? kind] as const)}
            onChange={(kind) => edit("source", (f) => ({ ...f, source: emptyPart(SOURCES, kind) }))} />
          {sourceSchema?.["x-one-of"] ? (
            <SelectField id={`${id}-source-reads`} label="Camera" value={form.source.reads ?? ""}
              options={sourceSchema["x-one-of"].map((key) => [key, key === "device" ? "A USB camera (device index)" : "A video file or stream URL"] as const)}
              onChange={(reads) => edit("source", (f) => ({ ...f, source: { ...f.source, reads } }))} />
          ) : null}
          {sourceSchema?.["x-triggers"] ? (
            <SelectField id={`${id}-source-trigger`} label="Take a frame" value={form.source.trigger ?? ""}
              options={triggerChoices(sourceSchema).map((key) => [key, triggerText(key)] as const)}
              hint={triggerHint(form.source.trigger ?? "")}
              onChange={(trigger) => edit("source.trigger", (f) => ({ ...f, source: { ...f.source, trigger } }))} />
          ) : null}
          <Refused note={refused} field="source.kind" id={`${id}-refused`} />
          <Refused note={refused} field="source.trigger" id={`${id}-refused`} />
          <PartFields id={`${id}-source`} what="source" kinds={SOURCES} part={form.source} field="source" issue={issue} refused={refused}
            onChange={(source, field) => edit(field, (f) => ({ ...f, source }))} />
        </fieldset>
        <SelectField id={`${id}-duplicates`} label="An image whose content was already inspected" value={form.duplicates}
          options={STATION_DUPLICATES.choices.map((choice) => [choice, duplicatesText(choice)] as const)}
          empty={`Service default (${STATION_DUPLICATES.default})`}
          hint="A frozen camera sending the same picture for the next part. Refuse tells every sink this part was not inspected, naming the earlier verdict, so a PLC that waits for an answer per part gets one; skip puts it away with a line in the log and a warning."
          onChange={(value) => edit("duplicates", (f) => ({ ...f, duplicates: value as StationForm["duplicates"] }))} />
        <div className="field-row">
          <div className="field">
            <label htmlFor={`${id}-backlog`}>Backlog limit (optional)</label>
            <input id={`${id}-backlog`} type="number" min={1} step={1} inputMode="numeric" value={form.backlogLimit} placeholder={String(DEFAULT_BACKLOG_LIMIT)}
              onChange={(e) => set("backlogLimit", "backlog_limit")(e.target.value)} aria-describedby={`${id}-limits-hint`}
              aria-invalid={refused?.field === "backlog_limit"} />
            <Refused note={refused} field="backlog_limit" id={`${id}-refused`} />
          </div>
          <div className="field">
            <label htmlFor={`${id}-deadline`}>Deadline for p95 latency, s (optional)</label>
            <input id={`${id}-deadline`} type="number" min={0} step="any" inputMode="decimal" value={form.deadlineS} placeholder={String(DEFAULT_DEADLINE_S)}
              onChange={(e) => set("deadlineS", "deadline_s")(e.target.value)} aria-describedby={`${id}-limits-hint`}
              aria-invalid={refused?.field === "deadline_s"} />
            <Refused note={refused} field="deadline_s" id={`${id}-refused`} />
          </div>
        </div>
        <span id={`${id}-limits-hint`} className="hint">
          The station shows a warning when more images than this wait, or when its p95 latency is over the deadline.
        </span>
        <fieldset className="field station-sinks">
          <legend>Deliver verdicts to (optional)</legend>
          {form.sinks.map((sink, index) => {
            const title = `Sink ${index + 1}: ${SINKS.kinds[sink.kind]?.title ?? sink.kind}`;
            return (
              <fieldset key={index} className="field station-sink" data-sink-form={index}>
                <legend>{title}</legend>
                <PartFields id={`${id}-sink-${index}`} what="sink" kinds={SINKS} part={sink} field={`sinks.${index}`} issue={issue} refused={refused}
                  onChange={(next, field) => edit(field, (f) => ({ ...f, sinks: f.sinks.map((s, i) => (i === index ? next : s)) }))} />
                <div>
                  <button type="button" className="button secondary small-button" aria-label={`Remove sink ${index + 1} (${sink.kind})`}
                    onClick={() => edit("sinks", (f) => ({ ...f, sinks: f.sinks.filter((_, i) => i !== index) }))}>
                    Remove
                  </button>
                </div>
              </fieldset>
            );
          })}
          <div className="field-row station-add-sink">
            <SelectField id={`${id}-sink-kind`} label="Sink kind" value={sinkKind}
              options={SINKS.order.map((kind) => [kind, SINKS.kinds[kind]?.title ?? kind] as const)} onChange={setSinkKind} />
            <div className="field">
              <button type="button" className="button secondary" onClick={() => edit("sinks", (f) => ({ ...f, sinks: [...f.sinks, emptyPart(SINKS, sinkKind)] }))}>
                Add sink
              </button>
            </div>
          </div>
        </fieldset>
        <div className="actions">
          <button type="submit" className="button primary" aria-disabled={problem !== null} aria-describedby={problem ? `${id}-blocked` : undefined}>
            {busy ? "Creating…" : "Create station"}
          </button>
          {problem ? (
            <span id={`${id}-blocked`} className="hint" data-testid="create-blocked">
              {problem}
            </span>
          ) : null}
        </div>
      </form>
      {created ? (
        <p className="success" role="status">
          <span aria-hidden="true">✓ </span>Created {created.station}:{" "}
          {created.spec?.["source"] && (created.spec["source"] as Record<string, unknown>)["kind"] === "folder"
            ? `images written into its hot folder are inspected against ${created.category}.`
            : `${created.source}, inspected against ${created.category}.`}
        </p>
      ) : null}
      {error ? <ErrorBanner error={error} /> : null}
    </section>
  );
}

/** A camera's trigger choice in words (the keys of its `x-triggers`; one the service adds later by its name). */
function triggerText(key: string): string {
  switch (key) {
    case "every_n_frames":
      return "Every N-th frame";
    case "every_ms":
      return "Every so many milliseconds";
    case "http":
      return "On each API trigger (POST …/trigger)";
    case "opcua":
      return "On a PLC's signal (OPC UA node)";
    default:
      return key;
  }
}

function triggerHint(key: string): string {
  const option = SOURCES.kinds["camera"]?.properties["trigger"];
  if (key === "http" || key === "opcua") return option?.description ?? "";
  return "Of a video file, in the file's own time; the file's end finishes the source.";
}

/** The service's refusal, when it names this field. */
function Refused({ note, field, id }: { note: FieldNote | null; field: string; id: string }) {
  if (note?.field !== field) return null;
  return (
    <span id={id} className="hint invalid" data-testid="field-refused">
      {note.message}
    </span>
  );
}

interface PartFieldsProps {
  id: string;
  what: "source" | "sink";
  kinds: Kinds;
  part: PartForm;
  /** "source" or "sinks.<index>": the prefix of its fields' names in {@link FormIssue.field}. */
  field: string;
  issue: FormIssue | null;
  refused: FieldNote | null;
  onChange: (part: PartForm, field: string) => void;
}

/** A source's or sink's options, as the service declares them; the rarely changed ones folded under "More options". */
function PartFields(props: PartFieldsProps) {
  const { kinds, part, field, refused } = props;
  const shown = shownOptions(kinds, part);
  const main = shown.filter((key) => !MORE_OPTIONS.has(key));
  const more = foldedOptions(kinds, part);
  // Opened by hand, or by a refusal naming a folded option (its note must be seen): the section's own toggle
  // event keeps it open once the refusal is cleared by editing that field, so it does not close under the typing.
  const [opened, setOpened] = useState(false);
  const open = opened || namesFolded(kinds, part, field, refused?.field);
  return (
    <>
      <div className="field-row part-fields">
        {main.map((key) => (
          <OptionField key={key} name={key} {...props} />
        ))}
      </div>
      {more.length > 0 ? (
        <details className="part-more" open={open} onToggle={(e) => setOpened(e.currentTarget.open)}>
          <summary>More options</summary>
          <div className="field-row part-fields">
            {more.map((key) => (
              <OptionField key={key} name={key} {...props} />
            ))}
          </div>
        </details>
      ) : null}
    </>
  );
}

function OptionField({ id, what, kinds, part, field, issue, refused, onChange, name }: PartFieldsProps & { name: string }) {
  const option = kinds.kinds[part.kind]?.properties[name];
  if (!option) return null;
  const fieldName = `${field}.${name}`;
  const inputId = `${id}-${name}`;
  const label = optionLabel(what, part.kind, name, option);
  const set = (key: string, value: string) => onChange({ ...part, values: { ...part.values, [key]: value } }, fieldName);
  const invalid = issue?.field === fieldName && (part.values[name] ?? "") !== "";
  const isRefused = refused?.field === fieldName;
  const required = isRequired(kinds, part, name);
  const limits = limitsText(option);
  const fallback = defaultText(option);
  const hint = [option.description, limits ? `${limits}` : "", required ? "required" : fallback ? `default ${fallback}` : ""].filter(Boolean).join("; ");
  const describedBy = `${inputId}-hint${isRefused ? ` ${inputId}-refused` : ""}`;
  const note = <Refused note={refused} field={fieldName} id={`${inputId}-refused`} />;

  if (option.type === "boolean") {
    return (
      <div className="field checkbox">
        <input id={inputId} type="checkbox" checked={(part.values[name] ?? String(option.default ?? false)) === "true"}
          onChange={(e) => set(name, String(e.target.checked))} aria-describedby={describedBy} aria-invalid={isRefused} />
        <label htmlFor={inputId}>{label}</label>
        <span id={`${inputId}-hint`} className="hint">
          {option.description}
        </span>
        {note}
      </div>
    );
  }
  if (option.type === "object") {
    // a refusal names one of its fields ("nodes.decision"): shown under the whole table, that field marked
    const inner = refused?.field.startsWith(`${fieldName}.`) ? refused.field : fieldName;
    return (
      <fieldset className="field part-object">
        <legend>{label}</legend>
        <span id={`${inputId}-hint`} className="hint">
          {option.description}
        </span>
        <Refused note={refused} field={inner} id={`${inputId}-refused`} />
        <div className="field-row">
          {Object.entries(option.properties ?? {}).map(([sub, entry]) => (
            <div className="field" key={sub}>
              <label htmlFor={`${inputId}-${sub}`}>{`Node of ${sub}`}</label>
              <input id={`${inputId}-${sub}`} value={part.values[`${name}.${sub}`] ?? ""} onChange={(e) => set(`${name}.${sub}`, e.target.value)}
                placeholder="ns=2;s=…" autoComplete="off" title={entry.description} aria-invalid={refused?.field === `${fieldName}.${sub}`} />
            </div>
          ))}
        </div>
      </fieldset>
    );
  }
  if (option.enum) {
    return (
      <div className="field">
        <SelectField id={inputId} label={label} value={part.values[name] ?? ""} options={option.enum.map((choice) => [choice, choiceLabel(choice)] as const)}
          empty={fallback ? `Service default (${fallback})` : "Choose"} hint={option.description} onChange={(value) => set(name, value)} />
        {note}
      </div>
    );
  }
  const numeric = option.type === "number" || option.type === "integer";
  return (
    <div className="field">
      <label htmlFor={inputId}>{label}</label>
      <input id={inputId} value={part.values[name] ?? ""} onChange={(e) => set(name, e.target.value)} autoComplete="off"
        type={numeric ? "number" : "text"} inputMode={option.type === "integer" ? "numeric" : numeric ? "decimal" : undefined}
        min={option.minimum ?? option.exclusiveMinimum} max={option.maximum ?? option.exclusiveMaximum} step={option.type === "integer" ? 1 : numeric ? "any" : undefined}
        placeholder={(!required && fallback) || undefined} required={required} aria-required={required}
        aria-invalid={invalid || isRefused} aria-describedby={describedBy} data-option={fieldName} />
      <span id={`${inputId}-hint`} className={`hint${invalid ? " invalid" : ""}`}>
        {hint}
      </span>
      {note}
    </div>
  );
}
