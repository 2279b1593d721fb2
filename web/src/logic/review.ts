/**
 * The Review page's keyboard and cursor, apart from React: which key does what, where the cursor goes,
 * and how many are left. A decision is a label (normal / defective) stored with the reviewer's name;
 * skip and back only move the cursor, so nothing is stored by them.
 */

export type ReviewAction = "normal" | "anomalous" | "skip" | "back";

/** The single keys the page answers to (no modifier): N normal, D defective, S skip, B or ← back. */
export const REVIEW_KEYS: ReadonlyArray<{ key: string; action: ReviewAction; label: string }> = [
  { key: "N", action: "normal", label: "Actually normal" },
  { key: "D", action: "anomalous", label: "Actually defective" },
  { key: "S", action: "skip", label: "Skip" },
  { key: "B", action: "back", label: "Back" },
];

export function actionForKey(key: string): ReviewAction | null {
  if (key === "ArrowLeft") return "back";
  const found = REVIEW_KEYS.find((k) => k.key === key.toUpperCase() && key.length === 1);
  return found ? found.action : null;
}

/** Where the cursor goes after an action on `position` in a list of `length` items (`length` means past the end). */
export function nextPosition(position: number, length: number, action: ReviewAction): number {
  if (action === "back") return Math.max(0, position - 1);
  return Math.min(length, position + 1);
}

/**
 * How many are left: the queue's total when it was loaded, less what was labelled here since (a relabel
 * of an item already labelled here counts once).
 */
export function leftToReview(total: number, labelledHere: number): number {
  return Math.max(0, total - labelledHere);
}

/**
 * How many of the fetched items are labelled now (they were not when fetched: the queue holds unlabelled parts),
 * here or, as a refused decision showed, by someone else: what {@link leftToReview} takes off the total.
 */
export function labelledSinceFetched(items: ReadonlyArray<{ record: { label?: string | null } }>): number {
  return items.filter((item) => item.record.label === "normal" || item.record.label === "anomalous").length;
}

/** "3 left to review" / "1 left to review" / "Nothing left to review". */
export function leftLine(left: number): string {
  return left === 0 ? "Nothing left to review" : `${left} left to review`;
}

/**
 * The fetched items with `record` in place of the one with its id: after a label stored here (so a relabel
 * here is based on the revision this visit stored), and after a label refused because someone else labelled
 * the part meanwhile (so the page shows, and a new decision is based on, what is stored now).
 */
export function withRecord<Item extends { record: { id: string } }>(items: Item[], record: Item["record"]): Item[] {
  return items.map((item) => (item.record.id === record.id ? { ...item, record } : item));
}

/** What the part is labelled now, by whom and when ("Labelled actually defective by ana on …"); null: not labelled. */
export function storedLabelLine(
  record: { label?: string | null; label_by?: string | null; label_time?: string | null },
  formatTime: (iso: string) => string = (iso) => new Date(iso).toLocaleString(),
): string | null {
  if (record.label !== "normal" && record.label !== "anomalous") return null;
  const what = record.label === "normal" ? "normal" : "defective";
  const by = record.label_by ? ` by ${record.label_by}` : "";
  const when = record.label_time ? ` on ${formatTime(record.label_time)}` : "";
  return `Labelled actually ${what}${by}${when}.`;
}

/**
 * This visit's decisions less its one on `id`: after a decision on a part this visit labelled before (then
 * Back) is refused because someone else labelled it since, their label stands, so the page shows the label
 * stored now, not this visit's earlier one.
 */
export function withoutDecision<Decision>(labelled: Record<string, Decision>, id: string): Record<string, Decision> {
  return Object.fromEntries(Object.entries(labelled).filter(([other]) => other !== id));
}

/** What "Teach these N" offers less the part `id` (its normal label here was refused: someone else's stands). */
export function withoutCandidate<Candidate extends { id: string }>(toTeach: Candidate[], id: string): Candidate[] {
  return toTeach.filter((candidate) => candidate.id !== id);
}
