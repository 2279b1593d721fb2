import type { CategoryDashboard as Dashboard, DayFigures } from "@eagle-iad/client";
import type React from "react";
import { useEffect, useId } from "react";
import { useApi, useAsync, useWidth } from "../api";
import { formatScore } from "../logic/scale";
import { placeOnAxis } from "../logic/histogram";
import { dayGeometry, formatPercent, formatRate, nearScores } from "../logic/tuning";
import { ErrorBanner, Loading } from "./ErrorBanner";

const H = 160;
const M = { top: 16, right: 12, bottom: 30, left: 48 };

/** "11-29" from "2026-11-29": the year is in the table; the axis needs the day. */
function short(day: string): string {
  return day.length === 10 ? day.slice(5) : day;
}

/** Which day labels fit: every one when they do, else evenly spaced ones (first and last kept). */
function labelled(n: number, width: number): Set<number> {
  const fit = Math.max(1, Math.floor(width / 48));
  if (n <= fit) return new Set(Array.from({ length: n }, (_, i) => i));
  const every = Math.ceil(n / fit);
  const keep = new Set<number>();
  for (let i = 0; i < n; i += every) keep.add(i);
  keep.add(n - 1);
  return keep;
}

/**
 * A category's history per day: reject rate, score range, and the expert's false alarms and misses on labelled items.
 * `onHighest` is told the highest inspection score the score chart shows (null: none, or not loaded), so that the
 * tuner's words about the scores known take in what is charted here.
 */
export function CategoryDashboard({ name, tau, onHighest }: { name: string; tau: number | null; onHighest?: (score: number | null) => void }) {
  const { client } = useApi();
  const id = useId();
  const data = useAsync((signal) => client.categoryDashboard(name, signal), [client, name, tau]);
  const d = data.data;
  const highest = d?.totals.score_max ?? null;
  useEffect(() => onHighest?.(highest), [highest, onHighest]);
  return (
    <section className="dashboard" aria-labelledby={`${id}-title`} data-testid="dashboard">
      <h3 id={`${id}-title`}>Over time</h3>
      {data.error ? <ErrorBanner error={data.error} onRetry={data.reload} /> : null}
      {data.loading && !d ? <Loading label="Loading the figures…" /> : null}
      {d ? <DashboardBody d={d} name={name} tau={tau} id={id} /> : null}
    </section>
  );
}

