/**
 * Opening one inspection by its id (History's "Open by id", `#/history/<id>`): what a quality engineer has in hand
 * is an id from a sink message, an audit row or a log line, not a page of the list.
 */
import type { UserError } from "./errors";
import { formatRoute } from "./route";

/**
 * How the service names an inspection (service/store.py `_INSPECTION_ID`: 32 lowercase hex digits). Used only
 * to say what an id looks like when the service found none; the service decides what exists.
 */
export const INSPECTION_ID = /^[0-9a-f]{32}$/;

/** What the field says an id looks like, and where one is found. */
export const ID_HINT = "An inspection id is 32 hexadecimal digits, as a sink message, an audit row or eagle history gives it.";

/**
 * The characters any inspection id is made of: the service's own are 32 hex digits, and a history may hold others
 * (tests and tools store records under ids like "band"), but none with anything else. Why the field checks it:
 * outside it, an id asks for another path of the API than one inspection (a slash; `.` and `..`, which the browser
 * normalises, `/v1/inspections/..` being the list, whose answer would be shown as a record).
 */
export const ID_CHARACTERS = /^[A-Za-z0-9_-]+$/;

/**
 * The id in what was typed or pasted: trimmed (a pasted line brings spaces and a newline) and, where it is an id
 * written in capitals, lowercased. A problem instead where nothing can be asked for: an empty field, or a
 * character no id has (outside {@link ID_CHARACTERS}), named.
 */
export function typedInspectionId(text: string): { id: string } | { problem: string } {
  const typed = text.trim();
  if (typed === "") return { problem: `Type or paste an inspection id. ${ID_HINT}` };
  if (!ID_CHARACTERS.test(typed)) {
    const bad = [...typed].find((character) => !ID_CHARACTERS.test(character)) ?? "";
    const what = bad === "/" ? "a slash" : /\s/.test(bad) ? "a space inside it" : `“${bad}”, which no id has`;
    return { problem: `“${typed}” is not an inspection id: it has ${what}. ${ID_HINT}` };
  }
  return { id: /^[0-9a-fA-F]{32}$/.test(typed) ? typed.toLowerCase() : typed };
}

/**
 * Why the id a route names (`#/history/<id>`, typed into the address bar or followed from a link) is not asked for,
 * as a banner; `null`: it may be asked for. The same check as the field's ({@link typedInspectionId}), since
 * `#/history/..` would fetch the list as `/v1/inspections/..` as well.
 */
export function routeIdProblem(id: string): UserError | null {
  if (ID_CHARACTERS.test(id)) return null;
  const read = typedInspectionId(id);
  const message = "problem" in read ? read.problem : `“${id}” is not an inspection id. ${ID_HINT}`;
  return { kind: "invalid_request", title: `Inspection “${id}” could not be opened`, message, retryable: false };
}

/** The hash that opens an inspection in History, keeping the list's filters (`#/history/<id>?category=…`). */
export function inspectionRoute(id: string, params?: URLSearchParams): string {
  return formatRoute("history", id, params);
}

/**
 * The banner for an id the service would not open: its own reason ("no inspection 'abc'"), titled with the id,
 * and, for an id not shaped as the service's are, what one looks like (a mistyped or truncated id is the usual
 * cause). Other errors (the service unreachable, a key without access) keep their own title and retry.
 */
export function openFailed(id: string, error: UserError): UserError {
  if (error.kind !== "not_found" && error.kind !== "invalid_request") return error;
  const hint = INSPECTION_ID.test(id) ? "" : ` ${ID_HINT}`;
  const said = /[.!?]$/.test(error.message) ? error.message : `${error.message}.`;
  return { ...error, title: `Inspection “${id}” could not be opened`, message: `${said}${hint}` };
}

/**
 * The inspection an audit row is about, where it still exists to be opened: a label given or cleared
 * (`PUT /v1/inspections/<id>/label`). A deletion's row names one that is gone, and no link is offered.
 */
export function auditInspection(row: { method: string; path: string }): string | null {
  const found = /^\/v1\/inspections\/([^/?#]+)\/label$/.exec(row.path);
  if (row.method !== "PUT" || !found) return null;
  try {
    return decodeURIComponent(found[1]!);
  } catch {
    return null;
  }
}
