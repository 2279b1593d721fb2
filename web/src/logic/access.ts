/**
 * What the signed-in key's role may do, for hiding the controls it cannot use (the service refuses them
 * anyway, 403). Until the service has said who the key is (or if it cannot say: an older service), every
 * control shows, as before.
 */

import { EagleClient, roleAllows, type Health, type Me, type Role } from "@eagle-iad/client";

export function allows(me: Me | null, needed: Role): boolean {
  return me === null || roleAllows(me.role, needed);
}

/**
 * How long the console waits for `/v1/me` before drawing the pages anyway. The pages wait for it (a key the
 * service refuses shows the key form before any page asks), so it must settle soon: a service that accepts and
 * never answers would otherwise leave every page "Connecting..." for good.
 */
export const WHO_AM_I_TIMEOUT_MS = 5_000;

/**
 * Who the key is (`/v1/me`), asked once and given up after `timeoutMs`: no retries, unlike the console's client
 * (three, honouring `Retry-After`), since a 503 (`history_unavailable`) would hold every page behind
 * "Connecting..." for the retries' waits. A failure draws the pages as when the service cannot say (every
 * control shows); the pages' own requests then retry and say what they meet. `signal` aborts it early.
 */
export async function askWhoAmI(
  where: { baseUrl: string; apiKey: string },
  signal: AbortSignal,
  timeoutMs: number = WHO_AM_I_TIMEOUT_MS,
): Promise<Me> {
  const once = new EagleClient({ baseUrl: where.baseUrl, apiKey: where.apiKey, maxRetries: 0 });
  const stop = new AbortController();
  const timer = setTimeout(
    () => stop.abort(new DOMException(`the service did not say who the key is within ${timeoutMs / 1000} s`, "TimeoutError")),
    timeoutMs,
  );
  const follow = () => stop.abort(signal.reason);
  if (signal.aborted) follow();
  signal.addEventListener("abort", follow, { once: true });
  try {
    return await once.me(stop.signal);
  } finally {
    clearTimeout(timer);
    signal.removeEventListener("abort", follow);
  }
}

/** Who is signed in, for the top bar. */
export function signedInLine(me: Me): string {
  return me.open ? "Open: no keys (one local user)" : `Signed in as ${me.name} (${me.role})`;
}

/** A role after its indefinite article: "an operator", "a viewer" (not "a operator"). */
export function withArticle(role: Role): string {
  return `${/^[aeiou]/.test(role) ? "an" : "a"} ${role}`;
}

/** Why a control is missing: said where it would be, so nobody hunts for it. */
export function refusalLine(me: Me, needed: Role, what: string): string {
  return `${what} needs the ${needed} role; ${me.name} is ${withArticle(me.role)}. An admin can give you a key with that role.`;
}

/**
 * What the key form asks for, worded for how the service tells callers apart (its /healthz `auth`): named keys
 * (`eagle keys add`), the single `EAGLE_API_KEY`, or none at all (then a key stored here is what is refused).
 * A command or a variable is between backquotes: the form shows it as code.
 */
export function keyRequest(auth: Health["auth"] | null | undefined): string {
  switch (auth) {
    case "keys":
      return "This service takes named API keys: enter yours. An admin makes one with `eagle keys add NAME --role ROLE`.";
    case "api_key":
      return "This service runs with one shared key, its `EAGLE_API_KEY`: enter that key.";
    case "open":
      return "This service needs no key, and it refuses the one stored in this tab: forget it to go on.";
    default:
      return "Enter your API key: a named key made with `eagle keys add`, or the service's `EAGLE_API_KEY`.";
  }
}

/**
 * What the key form says when the key stored in this tab was refused: the service's own reason where it gave
 * one (a revoked key is told when it was revoked: "this key was revoked at …; ask an admin for a new key"),
 * so the holder does not hunt a typo; else that it was refused. `unsaved`: the decision refused with it, which
 * is said too, so it is not lost without a word.
 */
export function storedKeyRefused(reason: { kind: string; title: string; message: string } | null, unsaved: string | null = null): string {
  const why =
    reason && reason.title === "API key revoked"
      ? `The service refused the key stored in this tab: ${reason.message.replace(/\.?$/, ".")}`
      : "The service refused the key stored in this tab.";
  return unsaved ? `${why} ${unsaved}` : why;
}
