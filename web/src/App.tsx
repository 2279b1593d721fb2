import { EagleClient, type Health, type Me } from "@eagle-iad/client";
import { useCallback, useEffect, useMemo, useRef, useState, type FormEvent } from "react";
import { ApiContext, readStoredKey, storeKey, type Api, type RetryNotice } from "./api";
import { ErrorBanner, Loading } from "./components/ErrorBanner";
import { useHashRoute } from "./components/useHashRoute";
import { allows, askWhoAmI, keyRequest, signedInLine, storedKeyRefused } from "./logic/access";
import { describeError, isUnauthorised, type UserError } from "./logic/errors";
import { degradedReasons, healthLine, isDegraded, readHealth } from "./logic/health";
import { NOTHING_SERVED, servedFigures, type ServedFigures } from "./logic/served";
import { PAGES, formatRoute, versionTarget, type Page } from "./logic/route";
import { AuditPage } from "./pages/AuditPage";
import { CategoriesPage } from "./pages/CategoriesPage";
import { EvaluationsPage } from "./pages/EvaluationsPage";
import { HistoryPage } from "./pages/HistoryPage";
import { InspectPage } from "./pages/InspectPage";
import { ReviewPage } from "./pages/ReviewPage";
import { StationsPage } from "./pages/StationsPage";
import { QueueProvider, useQueue } from "./queue";

const TITLES: Record<Page, string> = {
  inspect: "Inspect",
  review: "Review",
  categories: "Categories",
  history: "History",
  evaluations: "Evaluations",
  stations: "Stations",
  audit: "Audit",
};

