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

/** "3 left to review" / "1 left to review" / "Nothing left to review". */
export function leftLine(left: number): string {
  return left === 0 ? "Nothing left to review" : `${left} left to review`;
}
