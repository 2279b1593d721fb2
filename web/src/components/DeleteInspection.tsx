import type { InspectionRecord } from "@eagle-iad/client";
import { useState, type KeyboardEvent } from "react";
import { useApi } from "../api";
import { allows } from "../logic/access";
import { describeError, isUnauthorised } from "../logic/errors";
import { ErrorBanner } from "./ErrorBanner";
import { useConfirmStep } from "./useConfirmStep";

/** What the page says once an inspection is deleted: which one, and what went with it. */
export function deletedLine(imageName: string, files: number, bytes: number): string {
  const size = bytes >= 1024 * 1024 ? `${(bytes / (1024 * 1024)).toFixed(1)} MiB` : `${Math.ceil(bytes / 1024)} KiB`;
  const pictures = files === 0 ? "no files were left" : `${files} file${files === 1 ? "" : "s"} (${size}) removed`;
  return `Deleted the inspection of ${imageName}: its pictures and uploaded image (${pictures}), then its record and label. The audit log keeps who deleted it and why.`;
}

/**
 * "Delete inspection" for an admin (nothing for other roles), with a confirm step as RetireCategory has: the
 * question, an optional reason kept in the audit log, the focus on Cancel (the safe answer), Escape answering no.
 * A refusal is said under it; the page is told the line to show once the inspection is gone.
 */
export function DeleteInspection({ record, onDeleted }: { record: InspectionRecord; onDeleted: (line: string) => void }) {
  const { client, me, requireKey } = useApi();
  const { asking, setAsking, busy, setBusy, error, setError, cancelRef, askRef, questionId } = useConfirmStep();
  const [why, setWhy] = useState("");

  if (me !== null && !allows(me, "admin")) return null;

  const remove = async () => {
    if (busy) return;
    setBusy(true);
    setError(null);
    try {
      const deleted = await client.deleteInspection(record.id, why.trim() || undefined);
      onDeleted(deletedLine(deleted.image_name, deleted.files_removed, deleted.bytes_removed));
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
    event.stopPropagation(); // Escape answers no here; it does not also close the inspection
    setAsking(false);
  };

  return (
    <section className="retire" aria-labelledby={`${questionId}-title`}>
      <h3 id={`${questionId}-title`}>Delete</h3>
      {asking ? (
        <div className="station-actions confirm" role="group" aria-labelledby={questionId} onKeyDown={cancelOnEscape}>
          <span id={questionId} className="small">
            Delete the inspection of {record.image_name}? Its uploaded image and pictures are removed from the service's disk,
            then its record and label; this cannot be undone.
          </span>
          <label className="small">
            Why (kept in the audit log){" "}
            <input type="text" value={why} maxLength={300} onChange={(event) => setWhy(event.target.value)} disabled={busy} />
          </label>
          <button type="button" className="button danger small-button" aria-disabled={busy} onClick={() => void remove()}>
            {busy ? "Deleting…" : "Yes, delete it"}
          </button>
          <button type="button" ref={cancelRef} className="button secondary small-button" aria-disabled={busy}
            onClick={() => !busy && setAsking(false)}>
            Cancel
          </button>
        </div>
      ) : (
        <button type="button" ref={askRef} className="button secondary small-button" onClick={() => (setAsking(true), setError(null))}>
          Delete inspection
        </button>
      )}
      {error ? <ErrorBanner error={error} compact /> : null}
    </section>
  );
}
