/** Which parts labelled "actually normal" on the Review page can be taught, and the line a teach leaves. */

export interface TeachCandidate {
  id: string;
  category: string;
  imageName: string;
}

/** The candidates grouped by category (a teach changes one category's model), categories in name order. */
export function byCategory(candidates: readonly TeachCandidate[]): Array<[string, TeachCandidate[]]> {
  const groups = new Map<string, TeachCandidate[]>();
  for (const candidate of candidates) {
    const group = groups.get(candidate.category) ?? [];
    group.push(candidate);
    groups.set(candidate.category, group);
  }
  return [...groups.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

/** Up to `shown` names, then how many more: "a.png, b.png, c.png and 7 more". */
export function namesLine(names: readonly string[], shown = 3): string {
  const listed = names.slice(0, shown).join(", ");
  return names.length > shown ? `${listed} and ${names.length - shown} more` : listed;
}

/** The button's words: "Teach these 3 to mono". */
export function teachLabel(count: number, category: string): string {
  return `Teach ${count === 1 ? "this one" : `these ${count}`} to ${category}`;
}

/** What a finished teach did, in one sentence (tau before and after, bank size). */
export function taughtLine(
  category: string,
  count: number,
  tau: { before: number; after: number },
  bank: { before: number; after: number },
  skipped = 0,
): string {
  const images = count === 1 ? "1 image" : `${count} images`;
  const also = skipped > 0 ? ` (${skipped} skipped: in the model already or given twice)` : "";
  const change = tau.before === tau.after ? `tau stays ${fmt(tau.after)}` : `tau ${fmt(tau.before)} → ${fmt(tau.after)}`;
  return `Taught ${images} to ${category}${also}: ${change}, memory bank ${bank.before} → ${bank.after} patches. The next inspection uses it.`;
}

/**
 * What a finished teach asks the engineer to look at, after its line: the checks it was forced past
 * (`forced`) and the images it took although they scored above every normal image (`warnings`: they raised
 * s_max, so the unsure band grew). "" when there is nothing.
 */
export function teachNotes(forced: readonly string[] | null | undefined, warnings: readonly string[] | null | undefined): string {
  const notes: string[] = [];
  if (forced && forced.length > 0) notes.push(`Taught although the checks refused: ${forced.join("; ")}.`);
  if (warnings && warnings.length > 0) notes.push(`${warnings.length === 1 ? "Warning" : "Warnings"}: ${warnings.join("; ")}.`);
  return notes.join(" ");
}

function fmt(value: number): string {
  return value.toPrecision(4);
}
