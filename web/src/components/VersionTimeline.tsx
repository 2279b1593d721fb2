import type { ModelVersion } from "@eagle-iad/client";
import { useId, useRef, useState, type FormEvent } from "react";
import { useApi, useAsync } from "../api";
import { allows } from "../logic/access";
import { describeError, isUnauthorised, type UserError } from "../logic/errors";
import { cancelOnEscape } from "../logic/keys";
import { noteStatus, WHY_MAX } from "../logic/review";
import { formatScore } from "../logic/scale";
import type { VersionTarget } from "../logic/route";
import { formatBytes, labelledCaveat, sameAsCurrent, versionDiff, versionLanding, whatMadeIt } from "../logic/versions";
import { CharCount } from "./CharCount";
import { ErrorBanner, Loading } from "./ErrorBanner";
import { RoleGate } from "./RoleGate";
import { useFocusAfterRender } from "./useFocusAfterRender";
import { useLandOn } from "./useLandOn";

function when(value: string | null | undefined): string {
  if (!value) return "–";
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? value : date.toLocaleString();
}

/**
 * A category's model versions, newest first: what made each (fit, threshold change, teach, rollback), who,
 * when and why, its threshold and size, the disk it added; a diff of any two; and a rollback to any earlier one
 * (engineer), asked for its reason beside its button. `changed` is anything that changes when the model does
 * (the category's history length), so the list is fetched again after a change made elsewhere on the page.
 * `target`: the version a link points at (`#/categories/<name>?version=3`, an inspection's "version 3"): once the
 * list is in, its entry is scrolled to, marked and focused (or what to say instead: no such version).
 */
