/**
 * The Review page's keyboard and cursor, apart from React: which key does what, where the cursor goes,
 * and how many are left. A decision is a label (normal / defective) stored with the reviewer's name;
 * skip and back only move the cursor, so nothing is stored by them.
 */

import { labelWords, whenSaid } from "./errors";

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

/**
 * Whether `fresh`, a record fetched by id, is at least as new as `held`, the one the page holds for that part:
 * a label's revision only ever moves on (each label and each clearing adds one), so a fetch that answers with
 * an older revision began before a decision stored here (Back, then N at once: the decision's answer lands
 * first) and must not replace it, or the next relabel would be based on the old revision and be refused as
 * if someone else had labelled the part.
 */
export function isNotOlder(
  fresh: { label_revision?: number | null },
  held: { label_revision?: number | null },
): boolean {
  return (fresh.label_revision ?? 0) >= (held.label_revision ?? 0);
}

/**
 * The fetched items with `record`, fetched by id, in place of the one with its id, unless the one held is
 * newer ({@link isNotOlder}): then the items are returned as they are.
 */
export function withFetchedRecord<Item extends { record: { id: string; label_revision?: number | null } }>(
  items: Item[],
  record: Item["record"],
): Item[] {
  const held = items.find((item) => item.record.id === record.id);
  return held && !isNotOlder(record, held.record) ? items : withRecord(items, record);
}

/** What the part is labelled now, by whom and when ("Labelled actually defective by ana at 12:01:02."); null: not labelled. */
export function storedLabelLine(
  record: { label?: string | null; label_by?: string | null; label_time?: string | null },
  now: Date = new Date(),
  locale?: string,
): string | null {
  if (record.label !== "normal" && record.label !== "anomalous") return null;
  const by = record.label_by ? ` by ${record.label_by}` : "";
  const when = record.label_time ? ` ${whenSaid(record.label_time, now, locale, true)}` : "";
  return `Labelled ${labelWords(record.label)}${by}${when}.`;
}

/**
 * The note stored with the label, as the labeller wrote it (null: none, or no label): shown wherever the label
 * is (History, Review's Back), so a supervisor sees why a part was called normal before teaching it. The page
 * draws it as text, isolated (`<bdi>`), so markup stays inert and a right-to-left override in it cannot turn
 * the words around it.
 */
export function labelNoteText(record: { label?: string | null; label_note?: string | null }): string | null {
  if (record.label !== "normal" && record.label !== "anomalous") return null;
  const note = record.label_note?.trim();
  return note ? note : null;
}

/**
 * What an answer asks its person to read besides the record (a label's or a teach's `notices`: the same label
 * given meanwhile by someone else, whose label stands; a part labelled defective that is one of the current
 * model's training images; an inspection labelled normal in the teacher's name): the sentences to show, blank
 * ones and repeats left out, each naming the part (`about`, its image name) unless it does. Shown on every
 * answer, not only on a refusal, or the person never learns them.
 */
export function answerNotices(answer: { notices?: readonly string[] | null } | null | undefined, about?: string): string[] {
  const seen = new Set<string>();
  for (const notice of answer?.notices ?? []) {
    const text = typeof notice === "string" ? notice.trim() : "";
    // Review has moved on to the next part when it is shown: a sentence that does not name its part says which.
    if (text) seen.add(about && !text.includes(about) ? `${about}: ${text}` : text);
  }
  return [...seen];
}

/** The service's limit on a label's note (LabelRequest.note: at most 500 characters). */
export const NOTE_MAX = 500;

/** The service's limit on a teach's, threshold change's and rollback's why (at most 500 characters). */
export const WHY_MAX = 500;

/**
 * A note's length as the service counts it: characters (Unicode code points), not the UTF-16 units a text
 * field's `maxLength` and `.length` count (an emoji is 2 of those and 1 character).
 */
export function noteLength(note: string): number {
  let count = 0;
  for (const _ of note) count += 1; // the string iterator walks code points
  return count;
}