export function App() {
  const route = useHashRoute();
  const [apiKey, setApiKey] = useState(readStoredKey);
  const [needKey, setNeedKey] = useState(false);
  const [health, setHealth] = useState<Health | null>(null);
  const [figures, setFigures] = useState<ServedFigures>(NOTHING_SERVED);
  const [healthError, setHealthError] = useState<UserError | null>(null);
  const [healthNonce, setHealthNonce] = useState(0);
  const [retry, setRetry] = useState<RetryNotice | null>(null);
  const [me, setMe] = useState<Me | null>(null);

  const client = useMemo(
    () =>
      new EagleClient({
        apiKey,
        onRetry: (info) => setRetry({ attempt: info.attempt, waitMs: info.waitMs, status: info.status }),
      }),
    [apiKey],
  );

  useEffect(() => {
    if (!retry) return;
    const timer = setTimeout(() => setRetry(null), retry.waitMs + 1500);
    return () => clearTimeout(timer);
  }, [retry]);

  useEffect(() => {
    const controller = new AbortController();
    setHealthError(null);
    // Read directly, not through client.health(): a degraded service answers 503 with the same Health body, and
    // that body (its reason, and the figures the tuner judges by) must not be thrown away as an error.
    readHealth(client.url("/healthz"), controller.signal).then(
      (h) => {
        setHealth(h);
        setFigures((previous) => servedFigures(h, previous));
        setHealthError(null);
      },
      (reason: unknown) => {
        if (controller.signal.aborted) return;
        setHealth(null);
        setHealthError(describeError(reason));
      },
    );
    // Keep the status in the top bar current (service restarted, MLLM queue) without a reload.
    const timer = setInterval(() => setHealthNonce((n) => n + 1), 15_000);
    return () => {
      controller.abort();
      clearInterval(timer);
    };
  }, [client, healthNonce]);

  // Why the stored key was refused (the service's words) and what was not saved with it, for the key form.
  const [keyRefusal, setKeyRefusal] = useState<string | null>(null);
  // The decision a refused key lost, kept while the form is open: another request refused after it (a panel that
  // reloads, the queue's next look) must not replace the line saying what was not saved.
  const lostDecision = useRef<string | null>(null);
  const requireKey = useCallback((reason?: unknown, unsaved?: string) => {
    if (unsaved) lostDecision.current = unsaved;
    setKeyRefusal(storedKeyRefused(reason === undefined ? null : describeError(reason), lostDecision.current));
    setNeedKey(true);
  }, []);

  // The key the service has accepted (it answered a request made with it). A typed key that has once worked and
  // is refused later was revoked or replaced, not mistyped: the form then says the service's reason and what was
  // not saved, as for a key read from the tab's storage, not "check it and enter it again".
  const [acceptedKey, setAcceptedKey] = useState<string | null>(null);

  // The key the service was asked about and answered (taken, refused, or it could not say): the pages are drawn
  // only then, so a service that needs a key is asked once (one 401, then the key form), not by every request the
  // page would make first (four 401s in the browser's console on a first visit to Review).
  const [checkedKey, setCheckedKey] = useState<string | null>(null);

  // Who the key is, asked once per key at start: shown in the top bar, pages hide what its role cannot do, and a
  // refusal shows the key form before any page fails.
  useEffect(() => {
    const controller = new AbortController();
    setMe(null);
    // Once, without retries and given up after a few seconds: the pages wait for this answer (see checkedKey).
    askWhoAmI({ baseUrl: client.baseUrl, apiKey }, controller.signal).then(
      (who) => {
        if (controller.signal.aborted) return; // answered for a key (or client) already replaced
        setMe(who);
        setAcceptedKey(apiKey);
        setCheckedKey(apiKey);
      },
      (reason: unknown) => {
        if (controller.signal.aborted) return;
        if (isUnauthorised(reason)) requireKey(reason);
        // Else an older service without /v1/me (every control shows), or none answering (in time): the page says
        // what it meets.
        setCheckedKey(apiKey);
      },
    );
    return () => controller.abort();
  }, [client, apiKey, requireKey]);

  const refreshHealth = useCallback(() => setHealthNonce((n) => n + 1), []);
  const api: Api = useMemo(
    () => ({ client, health, figures, me, requireKey, refreshHealth }),
    [client, health, figures, me, requireKey, refreshHealth],
  );

  useEffect(() => {
    document.title = `${TITLES[route.page]} · EAGLE-IAD`;
  }, [route.page]);

  // How many keys typed into the key form were refused in a row: the form says so (an alert) each time.
  const [typedRefused, setTypedRefused] = useState(0);
  const [typed, setTyped] = useState(false);
  // Typed and never accepted: a refusal of it is a mistyped (or unknown) key. Once accepted it is refused only
  // because it was revoked or replaced since, and is told so like a stored key.
  const untried = typed && acceptedKey !== apiKey;
  const saveKey = (key: string, fromForm = false) => {
    storeKey(key);
    setApiKey(key);
    setNeedKey(false);
    lostDecision.current = null; // said with the form just closed; a later refusal loses nothing said before
    setTyped(fromForm);
    if (!fromForm) setTypedRefused(0);
  };
  useEffect(() => {
    if (needKey && untried) setTypedRefused((n) => n + 1);
  }, [needKey, untried]);
  useEffect(() => {
    if (!untried) setTypedRefused(0); // the typed key works: a later refusal starts the count again
  }, [untried]);

  return (
    <ApiContext.Provider value={api}>
      <QueueProvider>
      <a className="skip-link" href="#main" onClick={(e) => (e.preventDefault(), document.getElementById("main")?.focus())}>
        Skip to content
      </a>
      <header className="topbar">
        <div className="brand">
          <span className="brand-mark" aria-hidden="true">◆</span>
          <span className="brand-name">EAGLE-IAD</span>
          <span className="brand-sub">inspection console</span>
        </div>
        <nav className="tabs" aria-label="Pages">
          {/* The audit log is the engineer's and the admin's to read: the tab shows for them (and until /v1/me answers). */}
          {PAGES.filter((page) => page !== "audit" || me === null || allows(me, "engineer")).map((page) => (
            <a key={page} href={formatRoute(page)} aria-current={route.page === page ? "page" : undefined} className="tab">
              {TITLES[page]}
            </a>
          ))}
        </nav>
        <QueueCount />
        <div className="service-status" aria-live="polite">
          {health ? (
            <span className={isDegraded(health) ? "status-warn" : "status-ok"} data-testid="service-state"
              title={`queue waiting: ${health.mllm_queue_waiting}, fit jobs pending: ${health.fit_jobs_pending}`}>
              <span className="dot" aria-hidden="true" /> {healthLine(health)}
              {/* The reason, announced with the state (this region is polite, and says nothing while it is unchanged). */}
              {isDegraded(health) ? <span className="sr-only">: {degradedReasons(health).join("; ")}</span> : null}
            </span>
          ) : healthError ? (
            <span className="status-bad">
              <span className="dot" aria-hidden="true" /> service unreachable
            </span>
          ) : (
            <span className="muted">connecting…</span>
          )}
          {/* Not while the key form asks for a key: the key it names was refused (revoked, replaced). */}
          {me && !needKey ? (
            <span className="signed-in" data-testid="signed-in">
              {signedInLine(me)}
            </span>
          ) : null}
          {apiKey ? (
            <button type="button" className="link-button light" onClick={() => saveKey("")}>
              Forget key
            </button>
          ) : null}
        </div>
      </header>
      {retry ? (
        <div className="retry-notice" role="status">
          {retry.status === 429 ? "The model is busy (queue full)" : retry.status === null ? "The service did not answer" : `The service answered ${retry.status}`}
          ; retrying in {Math.ceil(retry.waitMs / 1000)} s (attempt {retry.attempt})…
        </div>
      ) : null}
      <main id="main" tabIndex={-1}>
        {healthError && !needKey ? (
          <ErrorBanner error={healthError} onRetry={refreshHealth} />
        ) : null}
        {isDegraded(health) && !needKey ? <DegradedNotice reasons={degradedReasons(health)} /> : null}
        {!needKey && checkedKey !== apiKey ? (
          <Loading label="Connecting to the service…" />
        ) : needKey ? (
          <KeyForm onSubmit={(key) => saveKey(key, true)} onForget={() => saveKey("")} hadKey={apiKey !== ""}
            refused={untried ? typedRefused : 0} auth={health?.auth ?? null} why={keyRefusal} />
        ) : (
          <div key={`${apiKey}:${route.page}`} className="page">
            {route.page === "inspect" ? <InspectPage /> : null}
            {route.page === "review" ? <ReviewPage /> : null}
            {route.page === "categories" ? <CategoriesPage selected={route.item} version={versionTarget(route.params)} /> : null}
            {route.page === "history" ? <HistoryPage params={route.params} item={route.item} /> : null}
            {route.page === "evaluations" ? <EvaluationsPage /> : null}
            {route.page === "stations" ? <StationsPage /> : null}
            {route.page === "audit" ? <AuditPage /> : null}
          </div>
        )}
      </main>
      <footer className="footer muted small">
        EAGLE-IAD · PatchCore expert + TGPS threshold + CAAS ·{" "}
        <a href="./docs" rel="noreferrer">
          API docs
        </a>
      </footer>
      <QueueAnnouncer />
      </QueueProvider>
    </ApiContext.Provider>
  );
}

