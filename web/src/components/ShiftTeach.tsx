import type { InspectionRecord } from "@eagle-iad/client";
import { useId, useMemo, useState } from "react";
import { useApi, useAsync } from "../api";
import { allows } from "../logic/access";
import { whenSaid } from "../logic/errors";
import { taughtOf, untaughtNormal } from "../logic/teach";
import { ErrorBanner, Loading } from "./ErrorBanner";
import { LabelNote } from "./LabelNote";
import { TeachPanel } from "./TeachPanel";

/** How many parts labelled normal are looked at (the newest inspections; the history's page limit). */
const LOOKED_AT = 500;

/**
 * What the shift labelled actually normal in a category and the current model was not taught (whoever labelled
 * it, whenever): who labelled each, when, their note; a supervisor (engineer) ticks which to teach and teaches
 * them here ("Teach these N"), without relabelling them (which would replace the operator's name and note).
 * Other roles see the list and that an engineer teaches it, once, here, rather than a notice after every label.
 * The list is read again after each label given on the page (`refresh`) and after a teach.
 */
export function ShiftTeach({ category, refresh }: { category: string; refresh: number }) {
  const { client, me } = useApi();
  const id = useId();
  const [nonce, setNonce] = useState(0);
  const labelled = useAsync((signal) => client.history({ category, label: "normal", limit: LOOKED_AT, signal }), [client, category, refresh, nonce]);
  const versions = useAsync((signal) => client.versions(category, signal), [client, category, nonce]);
  // Taught from this page: a twin the teach skipped (in the model already) is not named in the version.
  const [handled, setHandled] = useState<Set<string>>(new Set());
  const [left, setLeft] = useState<Set<string>>(new Set()); // ticked off: not taught this time
  const parts = useMemo(() => {
    if (!labelled.data || !versions.data) return null;
    const taught = taughtOf(versions.data);
    return untaughtNormal(labelled.data.items as InspectionRecord[], taught, handled);
  }, [labelled.data, versions.data, handled]);
  const teacher = me === null || allows(me, "engineer");
  const chosen = (parts ?? []).filter((part) => !left.has(part.id));
  const title = `${id}-title`;
  // A service that runs an export has no versions and cannot teach: nothing to list here.
  if (versions.error?.kind === "needs_fitted_model") return null;
  return (
    <section className="panel shift-teach" aria-labelledby={title} data-testid="shift-teach">
      <h2 id={title}>Labelled normal in {category}, not yet taught</h2>
      {labelled.error ? <ErrorBanner error={labelled.error} onRetry={labelled.reload} compact /> : null}
      {versions.error ? <ErrorBanner error={versions.error} onRetry={versions.reload} compact /> : null}
      {parts === null && !labelled.error && !versions.error ? <Loading label="Reading what the shift labelled…" /> : null}
      {parts !== null ? (
        parts.length === 0 ? (
          <p className="muted small">Nothing labelled actually normal in {category} waits to be taught.</p>
        ) : (
          <>
            <p className="small" data-testid="shift-teach-count">
              {parts.length === 1 ? "1 part" : `${parts.length} parts`} labelled actually normal
              {teacher ? ": tick off any you would not teach, then teach the rest below." : ", waiting for an engineer (the shift's supervisor) to teach them."}
              {(labelled.data?.total ?? 0) > LOOKED_AT ? ` (Among the newest ${LOOKED_AT} labelled normal.)` : ""}
            </p>
            <ul className="shift-teach-list">
              {parts.map((part) => {
                const line = `labelled${part.label_by ? ` by ${part.label_by}` : ""}${part.label_time ? ` ${whenSaid(part.label_time)}` : ""}`;
                return (
                  <li key={part.id}>
                    {teacher ? (
                      <input
                        type="checkbox"
                        id={`${id}-${part.id}`}
                        checked={!left.has(part.id)}
                        onChange={(event) =>
                          setLeft((all) => {
                            const next = new Set(all);
                            if (event.target.checked) next.delete(part.id);
                            else next.add(part.id);
                            return next;
                          })
                        }
                      />
                    ) : null}{" "}
                    {teacher ? <label htmlFor={`${id}-${part.id}`}>{part.image_name}</label> : <strong>{part.image_name}</strong>}{" "}
                    <span className="muted small">{line}</span> <LabelNote record={part} />
                  </li>
                );
              })}
            </ul>
          </>
        )
      ) : null}
      {teacher ? ( // also with none left: it keeps the line the last teach left
        <TeachPanel
          title="Teach the model what the shift labelled normal"
          candidates={chosen.map((part) => ({ id: part.id, category, imageName: part.image_name }))}
          onTaught={(ids) => {
            setHandled((all) => new Set([...all, ...ids]));
            setNonce((n) => n + 1);
          }}
        />
      ) : null}
    </section>
  );
}
