import { useId, useRef, useState, type FormEvent } from "react";
import { useApi, useAsync } from "../api";
import { ErrorBanner, Loading } from "../components/ErrorBanner";
import { RoleGate } from "../components/RoleGate";
import { SelectField } from "../components/SelectField";
import { allows } from "../logic/access";
import { AUDIT_PAGE, auditCountLine, auditQuery, auditWhat, type AuditFilter } from "../logic/audit";
import { describeError, isUnauthorised, whenSaid, type UserError } from "../logic/errors";
import { auditInspection, inspectionRoute } from "../logic/inspectionId";

/**
 * The audit log: every change made through the API (and by `eagle` commands on the service's machine), newest
 * first: who (key name and role), when, what (the route's detail: "label normal", "tau 97.5: why", "taught 2
 * image(s): why"), filtered by person and by category. An engineer (a shift's supervisor) reads it; keys stay the
 * admin's. Inspections are the history, not the log; refused requests are not changes and are not in it.
 */
export function AuditPage() {
  const { me } = useApi();
  if (me !== null && !allows(me, "engineer")) {
    return (
      <section aria-labelledby="audit-title">
        <div className="page-head">
          <h1 id="audit-title">Audit</h1>
        </div>
        <RoleGate needed="engineer" what="Reading the audit log">
          {null}
        </RoleGate>
      </section>
    );
  }
  return <AuditLog />;
}

function AuditLog() {
  const { client, requireKey } = useApi();
  const id = useId();
  const [filter, setFilter] = useState<AuditFilter>({ actor: "", category: "", offset: 0 });
  const [typed, setTyped] = useState("");
  const categories = useAsync((signal) => client.categories(signal), [client]);
  const rows = useAsync((signal) => client.audit(auditQuery(filter), signal), [client, filter.actor, filter.category, filter.offset]);
  const [csvError, setCsvError] = useState<UserError | null>(null);
  const countRef = useRef<HTMLParagraphElement>(null);
  const page = rows.data;
  const move = (offset: number) => {
    setFilter((now) => ({ ...now, offset }));
    countRef.current?.focus(); // the keyboard stays with the list, not on a button that may go
  };
  const apply = (event: FormEvent) => {
    event.preventDefault();
    setFilter((now) => ({ ...now, actor: typed.trim(), offset: 0 }));
  };
  const download = async () => {
    setCsvError(null);
    try {
      const { actor, category } = auditQuery(filter);
      const text = await client.auditCsv({ ...(actor ? { actor } : {}), ...(category ? { category } : {}) });
      const url = URL.createObjectURL(new Blob([text], { type: "text/csv" }));
      const link = document.createElement("a");
      link.href = url;
      link.download = `eagle-audit${actor ? `-${actor}` : ""}${category ? `-${category}` : ""}.csv`;
      link.click();
      setTimeout(() => URL.revokeObjectURL(url), 1000);
    } catch (reason) {
      if (isUnauthorised(reason)) requireKey(reason);
      setCsvError(describeError(reason));
    }
  };
  return (
    <section aria-labelledby="audit-title">
      <div className="page-head">
        <h1 id="audit-title">Audit</h1>
        <p className="lede">
          Who changed what, newest first: labels, thresholds, teaches, rollbacks, fits, stations and keys, each with the person's key name
          and role. Inspections are in History; refused requests changed nothing and are not listed.
        </p>
      </div>
      <form className="panel filters audit-filters" aria-label="Which changes" onSubmit={apply}>
        <div className="field">
          <label htmlFor={`${id}-actor`}>Person (key name)</label>
          <input id={`${id}-actor`} value={typed} maxLength={64} onChange={(e) => setTyped(e.target.value)} autoComplete="off" />
        </div>
        <SelectField
          id={`${id}-cat`}
          label="Category"
          value={filter.category}
          empty="All categories"
          options={(categories.data ?? []).map((c) => c.name)}
          onChange={(category) => setFilter((now) => ({ ...now, category, offset: 0 }))}
        />
        <div className="actions">
          <button type="submit" className="button primary">
            Show
          </button>
          <button type="button" className="button secondary" onClick={() => void download()}>
            Download these as CSV
          </button>
        </div>
      </form>
      {filter.category ? (
        <p className="muted small">
          A category's rows are the changes to it (threshold, teach, rollback, fit, retirement) and to its inspections (labels, deletions).
        </p>
      ) : null}
      {csvError ? <ErrorBanner error={csvError} compact /> : null}
      {rows.error ? <ErrorBanner error={rows.error} onRetry={rows.reload} /> : null}
      {rows.loading && !page ? <Loading label="Reading the audit log…" /> : null}
      {page ? (
        <>
          <p className="audit-count" role="status" ref={countRef} tabIndex={-1} data-testid="audit-count">
            {auditCountLine(page.total, filter.offset, page.items.length, filter)}
          </p>
          <ol className="audit-rows" data-testid="audit-rows">
            {page.items.map((row) => (
              <li key={row.seq} className="audit-row">
                <p className="audit-who">
                  <time dateTime={row.time}>{whenSaid(row.time)}</time> · <strong>{row.actor}</strong> <span className="muted">({row.role})</span>
                </p>
                <p className="audit-what">
                  <bdi>{auditWhat(row)}</bdi>
                </p>
                <p className="muted small audit-route">
                  <code>
                    {row.method} {row.path}
                  </code>{" "}
                  · {row.status}
                </p>
                {auditInspection(row) !== null ? (
                  <p className="small audit-open">
                    <a href={inspectionRoute(auditInspection(row) as string)} data-testid="audit-open-inspection">
                      Open inspection {auditInspection(row)}
                    </a>
                  </p>
                ) : null}
              </li>
            ))}
          </ol>
          <div className="actions audit-paging">
            {filter.offset > 0 ? (
              <button type="button" className="button secondary" onClick={() => move(Math.max(0, filter.offset - AUDIT_PAGE))}>
                Newer
              </button>
            ) : null}
            {page.next_offset !== null ? (
              <button type="button" className="button secondary" onClick={() => move(page.next_offset ?? filter.offset)}>
                Older
              </button>
            ) : null}
          </div>
        </>
      ) : null}
    </section>
  );
}
