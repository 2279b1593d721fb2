/** The Audit page's words and query: who changed what, filtered by person and category, a page at a time. */

export interface AuditFilter {
  actor: string;
  category: string;
  offset: number;
}

/** Rows a page shows. */
export const AUDIT_PAGE = 50;

/** The client's query for a filter: empty filters left out, the person's name trimmed. */
export function auditQuery(filter: AuditFilter): { limit: number; offset: number; actor?: string; category?: string } {
  const actor = filter.actor.trim();
  return {
    limit: AUDIT_PAGE,
    offset: filter.offset,
    ...(actor ? { actor } : {}),
    ...(filter.category ? { category: filter.category } : {}),
  };
}

/** "Rows 1–50 of 123, newest first", or what no row means under these filters. */
export function auditCountLine(total: number, offset: number, shown: number, filter: AuditFilter): string {
  if (total === 0) {
    const who = filter.actor.trim() ? ` by ${filter.actor.trim()}` : "";
    const where = filter.category ? ` to ${filter.category}` : "";
    return `No changes${who}${where} in the audit log.`;
  }
  return `Rows ${offset + 1}–${offset + shown} of ${total}, newest first.`;
}

/** What the row changed, in words: the route's detail where it gave one, else the method and route. */
export function auditWhat(row: { method: string; route: string; detail?: string | null }): string {
  return row.detail?.trim() ? row.detail : `${row.method} ${row.route}`;
}