/**
 * Why the service is degraded, on every page: it still answers (reads work), so this is no error banner and no
 * "unreachable". Not a live region: the top bar's polite status already announces the change once.
 */
function DegradedNotice({ reasons }: { reasons: string[] }) {
  return (
    <section className="degraded-notice" aria-labelledby="degraded-title" data-testid="degraded-notice">
      {/* Not a heading: it sits above each page's h1, and the outline should start with the page. */}
      <p id="degraded-title" className="degraded-title">Service degraded</p>
      <ul>
        {reasons.map((reason) => (
          <li key={reason}>{reason}</li>
        ))}
      </ul>
    </section>
  );
}

/** How many images are still waiting, on every page (the batch keeps going while you browse). */
function QueueCount() {
  const { counts, persistent } = useQueue();
  if (counts.waiting === 0 && counts.failed === 0) return null;
  const title = persistent === false ? "kept in this tab only (browser storage unavailable)" : "kept in this browser until inspected";
  return (
    <a className="queue-count" href={formatRoute("inspect")} title={title} data-testid="queue-count">
      {counts.waiting > 0 ? `${counts.waiting} waiting` : ""}
      {counts.waiting > 0 && counts.failed > 0 ? " · " : ""}
      {counts.failed > 0 ? `${counts.failed} failed` : ""}
    </a>
  );
}

/** Verdicts read out by screen readers as they arrive (the cards themselves are not live regions). */
function QueueAnnouncer() {
  const { announcement } = useQueue();
  return (
    <div className="sr-only" role="status" aria-live="polite" data-testid="announcer">
      {announcement}
    </div>
  );
}

function KeyForm({ onSubmit, onForget, hadKey, refused, auth, why }: {
  onSubmit: (key: string) => void;
  onForget: () => void;
  hadKey: boolean;
  /** How many keys typed here were refused in a row (0: none typed yet, or the stored key was refused). */
  refused: number;
  auth: Health["auth"] | null;
  /** Why the stored key was refused, in the service's words, and what was not saved (storedKeyRefused). */
  why: string | null;
}) {
  const [value, setValue] = useState("");
  const field = useRef<HTMLInputElement>(null);
  // Back to the field after each refusal, ready for the next try (the form is drawn anew each time).
  useEffect(() => field.current?.focus(), [refused]);
  const submit = (event: FormEvent) => {
    event.preventDefault();
    if (value.trim()) onSubmit(value.trim());
  };
  return (
    <section className="panel key-form" aria-labelledby="key-title">
      <h1 id="key-title">API key required</h1>
      {refused > 0 ? (
        <p className="key-refused" role="alert" key={refused} data-testid="key-refused">
          That key was refused{refused > 1 ? ` (${refused} tries)` : ""}: it is not one the service knows, or it was revoked. Check it and enter it again.
        </p>
      ) : hadKey ? (
        <p className="key-refused" role="alert" data-testid="key-refused">{why ?? "The service refused the key stored in this tab."}</p>
      ) : null}
      <p data-testid="key-request">
        {/* `…` in the request is a command: shown as code */}
        {keyRequest(auth).split("`").map((part, index) => (index % 2 === 1 ? <code key={index}>{part}</code> : part))}
        {auth === "open" && hadKey ? "" : " The key is kept in this tab's session storage only."}
      </p>
      {auth === "open" && hadKey ? (
        <div className="actions">
          <button type="button" className="button primary" onClick={onForget}>
            Forget the stored key
          </button>
        </div>
      ) : (
        <form onSubmit={submit}>
          <div className="field">
            <label htmlFor="api-key">API key</label>
            <input id="api-key" ref={field} type="password" autoComplete="current-password" value={value} onChange={(e) => setValue(e.target.value)} autoFocus />
          </div>
          <div className="actions">
            <button type="submit" className="button primary" disabled={!value.trim()}>
              Use key
            </button>
          </div>
        </form>
      )}
    </section>
  );
}
