/** Hash routing: `#/inspect`, `#/review`, `#/categories[/<name>]`, `#/history?…`, `#/evaluations[/<run>]`, `#/stations`. */

export const PAGES = ["inspect", "review", "categories", "history", "evaluations", "stations"] as const;
export type Page = (typeof PAGES)[number];

export interface Route {
  page: Page;
  /** The path segment after the page (a category or run name), decoded; null when absent. */
  item: string | null;
  params: URLSearchParams;
}

export function isPage(value: string): value is Page {
  return (PAGES as readonly string[]).includes(value);
}

/** Parse `location.hash`; anything unknown falls back to the Inspect page. */
export function parseRoute(hash: string): Route {
  const raw = hash.replace(/^#/, "").replace(/^\/+/, "");
  const q = raw.indexOf("?");
  const path = q >= 0 ? raw.slice(0, q) : raw;
  const params = new URLSearchParams(q >= 0 ? raw.slice(q + 1) : "");
  const [head = "", ...rest] = path.split("/");
  if (!isPage(head)) return { page: "inspect", item: null, params: new URLSearchParams() };
  const tail = rest.filter((s) => s !== "").join("/");
  let item: string | null = null;
  if (tail) {
    try {
      item = decodeURIComponent(tail);
    } catch {
      item = tail; // a malformed escape: keep the raw text rather than crash
    }
  }
  return { page: head, item, params };
}

/** The hash for a route (the inverse of {@link parseRoute}). */
export function formatRoute(page: Page, item: string | null = null, params?: URLSearchParams): string {
  const query = params && params.size > 0 ? `?${params.toString()}` : "";
  return `#/${page}${item ? `/${encodeURIComponent(item)}` : ""}${query}`;
}
