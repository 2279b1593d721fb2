/** The history page's filters and pagination <-> URL parameters (so a filtered view can be linked). */

import type { Decision, LabelFilter } from "@eagle-iad/client";

/** The decision filter's values (the service's, src/eagle_iad/review.py DecisionFilter). */
export const DECISIONS: readonly Decision[] = ["anomalous", "normal", "unrecognised", "undecided"];

/** Which decision filter a stored decision falls under (a live event's, to know if the list would show it). */
export function decisionFilterOf(decision: string | null | undefined): Decision {
  return decision === "anomalous" || decision === "normal" || decision === "unrecognised" ? decision : "undecided";
}
/** The label filter's values with their words (the user's correction, not the verdict). */
export const LABEL_FILTERS: ReadonlyArray<readonly [LabelFilter, string]> = [
  ["anomalous", "Actually defective"],
  ["normal", "Actually normal"],
  ["labelled", "Any label"],
  ["unlabelled", "Not labelled"],
];
export const PAGE_SIZES = [10, 25, 50, 100] as const;
export const DEFAULT_LIMIT = 25;

export interface HistoryFilter {
  limit: number;
  offset: number;
  category: string | null;
  decision: Decision | null;
  /** The user's label (what the part actually was); absent means no filter. */
  label?: LabelFilter | null;
}

function isDecision(value: string | null): value is Decision {
  return value !== null && (DECISIONS as readonly string[]).includes(value);
}

function intParam(params: URLSearchParams, key: string, fallback: number, min: number, max: number): number {
  const raw = params.get(key);
  if (raw === null || !/^\d+$/.test(raw)) return fallback;
  const value = Number(raw);
  return Math.min(max, Math.max(min, value));
}

/** Read the filter from URL parameters; invalid values fall back to defaults (the service would refuse them). */
export function filterFromParams(params: URLSearchParams): HistoryFilter {
  const limit = intParam(params, "limit", DEFAULT_LIMIT, 1, 500);
  const offset = intParam(params, "offset", 0, 0, Number.MAX_SAFE_INTEGER);
  const category = params.get("category");
  const decision = params.get("decision");
  const label = params.get("label");
  const known = LABEL_FILTERS.find(([value]) => value === label);
  return {
    ...(known ? { label: known[0] } : {}),
    limit,
    offset: offset - (offset % limit), // always on a page boundary
    category: category && /^[A-Za-z0-9_.-]+$/.test(category) && !category.includes("..") ? category : null,
    decision: isDecision(decision) ? decision : null,
  };
}

/** Only the non-default values, in a fixed order (stable URLs). */
export function filterToParams(filter: HistoryFilter): URLSearchParams {
  const params = new URLSearchParams();
  if (filter.category) params.set("category", filter.category);
  if (filter.decision) params.set("decision", filter.decision);
  if (filter.label) params.set("label", filter.label);
  if (filter.limit !== DEFAULT_LIMIT) params.set("limit", String(filter.limit));
  if (filter.offset > 0) params.set("offset", String(filter.offset));
  return params;
}

/** A changed filter starts again at the first page. */
export function withFilter(filter: HistoryFilter, change: Partial<Pick<HistoryFilter, "category" | "decision" | "label" | "limit">>): HistoryFilter {
  return { ...filter, ...change, offset: 0 };
}

export interface PageInfo {
  page: number;
  pages: number;
  /** 1-based index of the first row shown, 0 when empty. */
  from: number;
  to: number;
  prevOffset: number | null;
  nextOffset: number | null;
}

export function pageInfo(total: number, limit: number, offset: number, shown: number): PageInfo {
  const pages = Math.max(1, Math.ceil(total / limit));
  const page = Math.floor(offset / limit) + 1;
  return {
    page,
    pages,
    from: shown > 0 ? offset + 1 : 0,
    to: offset + shown,
    prevOffset: offset > 0 ? Math.max(0, offset - limit) : null,
    nextOffset: offset + shown < total ? offset + limit : null,
  };
}

/**
 * The category filter's choices: the fitted categories, plus the one in the URL when it is no longer
 * fitted (a bookmarked filter still shows what it filters on, instead of silently reading "All").
 */
export function knownCategories(categories: ReadonlyArray<{ name: string }>, current: string | null): string[] {
  const names = categories.map((c) => c.name);
  return current && !names.includes(current) ? [...names, current] : names;
}

/**
 * What the page says of a category in the URL that is not fitted: null when it is (or the categories are not
 * loaded yet). `unknown`: nothing of that name at all (none fitted, no inspection listed), which is a mistake in
 * the address to say, as the Review page and the API do, not a choice to add to the list; otherwise a category
 * deleted since, whose stored inspections are still listed.
 */
export function missingCategory(
  fitted: ReadonlyArray<{ name: string }> | undefined,
  filter: HistoryFilter,
  total: number | undefined,
): { unknown: boolean; text: string } | null {
  const name = filter.category;
  if (!name || fitted === undefined || total === undefined || fitted.some((c) => c.name === name)) return null;
  if (total > 0) return { unknown: false, text: `“${name}” is not fitted any more; its stored inspections are listed.` };
  const narrowed = filter.decision || filter.label || filter.offset > 0;
  return {
    unknown: true,
    text: `There is no category “${name}”: none is fitted under that name, and ${narrowed ? "none of its inspections match these filters" : "the history holds no inspections of it"}.`,
  };
}
