import type { ReviewItem } from "@eagle-iad/client";
import { useCallback, useEffect, useId, useRef, useState } from "react";
import { useApi, useAsync } from "../api";
import { AnswerNotices } from "../components/AnswerNotices";
import { ErrorBanner, Loading } from "../components/ErrorBanner";
import { InspectionView } from "../components/InspectionView";
import { LabelNote } from "../components/LabelNote";
import { RoleGate } from "../components/RoleGate";
import { SelectField } from "../components/SelectField";
import { ShiftTeach } from "../components/ShiftTeach";
import { TeachPanel } from "../components/TeachPanel";
import { allows, refusalLine } from "../logic/access";
import { describeLabelError, isLabelChanged, isUnauthorised, labelWords, unsavedLine, whenSaid, type UserError } from "../logic/errors";
import {
  REVIEW_KEYS,
  actionForKey,
  isNotOlder,
  labelNotice,
  labelNoteText,
  leftLine,
  lookLimit,
  nextPosition,
  noteStatus,
  answerNotices,
  reconcile,
  withFetchedRecord,
  withRecord,
  withoutCandidate,
  withoutDecision,
  type ReviewAction,
} from "../logic/review";
import type { TeachCandidate } from "../logic/teach";

/** Items fetched at a time; the next ones are fetched when these are worked through. */
const BATCH = 50;
/**
 * How often the page looks at the queue while it is shown (ms): two people reviewing at once see each other's
 * labels within this (the count left, parts labelled meanwhile dropping out). The live inspections feed says
 * only when an inspection is stored, never when one is labelled, so the page asks the queue itself.
 */
export const LOOK_MS = 4000;

/**
 * The review queue, one inspection at a time: why it waits, its verdict, heatmap, boxes, nearest normal
 * reference and score on the category's scale, and four decisions by button or by key (N normal, D
 * defective, S skip, B back). A decision is a label with the reviewer's name, the time and a note.
 */
/** Whether the screen is phone-wide, kept current (the instructions fold away there). */
function usePhoneWidth(): boolean {
  const query = "(max-width: 640px)";
  const [phone, setPhone] = useState(() => window.matchMedia(query).matches);
  useEffect(() => {
    const list = window.matchMedia(query);
    const update = () => setPhone(list.matches);
    list.addEventListener("change", update);
    return () => list.removeEventListener("change", update);
  }, []);
  return phone;
}

