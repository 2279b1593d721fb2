/**
 * The service's /healthz answer read as the console needs it. A degraded service answers 503 with the same
 * Health body (`status` "degraded", and why in `history` or `storage`): that answer is the service speaking, so
 * it is read like a 200, not thrown away as an error. Throwing it away showed a service that answered every read
 * as "unreachable", never said why, and lost the figures the tuner judges a threshold by (logic/served.ts) for a
 * tab opened during the incident.
 */

import { EagleApiError, EagleNetworkError, type Health } from "@eagle-iad/client";

/**
 * The Health body of a /healthz answer: a 200's, or a 503's that says `status` "degraded"; null for anything
 * else (a proxy's 503 page, an error body, a body missing the fields every Health has).
 */
export function healthFromAnswer(status: number, body: unknown): Health | null {
  if (typeof body !== "object" || body === null || Array.isArray(body)) return null;
  const fields = body as Partial<Health>;
  if (typeof fields.status !== "string" || typeof fields.version !== "string") return null;
  if (status >= 200 && status < 300) return body as Health;
  if (status === 503 && fields.status === "degraded") return body as Health;
  return null;
}

/** Whether the service said it is degraded (it answers, but refuses some requests). */
export function isDegraded(health: Health | null): boolean {
  return health !== null && health.status === "degraded";
}

const after = (text: string, prefix: string): string => text.slice(prefix.length).trim();

/**
 * Why a degraded service is degraded, in words, one line per cause, from its `storage` and `history` fields
 * (the service's own wording kept after the prefix, so a new reason there needs no change here). Empty for a
 * service that is not degraded; a degraded one whose fields say nothing known gets one generic line.
 */
export function degradedReasons(health: Health | null): string[] {
  if (!health || !isDegraded(health)) return [];
  const reasons: string[] = [];
  const storage = typeof health.storage === "string" ? health.storage : "ok";
  const history = typeof health.history === "string" ? health.history : "ok";
  if (storage.startsWith("refusing")) {
    // The service's words are added only when they say more than "lack of disk space" (said here already).
    const said = after(storage, "refusing:");
    const more = said && !said.includes("lack of disk space") ? ` (the service says: ${said})` : "";
    reasons.push(
      "writes refused: the service's disk is full, so inspections, fits and labels fail until room is made" +
        `${more}; reading what is stored still works`,
    );
  } else if (storage !== "ok") {
    reasons.push(`storage: ${storage}`);
  }
  if (history.startsWith("unavailable")) {
    reasons.push(
      `history unavailable: ${after(history, "unavailable:") || "no reason given"}; ` +
        "requests that read or write the history fail until it is back",
    );
  }
  if (reasons.length === 0) reasons.push("the service says it is degraded, without a reason this console knows");
  return reasons;
}

/** The one-line status for the top bar: "service 1.2.3 · expert only", or "service degraded". */
export function healthLine(health: Health): string {
  if (isDegraded(health)) return "service degraded";
  return `service ${health.version} · ${health.mllm ? "MLLM on" : "expert only"}`;
}

/**
 * GET /healthz once, no retries (it is polled anyway, and a retry would hide a degraded answer behind a
 * "retrying" notice): the Health of a 200 or a degraded 503; otherwise throws as the client does
 * (EagleApiError with the status, EagleNetworkError when nothing answered).
 */
export async function readHealth(url: string, signal?: AbortSignal, fetchImpl: typeof fetch = (input, init) => fetch(input, init)): Promise<Health> {
  let response: Response;
  try {
    response = await fetchImpl(url, signal ? { signal } : {});
  } catch (error) {
    if (signal?.aborted) throw error;
    const reason = error instanceof Error ? error.message : String(error);
    throw new EagleNetworkError(`cannot reach the EAGLE service at ${url}: ${reason}`, { cause: error });
  }
  let body: unknown = null;
  try {
    body = await response.json();
  } catch {
    // not JSON (a proxy's page): an error below, with the status line
  }
  const health = healthFromAnswer(response.status, body);
  if (health) return health;
  const error = (body as { error?: { message?: unknown; code?: unknown } } | null)?.error;
  const message = typeof error?.message === "string" ? error.message : `HTTP ${response.status} ${response.statusText}`.trim();
  throw new EagleApiError(message, response.status, typeof error?.code === "string" ? error.code : null);
}