export function VersionTimeline({
  name,
  changed,
  onChanged,
  target = { kind: "none" },
}: {
  name: string;
  changed: unknown;
  onChanged: () => void;
  target?: VersionTarget;
}) {
  const { client, me } = useApi();
  const id = useId();
  const [round, setRound] = useState(0);
  const listed = useAsync((signal) => client.versions(name, signal), [client, name, changed, round]);
  const versions = listed.data?.versions ?? [];
  const [pick, setPick] = useState<{ a: number | null; b: number | null }>({ a: null, b: null });
  const newest = versions.at(-1)?.version ?? null;
  const copies = sameAsCurrent(versions);
  const currentNumber = versions.find((v) => v.current)?.version ?? null;
  const a = versions.find((v) => v.version === (pick.a ?? versions.at(-2)?.version)) ?? null;
  const b = versions.find((v) => v.version === (pick.b ?? newest)) ?? null;
  // Counts of the two on different labelled parts: said not comparable (the diff leaves them unmarked).
  const caveat = a && b ? labelledCaveat(a, b, versions) : null;
  const [rolling, setRolling] = useState<number | null>(null);
  const [done, setDone] = useState("");
  const doneRef = useRef<HTMLParagraphElement>(null);
  const focusAfterRender = useFocusAfterRender();
  // Where a link to one version lands: its entry (or its damaged line), or a note saying why it cannot.
  const landing = listed.data ? versionLanding(target, name, listed.data) : ({ kind: "none" } as const);
  const isLinked = (kind: "entry" | "damaged", version: number) => (landing.kind === "entry" || landing.kind === "damaged") && landing.kind === kind && landing.version === version;
  const sectionRef = useRef<HTMLElement>(null);
  useLandOn(
    landing.kind === "none" ? null : landing.kind === "note" ? `note:${landing.text}` : `${landing.kind}:${landing.version}`,
    () => sectionRef.current?.querySelector<HTMLElement>("[data-landing]"),
  );

  return (
    <section className="versions" aria-labelledby={`${id}-title`} ref={sectionRef}>
      <h3 id={`${id}-title`}>Versions</h3>
      {landing.kind === "note" ? (
        <p className="notice" data-testid="version-link-note" data-landing tabIndex={-1}>
          {landing.text}
        </p>
      ) : null}
      {listed.error ? <ErrorBanner error={listed.error} onRetry={listed.reload} compact /> : null}
      {listed.loading && !listed.data ? <Loading /> : null}
      {listed.data ? (
        <p className="muted small" data-testid="versions-disk">
          {versions.length === 1 ? "1 version" : `${versions.length} versions`}, {formatBytes(listed.data.disk_bytes)} on disk in all
          (unchanged files are shared between versions).
        </p>
      ) : null}
      {listed.data?.damaged?.length ? (
        // Versions whose files cannot be read (pruned by hand, edited): said apart, as they cannot be rolled back to.
        <ul className="model-warnings" aria-label="Damaged versions" data-testid="versions-damaged">
          {listed.data.damaged.map((broken) => (
            <li
              key={broken.version}
              className={`warning${isLinked("damaged", broken.version) ? " linked" : ""}`}
              data-version={broken.version}
              {...(isLinked("damaged", broken.version) ? { "data-landing": true, tabIndex: -1 } : {})}
            >
              <span aria-hidden="true">⚠ </span>
              Version {broken.version} cannot be read, so it cannot be rolled back to: {broken.problem}
              {isLinked("damaged", broken.version) ? <LinkedBadge /> : null}
            </li>
          ))}
        </ul>
      ) : null}
      <p role="status" className="small" data-testid="rollback-done" ref={doneRef} tabIndex={-1}>
        {done}
      </p>
      {versions.length > 1 && a && b ? (
        <div className="version-diff">
          <div className="version-pick">
            <label htmlFor={`${id}-a`}>Compare version</label>
            <select id={`${id}-a`} value={a.version} onChange={(e) => setPick((p) => ({ ...p, a: Number(e.target.value) }))}>
              {versions.map((v) => (
                <option key={v.version} value={v.version}>
                  {v.version}: {whatMadeIt(v)}
                </option>
              ))}
            </select>
            <label htmlFor={`${id}-b`}>with</label>
            <select id={`${id}-b`} value={b.version} onChange={(e) => setPick((p) => ({ ...p, b: Number(e.target.value) }))}>
              {versions.map((v) => (
                <option key={v.version} value={v.version}>
                  {v.version}: {whatMadeIt(v)}
                </option>
              ))}
            </select>
          </div>
          <table className="diff-table" data-testid="version-diff">
            <caption className="sr-only">
              Version {a.version} compared with version {b.version}
            </caption>
            <thead>
              <tr>
                <th scope="col">
                  <span className="sr-only">Compared</span>
                </th>
                <th scope="col">Version {a.version}</th>
                <th scope="col">Version {b.version}</th>
              </tr>
            </thead>
            <tbody>
              {versionDiff(a, b, versions).map((row) => (
                <tr key={row.label} className={row.changed ? "changed" : undefined}>
                  <th scope="row">{row.label}</th>
                  <td>{row.a}</td>
                  <td>{row.b}</td>
                </tr>
              ))}
            </tbody>
          </table>
          {caveat ? (
            <p className="notice small" data-testid="version-diff-caveat">
              {caveat}
            </p>
          ) : null}
          {a.labelled || b.labelled || versions.some((v) => v.labelled) ? (
            <p className="muted small" data-testid="version-diff-note">
              False alarms and misses here were counted at a model change, on the parts labelled by then: a teach scores them again with the
              model before and after it, a threshold change judges the scores they were given at the thresholds before and after. “Over time”
              counts instead what was decided when each part was inspected, and the tuner judges those same recorded scores at the threshold
              you try.
            </p>
          ) : null}
        </div>
      ) : null}
      <ol className="changes" reversed aria-labelledby={`${id}-title`} data-testid="versions">
        {[...versions].reverse().map((v) => (
          <li
            key={v.version}
            className={`change${isLinked("entry", v.version) ? " linked" : ""}`}
            data-version={v.version}
            {...(isLinked("entry", v.version) ? { "data-landing": true, tabIndex: -1 } : {})}
          >
            <p className="change-head">
              <strong>
                {v.version}: {whatMadeIt(v)}
              </strong>
              {v.current ? <span className="badge"> current</span> : null}
              {isLinked("entry", v.version) ? <LinkedBadge /> : null}
              <span className="muted small">
                {" "}
                · {when(v.at)} · by {v.by ?? "–"} · τ {formatScore(v.tau)} · {v.train_images} images · bank {v.bank_size ?? "–"} · +
                {formatBytes(v.bytes_added)}
              </span>
            </p>
            {v.why ? <p className="change-why">{v.why}</p> : null}
            {copies.has(v.version) ? (
              // A rollback to it would be refused (the current model already): say whose model is current instead.
              <p className="muted small" data-testid="version-same-as-current">
                The current model is version {v.version}’s: version {currentNumber} is a copy of it, made by a rollback.
              </p>
            ) : !v.current && allows(me, "engineer") ? (
              rolling === v.version ? (
                <RollbackForm
                  name={name}
                  version={v}
                  onCancel={() => {
                    setRolling(null);
                    focusAfterRender(() => document.querySelector<HTMLElement>(`[data-rollback="${v.version}"]`));
                  }}
                  onDone={(line) => {
                    setRolling(null);
                    setDone(line);
                    setRound((r) => r + 1);
                    onChanged();
                    focusAfterRender(() => doneRef.current); // the form is gone: focus what it did
                  }}
                />
              ) : (
                <button
                  type="button"
                  className="button secondary small-button"
                  data-rollback={v.version}
                  onClick={() => {
                    setDone("");
                    setRolling(v.version);
                  }}
                >
                  Roll back to version {v.version}
                </button>
              )
            ) : null}
          </li>
        ))}
      </ol>
      {versions.some((v) => !v.current) ? (
        <RoleGate needed="engineer" what="Rolling the model back">
          {null}
        </RoleGate>
      ) : null}
    </section>
  );
}

