/** Which parts labelled "actually normal" on the Review page can be taught, and the line a teach leaves. */
import { formatSignificant } from "./scale";

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
 * What a finished teach asks the engineer to look at, after its line: the answer's `notices` (answerNotices:
 * say, an inspection nobody had labelled, taught by force, is now labelled normal in the teacher's name), the
 * checks it was forced past (`forced`) and the images it took although they scored above every normal image
 * (`warnings`: they raised s_max, so the unsure band grew). "" when there is nothing.
 */
export function teachNotes(
  forced: readonly string[] | null | undefined,
  warnings: readonly string[] | null | undefined,
  notices: readonly string[] = [],
): string {
  const notes: string[] = [...notices.map((notice) => (/[.!?]$/.test(notice) ? notice : `${notice}.`))];
  if (forced && forced.length > 0) notes.push(`Taught although the checks refused: ${forced.join("; ")}.`);
  if (warnings && warnings.length > 0) notes.push(`${warnings.length === 1 ? "Warning" : "Warnings"}: ${warnings.join("; ")}.`);
  return notes.join(" ");
}

function fmt(value: number): string {
  return formatSignificant(value, 4);
}

/** A version as the shift list reads it: what made it, what it went back to, the inspections a teach took. */
export interface LineageVersion {
  version: number;
  action: string;
  current: boolean;
  to?: number | null;
  inspections_added?: string[] | null;
}

/**
 * The inspections the current model was taught, following its lineage as taughtImages does: a teach adds to
 * the version before it, a threshold change keeps it, a rollback takes the version it went back to (so a teach
 * rolled back is no longer taught), a fit has none.
 */
export function taughtInspections(all: readonly LineageVersion[]): Set<string> {
  const byNumber = (n: number | null | undefined) => all.find((v) => v.version === n);
  const walk = (version: LineageVersion | undefined, depth: number): string[] => {
    if (!version || depth > all.length || version.action === "fit") return []; // depth: a malformed lineage
    if (version.action === "rollback") return walk(byNumber(version.to), depth + 1);
    const earlier = walk(byNumber(version.version - 1), depth + 1);
    return version.action === "teach" ? [...earlier, ...(version.inspections_added ?? [])] : earlier;
  };
  return new Set(walk(all.find((v) => v.current), 0));
}

/**
 * What the current model was taught: the service's own list (`taught_inspections`, read from the current model's
 * history, so a version pruned by hand cannot make a taught part look untaught), or, from a service that predates
 * it, the walk through the version list.
 */
export function taughtOf(answer: { versions: readonly unknown[]; taught_inspections?: readonly string[] | null }): Set<string> {
  if (Array.isArray(answer.taught_inspections)) return new Set(answer.taught_inspections);
  return taughtInspections(answer.versions as LineageVersion[]);
}

/** A part the shift labelled, as the list shows it. */
export interface LabelledPart {
  id: string;
  category: string;
  image_name: string;
  time: string;
  label?: string | null;
  label_by?: string | null;
  label_time?: string | null;
  label_note?: string | null;
}

/**
 * What the shift labelled actually normal and the current model was not taught, oldest label first (the order
 * they were decided in): what a supervisor may teach. `handled`: taught from this page already (a twin the teach
 * skipped as in the model already is not named in the version, so it would come back until the page reloads).
 */
export function untaughtNormal<Part extends LabelledPart>(parts: readonly Part[], taught: ReadonlySet<string>, handled: ReadonlySet<string> = new Set()): Part[] {
  return parts
    .filter((part) => part.label === "normal" && !taught.has(part.id) && !handled.has(part.id))
    .sort((a, b) => ((a.label_time ?? a.time) < (b.label_time ?? b.time) ? -1 : (a.label_time ?? a.time) > (b.label_time ?? b.time) ? 1 : 0));
}
