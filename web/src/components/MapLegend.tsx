import { useId } from "react";
import { useWidth } from "../api";
import { jetStops, legendFraction, type MapLegend as Legend } from "../logic/legend";
import { formatScore } from "../logic/scale";

const PAD = 12;
const BAR_Y = 8;
const BAR_H = 14;

/**
 * The heatmap's colour bar at the console's own text size, on the score's scale: the cold end is the
 * category's normal level, the threshold is marked where a pixel shows as much evidence as the
 * threshold allows, and everything past the hot end saturates red.
 */
export function MapLegend({ legend, category, cut = null }: { legend: Legend; category: string; cut?: number | null }) {
  const [ref, width] = useWidth<HTMLElement>(480);
  const ids = useId().replace(/:/g, "");
  const inner = Math.max(40, width - 2 * PAD);
  const tauX = PAD + legendFraction(legend.threshold, legend) * inner;
  const cutX = cut === null ? null : PAD + legendFraction(cut, legend) * inner;
  // where weak boxes were cut (logic/legend.ts boxesCutBelow): a row of its own, so it never covers another label
  const height = cutX === null ? 62 : 80;
  const anchor = (x: number) => (x > width - 120 ? "end" : x < 120 ? "start" : "middle");
  const summary = `Heatmap colours of ${category}: from ${formatScore(legend.low)} (blue, like the training images) to ${formatScore(
    legend.high,
  )} and beyond (red); the threshold ${formatScore(legend.threshold)} is marked${
    cut === null ? "" : `, and the boxes ${formatScore(cut)}, where they were cut below it`
  }.`;
  return (
    <figure className="map-legend" ref={ref} data-testid="map-legend">
      <svg width={width} height={height} viewBox={`0 0 ${width} ${height}`} role="img" aria-label={summary}>
        <title>{summary}</title>
        <defs>
          <linearGradient id={`${ids}-jet`} x1="0" x2="1" y1="0" y2="0">
            {jetStops().map((stop) => (
              <stop key={stop.offset} offset={stop.offset} stopColor={stop.colour} />
            ))}
          </linearGradient>
        </defs>
        <rect x={PAD} y={BAR_Y} width={inner} height={BAR_H} fill={`url(#${ids}-jet)`} stroke="var(--border)" />
        <line x1={tauX} x2={tauX} y1={BAR_Y - 6} y2={BAR_Y + BAR_H + 6} stroke="var(--ink)" strokeWidth="3" />
        <text x={PAD} y={BAR_Y + BAR_H + 20} className="scale-label" textAnchor="start">
          {formatScore(legend.low)}
        </text>
        <text x={tauX} y={BAR_Y + BAR_H + 38} className="scale-label" textAnchor={anchor(tauX)}>
          threshold {formatScore(legend.threshold)}
        </text>
        {cutX === null ? null : (
          <>
            <line x1={cutX} x2={cutX} y1={BAR_Y - 6} y2={BAR_Y + BAR_H + 6} stroke="var(--ink)" strokeWidth="2" strokeDasharray="3 2" />
            <text x={cutX} y={BAR_Y + BAR_H + 56} className="scale-label" textAnchor={anchor(cutX)}>
              boxes {formatScore(cut)}
            </text>
          </>
        )}
        <text x={width - PAD} y={BAR_Y + BAR_H + 20} className="scale-label" textAnchor="end">
          {formatScore(legend.high)}+
        </text>
      </svg>
      <figcaption className="muted small">
        Heatmap colours on the score's scale, the same for every image of “{category}”: blue is like the training images, red is past the threshold. Hatched
        grey: a border the expert does not inspect, not “normal”.
      </figcaption>
    </figure>
  );
}
