import type React from "react";
import { bandSpan, histogramGeometry, placeOnAxis, stackLabels, ticks, type LineLabel } from "../logic/histogram";
import { useWidth } from "../api";
import { formatScore } from "../logic/scale";

/** The plot's own height; the labels' rows above it add to the figure's. */
const PLOT_H = 152;
const M = { right: 16, bottom: 40, left: 44 };
/** One row of line labels above the plot (12 px text), and the first row's baseline above the plot's top. */
const ROW = 17;
const FIRST = 6;

/** The training-score histogram with the tau and s_max lines (the paper's Fig. 4 view). */
export function Histogram({
  edges,
  counts,
  tau,
  sMax,
  label,
  candidate,
  extent,
  marks,
  fixedAxis = false,
}: {
  edges: readonly number[];
  counts: readonly number[];
  tau: number | null | undefined;
  sMax: number | null | undefined;
  label: string;
  /** A threshold being tried (the tuning view): drawn dashed, apart from the saved one. */
  candidate?: number | null;
  /** Values the axis must include (a slider's ends), so it stays put while the candidate moves. */
  extent?: readonly number[];
  /** Scores whose truth is known, drawn as ticks on the axis (green: normal, red: defective). */
  marks?: ReadonlyArray<{ score: number; label: "normal" | "anomalous" }>;
  /**
   * The axis is `extent` (and the bins), whatever the thresholds: one beyond it is marked at the edge with an
   * arrow, "off the scale", so a threshold typed far outside the scores (1e9) leaves the bars readable.
   */
  fixedAxis?: boolean;
}) {
  const [ref, W] = useWidth<HTMLElement>(640);
  const innerW = W - M.left - M.right;
  const innerH = PLOT_H;
  const g = histogramGeometry(edges, counts, innerW, innerH, fixedAxis ? [sMax, ...(extent ?? [])] : [tau, sMax, candidate, ...(extent ?? [])]);
  if (!g) return <p className="muted" ref={ref as React.RefObject<HTMLParagraphElement | null>}>No usable histogram (edges and counts do not match).</p>;
  const tauAt = typeof tau === "number" ? placeOnAxis(tau, g.lo, g.hi) : null;
  const candidateAt = typeof candidate === "number" ? placeOnAxis(candidate, g.lo, g.hi) : null;
  const offText = (at: { off: "below" | "above" | null } | null) => (at?.off ? ` (off the scale, ${at.off === "above" ? "far above" : "below"} the scores shown)` : "");
  const total = counts.reduce((a, b) => a + b, 0);
  const summary = `${label}: ${total} training scores in ${counts.length} bins from ${formatScore(edges[0])} to ${formatScore(
    edges[edges.length - 1],
  )}; threshold ${formatScore(tau)}${offText(tauAt)}, band end ${formatScore(sMax)}${
    typeof candidate === "number" && candidate !== tau ? `; candidate threshold ${formatScore(candidate)}${offText(candidateAt)}` : ""
  }${
    marks && marks.length > 0
      ? `; ticks on the axis: ${marks.filter((m) => m.label === "normal").length} normal and ${marks.filter((m) => m.label === "anomalous").length} defective images with known truth`
      : ""
  }`;
  const yTicks = [0, Math.ceil(g.maxCount / 2), g.maxCount].filter((v, i, a) => a.indexOf(v) === i);
  const band = bandSpan(tauAt?.value ?? tau, sMax, g.xOf);
  // The lines' labels in rows above the plot, clear of the bars and of each other at any width (t-console finding 7).
  const showCandidate = candidateAt !== null && candidate !== tau;
  const wanted: Array<LineLabel & { key: "tau" | "sMax" | "candidate" }> = [
    ...(tauAt ? [{ key: "tau" as const, x: g.xOf(tauAt.value), text: offLabel(`threshold ${formatScore(tau)}`, tauAt.off), prefer: "right" as const }] : []),
    ...(typeof sMax === "number"
      ? [{ key: "sMax" as const, x: g.xOf(sMax), text: `band end ${formatScore(sMax)}`, prefer: typeof tau === "number" && sMax < tau ? ("left" as const) : ("right" as const) }]
      : []),
    ...(showCandidate && candidateAt
      ? [{ key: "candidate" as const, x: g.xOf(candidateAt.value), text: offLabel(`new ${formatScore(candidate)}`, candidateAt.off), prefer: "right" as const }]
      : []),
  ];
  const placed = stackLabels(wanted, innerW);
  // As many rows as lines could need, whether or not they do now: the chart keeps its height while the slider moves
  // (the slider under a finger would move with it as labels met and parted).
  const lines = [typeof tau === "number", typeof sMax === "number", typeof candidate === "number"].filter(Boolean).length;
  const rows = Math.max(1, lines, ...placed.map((p) => p.row + 1));
  const top = FIRST + rows * ROW + 4;
  const H = top + PLOT_H + M.bottom;
  const labelOf = (key: "tau" | "sMax" | "candidate") => {
    const i = wanted.findIndex((w) => w.key === key);
    const at = placed[i];
    const want = wanted[i];
    return at && want ? { x: at.x, anchor: at.anchor, y: -FIRST - at.row * ROW, text: want.text } : null;
  };
  const tauLabel = labelOf("tau");
  const sMaxLabel = labelOf("sMax");
  const candidateLabel = labelOf("candidate");
  return (
    <figure className="histogram" ref={ref}>
      <svg width={W} height={H} viewBox={`0 0 ${W} ${H}`} role="img" aria-label={summary} data-testid="histogram">
        <title>{summary}</title>
        <g transform={`translate(${M.left},${top})`}>
          {yTicks.map((t) => {
            const y = g.maxCount > 0 ? innerH - (t / g.maxCount) * innerH : innerH;
            return (
              <g key={t}>
                <line x1={0} x2={innerW} y1={y} y2={y} stroke="var(--grid)" />
                <text x={-6} y={y + 4} textAnchor="end" className="axis">
                  {t}
                </text>
              </g>
            );
          })}
          {band ? (
            <rect x={band.x} y={0} width={band.width} height={innerH} fill="var(--band)" opacity="0.8" data-testid="band">
              <title>unsure band [threshold, band end): CAAS sharpens the MLLM's attention here</title>
            </rect>
          ) : null}
          {g.bars.map((b, i) => (
            <rect key={i} x={b.x} y={b.y} width={b.width} height={b.height} fill="var(--accent)" opacity="0.75" data-bar="">
              <title>{`${formatScore(b.lo)}–${formatScore(b.hi)}: ${b.count}`}</title>
            </rect>
          ))}
          <line x1={0} x2={innerW} y1={innerH} y2={innerH} stroke="var(--ink)" />
          {marks && marks.length > 0 ? (
            <g data-testid="evidence-marks">
              {marks.map((m, i) =>
                Number.isFinite(m.score) ? (
                  <line
                    key={i}
                    x1={g.xOf(m.score)}
                    x2={g.xOf(m.score)}
                    y1={m.label === "anomalous" ? innerH - 26 : innerH - 12}
                    y2={m.label === "anomalous" ? innerH - 14 : innerH}
                    stroke={m.label === "anomalous" ? "var(--anomalous)" : "var(--normal)"}
                    strokeWidth="3"
                  />
                ) : null,
              )}
            </g>
          ) : null}
          {ticks(g.lo, g.hi, W < 480 ? 3 : 5).map((t) => (
            <text key={t} x={g.xOf(t)} y={innerH + 16} textAnchor={g.xOf(t) < 20 ? "start" : g.xOf(t) > innerW - 20 ? "end" : "middle"} className="axis">
              {formatScore(t)}
            </text>
          ))}
          <text x={innerW / 2} y={innerH + 34} textAnchor="middle" className="axis">
            training score (leave-own-out)
          </text>
          {/* Each line runs from its label's row down through the plot; the labels (with a halo, so a line crossing a
              lower row stays behind the text) never stand over the bars. */}
          {tauAt && tauLabel ? (
            <g data-testid="tau-line" data-off={tauAt.off ?? undefined}>
              <line x1={g.xOf(tauAt.value)} x2={g.xOf(tauAt.value)} y1={tauLabel.y + 3} y2={innerH} stroke="var(--anomalous)" strokeWidth="2" strokeDasharray={tauAt.off ? "2 3" : undefined} />
              <text x={tauLabel.x} y={tauLabel.y} textAnchor={tauLabel.anchor} className="axis strong halo">
                {tauLabel.text}
              </text>
            </g>
          ) : null}
          {typeof sMax === "number" && sMaxLabel ? (
            <g data-testid="smax-line">
              <line x1={g.xOf(sMax)} x2={g.xOf(sMax)} y1={sMaxLabel.y + 3} y2={innerH} stroke="var(--ink)" strokeWidth="2" strokeDasharray="4 3" />
              <text x={sMaxLabel.x} y={sMaxLabel.y} textAnchor={sMaxLabel.anchor} className="axis halo">
                {sMaxLabel.text}
              </text>
            </g>
          ) : null}
          {showCandidate && candidateAt && candidateLabel ? (
            <g data-testid="candidate-line" data-off={candidateAt.off ?? undefined}>
              <line
                x1={g.xOf(candidateAt.value)}
                x2={g.xOf(candidateAt.value)}
                y1={candidateLabel.y + 3}
                y2={innerH}
                stroke="var(--accent)"
                strokeWidth="2"
                strokeDasharray="6 3"
              />
              <text x={candidateLabel.x} y={candidateLabel.y} textAnchor={candidateLabel.anchor} className="axis candidate halo">
                {candidateLabel.text}
              </text>
            </g>
          ) : null}
        </g>
      </svg>
    </figure>
  );
}

/** A line's label, with an arrow and "off the scale" where the line stands at the axis end for a value beyond it. */
function offLabel(text: string, off: "below" | "above" | null): string {
  if (off === "above") return `${text} (off the scale) →`;
  if (off === "below") return `← ${text} (off the scale)`;
  return text;
}