/** The mark on the version a link pointed at (besides its outline): in words, so it is not told by colour alone. */
function LinkedBadge() {
  return (
    <span className="linked-badge" data-testid="linked-version">
      linked version
    </span>
  );
}

function RollbackForm({ name, version, onCancel, onDone }: { name: string; version: ModelVersion; onCancel: () => void; onDone: (line: string) => void }) {
  const { client, requireKey } = useApi();
  const id = useId();
  const [why, setWhy] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<UserError | null>(null);
  // Counted as the service counts (code points, an emoji is one): a longer why stays whole and is refused.
  const whyNow = noteStatus(why, WHY_MAX, "shorten it to roll back");

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    if (busy) return;
    if (!why.trim()) {
      setError({ kind: "invalid_request", title: "Say why", message: "Say why the model goes back: it is kept in the model's history.", retryable: false });
      return;
    }
    if (whyNow.over) {
      // Not cut to fit: the engineer decides what goes; the words stay in the field.
      setError({ kind: "invalid_request", title: "Why too long: not rolled back", message: `The why has ${whyNow.line}.`, retryable: false });
      return;
    }
    setBusy(true);
    setError(null);
    try {
      const category = await client.rollback(name, { to: version.version, why: why.trim() });
      onDone(`Rolled ${name} back to version ${version.version}: the threshold is ${formatScore(category.tau)}. The next inspection uses it.`);
    } catch (reason) {
      if (isUnauthorised(reason)) requireKey(reason);
      setError(describeError(reason));
      setBusy(false);
    }
  };

  return (
    // Escape answers "no", as Cancel does (not while the rollback is being sent).
    <form className="restore-form" aria-label={`Roll back to version ${version.version}`} onSubmit={(event) => void submit(event)}
      onKeyDown={(event) => cancelOnEscape(event, busy, onCancel)}>
      <div className="field grow">
        <label htmlFor={`${id}-why`}>Why go back to version {version.version}? (kept in the model's history)</label>
        <input
          id={`${id}-why`}
          autoFocus
          value={why}
          aria-describedby={`${id}-why-count`}
          aria-invalid={whyNow.over || undefined}
          onChange={(e) => setWhy(e.target.value)}
        />
        <CharCount id={`${id}-why-count`} status={whyNow} testId="rollback-why-count" />
      </div>
      <div className="actions">
        <button type="submit" className="button primary small-button" disabled={busy}>
          Roll back to version {version.version}
        </button>
        <button type="button" className="button secondary small-button" onClick={onCancel}>
          Cancel
        </button>
      </div>
      {error ? <ErrorBanner error={error} compact /> : null}
    </form>
  );
}
