import { type KeyboardEvent } from "react";
import { useApi } from "../api";
import { allows } from "../logic/access";
import { describeError, isUnauthorised } from "../logic/errors";
import { ErrorBanner } from "./ErrorBanner";
import { useConfirmStep } from "./useConfirmStep";

/** What the page says once a category is retired: where its folder went, what the history keeps, how to undo. */
export function retiredLine(name: string, retiredTo: string, kept: number): string {
  const inspections = `${kept} inspection${kept === 1 ? "" : "s"}`;
  return `Retired ${name}: its model (every version) was moved to ${retiredTo} in the models folder; the history keeps its ${inspections}. To undo, move that folder back to ${name} on the service's machine.`;
}

/**
 * "Retire category" for an admin (nothing for other roles: it is theirs to ask for, not to see refused), with a
 * confirm step: the question and its Cancel, the focus on Cancel (the safe answer), Escape answering no. A
 * refusal (409 category_in_use: a station, a fit, a teach) is said under it, naming what uses the category.
 */
export function RetireCategory({ name, onRetired }: { name: string; onRetired: (line: string) => void }) {
  const { client, me, requireKey } = useApi();
  const { asking, setAsking, busy, setBusy, error, setError, cancelRef, askRef, questionId } = useConfirmStep();

  if (me !== null && !allows(me, "admin")) return null;

  const retire = async () => {
    if (busy) return;
    setBusy(true);
    setError(null);
    try {
      const retired = await client.retireCategory(name);
      onRetired(retiredLine(name, retired.retired_to, retired.inspections_kept));
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
    setAsking(false);
  };

  return (
    <section className="retire" aria-labelledby={`${questionId}-title`}>
      <h3 id={`${questionId}-title`}>Retire</h3>
      {asking ? (
        <div className="station-actions confirm" role="group" aria-labelledby={questionId} onKeyDown={cancelOnEscape}>
          <span id={questionId} className="small">
            Retire {name}? Inspections of it stop at once; its model and every version move to the models folder's
            .retired folder (an admin can move it back); its inspections stay in the history.
          </span>
          <button type="button" className="button danger small-button" aria-disabled={busy} onClick={() => void retire()}>
            {busy ? "Retiring…" : `Yes, retire ${name}`}
          </button>
          <button type="button" ref={cancelRef} className="button secondary small-button" aria-disabled={busy}
            onClick={() => !busy && setAsking(false)}>
            Cancel
          </button>
        </div>
      ) : (
        <button type="button" ref={askRef} className="button secondary small-button" onClick={() => (setAsking(true), setError(null))}>
          Retire category
        </button>
      )}
      {error ? <ErrorBanner error={error} compact /> : null}
    </section>
  );
}
