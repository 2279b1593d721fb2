import type { ReviewItem } from "@eagle-iad/client";
import { useCallback, useEffect, useId, useRef, useState } from "react";
import { useApi, useAsync } from "../api";
import { ErrorBanner, Loading } from "../components/ErrorBanner";
import { InspectionView } from "../components/InspectionView";
import { RoleGate } from "../components/RoleGate";
import { SelectField } from "../components/SelectField";
import { TeachPanel } from "../components/TeachPanel";
import { allows } from "../logic/access";
import { describeError, isLabelChanged, isUnauthorised, type UserError } from "../logic/errors";
import {
  REVIEW_KEYS,
  actionForKey,
  leftLine,
  labelledSinceFetched,
  leftToReview,
  nextPosition,
  storedLabelLine,
  withRecord,
  withoutCandidate,
  withoutDecision,
  type ReviewAction,
} from "../logic/review";
import type { TeachCandidate } from "../logic/teach";

/** Items fetched at a time; the next ones are fetched when these are worked through. */
const BATCH = 50;

/**
 * The review queue, one inspection at a time: why it waits, its verdict, heatmap, boxes, nearest normal
 * reference and score on the category's scale, and four decisions by button or by key (N normal, D
 * defective, S skip, B back). A decision is a label with the reviewer's name, the time and a note.
 */
