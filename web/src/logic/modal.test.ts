import { describe, expect, it, vi } from "vitest";
import { holdModal, type ModalDialog } from "./modal";

/** A dialog as the browser runs one: close() closes it at once, its close event comes later (deliver()). */
class FakeDialog implements ModalDialog {
  open = false;
  shows = 0;
  private listeners = new Set<() => void>();
  private pending = 0;
  showModal() {
    if (this.open) throw new Error("InvalidStateError: the dialog is already open");
    this.open = true;
    this.shows++;
  }
  close() {
    if (!this.open) return;
    this.open = false;
    this.pending++;
  }
  deliver() {
    for (; this.pending > 0; this.pending--) for (const listener of [...this.listeners]) listener();
  }
  addEventListener(_type: "close", listener: () => void) {
    this.listeners.add(listener);
  }
  removeEventListener(_type: "close", listener: () => void) {
    this.listeners.delete(listener);
  }
}

describe("holdModal", () => {
  it("shows the dialog and reports its close", () => {
    const dialog = new FakeDialog();
    const onClose = vi.fn();
    holdModal(dialog, onClose);
    expect([dialog.open, dialog.shows]).toEqual([true, 1]);
    dialog.close();
    expect(onClose).not.toHaveBeenCalled(); // the close event is a task of its own
    dialog.deliver();
    expect(onClose).toHaveBeenCalledTimes(1);
  });

  it("does not reopen a dialog held again between its close and its close event (the viewer drawn anew)", () => {
    const dialog = new FakeDialog();
    const first = vi.fn();
    const release = holdModal(dialog, first);
    dialog.close(); // Escape
    // The viewer drawn again before the close event ran (the slider moved with the keyboard), with its parent's new handler.
    release();
    const second = vi.fn();
    holdModal(dialog, second);
    expect([dialog.open, dialog.shows]).toEqual([false, 1]);
    dialog.deliver();
    expect(first).not.toHaveBeenCalled();
    expect(second).toHaveBeenCalledTimes(1);
  });

  it("holds an open dialog again without showing it twice", () => {
    const dialog = new FakeDialog();
    holdModal(dialog, vi.fn())();
    expect(() => holdModal(dialog, vi.fn())).not.toThrow(); // React's development re-run of an effect
    expect([dialog.open, dialog.shows]).toEqual([true, 1]);
  });

  it("reports nothing once released", () => {
    const dialog = new FakeDialog();
    const onClose = vi.fn();
    holdModal(dialog, onClose)();
    dialog.close();
    dialog.deliver();
    expect(onClose).not.toHaveBeenCalled();
  });
});
