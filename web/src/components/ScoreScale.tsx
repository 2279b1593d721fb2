import { bandSpan, formatScore, positionOf, scaleDomain } from "../logic/scale";

const WIDTH = 560;
const PAD = 24;
const BAR_Y = 34;
const BAR_H = 14;

/**
 * The score on a horizontal scale: normal side, the low-confidence band [tau, s_max) shaded,
 * anomalous side, and a marker for the score (labelled, so nothing relies on colour alone).
 */
export function ScoreScale({ score, tau, sMax }: { score: number | null; tau: number | null; sMax: number | null }) {
  const domain = scaleDomain([score, tau, sMax]);
  const inner = WIDTH - 2 * PAD;
  const at = (v: number) => PAD + positionOf(v, domain, inner).x;
  const band = bandSpan(tau, sMax, domain, inner);
  const tauX = tau !== null ? at(tau) : null;
  const sMaxX = sMax !== null ? at(sMax) : null;
  const scorePos = score !== null ? positionOf(score, domain, inner) : null;
  const scoreX = scorePos ? PAD + scorePos.x : null;
  const summary =
    `Score ${formatScore(score)}; tau ${formatScore(tau)}; s_max ${formatScore(sMax)}` +
    (band ? `; low-confidence band from ${formatScore(tau)} to ${formatScore(sMax)}` : "; the low-confidence band is empty");
  // Labels of tau and s_max must not overlap: put the lower one's label to the left when close.
  const close = tauX !== null && sMaxX !== null && Math.abs(tauX - sMaxX) < 70;
  const tauAnchor = close && tauX !== null && sMaxX !== null && tauX < sMaxX ? "end" : close ? "start" : "middle";
  const sMaxAnchor = close && tauX !== null && sMaxX !== null && sMaxX <= tauX ? "end" : close ? "start" : "middle";
  return (
    <figure className="score-scale">
      <svg viewBox={`0 0 ${WIDTH} 94`} role="img" aria-label={summary} data-testid="score-scale">
        <title>{summary}</title>
        <defs>
          <linearGradient id="scale-fill" x1="0" x2="1" y1="0" y2="0">
            <stop offset="0" stopColor="var(--normal-soft)" />
            <stop offset="1" stopColor="var(--anomalous-soft)" />
          </linearGradient>
          <pattern id="band-hatch" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)">
            <rect width="6" height="6" fill="var(--band)" />
            <line x1="0" y1="0" x2="0" y2="6" stroke="var(--band-line)" strokeWidth="2" />
          </pattern>
        </defs>
        <rect x={PAD} y={BAR_Y} width={inner} height={BAR_H} rx="3" fill="url(#scale-fill)" stroke="var(--border)" />
        {band ? (
          <rect data-testid="band" x={PAD + band.x0} y={BAR_Y - 4} width={band.x1 - band.x0} height={BAR_H + 8} fill="url(#band-hatch)" opacity="0.9">
            <title>low-confidence band: CAAS sharpens the MLLM's attention here</title>
          </rect>
        ) : null}
        {tauX !== null ? (
          <g className="threshold">
            <line x1={tauX} x2={tauX} y1={BAR_Y - 8} y2={BAR_Y + BAR_H + 8} stroke="var(--ink)" strokeWidth="2" />
            <text x={tauX} y={BAR_Y + BAR_H + 22} textAnchor={tauAnchor} className="scale-label">
              τ {formatScore(tau)}
            </text>
          </g>
        ) : null}
        {sMaxX !== null ? (
          <g className="threshold">
            <line x1={sMaxX} x2={sMaxX} y1={BAR_Y - 8} y2={BAR_Y + BAR_H + 8} stroke="var(--muted)" strokeWidth="2" strokeDasharray="3 2" />
            <text x={sMaxX} y={BAR_Y + BAR_H + 34} textAnchor={sMaxAnchor} className="scale-label muted">
              s_max {formatScore(sMax)}
            </text>
          </g>
        ) : null}
        {scorePos !== null && score !== null ? (
          <g data-testid="score-marker">
            <path
              d={`M ${PAD + scorePos.x} ${BAR_Y + 2} l -7 -12 h 14 z`}
              fill="var(--ink)"
              stroke="white"
              strokeWidth="1"
            />
            <text x={Math.min(WIDTH - PAD, Math.max(PAD, PAD + scorePos.x))} y={BAR_Y - 14} textAnchor="middle" className="scale-score">
              {scorePos.clamped === "low" ? "◀ " : ""}
              score {formatScore(score)}
              {scorePos.clamped === "high" ? " ▶" : ""}
            </text>
          </g>
        ) : null}
        <text x={PAD} y={BAR_Y - 14} className="scale-end" textAnchor="start" opacity={scoreX !== null && scoreX - 48 < PAD + 58 ? 0 : 1}>
          normal
        </text>
        <text x={WIDTH - PAD} y={BAR_Y - 14} className="scale-end" textAnchor="end" opacity={scoreX !== null && scoreX + 48 > WIDTH - PAD - 80 ? 0 : 1}>
          anomalous
        </text>
      </svg>
      <figcaption className="muted small">
        {band ? (
          <>
            <span className="band-key" aria-hidden="true" /> shaded: low-confidence band [τ, s_max), where CAAS sharpens the MLLM's attention
          </>
        ) : (
          <>Low-confidence band [τ, s_max) is empty for this category (s_max ≤ τ).</>
        )}
      </figcaption>
    </figure>
  );
}
