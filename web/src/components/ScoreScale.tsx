import { useId } from "react";
import { useWidth } from "../api";
import { bandSpan, formatScore, positionOf, scaleDomain, scaleStops, thresholdWords, type Domain } from "../logic/scale";

const PAD = 16;
const BAR_Y = 34;
const BAR_H = 14;
const COLOURS = { normal: "var(--normal-soft)", band: "var(--band)", anomalous: "var(--anomalous-soft)" } as const;

/** A label's anchor that keeps it inside the drawing near either end. */
function anchorAt(x: number, width: number, room = 70): "start" | "middle" | "end" {
  if (x < room) return "start";
  if (x > width - room) return "end";
  return "middle";
}

/**
 * The score on a horizontal scale, drawn at the element's own pixel width (so its text keeps its
 * size on a phone): normal colour up to the threshold, the unsure band [threshold, band end)
 * hatched, anomalous colour after; a labelled marker for the score. `domain` is the category's
 * fixed scale, so cards of one category line up; a threshold beyond it (a far-off tau the scale leaves out,
 * logic/scale.ts `categoryDomain`) is marked at the end and labelled "off the scale".
 */
export function ScoreScale({ score, tau, sMax, domain: fixed }: { score: number | null; tau: number | null; sMax: number | null; domain?: Domain }) {
  const [ref, width] = useWidth<HTMLElement>(560);
  const ids = useId().replace(/:/g, "");
  const domain = fixed ?? scaleDomain([score, tau, sMax]);
  const inner = width - 2 * PAD;
  const at = (v: number) => PAD + positionOf(v, domain, inner).x;
  const band = bandSpan(tau, sMax, domain, inner);
  const tauX = tau !== null ? at(tau) : null;
  const sMaxX = sMax !== null && band ? at(sMax) : null;
  const scorePos = score !== null ? positionOf(score, domain, inner) : null;
  const scoreX = scorePos ? PAD + scorePos.x : null;
  const tauWords = thresholdWords(tau, domain);
  const summary =
    `Score ${formatScore(score)}; ${tauWords.summary}` +
    (band ? `; unsure band from ${formatScore(tau)} to ${formatScore(sMax)}` : "; no unsure band");
  const stops = scaleStops(tau, sMax, domain);
  return (
    <figure className="score-scale" ref={ref}>
      <svg width={width} height={94} viewBox={`0 0 ${width} 94`} role="img" aria-label={summary} data-testid="score-scale">
        <title>{summary}</title>
        <defs>
          <linearGradient id={`${ids}-fill`} x1="0" x2="1" y1="0" y2="0">
            {stops.map((stop, i) => (
              <stop key={i} offset={stop.offset} stopColor={COLOURS[stop.colour]} />
            ))}
          </linearGradient>
          <pattern id={`${ids}-hatch`} width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)">
            <rect width="6" height="6" fill="var(--band)" />
            <line x1="0" y1="0" x2="0" y2="6" stroke="var(--band-line)" strokeWidth="2" />
          </pattern>
        </defs>
        <rect x={PAD} y={BAR_Y} width={inner} height={BAR_H} rx="3" fill={`url(#${ids}-fill)`} stroke="var(--border)" />
        {band ? (
          <rect data-testid="band" x={PAD + band.x0} y={BAR_Y - 4} width={band.x1 - band.x0} height={BAR_H + 8} fill={`url(#${ids}-hatch)`} opacity="0.9">
            <title>unsure band: the expert is unsure here</title>
          </rect>
        ) : null}
        {tauX !== null ? (
          <g className="threshold" data-testid="threshold-mark">
            <line x1={tauX} x2={tauX} y1={BAR_Y - 8} y2={BAR_Y + BAR_H + 8} stroke="var(--ink)" strokeWidth="2" />
            <text x={tauX} y={BAR_Y + BAR_H + 24} textAnchor={anchorAt(tauX, width)} className="scale-label">
              {tauWords.mark}
            </text>
          </g>
        ) : null}
        {sMaxX !== null ? (
          <g className="threshold">
            <line x1={sMaxX} x2={sMaxX} y1={BAR_Y - 8} y2={BAR_Y + BAR_H + 8} stroke="var(--muted)" strokeWidth="2" strokeDasharray="3 2" />
            <text x={sMaxX} y={BAR_Y + BAR_H + 40} textAnchor={anchorAt(sMaxX, width)} className="scale-label muted">
              band end {formatScore(sMax)}
            </text>
          </g>
        ) : null}
        {scorePos !== null && score !== null && scoreX !== null ? (
          <g data-testid="score-marker">
            <path d={`M ${scoreX} ${BAR_Y + 2} l -7 -12 h 14 z`} fill="var(--ink)" stroke="white" strokeWidth="1" />
            <text x={scoreX} y={BAR_Y - 14} textAnchor={anchorAt(scoreX, width, 60)} className="scale-score">
              {scorePos.clamped === "low" ? "◀ " : ""}
              score {formatScore(score)}
              {scorePos.clamped === "high" ? " ▶" : ""}
            </text>
          </g>
        ) : null}
        <text x={PAD} y={BAR_Y - 14} className="scale-end" textAnchor="start" opacity={scoreX !== null && scoreX < PAD + 150 ? 0 : 1}>
          normal
        </text>
        <text x={width - PAD} y={BAR_Y - 14} className="scale-end" textAnchor="end" opacity={scoreX !== null && scoreX > width - PAD - 170 ? 0 : 1}>
          anomalous
        </text>
      </svg>
    </figure>
  );
}
