import type { InspectionRecord } from "@eagle-iad/client";
import { needsFittedModelLine } from "../logic/exported";
import { Picture } from "./Picture";

/** Why an inspection stored before the service recorded references has none. */
export const NO_REFERENCE_RECORDED = "No reference: this inspection was made before references were recorded.";

/**
 * The nearest normal training image, beside the inspected one, so the user can see what "good"
 * looks like at the spot that decided the score (docs/METHOD.md, "Nearest normal reference").
 * When there is none, the service's reason is shown instead (a model fitted before schema 4), or, for an
 * inspection by an export the service runs (`exported`: its format), that an export keeps no training images.
 */
export function ReferencePicture({ record, exported = null }: { record: InspectionRecord; exported?: string | null }) {
  const reference = record.reference ?? null;
  const link = record.pictures["reference"];
  const name = reference?.image ?? null;
  // An export's inspection has no reference and no version: not "made before references" but "an export has none".
  const fromExport = exported && reference === null && record.model_version == null ? needsFittedModelLine(exported, "A nearest normal reference") : null;
  const reason = reference?.unavailable ?? fromExport ?? NO_REFERENCE_RECORDED;
  return (
    <figure className="reference" data-testid="reference">
      {link ? (
        <Picture link={link} alt={`Nearest normal training image${name ? ` ${name}` : ""}`} />
      ) : (
        <p className="picture-missing" data-testid="reference-unavailable">
          {reason.charAt(0).toUpperCase() + reason.slice(1)}
        </p>
      )}
      <figcaption className="small">
        Nearest normal training image{name ? <>: <span className="reference-name">{name}</span></> : null}
      </figcaption>
    </figure>
  );
}
