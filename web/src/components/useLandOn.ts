import { useEffect, useRef } from "react";

/**
 * Bring the reader to what a followed link points at, once it is drawn: scroll it into view and, when the
 * keyboard is not busy elsewhere, focus it (so keyboard and screen-reader users land there too).
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
    target.scrollIntoView({ block: "center" });
    if (keyboardIsFree()) target.focus({ preventScroll: true });
  });
}

function keyboardIsFree(): boolean {
  const active = document.activeElement;
  if (!active || active === document.body || active === document.documentElement || active.id === "main") return true;
  // The link that was just followed (an in-page link to this address): following it moves the keyboard on.
  return active instanceof HTMLAnchorElement && active.hash !== "" && active.hash === window.location.hash;
}
