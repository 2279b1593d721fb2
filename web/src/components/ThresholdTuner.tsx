import type { Category, CategoryEvidence, LabelledScore } from "@eagle-iad/client";
import { useEffect, useId, useRef, useState, type FormEvent } from "react";
import { useApi } from "../api";
import { describeError, isUnauthorised, type UserError } from "../logic/errors";
import { needsFittedModelLine } from "../logic/exported";
import { noteStatus, WHY_MAX } from "../logic/review";
import { formatScore } from "../logic/scale";
import { cancelOnEscape } from "../logic/keys";
import { confirmPhrase, flagged, formatRate, insideNormalsLine, knownScores, offScale, offScaleLine, previewThreshold, roundTo, sameFileLine, scoreRange } from "../logic/tuning";
import { orderPictures, pictureLabel } from "../logic/verdict";
import { allows } from "../logic/access";
import { CharCount } from "./CharCount";
import { ErrorBanner } from "./ErrorBanner";
import { useFocusAfterRender } from "./useFocusAfterRender";
import { RoleGate } from "./RoleGate";
import { Histogram } from "./Histogram";
import { Picture } from "./Picture";
import { ZoomViewer } from "./ZoomViewer";

interface Change {
  change: number;
  at?: string;
  by?: string;
  why?: string;
  action?: string;
  /** A rollback's version. */
  to?: number;
  restored?: number;
  /** The model version this change made (changes saved before versions named it: absent). */
  version?: number;
  /** The change number of the rollback that undid it: kept on the record, marked, no longer in the model. */
  undone_by?: number;
  before?: { tau?: number };
  after?: { tau?: number };
}

/** How a change is named to a person: by the version it made ("version 9"), else by its number ("change #4"). */
function named(change: Change | undefined, number: number): string {
  return typeof change?.version === "number" ? `version ${change.version}` : `change #${number}`;
}

function when(value: string | undefined): string {
  if (!value) return "–";
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? value : date.toLocaleString();
}

/**
 * Try a threshold against the evidence (training scores, labelled history, evaluation images) before
 * saving it on the record; the saved history lists who changed it, when and why, each change restorable.
 */
