import { labelNoteText } from "../logic/review";

/**
 * The note stored with a part's label, beside the label line: as text (markup in it stays inert), isolated by
 * `<bdi>` so a right-to-left override in it cannot reverse the words around it; newlines kept.
 */
export function LabelNote({ record }: { record: { label?: string | null; label_note?: string | null; label_by?: string | null } }) {
  const note = labelNoteText(record);
  if (note === null) return null;
  return (
    <span className="label-note" data-testid="label-note">
      {record.label_by ? `Note (${record.label_by}): ` : "Note: "}“<bdi>{note}</bdi>”
    </span>
  );
}