function DashboardBody({ d, name, tau, id }: { d: Dashboard; name: string; tau: number | null; id: string }) {
  const t = d.totals;
  if (t.inspections === 0) return <p className="muted small" data-testid="dashboard-empty">No inspection of {name} yet: the figures start with the first one.</p>;
  return (
    <>
      <dl className="facts dashboard-facts" data-testid="dashboard-figures">
        <div>
          <dt>Inspections</dt>
          <dd>{t.inspections}</dd>
        </div>
        <div>
          <dt>Rejected (final verdict)</dt>
          <dd>{formatRate(t.rejected, t.inspections)}</dd>
        </div>
        <div>
          <dt>Flagged by the expert</dt>
          <dd>{formatRate(t.flagged, t.scored)}</dd>
        </div>
        <div>
          <dt>False alarms as decided (labelled normal)</dt>
          <dd data-testid="false-alarm-rate">{formatRate(t.false_alarms, t.labelled_normal)}</dd>
        </div>
        <div>
          <dt>Misses as decided (labelled defective)</dt>
          <dd data-testid="miss-rate">{formatRate(t.misses, t.labelled_anomalous)}</dd>
        </div>
      </dl>
      <p className="muted small">
        False alarms and misses count what the expert decided when each part was inspected (flagged at or above the threshold and with the model
        then in use, as <code>eagle eval-expert</code> judges), against your labels in History. The threshold tuner instead judges the same
        scores at the threshold you try, and the version comparison what each model change counted. Days are UTC.
      </p>
      <div className="dashboard-charts">
        <RejectChart days={d.days} name={name} />
        <ScoreChart days={d.days} name={name} tau={tau} />
      </div>
      <details className="dashboard-table">
        <summary>Figures per day (table)</summary>
        <div className="table-wrap">
          <table className="data-table" aria-labelledby={`${id}-table`} data-testid="dashboard-table">
            <caption id={`${id}-table`} className="sr-only">
              {`Figures per day for ${name}`}
            </caption>
            <thead>
              <tr>
                <th scope="col">Day</th>
                <th scope="col" className="num">
                  Inspections
                </th>
                <th scope="col" className="num">
                  Rejected
                </th>
                <th scope="col" className="num">
                  Scores (min / mean / max)
                </th>
                <th scope="col" className="num">
                  False alarms
                </th>
                <th scope="col" className="num">
                  Misses
                </th>
              </tr>
            </thead>
            <tbody>
              {d.days.map((day) => (
                <tr key={day.day}>
                  <th scope="row">{day.day}</th>
                  <td className="num">{day.inspections}</td>
                  <td className="num">{formatRate(day.rejected, day.inspections)}</td>
                  <td className="num">
                    {formatScore(day.score_min)} / {formatScore(day.score_mean)} / {formatScore(day.score_max)}
                  </td>
                  <td className="num">{formatRate(day.false_alarms, day.labelled_normal)}</td>
                  <td className="num">{formatRate(day.misses, day.labelled_anomalous)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      </details>
    </>
  );
}

function RejectChart({ days, name }: { days: readonly DayFigures[]; name: string }) {
  const [ref, W] = useWidth<HTMLElement>(480);
  const innerW = W - M.left - M.right;
  const innerH = H - M.top - M.bottom;
  const g = dayGeometry(days, innerW, innerH);
  const show = labelled(days.length, innerW);
  const summary = `Reject rate per day for ${name}: ${days.map((d) => `${d.day} ${formatPercent(d.inspections ? d.rejected / d.inspections : null)} of ${d.inspections}`).join("; ")}`;
  return (
    <figure className="day-chart" ref={ref as React.RefObject<HTMLElement | null>}>
      <figcaption className="small">Reject rate per day</figcaption>
      <svg width={W} height={H} viewBox={`0 0 ${W} ${H}`} role="img" aria-label={summary} data-testid="reject-chart">
        <title>{summary}</title>
        <g transform={`translate(${M.left},${M.top})`}>
          {[0, 0.5, 1].map((v) => (
            <g key={v}>
              <line x1={0} x2={innerW} y1={innerH - v * innerH} y2={innerH - v * innerH} stroke="var(--grid)" />
              <text x={-6} y={innerH - v * innerH + 4} textAnchor="end" className="axis">
                {formatPercent(v)}
              </text>
            </g>
          ))}
          {g.days.map((p, i) => (
            <g key={p.day}>
              <rect x={p.x - p.barWidth / 2} y={p.rateY} width={p.barWidth} height={Math.max(0, innerH - p.rateY)} fill="var(--anomalous)" opacity="0.8" data-bar="" />
              {p.barWidth >= 24 ? (
                // Above its bar, in the top margin for a full one (it was drawn inside a 100% bar, over it).
                <text x={p.x} y={p.rateY - 4} textAnchor="middle" className="axis">
                  {formatPercent(p.rate)}
                </text>
              ) : null}
              {show.has(i) ? (
                <text x={p.x} y={innerH + 16} textAnchor="middle" className="axis">
                  {short(p.day)}
                </text>
              ) : null}
            </g>
          ))}
          <line x1={0} x2={innerW} y1={innerH} y2={innerH} stroke="var(--ink)" />
        </g>
      </svg>
    </figure>
  );
}

function ScoreChart({ days, name, tau }: { days: readonly DayFigures[]; name: string; tau: number | null }) {
  const [ref, W] = useWidth<HTMLElement>(480);
  const innerW = W - M.left - M.right;
  const innerH = H - M.top - M.bottom;
  // The axis keeps the day scores' scale: a threshold far beyond them (1e9) is marked at the edge, not taken in.
  const g = dayGeometry(days, innerW, innerH, nearScores(days, [tau]));
  const tauAt = tau !== null ? placeOnAxis(tau, g.lo, g.hi) : null;
  const show = labelled(days.length, innerW);
  const summary = `Scores per day for ${name} (min, mean, max)${tau !== null ? `, threshold ${formatScore(tau)}` : ""}: ${days
    .map((d) => `${d.day} ${formatScore(d.score_min)}, ${formatScore(d.score_mean)}, ${formatScore(d.score_max)}`)
    .join("; ")}`;
  return (
    <figure className="day-chart" ref={ref as React.RefObject<HTMLElement | null>}>
      {/* The threshold is named here, not beside its line: there its words stood over the days' ranges at phone width,
          and "threshold 1000000000.0 (off the scale)" was wider than the plot (t-console finding 7). */}
      <figcaption className="small" data-testid="score-chart-caption">
        Score range per day (dot: mean{tauAt ? `; dashed line: threshold ${formatScore(tau)}${tauAt.off === "above" ? ", off the scale, at the top edge ↑" : tauAt.off === "below" ? ", off the scale, at the bottom edge ↓" : ""}` : ""})
      </figcaption>
      <svg width={W} height={H} viewBox={`0 0 ${W} ${H}`} role="img" aria-label={summary} data-testid="score-chart">
        <title>{summary}</title>
        <g transform={`translate(${M.left},${M.top})`}>
          {[...new Set([g.lo, g.hi])].map((v) => (
            <g key={v}>
              <line x1={0} x2={innerW} y1={g.yOf(v)} y2={g.yOf(v)} stroke="var(--grid)" />
              <text x={-6} y={g.yOf(v) + 4} textAnchor="end" className="axis">
                {formatScore(v)}
              </text>
            </g>
          ))}
          {tauAt ? (
            <g data-testid="score-chart-threshold" data-off={tauAt.off ?? undefined}>
              <line x1={0} x2={innerW} y1={g.yOf(tauAt.value)} y2={g.yOf(tauAt.value)} stroke="var(--anomalous)" strokeDasharray="4 3" strokeWidth="1.5" />
            </g>
          ) : null}
          {g.days.map((p, i) => (
            <g key={p.day}>
              {p.range ? (
                <>
                  <line x1={p.x} x2={p.x} y1={p.range.top} y2={p.range.bottom} stroke="var(--accent)" strokeWidth="3" strokeLinecap="round" data-bar="" />
                  <circle cx={p.x} cy={p.range.mean} r={4} fill="var(--panel)" stroke="var(--accent)" strokeWidth="2" data-bar="" />
                </>
              ) : null}
              {show.has(i) ? (
                <text x={p.x} y={innerH + 16} textAnchor="middle" className="axis">
                  {short(p.day)}
                </text>
              ) : null}
            </g>
          ))}
          <line x1={0} x2={innerW} y1={innerH} y2={innerH} stroke="var(--ink)" />
        </g>
      </svg>
    </figure>
  );
}
