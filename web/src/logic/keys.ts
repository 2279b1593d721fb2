/**
 * Escape answers "no" on the console's inline forms and confirmations (a rollback's reason, a threshold
 * restore's, a station's delete), as their Cancel does: the same key closes every dialog and form of the console.
 */

/** What the handler uses of a keyboard event (React's and the DOM's have it; the unit tests pass a plain object). */
export interface KeyLike {
  readonly key: string;
  preventDefault(): void;
}

/**
 * Call `cancel` on Escape, unless `busy` (the change is being sent: the form stays until it is answered, as
 * Cancel's click then does nothing either). Returns whether the key was taken, its default prevented (a
 * modal dialog around the form, or the browser's own stop, does not see it too).
 */
export function cancelOnEscape(event: KeyLike, busy: boolean, cancel: () => void): boolean {
  if (event.key !== "Escape" || busy) return false;
  event.preventDefault();
  cancel();
  return true;
}
