import { useMemo, useSyncExternalStore } from "react";
import { parseRoute, type Route } from "../logic/route";

function subscribe(onChange: () => void): () => void {
  window.addEventListener("hashchange", onChange);
  return () => window.removeEventListener("hashchange", onChange);
}

const readHash = () => window.location.hash;

/**
 * The page the address names. Read through `useSyncExternalStore`, which looks at the address again once it
 * listens: a tab clicked after the first page was drawn but before the listener was added (a busy machine: the
 * listener is added after the paint) changed the address with no event heard, and the console stayed on the
 * old page under the new address (CI: a click on "Categories" left Inspect on the screen).
 */
export function useHashRoute(): Route {
  const hash = useSyncExternalStore(subscribe, readHash);
  return useMemo(() => parseRoute(hash), [hash]);
}
