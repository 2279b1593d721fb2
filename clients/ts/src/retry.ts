/**
 * When to retry. The service answers 429 with `Retry-After` when its bounded MLLM queue is full;
 * honouring it (instead of hammering) is what keeps a line of inspectors from piling up requests.
 */

/** Seconds to wait from a `Retry-After` value (delta-seconds or an HTTP date); null when absent or unreadable. */
export function parseRetryAfter(value: string | null | undefined, nowMs: number = Date.now()): number | null {
  if (value === null || value === undefined) return null;
  const text = value.trim();
  if (text === "") return null;
  if (/^\d+(\.\d+)?$/.test(text)) return Number(text);
  if (!/[a-z]/i.test(text)) return null; // an HTTP date names its day and month; "-3" is not a date
  const date = Date.parse(text);
  if (Number.isNaN(date)) return null;
  return Math.max(0, (date - nowMs) / 1000);
}

/**
 * Milliseconds to wait before retry number `attempt` (1-based): the server's `Retry-After` when it
 * gave one, else exponential backoff from 0.5 s; never more than `maxWaitS`.
 */
export function retryDelayMs(attempt: number, retryAfterS: number | null, maxWaitS: number): number {
  const seconds = retryAfterS ?? 0.5 * 2 ** (attempt - 1);
  return Math.round(Math.min(Math.max(seconds, 0), maxWaitS) * 1000);
}

/** Statuses worth retrying: the queue is full (429) or the service is briefly unavailable (503). */
export function isRetryableStatus(status: number): boolean {
  return status === 429 || status === 503;
}
