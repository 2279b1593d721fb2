import type { InspectionRecord } from "@eagle-iad/client";
import { useId, useState } from "react";
import { useApi, useAsync } from "../api";
import { ErrorBanner, Loading } from "../components/ErrorBanner";
import { DecisionBadge, InspectionView } from "../components/InspectionView";
import { SelectField } from "../components/SelectField";
import { DECISIONS, PAGE_SIZES, filterFromParams, knownCategories, filterToParams, pageInfo, withFilter, type HistoryFilter } from "../logic/query";
import { formatRoute } from "../logic/route";
import { formatScore } from "../logic/scale";

export function HistoryPage({ params }: { params: URLSearchParams }) {
  const { client } = useApi();
  const id = useId();
  const filter = filterFromParams(params);
  const key = filterToParams(filter).toString();
  const categories = useAsync((signal) => client.categories(signal), [client]);
  const page = useAsync(
    (signal) => {
      const query: Parameters<typeof client.history>[0] = { limit: filter.limit, offset: filter.offset, signal };
      if (filter.category) query.category = filter.category;
      if (filter.decision) query.decision = filter.decision;
      return client.history(query);
    },
    [client, key],
  );
  const [selected, setSelected] = useState<InspectionRecord | null>(null);
  const go = (next: HistoryFilter) => {
    setSelected(null);
    window.location.hash = formatRoute("history", null, filterToParams(next));
  };
  const data = page.data;
  const info = data ? pageInfo(data.total, filter.limit, filter.offset, data.items.length) : null;

  return (
    <section aria-labelledby="history-title">
      <div className="page-head">
        <h1 id="history-title">History</h1>
        <p className="lede">Every inspection, newest first.</p>
      </div>
      <form className="panel filters" onSubmit={(e) => e.preventDefault()} aria-label="Filters">
        <SelectField
          id={`${id}-cat`}
          label="Category"
          value={filter.category ?? ""}
          empty="All categories"
          options={knownCategories(categories.data ?? [], filter.category)}
          onChange={(value) => go(withFilter(filter, { category: value || null }))}
        />
        <SelectField
          id={`${id}-dec`}
          label="Decision"
          value={filter.decision ?? ""}
          empty="All decisions"
          options={DECISIONS}
          onChange={(value) => go(withFilter(filter, { decision: DECISIONS.find((d) => d === value) ?? null }))}
        />
        <SelectField
          id={`${id}-size`}
          label="Rows per page"
          value={String(filter.limit)}
          options={PAGE_SIZES.map(String)}
          onChange={(value) => go(withFilter(filter, { limit: Number(value) }))}
        />
        <div className="field actions-end">
          <button type="button" className="button secondary" onClick={page.reload}>
            Refresh
          </button>
        </div>
      </form>
      {page.error ? <ErrorBanner error={page.error} onRetry={page.reload} /> : null}
      {page.loading && !data ? <Loading label="Loading history…" /> : null}
      {data && info ? (
        <>
          <div className="table-wrap panel flush">
            <table className="data-table history-table" aria-label="Inspection history">
              <thead>
                <tr>
                  <th scope="col">Time</th>
                  <th scope="col">Category</th>
                  <th scope="col">Image</th>
                  <th scope="col" className="num">Score</th>
                  <th scope="col">Decision</th>
                  <th scope="col">CAAS</th>
                </tr>
              </thead>
              <tbody aria-busy={page.loading}>
                {data.items.length === 0 ? (
                  <tr>
                    <td colSpan={6} className="empty">
                      No inspections match these filters.
                    </td>
                  </tr>
                ) : null}
                {data.items.map((r) => (
                  <tr
                    key={r.id}
                    className={`clickable${selected?.id === r.id ? " selected" : ""}`}
                    onClick={() => setSelected(r)}
                    aria-selected={selected?.id === r.id}
                  >
                    <td className="nowrap">{new Date(r.time).toLocaleString()}</td>
                    <td>{r.category}</td>
                    <td>
                      <button type="button" className="link-button" onClick={(e) => (e.stopPropagation(), setSelected(r))} aria-label={`Show ${r.image_name} from ${r.time}`}>
                        {r.image_name}
                      </button>
                    </td>
                    <td className="num">{formatScore(r.score)}</td>
                    <td>
                      <DecisionBadge decision={r.decision} size="small" />
                    </td>
                    <td>{r.caas_applied ? "applied" : "–"}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          <nav className="pagination" aria-label="History pages">
            <button type="button" className="button secondary" disabled={info.prevOffset === null} onClick={() => info.prevOffset !== null && go({ ...filter, offset: info.prevOffset })}>
              ← Newer
            </button>
            <span role="status">
              {info.from}–{info.to} of {data.total} · page {info.page} of {info.pages}
            </span>
            <button type="button" className="button secondary" disabled={info.nextOffset === null} onClick={() => info.nextOffset !== null && go({ ...filter, offset: info.nextOffset })}>
              Older →
            </button>
          </nav>
        </>
      ) : null}
      {selected ? (
        <section className="panel detail" aria-label="Selected inspection">
          <div className="detail-head">
            <span className="muted small">Inspection {selected.id}</span>
            <button type="button" className="button secondary" onClick={() => setSelected(null)}>
              Close
            </button>
          </div>
          <InspectionView key={selected.id} record={selected} headingLevel={2} />
        </section>
      ) : null}
    </section>
  );
}
