import { useApi } from "../api";
import { allows } from "../logic/access";
import { ConfirmAction } from "./ConfirmAction";

/** What the page says once a category is retired: where its folder went, what the history keeps, how to undo. */
export function retiredLine(name: string, retiredTo: string, kept: number): string {
  const inspections = `${kept} inspection${kept === 1 ? "" : "s"}`;
  return `Retired ${name}: its model (every version) was moved to ${retiredTo} in the models folder; the history keeps its ${inspections}. To undo, move that folder back to ${name} on the service's machine.`;
}

/**
 * "Retire category" for an admin (nothing for other roles: it is theirs to ask for, not to see refused), with a
 * confirm step (ConfirmAction). A refusal (409 category_in_use: a station, a fit, a teach) is said under it,
 * naming what uses the category.
 */
export function RetireCategory({ name, onRetired }: { name: string; onRetired: (line: string) => void }) {
  const { client, me } = useApi();
  if (me !== null && !allows(me, "admin")) return null;
  return (
    <ConfirmAction
      title="Retire"
      ask="Retire category"
      question={
        <>
          Retire {name}? Inspections of it stop at once; its model and every version move to the models folder's .retired folder (an admin can
          move it back); its inspections stay in the history.
        </>
      }
      yes={`Yes, retire ${name}`}
      doing="Retiring…"
      act={async () => {
        const retired = await client.retireCategory(name);
        onRetired(retiredLine(name, retired.retired_to, retired.inspections_kept));
      }}
    />
  );
}
