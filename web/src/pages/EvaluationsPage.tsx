import type { EvaluationRun } from "@eagle-iad/client";
import { useApi, useAsync } from "../api";
import { ErrorBanner, Loading } from "../components/ErrorBanner";
import { Picture } from "../components/Picture";
import { flattenMetrics, formatMetricFor, metricExplanation, metricLabel } from "../logic/metrics";
import { formatRate, perTypeTables, type PerTypeTable } from "../logic/perType";

export function EvaluationsPage() {
  const { client } = useApi();
  const runs = useAsync((signal) => client.evaluations(signal), [client]);
  return (
    <section aria-labelledby="evaluations-title">
      <div className="page-head">
        <h1 id="evaluations-title">Evaluations</h1>
        <p className="lede">Runs of <code>eagle eval</code> and <code>eagle eval-expert</code> found in the service's runs directory.</p>
      </div>
      {runs.error ? <ErrorBanner error={runs.error} onRetry={runs.reload} /> : null}
      {runs.loading && !runs.data ? <Loading label="Loading evaluation runs…" /> : null}
      {runs.data && runs.data.length === 0 ? <p className="notice">No evaluation runs (start the service with <code>--runs DIR</code>).</p> : null}
      {runs.data ? (
        <nav aria-label="Runs" className="run-index">
          {runs.data.map((run) => (
            <a key={run.name} href={`#/evaluations/${encodeURIComponent(run.name)}`} onClick={(e) => {
              e.preventDefault();
              document.getElementById(`run-${run.name}`)?.scrollIntoView({ behavior: "smooth" });
            }}>
              {run.name}
            </a>
          ))}
        </nav>
      ) : null}
      {(runs.data ?? []).map((run) => (
        <RunView key={run.name} run={run} />
      ))}
    </section>
  );
}

function RunView({ run }: { run: EvaluationRun }) {
  const rows = flattenMetrics(run.metrics ?? {});
  const plots = Object.entries(run.plots ?? {});
  const perType = perTypeTables(run.metrics ?? {});
  const command = run.run && typeof run.run["command"] === "string" ? run.run["command"] : null;
  return (
    <article className="panel run" id={`run-${run.name}`} aria-labelledby={`run-title-${run.name}`}>
      <header className="detail-head">
        <h2 id={`run-title-${run.name}`}>{run.name}</h2>
        <span className="muted small">modified {new Date(run.modified).toLocaleString()}</span>
      </header>
      {command ? <p className="muted small"><code>{command}</code></p> : null}
      {run.error ? <ErrorBanner error={{ kind: "server", title: "Run unreadable", message: run.error, retryable: false }} /> : null}
      {perType.map((table) => (
        <PerTypeView key={table.scope} table={table} run={run.name} />
      ))}
      <div className="run-grid">
        {rows.length > 0 ? (
          <div className="table-wrap">
            <table className="data-table metrics-table" aria-label={`Metrics of ${run.name}`}>
              <thead>
                <tr>
                  <th scope="col">Metric</th>
                  <th scope="col" className="num">Value</th>
                </tr>
              </thead>
              <tbody>
                {rows.map(([key, value]) => (
                  <tr key={key} data-key={key}>
                    <th scope="row" title={key}>
                      <span className="metric-name">{metricLabel(key)}</span>
                      {metricExplanation(key) ? <span className="metric-help">{metricExplanation(key)}</span> : null}
                    </th>
                    <td className="num">{formatMetricFor(key, value)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        ) : (
          <p className="muted">No metrics.</p>
        )}
        <div className="plots">
          {plots.length === 0 ? <p className="muted">No figures.</p> : null}
          {plots.map(([name, link]) => (
            <figure key={name} className="plot">
              <Picture link={link} alt={`${name} of run ${run.name}`} />
              <figcaption>{name}</figcaption>
            </figure>
          ))}
        </div>
      </div>
    </article>
  );
}

/** Which kinds of defect still pass: one row per defect type, each against all normal test images. */
function PerTypeView({ table, run }: { table: PerTypeTable; run: string }) {
  const scope = table.scope ? ` (${table.scope})` : "";
  return (
    <div className="table-wrap per-type">
      <table className="data-table" aria-label={`Per defect type of ${run}${scope}`}>
        <caption>
          Per defect type{scope}: each type against all {table.normals} normal test images ({table.falseAlarms} false alarms at the threshold, shared by every type)
        </caption>
        <thead>
          <tr>
            <th scope="col">Defect type</th>
            <th scope="col" className="num">Images</th>
            <th scope="col" className="num">Image AUROC</th>
            <th scope="col" className="num">Recall at threshold</th>
            <th scope="col" className="num">Pointing</th>
          </tr>
        </thead>
        <tbody>
          {table.rows.map((row) => (
            <tr key={row.type} data-type={row.type}>
              <th scope="row">{row.type}</th>
              <td className="num">{row.images}</td>
              <td className="num">{formatRate(row.imageAuroc)}</td>
              <td className="num" title={row.caught === null ? undefined : `${row.caught} of ${row.images} caught`}>
                {formatRate(row.recallAtTau)}
              </td>
              <td className="num" title={row.withMask === null ? undefined : `over ${row.withMask} images with a mask`}>
                {formatRate(row.pointing)}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
