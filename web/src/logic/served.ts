/**
 * Figures the console judges by that the service owns: read from its /healthz, never copied here, so a change
 * there (src/eagle_iad/expert/model_warnings.py, src/eagle_iad/choices.py) cannot leave the console
 * saying another thing than the service's own warnings.
 */

/** The part of a /healthz answer these come from (older services leave them out). */
export interface HealthFigures {
  far_above_s_max?: number | null;
  recent_s?: number | null;
  flagged_share?: number | null;
}

export interface ServedFigures {
  /**
   * How many times the largest training score (s_max) a threshold may lie before the model warns that it
   * flags nothing (FAR_ABOVE_S_MAX): the tuner and the inspection cards judge a far-off tau by it.
   */
  farAboveSMax: number | null;
  /** Seconds back a station's warnings of what happened lately look (RECENT_S): the Stations page names it. */
  recentS: number | null;
  /**
   * More than this share of the training images at or above a threshold puts it inside the normal parts' scores
   * (FLAGGED_SHARE): the tuner says so before saving, as the model's own warning does once it is saved.
   */
  flaggedShare: number | null;
}

/** Nothing said yet: the pages judge only what needs no figure (see each use). */
export const NOTHING_SERVED: ServedFigures = { farAboveSMax: null, recentS: null, flaggedShare: null };

const positive = (value: number | null | undefined): number | null => (typeof value === "number" && Number.isFinite(value) && value > 0 ? value : null);

/**
 * The figures of a /healthz answer, those it lacks kept from before. A degraded 503 (the history away, writes
 * refused) carries them like a 200 and is read as one (logic/health.ts). A failed health check (the service
 * restarting, a proxy's error page) clears the service's status but not these: they are constants of the
 * service, and the tuner's judgement of a threshold should not flicker with an outage. The previous
 * object is returned when nothing changed, so a health check every 15 s draws no page anew.
 */
export function servedFigures(health: HealthFigures, previous: ServedFigures): ServedFigures {
  const next: ServedFigures = {
    farAboveSMax: positive(health.far_above_s_max) ?? previous.farAboveSMax,
    recentS: positive(health.recent_s) ?? previous.recentS,
    flaggedShare: positive(health.flagged_share) ?? previous.flaggedShare,
  };
  const same = next.farAboveSMax === previous.farAboveSMax && next.recentS === previous.recentS && next.flaggedShare === previous.flaggedShare;
  return same ? previous : next;
}