export function ReviewPage() {
  const { client, me, requireKey } = useApi();
  const id = useId();
  const phone = usePhoneWidth();
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
  // The label revision each decision of this visit stored, by inspection id: "You labelled this one…" is said
  // only while the stored label is still at that revision (someone may relabel it after, or clear it).
  const [labelled, setLabelled] = useState<Record<string, number>>({});
  // How many wait in the queue now (skipped ones too): the fetched total, kept current by looking at the queue.
  const [total, setTotal] = useState<number | null>(null);
  // Moved on by each decision here: a look at the queue begun before it answers with a count from before it.
  const epoch = useRef(0);
  const [lookNow, setLookNow] = useState(0);
  const [note, setNote] = useState("");
  // What the last decision's answer said besides (its notices): shown until the next decision.
  const [answerSaid, setAnswerSaid] = useState<string[]>([]);
  const [by, setBy] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<UserError | null>(null);
  const [said, setSaid] = useState("");
  // Parts labelled actually normal on this visit, across fetches: what "Teach these N" offers to teach.
  const [toTeach, setToTeach] = useState<TeachCandidate[]>([]);
  // Decisions stored on this visit: the shift's "labelled normal, not yet taught" list is read again after each.
  const [decided, setDecided] = useState(0);

  const current = items[position] ?? null;
  // Skipped ones are still left; a part labelled here or by someone else is not.
  const left = total ?? queue.data?.total ?? 0;
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
    if (queue.data) setTotal(queue.data.total);
    epoch.current += 1; // a look begun before this fetch counts the queue as it was before it
  }, [queue.data]);

  // What the looks at the queue read: the page as it is when the answer comes, not when the look began.
  const view = useRef({ items, position, skipped, labelled });
  view.current = { items, position, skipped, labelled };
  // The part shown, fetched as stored now: after Back and at each look while it has a label (someone may have
  // relabelled it since), and when a look finds someone else labelled it meanwhile (before a decision is tried).
  const refreshPart = useCallback(
    async (partId: string, announce: boolean) => {
      try {
        const fresh = await client.inspection(partId);
        const before = view.current.items.find((item) => item.record.id === partId)?.record;
        // Not there any more, or held newer: a decision here stored a later revision while this fetch was under
        // way (its answer is older), and the page keeps the decision's record.
        if (!before || !isNotOlder(fresh, before)) return;
        setItems((all) => withFetchedRecord(all, fresh));
        const changed = (fresh.label_revision ?? 0) !== (before.label_revision ?? 0);
        if (announce && changed && fresh.label) {
          const by = fresh.label_by ? ` by ${fresh.label_by}` : "";
          const when = fresh.label_time ? ` ${whenSaid(fresh.label_time, new Date(), undefined, true)}` : "";
          setSaid(`${fresh.image_name} was labelled ${labelWords(fresh.label)}${by}${when}, while you were looking.`);
        }
      } catch {
        /* the part stays as it was shown; the next look tries again */
      }
    },
    [client],
  );
  // Looks at the queue's front every LOOK_MS (and at once when asked): the count left follows other people's
  // labels, parts they labelled drop out of the batch, and the one shown is fetched as stored now.
  useEffect(() => {
    if (!queue.data) return;
    const controller = new AbortController();
    let running = false;
    const look = async () => {
      if (running || (typeof document !== "undefined" && document.hidden)) return;
      running = true;
      const at = epoch.current;
      const { items: held, skipped: skippedNow } = view.current;
      try {
        const fresh = await client.review({
          limit: lookLimit(skippedNow.length, held.length),
          offset: 0,
          ...(category ? { category } : {}),
          signal: controller.signal,
        });
        if (controller.signal.aborted || epoch.current !== at) return; // a decision since: the next look counts it
        setTotal(fresh.total);
        const queued = new Set(fresh.items.map((item) => item.record.id));
        const now = view.current;
        // Only a look that saw the whole queue says which parts left it; one that saw its front says only the count.
        const whole = fresh.total <= fresh.items.length;
        const seen = reconcile(now.items, now.position, queued, now.labelled, now.skipped, whole);
        if (seen.dropped.length > 0) setItems((all) => all.filter((item) => !seen.dropped.includes(item.record.id)));
        if (seen.skipped.length !== now.skipped.length) {
          skippedRef.current = seen.skipped;
          setSkipped(seen.skipped);
        }
        const shown = now.items[now.position];
        if (shown && (seen.currentGone || shown.record.id in now.labelled)) await refreshPart(shown.record.id, seen.currentGone);
      } catch (reason) {
        // The key revoked (or replaced) meanwhile: say so now, before a decision is tried and refused.
        if (!controller.signal.aborted && isUnauthorised(reason)) requireKey(reason);
        /* else offline for a moment: the count stays as it was, the next look tries again */
      } finally {
        running = false;
      }
    };
    void look();
    const timer = setInterval(() => void look(), LOOK_MS);
    return () => {
      controller.abort();
      clearInterval(timer);
    };
  }, [client, category, queue.data, lookNow, refreshPart, requireKey]);
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
        if (action === "back" && position === 0) {
          setSaid(items.length > 0 ? "Already at the first part." : "Nothing to go back to.");
          return;
        }
        if (current && action === "skip" && !(current.record.id in labelled) && !current.record.label) {
          // A labelled item is not skipped: it has left the queue (skipped ones are counted for the next fetch).
          const id = current.record.id;
          setSkipped((ids) => (ids.includes(id) ? ids : [...ids, id]));
        }
        const to = nextPosition(position, items.length, action);
        setPosition(to);
        const next = nextName(to);
        setSaid(`${action === "back" || !current ? "Back" : `Skipped ${current.record.image_name} (it stays in the queue)`}${next ? `; now ${next}` : ""}.`);
        setNote("");
        const target = items[to];
        // Back to a part labelled here: shown as stored now (someone may have relabelled it since).
        if (action === "back" && target && (target.record.id in labelled || target.record.label)) void refreshPart(target.record.id, false);
        return;
      }
      if (!current || !canLabel) return;
      const tooLong = noteStatus(note);
      if (tooLong.over) {
        // Not cut to fit: the person decides what goes. Nothing was saved, and the note stays as written.
        setError({
          kind: "invalid_request",
          title: "Note too long: not saved",
          message: `Your “${labelWords(action)}” for ${current.record.image_name} was not saved: the note has ${tooLong.line.split(":")[0]}. Shorten it, then decide again.`,
          retryable: false,
        });
        return;
      }
      busyRef.current = true;
      setBusy(true);
      setAnswerSaid([]);
      const id = current.record.id;
      try {
        // Based on the revision shown: a label someone else gave since is not replaced unseen (409 label_changed).
        const stored = await client.label(id, action, {
          note: note.trim() || null,
          by: by.trim() || null,
          expectedRevision: current.record.label_revision ?? 0,
        });
        setItems((all) => withRecord(all, stored)); // a relabel here (after Back) is based on this one
        // Saved, and yet something to know (their label stands, or a defect the model was taught as normal).
        setAnswerSaid(answerNotices(stored, current.record.image_name));
        setLabelled((all) => ({ ...all, [id]: stored.label_revision ?? 0 }));
        setDecided((n) => n + 1);
        epoch.current += 1;
        if (!current.record.label) setTotal((n) => (n === null ? n : Math.max(0, n - 1))); // it left the queue
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
        // The key form replaces the page: it says the service's reason and that this decision was not saved.
        if (isUnauthorised(reason)) requireKey(reason, unsavedLine(current.record.image_name, action));
        setError(describeLabelError(reason, action));
        if (isLabelChanged(reason)) {
          // Someone else labelled it meanwhile: show it as stored now (their label, the revision a new decision
          // is based on). The message already says who and when; a failed reload leaves the item as it was.
          // A decision this visit gave it before (then Back) no longer stands: theirs does, so the page shows
          // their label, not "You labelled this one…", and "Teach these N" no longer offers it.
          setLabelled((all) => withoutDecision(all, id));
          setToTeach((all) => withoutCandidate(all, id));
          try {
            const fresh = await client.inspection(id);
            setItems((all) => withFetchedRecord(all, fresh));
            // Their label took it out of the queue (the look below says so too, unless the service is away).
            if (fresh.label && !current.record.label) setTotal((n) => (n === null ? n : Math.max(0, n - 1)));
          } catch {
            /* the refusal's message stands; the next fetch of the queue has the part as stored */
          }
          epoch.current += 1;
          setLookNow((n) => n + 1); // the count left, as the queue stands after their label
          setDecided((n) => n + 1); // and the shift's list to teach, without this visit's label if theirs replaced it
        }
      } finally {
        busyRef.current = false;
        setBusy(false);
      }
    },
    // eslint-disable-next-line react-hooks/exhaustive-deps
    [current, canLabel, client, note, by, items, position, labelled, requireKey, refreshPart],
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
      if (!action) return;
      if (!canLabel && (action === "normal" || action === "anomalous")) {
        // Said in the live count line, so a viewer pressing N or D hears why nothing happened (the note in place
        // of the decision bar is not announced).
        if (me) setSaid(`${refusalLine(me, "operator", "Labelling")} Nothing was saved.`);
        event.preventDefault();
        return;
      }
      event.preventDefault();
      void act(action);
    };
    document.addEventListener("keydown", onKey);
    return () => document.removeEventListener("keydown", onKey);
  }, [act, canLabel, me]);

  const finishedBatch = queue.data !== undefined && position >= items.length;
  const doneRef = useRef<HTMLDivElement>(null);
  // At the end of a batch the decision buttons are gone: the keyboard goes to what comes next.
  useEffect(() => {
    if (finishedBatch && items.length > 0) doneRef.current?.focus();
  }, [finishedBatch, items.length]);
  // Look at the queue as soon as a batch is done: whether more wait, and which skipped ones still do.
  useEffect(() => {
    if (finishedBatch) setLookNow((n) => n + 1);
  }, [finishedBatch]);
  // At the end of a batch the ones still waiting are the skipped ones and those past this batch.
  const more = queue.data !== undefined && left > skipped.length;
  const notice = current ? labelNotice(current.record, labelled[current.record.id]) : null;
  // On a phone a refusal in the decision bar makes it taller: the picture is scrolled up to the screen's top, so
  // the part is looked at again, with the keys at the foot, without scrolling by hand (the bar is sticky).
  const itemRef = useRef<HTMLDivElement>(null);
  useEffect(() => {
    if (!phone || !error) return;
    const picture = itemRef.current?.querySelector(".inspection-pictures");
    const bar = itemRef.current?.querySelector(".review-decide");
    if (!picture || !bar) return;
    const shown = picture.getBoundingClientRect();
    const barTop = bar.getBoundingClientRect().top;
    const visible = Math.min(shown.bottom, barTop) - Math.max(shown.top, 0);
    if (visible < Math.min(shown.height, barTop) / 2 || shown.top < 0) window.scrollBy(0, shown.top - 4);
  }, [phone, error]);
  // Counted as the service counts (code points); a longer note (typed or pasted) stays whole and is refused.
  const noteNow = noteStatus(note);

  return (
    <section aria-labelledby="review-title">
      <div className="page-head">
        <h1 id="review-title">Review</h1>
        {/* On a phone the instructions fold away (open on a wider screen): the part and the decision come first. */}
        <details className="lede review-help" open={!phone}>
          <summary>How to review</summary>
          Verdicts the expert or the MLLM was unsure of, oldest first: look, then say what the part actually was. Keys: N normal, D defective, S skip, B back (in the note, Enter or Esc returns to them).
          Each decision is stored as a label with your name.
        </details>
      </div>
      <form className="panel filters review-filters" aria-label="Which queue" onSubmit={(e) => e.preventDefault()}>
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
      <AnswerNotices testId="review-answer-notices" notices={answerSaid} />
      {current ? (
        <div className="review-item" ref={itemRef}>
          <section className="panel review-why" aria-label="Why it waits">
            <h2 className="small-heading">Why it waits</h2>
            <ul data-testid="review-reasons">
              {current.reasons.map((reason) => (
                <li key={reason.code}>{reason.words}</li>
              ))}
            </ul>
            {current.judged_by_older ? (
              // The queue keeps parts for days: a threshold change, teach or rollback since may decide this one otherwise.
              <p className="notice small" data-testid="review-older-model">
                {current.judged_by_older.charAt(0).toUpperCase() + current.judged_by_older.slice(1)}.
              </p>
            ) : null}
            {notice ? (
              // From the label stored now: given here, or by someone else since the queue was fetched (a look at the
              // queue or a refused decision fetched it), or cleared since.
              <p className="notice small" data-testid={current.record.id in labelled && current.record.label_revision === labelled[current.record.id] ? "review-labelled-here" : "review-labelled-elsewhere"}>
                {notice}
              </p>
            ) : null}
            {notice && labelNoteText(current.record) !== null ? (
              <p className="small" data-testid="review-label-note">
                <LabelNote record={current.record} />
              </p>
            ) : null}
          </section>
          <RoleGate needed="operator" what="Labelling">
            <div className="panel review-decide">
              <div className="field grow">
                <label htmlFor={`${id}-note`}>Note (optional: what you saw, why)</label>
                <input
                  id={`${id}-note`}
                  value={note}
                  placeholder={phone ? "Note (optional)" : undefined}
                  aria-describedby={`${id}-note-hint`}
                  aria-invalid={noteNow.over || undefined}
                  onChange={(e) => setNote(e.target.value)}
                  onKeyDown={(event) => {
                    // The keys N and D type into the note: Enter or Escape leaves it for the decisions, the note
                    // kept for the decision that follows (it is saved with it).
                    if ((event.key === "Enter" || event.key === "Escape") && !event.nativeEvent.isComposing) {
                      event.preventDefault();
                      decideRef.current?.querySelector<HTMLButtonElement>("button")?.focus();
                      setSaid(note.trim() ? "Note kept: it is saved with your decision (N or D)." : "Back to the decisions (N, D, S, B).");
                    }
                  }}
                />
                <p className={`muted small note-hint${noteNow.over ? " note-over" : ""}`} id={`${id}-note-hint`}>
                  <span className="note-help">Saved with your decision. Enter or Esc: back to the decision keys. </span>
                  <span data-testid="note-count" className={noteNow.over ? "note-too-long" : noteNow.full ? "note-full" : undefined}>
                    {noteNow.line}
                  </span>
                </p>
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
      {category ? (
        // One category: what the whole shift labelled normal and the model was not taught (this visit's too).
        <ShiftTeach category={category} refresh={decided} />
      ) : me === null || allows(me, "engineer") ? (
        // Teaching is the engineer's: an operator is not told so after every "actually normal" (the shift list,
        // with a category chosen, says once that an engineer teaches them).
        <TeachPanel candidates={toTeach} onTaught={(ids) => setToTeach((all) => all.filter((candidate) => !ids.includes(candidate.id)))} />
      ) : null}
    </section>
  );
}

