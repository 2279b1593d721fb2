/**
 * What the signed-in key's role may do, for hiding the controls it cannot use (the service refuses them
 * anyway, 403). Until the service has said who the key is (or if it cannot say: an older service), every
 * control shows, as before.
 */

import { roleAllows, type Me, type Role } from "@eagle-iad/client";

export function allows(me: Me | null, needed: Role): boolean {
  return me === null || roleAllows(me.role, needed);
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
