/**
 * A modal <dialog> held by a viewer while it is mounted (the full-size picture viewer): shown once, its
 * close reported to the viewer.
 *
 * A dialog's `close` event is a task of its own, queued when the dialog closes (Escape, its Close
 * button). Until it runs, the viewer is still mounted with a dialog that is closed but whose close it has
 * not been told of; whoever holds the dialog again in that gap (the viewer drawn anew, e.g. by the
 * threshold slider moved with the keyboard right after Escape) must not show it again. Showing it there
 * reopened it: it took the keyboard focus and made the page behind it inert until the late event removed
 * it, so what was typed next into the page went nowhere.
 */

/** What a viewer uses of its dialog (an HTMLDialogElement has it; the unit tests pass a plain object). */
export interface ModalDialog {
  readonly open: boolean;
  showModal(): void;
  addEventListener(type: "close", listener: () => void): void;
  removeEventListener(type: "close", listener: () => void): void;
}

/** The dialogs already shown: each is shown once in its life (a viewer mounted again draws a new one). */
const shown = new WeakSet<ModalDialog>();

/**
 * Show `dialog` as a modal unless it was shown before (open, or closed with its close event still to
 * come), and call `onClose` on its close event. Returns the release of that listener.
 */
export function holdModal(dialog: ModalDialog, onClose: () => void): () => void {
  if (!dialog.open && !shown.has(dialog)) dialog.showModal();
  shown.add(dialog);
  const closed = () => onClose();
  dialog.addEventListener("close", closed);
  return () => dialog.removeEventListener("close", closed);
}
