import { type KeyboardEvent, type ReactNode } from "react";
import { useApi } from "../api";
import { describeError, isUnauthorised } from "../logic/errors";
import { ErrorBanner } from "./ErrorBanner";
import { useConfirmStep } from "./useConfirmStep";

export interface ConfirmActionProps {
  /** The section's heading ("Delete", "Retire"). */
  title: string;
  /** The button that asks ("Delete inspection"). */
  ask: string;
  /** The question, saying what goes and whether it can be undone. */
  question: ReactNode;
  /** Fields asked with the question (a reason for the audit log); `busy` while the request runs. */
  fields?: (busy: boolean) => ReactNode;
  /** The confirming button, and what it says while the request runs. */
  yes: string;
  doing: string;
  /** The request: resolves once done (the page then shows its line); a refusal is said under the section. */
  act: () => Promise<void>;
}

/**
 * An admin's destructive action with a confirm step (retire a category, delete an inspection): the question, the
 * focus on Cancel (the safe answer), Escape answering no (and going no further: the inspection's own Escape does
 * not also close it), one request at a time, a refusal said under it with the key form asked for on a 401.
 *
 * Why one component: both actions must keep the same promises, and two copies of the markup drifted apart once
 * (one let Escape through to the page). Role checks stay with the caller, which knows what the action needs.
 */
export function ConfirmAction({ title, ask, question, fields, yes, doing, act }: ConfirmActionProps) {
  const { requireKey } = useApi();
  const { asking, setAsking, busy, setBusy, error, setError, cancelRef, askRef, questionId } = useConfirmStep();

  const confirm = async () => {
    if (busy) return;
    setBusy(true);
    setError(null);
    try {
      await act();
    } catch (reason) {
      if (isUnauthorised(reason)) requireKey(reason);
      setError(describeError(reason));
      setBusy(false);
      setAsking(false);
    }
  };
  const cancelOnEscape = (event: KeyboardEvent) => {
    if (event.key !== "Escape" || busy) return;
    event.preventDefault();
    event.stopPropagation();
    setAsking(false);
  };

  return (
    <section className="retire" aria-labelledby={`${questionId}-title`}>
      <h3 id={`${questionId}-title`}>{title}</h3>
      {asking ? (
        <div className="station-actions confirm" role="group" aria-labelledby={questionId} onKeyDown={cancelOnEscape}>
          <span id={questionId} className="small">
            {question}
          </span>
          {fields?.(busy)}
          <button type="button" className="button danger small-button" aria-disabled={busy} onClick={() => void confirm()}>
            {busy ? doing : yes}
          </button>
          <button type="button" ref={cancelRef} className="button secondary small-button" aria-disabled={busy}
            onClick={() => !busy && setAsking(false)}>
            Cancel
          </button>
        </div>
      ) : (
        <button type="button" ref={askRef} className="button secondary small-button" onClick={() => (setAsking(true), setError(null))}>
          {ask}
        </button>
      )}
      {error ? <ErrorBanner error={error} compact /> : null}
    </section>
  );
}
