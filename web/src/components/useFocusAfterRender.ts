import { useCallback, useEffect, useRef, useState } from "react";

/** Where the keyboard should go once React has drawn the change that made it necessary. */
type Target = () => HTMLElement | null | undefined;

/**
 * Focus an element after the next commit, not after the next frame.
 *
 * Why: when a form goes away (Cancel, a teach or rollback done) the button pressed goes with it and
 * the keyboard falls to the page. Focusing in a `requestAnimationFrame` guesses that React has
 * committed by then; after an `await` React may schedule the render as a task that runs after the
 * frame, so the element sought is not there yet (or is the old one). The state change here is batched
 * with the caller's own, so the effect runs after the commit that draws the target.
 */
export function useFocusAfterRender(): (target: Target) => void {
  const pending = useRef<Target | null>(null);
  const [request, setRequest] = useState(0);
  useEffect(() => {
    const target = pending.current;
    if (target === null) return;
    pending.current = null;
    target()?.focus();
  }, [request]);
  return useCallback((target: Target) => {
    pending.current = target;
    setRequest((n) => n + 1);
  }, []);
}
