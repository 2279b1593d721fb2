import { useEffect, useRef } from "react";

/**
 * Bring the reader to what a followed link points at, once it is drawn: scroll it into view and focus it (so
 * keyboard and screen-reader users land there too), unless the keyboard is busy elsewhere. Then (the reader
 * moved to a field or button while the list was loading, and may be typing in it) neither: the target is only
 * marked where it is (its own styling, shown when the reader scrolls there), so the focused field is never
 * scrolled off the screen under the reader's hands.
 *
 * `key` names the target (null: nothing was linked, an ordinary visit: nothing is scrolled or focused). It is
 * landed on once per key, when `element()` first returns it (the list it is in may load later), not again
 * when the list is fetched anew (after a rollback) while the address stays the same. Focus is taken only
 * from the page itself or the link just followed: never from a field or button the reader moved to meanwhile.
 */
export function useLandOn(key: string | null, element: () => HTMLElement | null | undefined): void {
  const landed = useRef<string | null>(null);
  useEffect(() => {
    if (key === null) {
      landed.current = null; // a later link to the same target lands again
      return;
    }
    if (landed.current === key) return;
    const target = element();
    if (!target) return; // not drawn yet: the next render tries again
    landed.current = key;
    if (!keyboardIsFree()) return; // marked by its own styling where it is: the focused field stays where it is
    target.scrollIntoView({ block: "center" });
    target.focus({ preventScroll: true });
  });
}

function keyboardIsFree(): boolean {
  const active = document.activeElement;
  if (!active || active === document.body || active === document.documentElement || active.id === "main") return true;
  // The link that was just followed (an in-page link to this address): following it moves the keyboard on.
  return active instanceof HTMLAnchorElement && active.hash !== "" && active.hash === window.location.hash;
}
