import type { noteStatus } from "../logic/review";

/**
 * A free-text field's counter (noteStatus: characters as the service counts them, code points, so an emoji is
 * one), under the field and named by its `aria-describedby` (`id`). The field has no `maxLength`: that counts
 * UTF-16 units, refusing text the service takes, and would cut a paste silently; a text past the limit stays
 * whole, the counter says by how much, and the form refuses to send it.
 */
export function CharCount({ id, status, testId }: { id: string; status: ReturnType<typeof noteStatus>; testId: string }) {
  return (
    <p className={`muted small note-hint${status.over ? " note-over" : ""}`} id={id}>
      <span data-testid={testId} className={status.over ? "note-too-long" : status.full ? "note-full" : undefined}>
        {status.line}
      </span>
    </p>
  );
}
