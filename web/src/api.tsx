/** The client, the service's health and the "key required" switch, shared by every page. */

import { EagleClient, type Health, type Me } from "@eagle-iad/client";
import type React from "react";
import { createContext, useCallback, useContext, useEffect, useLayoutEffect, useRef, useState, type DependencyList } from "react";
import { describeError, isUnauthorised, type UserError } from "./logic/errors";
import type { ServedFigures } from "./logic/served";

export const KEY_STORAGE = "eagle-iad.apiKey";

export interface RetryNotice {
  attempt: number;
  waitMs: number;
  status: number | null;
}

export interface Api {
  client: EagleClient;
  health: Health | null;
  /** The service's figures the pages judge by (from /healthz), kept through a failed health check. */
  figures: ServedFigures;
  /** Who the key is and its role (null until the service said, or if it cannot: every control shows). */
  me: Me | null;
  /**
   * Called by any request answered 401: the app shows the API key form, with the service's reason (`reason`:
   * the refusal; a revoked key is told when) and, where a decision was refused with it, what was not saved.
   */
  requireKey: (reason?: unknown, unsaved?: string) => void;
  refreshHealth: () => void;
}

export const ApiContext = createContext<Api | null>(null);

export function useApi(): Api {
  const api = useContext(ApiContext);
  if (!api) throw new Error("useApi outside <ApiContext>");
  return api;
}

export function readStoredKey(): string {
  try {
    return sessionStorage.getItem(KEY_STORAGE) ?? "";
  } catch {
    return ""; // storage disabled: the key lives only in memory
  }
}

export function storeKey(key: string): void {
  try {
    if (key) sessionStorage.setItem(KEY_STORAGE, key);
    else sessionStorage.removeItem(KEY_STORAGE);
  } catch {
    /* storage disabled */
  }
}

export interface AsyncState<T> {
  data: T | undefined;
  error: UserError | null;
  loading: boolean;
  reload: () => void;
}

/**
 * Run `load` when `deps` change (aborting the previous run); a 401 switches the app to the key form,
 * other errors are returned described for the user.
 */
export function useAsync<T>(load: (signal: AbortSignal) => Promise<T>, deps: DependencyList): AsyncState<T> {
  const { requireKey } = useApi();
  const [data, setData] = useState<T | undefined>(undefined);
  const [error, setError] = useState<UserError | null>(null);
  const [loading, setLoading] = useState(true);
  const [nonce, setNonce] = useState(0);
  const loadRef = useRef(load);
  loadRef.current = load;

  useEffect(() => {
    const controller = new AbortController();
    setLoading(true);
    setError(null);
    loadRef.current(controller.signal).then(
      (value) => {
        if (controller.signal.aborted) return;
        setData(value);
        setLoading(false);
      },
      (reason: unknown) => {
        if (controller.signal.aborted) return;
        if (isUnauthorised(reason)) requireKey(reason);
        setError(describeError(reason));
        setLoading(false);
      },
    );
    return () => controller.abort();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [...deps, nonce, requireKey]);

  const reload = useCallback(() => setNonce((n) => n + 1), []);
  return { data, error, loading, reload };
}

/** A service picture (needs the key, so no plain <img src>) as an object URL, revoked when it changes. */
export function usePictureUrl(link: string | null): { url: string | null; error: UserError | null } {
  const { client, requireKey } = useApi();
  const [state, setState] = useState<{ url: string | null; error: UserError | null }>({ url: null, error: null });
  useEffect(() => {
    if (!link) {
      setState({ url: null, error: null });
      return;
    }
    const controller = new AbortController();
    let url: string | null = null;
    setState({ url: null, error: null });
    client.picture(link, controller.signal).then(
      (blob) => {
        if (controller.signal.aborted) return;
        url = URL.createObjectURL(blob);
        setState({ url, error: null });
      },
      (reason: unknown) => {
        if (controller.signal.aborted) return;
        if (isUnauthorised(reason)) requireKey(reason);
        setState({ url: null, error: describeError(reason) });
      },
    );
    return () => {
      controller.abort();
      if (url) URL.revokeObjectURL(url);
    };
  }, [client, link, requireKey]);
  return state;
}

const categoryCache = new WeakMap<EagleClient, { at: number; list: Promise<import("@eagle-iad/client").Category[]> }>();

/**
 * The fitted categories, shared by every inspection card (one request per 30 s, not one per card):
 * each card draws its score on its category's fixed scale.
 */
export function useCategoryList(): import("@eagle-iad/client").Category[] | null {
  const { client } = useApi();
  const [list, setList] = useState<import("@eagle-iad/client").Category[] | null>(null);
  useEffect(() => {
    let live = true;
    let cached = categoryCache.get(client);
    if (!cached || Date.now() - cached.at > 30_000) {
      cached = { at: Date.now(), list: client.categories() };
      categoryCache.set(client, cached);
      cached.list.catch(() => categoryCache.delete(client));
    }
    cached.list.then(
      (value) => live && setList(value),
      () => undefined, // the scale falls back to the record's own thresholds
    );
    return () => {
      live = false;
    };
  }, [client]);
  return list;
}

/**
 * The width of an element in CSS pixels, kept current (SVG drawn at 1:1 so its text never shrinks).
 * Measured in a layout effect: the re-render at the real width happens before the browser paints, so
 * a phone never shows (and a check never catches) a frame drawn at the fallback width and shrunk.
 */
export function useWidth<T extends HTMLElement>(fallback: number): [React.RefObject<T | null>, number] {
  const ref = useRef<T | null>(null);
  const [width, setWidth] = useState(fallback);
  useLayoutEffect(() => {
    const el = ref.current;
    if (!el) return;
    const update = () => {
      const w = Math.round(el.getBoundingClientRect().width);
      if (w > 0) setWidth(w);
    };
    update();
    if (typeof ResizeObserver === "undefined") return;
    const observer = new ResizeObserver(update);
    observer.observe(el);
    return () => observer.disconnect();
  }, []);
  return [ref, width];
}
