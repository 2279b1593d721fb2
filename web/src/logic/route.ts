/**
 * Hash routing: `#/inspect`, `#/review`, `#/categories[/<name>[?version=<n>]]`, `#/history[/<inspection id>][?…]`,
 * `#/evaluations[/<run>]`, `#/stations`, `#/audit`. `#/inspections/<id>` (the API's path) is read as
 * `#/history/<id>`: one inspection opened in History.
 */

export const PAGES = ["inspect", "review", "categories", "history", "evaluations", "stations", "audit"] as const;
export type Page = (typeof PAGES)[number];

export interface Route {
  page: Page;
  /** The path segment after the page (a category or run name), decoded; null when absent. */
  item: string | null;
  params: URLSearchParams;
}

/** Other words for a page: `inspections` (as the API's `/v1/inspections/<id>` names one) is History. */
const ALIASES: Readonly<Record<string, Page>> = { inspections: "history" };

export function isPage(value: string): value is Page {
  return (PAGES as readonly string[]).includes(value);
}

/** Parse `location.hash`; anything unknown falls back to the Inspect page. */
export function parseRoute(hash: string): Route {
  const raw = hash.replace(/^#/, "").replace(/^\/+/, "");
  const q = raw.indexOf("?");
  const path = q >= 0 ? raw.slice(0, q) : raw;
  const params = new URLSearchParams(q >= 0 ? raw.slice(q + 1) : "");
  const [said = "", ...rest] = path.split("/");
  const head = ALIASES[said] ?? said;
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

/**
 * The model version a category link points at: `#/categories/<name>?version=3` opens the category at version 3
 * in its Versions timeline (an inspection's "version 3" links there). `none`: no `version` parameter (an
 * ordinary visit: nothing is scrolled to or focused); `invalid`: one that is not a version number (said on the
 * page, not ignored), its text as given.
 */
export type VersionTarget = { kind: "none" } | { kind: "version"; version: number } | { kind: "invalid"; raw: string };

/** The `version` parameter of a route, read as a {@link VersionTarget}. */
export function versionTarget(params: URLSearchParams): VersionTarget {
  const raw = params.get("version");
  if (raw === null) return { kind: "none" };
  const text = raw.trim();
  if (!/^\d{1,9}$/.test(text)) return { kind: "invalid", raw };
  return { kind: "version", version: Number(text) };
}

/** The hash of a category's page opened at one of its model versions (its entry in the Versions timeline). */
export function categoryVersionRoute(category: string, version: number): string {
  return formatRoute("categories", category, new URLSearchParams({ version: String(version) }));
}
