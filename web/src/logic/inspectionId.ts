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
 * The id in what was typed or pasted: trimmed (a pasted line brings spaces and a newline) and, where it is an id
 * written in capitals, lowercased. A problem instead where nothing can be asked for: an empty field, or a slash,
 * which would ask for another path of the API than one inspection.
 */
export function typedInspectionId(text: string): { id: string } | { problem: string } {
  const typed = text.trim();
  if (typed === "") return { problem: `Type or paste an inspection id. ${ID_HINT}` };
  if (typed.includes("/")) return { problem: `“${typed}” is not an inspection id: it has a slash. ${ID_HINT}` };
  return { id: /^[0-9a-fA-F]{32}$/.test(typed) ? typed.toLowerCase() : typed };
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