export function ThresholdTuner({
  category,
  evidence,
  inspectedHighest = null,
  onChanged,
}: {
  category: Category;
  evidence: CategoryEvidence | undefined;
  /** The highest inspection score the page's "Over time" charts (null: none, or not loaded). */
  inspectedHighest?: number | null;
  onChanged: (updated: Category) => void;
}) {
  const { client, figures, me, requireKey } = useApi();
  const id = useId();
  const tau = category.tau ?? null;
  const training = category.training_scores?.values ?? [];
  const exportedLine = needsFittedModelLine(category.export, "Changing the threshold");
  const items = evidence?.items ?? [];
  // The factor past s_max that flags nothing is the service's (its /healthz), the model's warning's own.
  const known = knownScores(training, items, category.s_max, figures.farAboveSMax, inspectedHighest);
  // The scores' own range: a threshold in use far outside them (1e9, saved confirmed) is not let stretch it.
  const range = scoreRange([...training, ...items.map((i) => i.score), category.s_max], [tau], known);
  const [candidate, setCandidate] = useState<number>(tau ?? range.min);
  const [text, setText] = useState<string>(tau === null ? "" : String(roundTo(tau, range.step)));
  const [why, setWhy] = useState("");
  const [by, setBy] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<UserError | null>(null);
  const [saved, setSaved] = useState<string | null>(null);
  /** The threshold whose saving, asked to be confirmed ({@link confirmPhrase}), was confirmed (the box ticked); another value asks again. */
  const [confirmed, setConfirmed] = useState<number | null>(null);
  const [zoomed, setZoomed] = useState<LabelledScore | null>(null);
  /** The change whose Restore was asked for: its reason is asked right beside its button. */
  const [restoring, setRestoring] = useState<number | null>(null);
  const [restoreWhy, setRestoreWhy] = useState("");
  /** Where the last message belongs: the save form, or the restore of one change. */
  const [messageAt, setMessageAt] = useState<"form" | number>("form");
  const whyField = useRef<HTMLTextAreaElement>(null);
  const savedRef = useRef<HTMLParagraphElement>(null);
  const focusAfterRender = useFocusAfterRender();
  // Saved, the button is disabled (nothing to save) or the restore form gone: the keyboard goes to what was
  // said. In an effect, after the message is drawn: a frame callback could run before React commits it.
  const focusSaved = useRef(false);
  useEffect(() => {
    if (saved && focusSaved.current) {
      focusSaved.current = false;
      savedRef.current?.focus();
    }
  }, [saved]);

  /** Close a restore's form unsent (Cancel, Escape): the keyboard goes back to the Restore button it replaced. */
  const cancelRestore = (change: number) => {
    setRestoring(null);
    setError(null);
    focusAfterRender(() => document.querySelector<HTMLElement>(`[data-restore="${change}"]`));
  };

  const preview = previewThreshold(items, candidate, tau);
  const trainingFlagged = training.filter((s) => flagged(s, candidate)).length;
  const inside = insideNormalsLine(trainingFlagged, training.length, figures.flaggedShare);
  const normals = items.filter((i) => i.label === "normal").length;
  const history = (category.history ?? []) as unknown as Change[];
  const same = tau !== null && candidate === tau;
  const outside = offScale(candidate, known);
  const outsideLine = outside ? offScaleLine(outside, formatScore(candidate), known, formatScore) : null;
  // Flags nothing, every normal part, or more than the served share of them: saved only with a tick for this value.
  const confirmWhat = confirmPhrase(outside, trainingFlagged, training.length, figures.flaggedShare);
  const warned = outsideLine ?? inside;
  const needsConfirm = confirmWhat !== null && confirmed !== candidate;

  const setFromNumber = (value: number) => {
    setCandidate(value);
    setText(String(roundTo(value, range.step)));
    setSaved(null);
  };

  // The threshold in use changed under the tuner (a rollback, a teach): the trial value follows it, or the
  // old one would show as a change nobody asked for, one Save away from undoing the rollback.
  const shownTau = useRef(tau);
  useEffect(() => {
    if (tau === shownTau.current) return;
    shownTau.current = tau;
    if (tau !== null) {
      setCandidate(tau);
      setText(String(roundTo(tau, range.step)));
    }
  }, [tau, range.step]);

  // Counted as the service counts (code points, an emoji is one): a longer why stays whole and is refused.
  const whyNow = noteStatus(why, WHY_MAX, "shorten it to save");
  const restoreWhyNow = noteStatus(restoreWhy, WHY_MAX, "shorten it to restore");

  const blocked = busy
    ? "Saving…"
    : same
      ? "Move the threshold first: this is the one in use."
      : why.trim() === ""
        ? "Say why the threshold changes (it is kept in the model's history)."
        : needsConfirm
          ? `Tick “although it ${confirmWhat}” to save this threshold.`
          : null;

  /** Save a change with its reason; the message (one at a time, red or green) is shown where it was asked. */
  const send = async (change: { tau?: number; restore?: number }, reason: string, at: "form" | number, done: (c: Category) => string) => {
    setMessageAt(at);
    setSaved(null);
    if (reason.trim() === "") {
      setError({ kind: "invalid_request", title: "A reason is needed", message: "Say why the threshold changes: every change is kept in the model's history.", retryable: false });
      if (at === "form") whyField.current?.focus();
      return;
    }
    const counted = noteStatus(reason, WHY_MAX, "shorten it to save");
    if (counted.over) {
      // Not cut to fit: the engineer decides what goes; the words stay in the field.
      setError({ kind: "invalid_request", title: "Why too long: not saved", message: `The why has ${counted.line}.`, retryable: false });
      if (at === "form") whyField.current?.focus();
      return;
    }
    setBusy(true);
    setError(null);
    try {
      const updated = await client.changeThreshold(category.name, { ...change, why: reason.trim(), by: by.trim() || null });
      if (typeof updated.tau === "number") setFromNumber(updated.tau);
      setSaved(done(updated));
      if (at === "form") setWhy("");
      else {
        setRestoreWhy("");
        setRestoring(null);
        setMessageAt("form"); // the restore form is gone: say it at the form
      }
      focusSaved.current = true; // the message is focused once it is drawn (the effect below)
      onChanged(updated);
    } catch (reason) {
      if (isUnauthorised(reason)) requireKey(reason);
      setError(describeError(reason));
    } finally {
      setBusy(false);
    }
  };

  const messages = (at: "form" | number) =>
    messageAt !== at ? null : (
      <>
        {error ? <ErrorBanner error={error} compact /> : null}
        {saved ? (
          <p className="success" role="status" data-testid="saved" ref={at === "form" ? savedRef : undefined} tabIndex={-1}>
            {saved}
          </p>
        ) : null}
      </>
    );

  const submit = (event: FormEvent) => {
    event.preventDefault();
    if (busy || same || needsConfirm) return;
    void send({ tau: candidate }, why, "form", (c) => `Saved: the threshold of ${c.name} is now ${formatScore(c.tau)}; the next inspection uses it.`);
  };

  const at = `At threshold ${formatScore(candidate)}${tau !== null && !same ? ` (in use: ${formatScore(tau)})` : ""}: `;
  // Outside the scores known, the counts would read as good news ("false alarms 0"): the words say what it does.
  const summary = outsideLine
    ? `${outsideLine}${tau !== null && !same ? ` The threshold in use is ${formatScore(tau)}.` : ""}`
    : at +
      (items.length > 0
        ? `false alarms ${formatRate(preview.falseAlarms.length, normals)} of the normal images with known truth, misses ${formatRate(
            preview.misses.length,
            preview.anomalies,
          )} of the defective ones (each by the score it was given when inspected or evaluated); `
        : "") +
      `training images at or above it: ${formatRate(trainingFlagged, training.length)}.` +
      (inside ? ` ${inside}` : "");

  return (
    <section className="tuner" aria-labelledby={`${id}-title`} data-testid="tuner">
      <h3 id={`${id}-title`}>Tune the threshold</h3>
      <p className="muted small">
        An image scoring at or above the threshold is flagged defective. Try a value: the preview counts what it would do on images whose truth is
        known{items.length === 0 ? "" : ` (${items.length}: labelled history items and evaluation images, each image file counted once; the ticks on the axis: green normal, red defective)`}.
        {items.length > 0
          ? " Each counts with the score it was given when inspected or evaluated, so these false alarms are what this threshold would have decided then; “Over time” below counts what was decided at the threshold of the day."
          : ""}
        {items.length > 0 && history.some((h) => h.action === "teach")
          ? " The model has been taught since some were scored: parts like the taught ones may score lower now than shown here."
          : ""}
      </p>
      {category.training_scores?.histogram ? (
        <Histogram
          edges={category.training_scores.histogram.edges}
          counts={category.training_scores.histogram.counts}
          tau={tau}
          sMax={category.s_max}
          label={`Training scores of ${category.name}`}
          candidate={candidate}
          extent={[range.min, range.max, ...(outside ? [] : [candidate])]}
          marks={items}
          fixedAxis
        />
      ) : (
        <p className="muted">No training-score histogram in this model.</p>
      )}
      <div className="tuner-controls">
        <div className="field grow">
          <label htmlFor={`${id}-slider`}>Try a threshold</label>
          <input
            id={`${id}-slider`}
            type="range"
            min={range.min}
            max={range.max}
            step={range.step}
            value={candidate}
            aria-valuetext={formatScore(candidate)}
            onChange={(e) => setFromNumber(Number(e.target.value))}
            data-testid="tau-slider"
          />
        </div>
        <div className="field">
          <label htmlFor={`${id}-number`}>Threshold value</label>
          <input
            id={`${id}-number`}
            type="number"
            inputMode="decimal"
            min={0}
            step={range.step}
            value={text}
            onChange={(e) => {
              setText(e.target.value);
              const value = Number(e.target.value);
              if (e.target.value.trim() !== "" && Number.isFinite(value) && value >= 0) {
                setCandidate(value);
                setSaved(null);
              }
            }}
            data-testid="tau-number"
          />
        </div>
        {tau !== null && !same ? (
          <button type="button" className="button secondary" onClick={() => setFromNumber(tau)}>
            Back to {formatScore(tau)}
          </button>
        ) : null}
      </div>
      <p className={warned ? "preview-summary warning" : "preview-summary"} aria-live="polite" data-testid="preview-summary">
        {summary}
      </p>
      {items.length === 0 ? (
        <p className="notice small" data-testid="no-evidence">
          No images with known truth yet. Mark inspections “Actually normal” or “Actually defective” in History, or put an <code>eagle eval-expert</code> run in
          the service's runs folder, to see false alarms and misses here.
        </p>
      ) : (
        <FlipList flips={preview.flips} onOpen={setZoomed} />
      )}
      {zoomed?.pictures ? (
        <ZoomViewer
          name={zoomed.name}
          kinds={orderPictures(Object.keys(zoomed.pictures))}
          links={zoomed.pictures}
          label={pictureLabel}
          initial={orderPictures(Object.keys(zoomed.pictures))[0] ?? "input"}
          onClose={() => setZoomed(null)}
        />
      ) : null}
      {exportedLine ? (
        // An export's threshold is fixed in its sidecar: the preview above stands, saving needs the fitted model.
        <p className="notice" data-testid="needs-fitted-model">
          {exportedLine}
        </p>
      ) : (
      <RoleGate needed="engineer" what="Changing the threshold">
      <form className="tuner-save" onSubmit={submit}>
        <div className="field grow">
          <label htmlFor={`${id}-why`}>Why (kept in the model's history)</label>
          <textarea
            id={`${id}-why`}
            ref={whyField}
            rows={2}
            value={why}
            aria-describedby={`${id}-why-count`}
            aria-invalid={whyNow.over || undefined}
            onChange={(e) => setWhy(e.target.value)}
          />
          <CharCount id={`${id}-why-count`} status={whyNow} testId="threshold-why-count" />
        </div>
        {me === null || me.open ? (
          <div className="field">
            <label htmlFor={`${id}-by`}>Your name (optional)</label>
            <input id={`${id}-by`} maxLength={100} value={by} onChange={(e) => setBy(e.target.value)} autoComplete="name" />
          </div>
        ) : null /* with a key, the history records the key's name */}
        {confirmWhat && !same ? (
          <div className="field checkbox" data-testid="confirm-save">
            <input
              id={`${id}-confirm`}
              type="checkbox"
              checked={confirmed === candidate}
              onChange={(e) => setConfirmed(e.target.checked ? candidate : null)}
              aria-describedby={`${id}-outside`}
            />
            <label htmlFor={`${id}-confirm`}>
              Save {formatScore(candidate)} although it {confirmWhat}
            </label>
            <span id={`${id}-outside`} className="sr-only">
              {warned}
            </span>
          </div>
        ) : null}
        <div className="actions">
          {/* While saving, aria-disabled (the pressed button keeps the keyboard focus, also when the save fails);
              otherwise disabled until there is something to save. */}
          <button
            type="submit"
            className="button primary"
            disabled={blocked !== null && !busy}
            aria-disabled={busy || undefined}
            aria-describedby={blocked ? `${id}-blocked` : undefined}
          >
            Save threshold {formatScore(candidate)}
          </button>
          {blocked ? (
            <span id={`${id}-blocked`} className="hint" data-testid="save-blocked">
              {blocked}
            </span>
          ) : null}
        </div>
      </form>
      </RoleGate>
      )}
      {messages("form")}
      <h3 id={`${id}-history`}>Threshold changes</h3>
      {history.length === 0 ? (
        <p className="muted small">None yet: the threshold is the one set by the fit ({category.rule ?? "its rule"}).</p>
      ) : (
        <ol className="changes" aria-labelledby={`${id}-history`} data-testid="threshold-history" reversed>
          {[...history].reverse().map((h) => (
            <li key={h.change} className="change">
              <p className="change-head">
                <strong className="nowrap" data-field="change">
                  {formatScore(h.before?.tau)} → {formatScore(h.after?.tau)}
                </strong>
                {h.action === "restore" && h.restored ? (
                  <span className="muted small"> (undoes {named(history.find((c) => c.change === h.restored), h.restored)})</span>
                ) : null}
                {h.action === "teach" ? <span className="muted small"> (taught images)</span> : null}
                {h.action === "rollback" ? <span className="muted small"> (rollback to version {h.to ?? "?"})</span> : null}
                <span className="muted small">
                  {" "}
                  · <span data-field="version">{named(h, h.change)}</span> · <span data-field="at">{when(h.at)}</span> · by{" "}
                  <span data-field="by">{h.by ?? "–"}</span>
                </span>
              </p>
              {typeof h.undone_by === "number" ? (
                // Kept on the record, no longer in the model: a later rollback went back to before it.
                <p className="muted small" data-field="undone">
                  Undone by {undoneBy(history, h.undone_by)}: not in the current model.
                </p>
              ) : null}
              <p className="change-why" data-field="why">
                {h.why ?? ""}
              </p>
              {/* a teach or a rollback is undone by a rollback (the versions below), not by a threshold restore */}
              {typeof h.before?.tau === "number" &&
              h.before.tau !== tau &&
              h.action !== "teach" &&
              h.action !== "rollback" &&
              h.undone_by === undefined &&
              allows(me, "engineer") ? (
                restoring === h.change ? (
                  // Escape answers "no", as Cancel does (not while the restore is being sent), as on every form here.
                  <form
                    className="restore-form"
                    aria-label={`Restore ${formatScore(h.before.tau)}`}
                    onSubmit={(event) => {
                      event.preventDefault();
                      if (busy) return;
                      void send({ restore: h.change }, restoreWhy, h.change, (c) => `Restored: the threshold of ${c.name} is ${formatScore(c.tau)} again.`);
                    }}
                    onKeyDown={(event) => cancelOnEscape(event, busy, () => cancelRestore(h.change))}
                  >
                    <div className="field grow">
                      <label htmlFor={`${id}-restore-why`}>Why restore {formatScore(h.before.tau)}? (kept in the model's history)</label>
                      <input
                        id={`${id}-restore-why`}
                        autoFocus
                        value={restoreWhy}
                        aria-describedby={`${id}-restore-why-count`}
                        aria-invalid={restoreWhyNow.over || undefined}
                        onChange={(e) => setRestoreWhy(e.target.value)}
                      />
                      <CharCount id={`${id}-restore-why-count`} status={restoreWhyNow} testId="restore-why-count" />
                    </div>
                    <div className="actions">
                      {/* aria-disabled while saving: a focused button that turns disabled drops the keyboard focus */}
                      <button type="submit" className="button primary small-button" aria-disabled={busy}>
                        Restore {formatScore(h.before.tau)}
                      </button>
                      <button
                        type="button"
                        className="button secondary small-button"
                        onClick={() => cancelRestore(h.change)}
                      >
                        Cancel
                      </button>
                    </div>
                    {messages(h.change)}
                  </form>
                ) : (
                  <button
                    type="button"
                    className="button secondary small-button"
                    aria-disabled={busy}
                    aria-label={`Restore ${formatScore(h.before.tau)} (the threshold before ${named(h, h.change)})`}
                    data-restore={h.change}
                    onClick={() => {
                      if (busy) return;
                      setRestoring(h.change);
                      setRestoreWhy("");
                      setError(null);
                      setSaved(null);
                    }}
                  >
                    Restore {formatScore(h.before.tau)}…
                  </button>
                )
              ) : null}
            </li>
          ))}
        </ol>
      )}
    </section>
  );
}

function FlipList({
  flips,
  onOpen,
}: {
  flips: ReturnType<typeof previewThreshold<LabelledScore>>["flips"];
  onOpen: (item: LabelledScore) => void;
}) {
  if (flips.length === 0) return <p className="muted small" data-testid="flips-none">No image with known truth changes verdict at this threshold.</p>;
  return (
    <div>
      <h4>
        Images that would change verdict ({flips.length})
      </h4>
      <ul className="flips" data-testid="flips">
        {flips.map(({ item, now, effect }) => {
          const text = `${item.name}: score ${formatScore(item.score)}, actually ${item.label === "anomalous" ? "defective" : "normal"}, would be ${now}`;
          const thumb = item.pictures ? (item.pictures["box"] ?? item.pictures["heatmap"] ?? item.pictures["input"]) : undefined;
          return (
            <li key={item.id} className={`flip flip-${effect}`}>
              {thumb ? (
                <button type="button" className="flip-open" onClick={() => onOpen(item)} aria-label={`Open ${item.name} full size`}>
                  <Picture link={thumb} alt="" className="thumb" />
                </button>
              ) : null}
              <span className="flip-text">
                {text}
                <span className={`flip-effect ${effect}`}>{effect === "fixed" ? " — now right" : " — now wrong"}</span>
                {item.source === "evaluation" ? <span className="muted small"> · evaluation {item.run}</span> : null}
                {item.also && item.also.length > 0 ? (
                  <span className="muted small">
                    {" "}
                    · {sameFileLine(item.also)}
                  </span>
                ) : null}
              </span>
            </li>
          );
        })}
      </ul>
    </div>
  );
}

/** The rollback that undid a change, in words: "the rollback to version 5 (version 9)". */
function undoneBy(history: readonly Change[], number: number): string {
  const rollback = history.find((c) => c.change === number);
  if (!rollback) return `change #${number}`;
  const made = typeof rollback.version === "number" ? ` (version ${rollback.version})` : "";
  return `the rollback to version ${rollback.to ?? "?"}${made}`;
}
