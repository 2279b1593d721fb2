import type { Role } from "@eagle-iad/client";
import type { ReactNode } from "react";
import { useApi } from "../api";
import { allows, refusalLine } from "../logic/access";

/**
 * In place of a control the signed-in role may not use: one line saying which role it needs. Renders
 * `children` (the control) when the role allows it, or while the service has not said who the key is.
 */
export function RoleGate({ needed, what, children }: { needed: Role; what: string; children: ReactNode }) {
  const { me } = useApi();
  if (me === null || allows(me, needed)) return <>{children}</>;
  return (
    <p className="notice role-note" data-testid="role-note">
      {refusalLine(me, needed, what)}
    </p>
  );
}