/**
 * What the note's counter says, and whether the note can be saved: a note past the limit (typed or pasted) is
 * kept whole in the field and refused with how much to cut, never cut silently. Every free-text field the
 * service limits (a teach's, threshold change's, rollback's or deletion's why) counts with it (`max`, and
 * `shorten`: what to do to save), since a field's own `maxLength` counts UTF-16 units, not characters.
 */
export function noteStatus(
  note: string,
  max = NOTE_MAX,
  shorten = "shorten the note to save the decision",
): { line: string; over: boolean; full: boolean } {
  const length = noteLength(note.trim());
  if (length > max) {
    return { line: `${length} of ${max} characters: ${length - max} too many; ${shorten}`, over: true, full: true };
  }
  return { line: `${length} of ${max} characters${length === max ? " (full)" : ""}`, over: false, full: length === max };
}

/**
 * The line over a part that has a label, from the label stored now (the page refreshes it on Back and while
 * it is shown), so "You labelled this one…" is said only while the stored label is still the one given here.
 * `mine`: the label revision this visit stored for it (undefined: none). Someone else's label since says whose
 * and when; a label cleared since says so. Null: no label, none given here.
 */
export function labelNotice(
  record: { label?: string | null; label_by?: string | null; label_time?: string | null; label_revision?: number | null },
  mine: number | undefined,
  now: Date = new Date(),
  locale?: string,
): string | null {
  const revision = record.label_revision ?? 0;
  const stored = storedLabelLine(record, now, locale);
  if (stored !== null && record.label) {
    if (mine !== undefined && revision === mine) return `You labelled this one ${labelWords(record.label)}; a decision now replaces it.`;
    return `${stored.slice(0, -1)}${mine !== undefined ? ", after your label" : ""}. A decision now replaces it.`;
  }
  if (mine !== undefined && revision > mine) return "Its label was cleared since you labelled it: it waits for a decision again.";
  return null;
}

/**
 * The batch as the queue stands now (`queued`: the ids still in it, from a fresh look at its front): parts
 * someone else labelled meanwhile leave it. One still ahead of the cursor drops out (`dropped`); the one shown
 * stays, and `currentGone` says to fetch it as stored (whose label, when) before a decision is tried; the ones
 * behind stay for Back. Skipped ones labelled elsewhere are no longer skipped (the next fetch's offset, and
 * "Done, but for the N you skipped", count only those still waiting). A part with a label known here (given on
 * this visit, or already fetched as someone else's) is left as it is.
 *
 * `whole`: the look saw the whole queue (its total is no more than the items it returned). Only then does a
 * part missing from `queued` mean it left the queue: a look sees at most {@link lookLimit} parts from the front,
 * and parts whose label was cleared come back ahead of ours, so a part of this visit may lie past what a look
 * saw and still wait. A look that saw only the front changes nothing (the next one, or the next fetch, says).
 */
export function reconcile<Item extends { record: { id: string; label?: string | null } }>(
  items: readonly Item[],
  position: number,
  queued: ReadonlySet<string>,
  labelledHere: Readonly<Record<string, unknown>>,
  skipped: readonly string[],
  whole: boolean,
): { items: Item[]; skipped: string[]; dropped: string[]; currentGone: boolean } {
  const goneElsewhere = (item: Item) =>
    whole && !queued.has(item.record.id) && !(item.record.id in labelledHere) && !item.record.label;
  const dropped = items.filter((item, index) => index > position && goneElsewhere(item)).map((item) => item.record.id);
  const current = items[position];
  return {
    items: dropped.length > 0 ? items.filter((item) => !dropped.includes(item.record.id)) : [...items],
    skipped: whole ? skipped.filter((id) => queued.has(id)) : [...skipped],
    dropped,
    currentGone: current !== undefined && goneElsewhere(current),
  };
}

/**
 * How many to ask for when looking at the queue's front to see what is still in it: every part this visit
 * holds (skipped ones first, then the batch), with room for parts whose label was cleared meanwhile (they come
 * back at their place, ahead of ours); the service serves at most 500 at a time. A look that did not see the
 * whole queue (more cleared than the room, or a visit holding more than 500) drops nothing ({@link reconcile}).
 */
export function lookLimit(skipped: number, batch: number): number {
  return Math.min(500, skipped + batch + 20);
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
