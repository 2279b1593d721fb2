import { useId, useRef, useState, type FormEvent } from "react";
import { useApi } from "../api";
import { describeError, isUnauthorised, type UserError } from "../logic/errors";
import { answerNotices, noteStatus, WHY_MAX } from "../logic/review";
import { byCategory, namesLine, taughtLine, teachLabel, teachNotes, type TeachCandidate } from "../logic/teach";
import { CharCount } from "./CharCount";
import { ErrorBanner } from "./ErrorBanner";
import { RoleGate } from "./RoleGate";
import { useFocusAfterRender } from "./useFocusAfterRender";

/**
 * "Teach these N": the parts labelled actually normal here are folded into their category's model, so the
 * same normal variation stops raising the same false alarm (POST /v1/categories/{name}/teach). One form per
 * category; the service refuses an image that looks defective, is unrecognised (not like the training images)
 * or is labelled defective, and a teach after which a labelled defect would pass, with the reason (shown under
 * the form), unless the engineer teaches anyway; what was forced, and an image taught although it scored above
 * s_max, follow the line the teach leaves.
 */
export function TeachPanel({
  candidates,
  onTaught,
  title = "Teach the model what you said was normal",
}: {
  candidates: TeachCandidate[];
  onTaught: (ids: string[]) => void;
  /** The panel's heading: what the parts are (labelled here, or by the shift). */
  title?: string;
}) {
  const groups = byCategory(candidates);
  // What the last teach did: kept here, as its form goes once its parts are taught.
  const [done, setDone] = useState("");
  const doneRef = useRef<HTMLParagraphElement>(null);
  const focusAfterRender = useFocusAfterRender();
  return (
    <>
      <p role="status" className="small teach-done" data-testid="teach-done" ref={doneRef} tabIndex={-1}>
        {done}
      </p>
      {groups.length > 0 ? (
        <div className="panel teach-panel" data-testid="teach-panel">
          <h2>{title}</h2>
          <p className="muted small">
            Taught images join the category's normal images in seconds, without a refit; a threshold its rule computes is recomputed, one set by
            hand (rule fixed) stays as it was, and the change is kept in the model's history.
          </p>
          <RoleGate needed="engineer" what="Teaching the model">
            {groups.map(([category, items]) => (
              <TeachForm
                key={category}
                category={category}
                items={items}
                onStart={() => setDone("")}
                onTaught={(ids, line) => {
                  setDone(line);
                  onTaught(ids);
                  // The form, and the button pressed, are gone: the keyboard goes to what the teach did.
                  focusAfterRender(() => doneRef.current);
                }}
              />
            ))}
          </RoleGate>
        </div>
      ) : null}
    </>
  );
}

function TeachForm({
  category,
  items,
  onStart,
  onTaught,
}: {
  category: string;
  items: TeachCandidate[];
  onStart: () => void;
  onTaught: (ids: string[], line: string) => void;
}) {
  const { client, me, requireKey } = useApi();
  const id = useId();
  const [why, setWhy] = useState("");
  const [by, setBy] = useState("");
  const [force, setForce] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<UserError | null>(null);

  // Counted as the service counts (code points, an emoji is one): a longer why stays whole and is refused.
  const whyNow = noteStatus(why, WHY_MAX, "shorten it to teach");

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    if (busy) return;
    if (!why.trim()) {
      setError({ kind: "invalid_request", title: "Say why", message: "Say why these parts are normal: it is kept in the model's history.", retryable: false });
      return;
    }
    if (whyNow.over) {
      // Not cut to fit: the engineer decides what goes; the words stay in the field.
      setError({ kind: "invalid_request", title: "Why too long: not taught", message: `The why has ${whyNow.line}.`, retryable: false });
      return;
    }
    setBusy(true);
    setError(null);
    onStart();
    try {
      const answer = await client.teach(category, {
        inspections: items.map((item) => item.id),
        why: why.trim(),
        by: by.trim() || null,
        force,
      });
      const change = answer.change as {
        before: { tau: number };
        after: { tau: number };
        bank_before: number;
        bank_after: number;
        images: unknown[];
        skipped: string[] | null;
        forced?: string[] | null;
        warnings?: string[] | null;
      };
      const taught = taughtLine(category, change.images.length, { before: change.before.tau, after: change.after.tau },
        { before: change.bank_before, after: change.bank_after }, change.skipped?.length ?? 0);
      const notes = teachNotes(change.forced, change.warnings, answerNotices(answer));
      const line = notes ? `${taught} ${notes}` : taught;
      onTaught(items.map((item) => item.id), line); // this form goes: its parts are taught
    } catch (reason) {
      if (isUnauthorised(reason)) requireKey(reason);
      setError(describeError(reason));
    } finally {
      setBusy(false);
    }
  };

  return (
    <form className="teach-form" onSubmit={(event) => void submit(event)} aria-labelledby={`${id}-title`}>
      <h3 id={`${id}-title`}>
        {category}: {items.length === 1 ? "1 part" : `${items.length} parts`} ({namesLine(items.map((item) => item.imageName))})
      </h3>
      <div className="field grow">
        <label htmlFor={`${id}-why`}>Why are they normal? (kept in the model's history)</label>
        <textarea
          id={`${id}-why`}
          rows={2}
          value={why}
          aria-describedby={`${id}-why-count`}
          aria-invalid={whyNow.over || undefined}
          onChange={(e) => setWhy(e.target.value)}
        />
        <CharCount id={`${id}-why-count`} status={whyNow} testId="teach-why-count" />
      </div>
      {me === null || me.open ? (
        <div className="field">
          <label htmlFor={`${id}-by`}>Your name (optional)</label>
          <input id={`${id}-by`} maxLength={100} value={by} onChange={(e) => setBy(e.target.value)} autoComplete="name" />
        </div>
      ) : null}
      <div className="field checkbox">
        <input id={`${id}-force`} type="checkbox" checked={force} onChange={(e) => setForce(e.target.checked)} />
        <label htmlFor={`${id}-force`}>Teach even what the checks refuse (kept on the record)</label>
      </div>
      <div className="actions">
        {/* aria-disabled, not disabled: a focused button that turns disabled drops the keyboard focus. */}
        <button type="submit" className="button primary" aria-disabled={busy}>
          {busy ? "Teaching…" : teachLabel(items.length, category)}
        </button>
      </div>
      {error ? <ErrorBanner error={error} compact /> : null}
    </form>
  );
}