export function ReviewPage() {
  const { client, me, requireKey } = useApi();
  const id = useId();
  const [category, setCategory] = useState("");
  const [round, setRound] = useState(0); // a new round fetches the queue again
  const categories = useAsync((signal) => client.categories(signal), [client]);
  // Skipped items stay in the queue, at its front (it is oldest first): the next fetch starts after them.
  const [skipped, setSkipped] = useState<string[]>([]);
  const skippedRef = useRef<string[]>([]);
  skippedRef.current = skipped;
  const queue = useAsync(
    (signal) => client.review({ limit: BATCH, offset: skippedRef.current.length, ...(category ? { category } : {}), signal }),
    [client, category, round],
  );
  const [items, setItems] = useState<ReviewItem[]>([]);
  const [position, setPosition] = useState(0);
  const [labelled, setLabelled] = useState<Record<string, "normal" | "anomalous">>({});
  const [note, setNote] = useState("");
  const [by, setBy] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<UserError | null>(null);
  const [said, setSaid] = useState("");
  // Parts labelled actually normal on this visit, across fetches: what "Teach these N" offers to teach.
  const [toTeach, setToTeach] = useState<TeachCandidate[]>([]);

  const current = items[position] ?? null;
  // Skipped ones are still left; a relabel here counts once, and so does a part someone else labelled meanwhile.
  const left = leftToReview(queue.data?.total ?? 0, labelledSinceFetched(items));
  const canLabel = allows(me, "operator");

  const decideRef = useRef<HTMLDivElement>(null);
  const statusRef = useRef<HTMLParagraphElement>(null);
  // Set when the next ones are asked for from the end of a batch, whose panel (and button) then goes.
  const fetchedNext = useRef(false);
  useEffect(() => {
    const fetched = queue.data?.items ?? [];
    setItems(fetched.filter((item) => !skippedRef.current.includes(item.record.id)));
    setPosition(0);
    setLabelled({});
  }, [queue.data]);
  // Once the fetched ones are drawn, the keyboard goes to the first decision on the new part (the count left
  // where one cannot label). An effect on the drawn items: before they are, there is no button to focus.
  useEffect(() => {
    if (!fetchedNext.current) return; // items change only when a fetch arrives (the effect above)
    fetchedNext.current = false;
    (decideRef.current?.querySelector("button") ?? statusRef.current)?.focus();
  }, [items]);

  // Who comes next, for the announcement (a screen reader hears which part it is now looking at).
  const nextName = (to: number) => items[to]?.record.image_name ?? null;
  const busyRef = useRef(false); // a second key press while a label is being saved is ignored

  const act = useCallback(
    async (action: ReviewAction) => {
      if (busyRef.current) return;
      setError(null);
      if (action === "back" || action === "skip") {
        if (action === "skip" && !current) return; // past the end: nothing to skip (back still works)
        if (current && action === "skip" && !(current.record.id in labelled)) {
          // A labelled item is not skipped: it has left the queue (skipped ones are counted for the next fetch).
          const id = current.record.id;
          setSkipped((ids) => (ids.includes(id) ? ids : [...ids, id]));
        }
        const to = nextPosition(position, items.length, action);
        setPosition(to);
        const next = nextName(to);
        setSaid(`${action === "back" || !current ? "Back" : `Skipped ${current.record.image_name} (it stays in the queue)`}${next ? `; now ${next}` : ""}.`);
        setNote("");
        return;
      }
      if (!current || !canLabel) return;
      busyRef.current = true;
      setBusy(true);
      const id = current.record.id;
      try {
        // Based on the revision shown: a label someone else gave since is not replaced unseen (409 label_changed).
        const stored = await client.label(id, action, {
          note: note.trim() || null,
          by: by.trim() || null,
          expectedRevision: current.record.label_revision ?? 0,
        });
        setItems((all) => withRecord(all, stored)); // a relabel here (after Back) is based on this one
        setLabelled((all) => ({ ...all, [id]: action }));
        const { category: partOf, image_name: imageName } = current.record;
        setToTeach((all) => [
          ...withoutCandidate(all, id),
          ...(action === "normal" ? [{ id, category: partOf, imageName }] : []),
        ]);
        setSkipped((ids) => ids.filter((other) => other !== id)); // skipped, then labelled after all: not skipped
        const to = nextPosition(position, items.length, action);
        const next = nextName(to);
        setSaid(`${current.record.image_name}: labelled actually ${action === "normal" ? "normal" : "defective"}${next ? `; now ${next}` : ""}.`);
        setNote("");
        setPosition(to);
      } catch (reason) {
        if (isUnauthorised(reason)) requireKey();
        setError(describeError(reason));
        if (isLabelChanged(reason)) {
          // Someone else labelled it meanwhile: show it as stored now (their label, the revision a new decision
          // is based on). The message already says who and when; a failed reload leaves the item as it was.
          // A decision this visit gave it before (then Back) no longer stands: theirs does, so the page shows
          // their label, not "You labelled this one…", and "Teach these N" no longer offers it.
          setLabelled((all) => withoutDecision(all, id));
          setToTeach((all) => withoutCandidate(all, id));
          try {
            const fresh = await client.inspection(id);
            setItems((all) => withRecord(all, fresh));
          } catch {
            /* the refusal's message stands; the next fetch of the queue has the part as stored */
          }
        }
      } finally {
        busyRef.current = false;
        setBusy(false);
      }
    },
    // eslint-disable-next-line react-hooks/exhaustive-deps
    [current, canLabel, client, note, by, items, position, labelled, requireKey],
  );

  // The keys work anywhere on the page except while typing (the note, the name) or in the zoom dialog.
  useEffect(() => {
    const onKey = (event: KeyboardEvent) => {
      // A held key would label part after part unseen; a modifier means another shortcut.
      if (event.repeat || event.altKey || event.ctrlKey || event.metaKey) return;
      if (document.querySelector("dialog[open]")) return; // the zoom viewer has the keys
      const target = event.target;
      if (target instanceof HTMLElement && (target.closest("input, textarea, select, dialog") || target.isContentEditable)) return;
      const action = actionForKey(event.key);
      if (!action || (!canLabel && (action === "normal" || action === "anomalous"))) return;
      event.preventDefault();
      void act(action);
    };
    document.addEventListener("keydown", onKey);
    return () => document.removeEventListener("keydown", onKey);
  }, [act, canLabel]);

  const finishedBatch = queue.data !== undefined && position >= items.length;
  const doneRef = useRef<HTMLDivElement>(null);
  // At the end of a batch the decision buttons are gone: the keyboard goes to what comes next.
  useEffect(() => {
    if (finishedBatch && items.length > 0) doneRef.current?.focus();
  }, [finishedBatch, items.length]);
  const more = queue.data !== undefined && queue.data.total > skipped.length + Object.keys(labelled).length;

  return (
    <section aria-labelledby="review-title">
      <div className="page-head">
        <h1 id="review-title">Review</h1>
        <p className="lede">
          Verdicts the expert or the MLLM was unsure of, oldest first: look, then say what the part actually was. Keys: N normal, D defective, S skip, B back.
          Each decision is stored as a label with your name.
        </p>
      </div>
      <form className="panel filters" aria-label="Which queue" onSubmit={(e) => e.preventDefault()}>
        <SelectField
          id={`${id}-cat`}
          label="Category"
          value={category}
          empty="All categories"
          options={(categories.data ?? []).filter((c) => !c.error).map((c) => c.name)}
          onChange={(value) => {
            skippedRef.current = [];
            setSkipped([]);
            setCategory(value);
          }}
        />
        {me === null || me.open ? (
          <div className="field">
            <label htmlFor={`${id}-by`}>Your name (optional)</label>
            <input id={`${id}-by`} maxLength={100} value={by} onChange={(e) => setBy(e.target.value)} autoComplete="name" />
          </div>
        ) : null /* with a key, the label records the key's name */}
      </form>
      {queue.error ? <ErrorBanner error={queue.error} onRetry={queue.reload} /> : null}
      {queue.loading && !queue.data ? <Loading label="Loading the review queue…" /> : null}
      {queue.data ? (
        <p className="review-left" role="status" data-testid="review-left" ref={statusRef} tabIndex={-1}>
          {leftLine(left)}
          {said ? <span className="muted"> · {said}</span> : null}
        </p>
      ) : null}
      {current ? (
        <div className="review-item">
          <section className="panel review-why" aria-label="Why it waits">
            <h2 className="small-heading">Why it waits</h2>
            <ul data-testid="review-reasons">
              {current.reasons.map((reason) => (
                <li key={reason.code}>{reason.words}</li>
              ))}
            </ul>
            {current.record.id in labelled ? (
              <p className="notice small">You labelled this one actually {labelled[current.record.id] === "normal" ? "normal" : "defective"}; a decision now replaces it.</p>
            ) : current.record.label ? (
              // labelled elsewhere since the queue was fetched (a refused decision reloaded it)
              <p className="notice small" data-testid="review-labelled-elsewhere">
                {storedLabelLine(current.record)} A decision now replaces it.
              </p>
            ) : null}
          </section>
          <RoleGate needed="operator" what="Labelling">
            <div className="panel review-decide">
              <div className="field grow">
                <label htmlFor={`${id}-note`}>Note (optional: what you saw, why)</label>
                <input id={`${id}-note`} maxLength={500} value={note} onChange={(e) => setNote(e.target.value)} />
              </div>
              <div className="review-buttons" role="group" aria-label="Decision" ref={decideRef}>
                {REVIEW_KEYS.map(({ key, action, label }) => {
                  // aria-disabled, not disabled: the button just pressed keeps the keyboard focus while the
                  // label is saved (and Back at the first part), so Enter again decides the next part.
                  const off = busy || (action === "back" && position === 0);
                  return (
                    <button
                      key={key}
                      type="button"
                      className={`button ${action === "normal" || action === "anomalous" ? "primary" : "secondary"}`}
                      aria-keyshortcuts={key}
                      aria-disabled={off}
                      onClick={() => {
                        if (!off) void act(action);
                      }}
                    >
                      {label} <kbd aria-hidden="true">{key}</kbd>
                    </button>
                  );
                })}
              </div>
              {error ? <ErrorBanner error={error} compact /> : null}
            </div>
          </RoleGate>
          <InspectionView key={current.record.id} record={current.record} headingLevel={2} />
        </div>
      ) : null}
      {finishedBatch ? (
        <div className="panel review-done" data-testid="review-done" ref={doneRef} tabIndex={-1}>
          {more || skipped.length > 0 ? (
            <>
              <p>{more ? "These are done; more are waiting." : `Done, but for the ${skipped.length} you skipped.`}</p>
              <button
                type="button"
                className="button primary"
                onClick={() => {
                  if (!more) {
                    skippedRef.current = [];
                    setSkipped([]);
                  }
                  fetchedNext.current = true;
                  setRound((r) => r + 1);
                }}
              >
                {more ? "Fetch the next ones" : "Review the skipped ones"}
              </button>
            </>
          ) : (
            <p>Nothing waits for a person{category ? ` in ${category}` : ""}: every unsure verdict has a label.</p>
          )}
          {items.length > 0 ? (
            <button type="button" className="button secondary" aria-keyshortcuts="B" onClick={() => void act("back")}>
              Back to the last one <kbd aria-hidden="true">B</kbd>
            </button>
          ) : null}
        </div>
      ) : null}
      <TeachPanel candidates={toTeach} onTaught={(ids) => setToTeach((all) => all.filter((candidate) => !ids.includes(candidate.id)))} />
    </section>
  );
}

