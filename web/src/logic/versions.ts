/** A category's model versions: one line each, and the difference between two of them. */
import type { ModelVersion } from "@eagle-iad/client";
import type { VersionTarget } from "./route";
import { formatSignificant } from "./scale";

/** What made a version, in words: "fit", "threshold change", "taught 3 images", "rollback to version 2". */
export function whatMadeIt(version: ModelVersion): string {
  switch (version.action) {
    case "fit":
      return "fit";
    case "threshold":
      // The restored change named by the version it made where it was recorded (one numbering), else its number.
      if (typeof version.restored_version === "number") return `threshold restored (undoes version ${version.restored_version})`;
      return version.restored ? `threshold restored (undoes change #${version.restored})` : "threshold change";
    case "teach": {
      const count = version.images_added?.length ?? 0;
      return `taught ${count === 1 ? "1 image" : `${count} images`}`;
    }
    case "rollback":
      return `rollback to version ${version.to ?? "?"}`;
    default:
      return version.action;
  }
}

/**
 * The versions whose model the current one is, by rollbacks (not the current version itself): "rollback to 7"
 * is version 7's model, and so is the version 7 rolled back to, if 7 was itself a rollback. A rollback to one of
 * them is refused ("the current model already"), so the timeline offers none and says whose model is current.
 */
export function sameAsCurrent(all: readonly ModelVersion[]): Set<number> {
  const byNumber = new Map(all.map((v) => [v.version, v] as const));
  const root = (v: ModelVersion): number => {
    let at = v;
    for (let depth = 0; depth < all.length && at.action === "rollback" && typeof at.to === "number"; depth++) {
      const next = byNumber.get(at.to);
      if (!next) return at.to; // pruned: its number still names the model
      at = next;
    }
    return at.version;
  };
  const current = all.find((v) => v.current);
  if (!current) return new Set();
  const model = root(current);
  return new Set(all.filter((v) => !v.current && root(v) === model).map((v) => v.version));
}

export interface DiffRow {
  label: string;
  a: string;
  b: string;
  changed: boolean;
}

function num(value: number | null | undefined): string {
  return formatSignificant(value, 5);
}

/** Field by field, version `a` against version `b` (either order), with the images taught in between. */
export function versionDiff(a: ModelVersion, b: ModelVersion, all: readonly ModelVersion[]): DiffRow[] {
  const rows: DiffRow[] = [
    { label: "Made by", a: whatMadeIt(a), b: whatMadeIt(b), changed: false },
    { label: "Threshold (τ)", a: num(a.tau), b: num(b.tau), changed: a.tau !== b.tau },
    { label: "Unsure band end (s_max)", a: num(a.s_max), b: num(b.s_max), changed: a.s_max !== b.s_max },
    { label: "Rule", a: a.rule, b: b.rule, changed: a.rule !== b.rule },
    { label: "Training images", a: String(a.train_images), b: String(b.train_images), changed: a.train_images !== b.train_images },
    {
      label: "Memory bank (patches)",
      a: String(a.bank_size ?? "–"),
      b: String(b.bank_size ?? "–"),
      changed: a.bank_size !== b.bank_size,
    },
  ];
  rows[0]!.changed = rows[0]!.a !== rows[0]!.b;
  // What each version did on the labelled parts, counted at a change, on the same parts for both where the records
  // allow (labelledPair): a teach's own "after" beside the version before it as that teach counted it "before".
  const pair = labelledPair(a, b, all);
  for (const [label, key] of [["False alarms on labelled parts", "false_alarms"], ["Misses on labelled parts", "misses"]] as const) {
    const [fa, fb] = [pair.a, pair.b].map((count) => (count ? countWords(count, key) : "–")) as [string, string];
    // Counts of different labelled parts are not a change of the model: not marked as one (the caveat says why).
    if (fa !== "–" || fb !== "–") rows.push({ label, a: fa, b: fb, changed: pair.comparable && fa !== fb });
  }
  const inA = taughtImages(a, all);
  const inB = taughtImages(b, all);
  const onlyA = inA.filter((name) => !inB.includes(name));
  const onlyB = inB.filter((name) => !inA.includes(name));
  if (onlyA.length > 0 || onlyB.length > 0) {
    const names = (stored: string[]) => stored.map(taughtImageName).join(", ") || "–";
    rows.push({ label: "Taught images in one only", a: names(onlyA), b: names(onlyB), changed: true });
  }
  return rows;
}

/** The labelled history's figures as one model change recorded them (`labelled.before` or `.after`). */
interface LabelledFigures {
  images?: number;
  false_alarms?: number;
  misses?: number;
  /** Which parts were counted (a short hash of their inspection ids and labels); absent in older records. */
  parts?: string | null;
}

/**
 * One count of a version's false alarms and misses on the parts labelled by then: its own change's "after"
 * (`made`: when it was made), or the next version's "before" (`replacedBy`: that change counted this version,
 * as each version is made from the one before it).
 */
export interface LabelledCount {
  figures: LabelledFigures;
  replacedBy: number | null;
  /** The version whose change recorded the count (its before and after score the same parts). */
  change: number;
}

/** A version's counts, in the order {@link labelledFigure} prefers them: when it was made, when it was replaced. */
function countsOf(version: ModelVersion, all: readonly ModelVersion[]): { made: LabelledCount | null; replaced: LabelledCount | null } {
  const own = version.labelled?.after;
  const next = all.find((v) => v.version === version.version + 1);
  const before = next?.labelled?.before;
  return {
    made: own ? { figures: own, replacedBy: null, change: version.version } : null,
    replaced: next && before ? { figures: before, replacedBy: next.version, change: next.version } : null,
  };
}

function countWords(count: LabelledCount, key: "false_alarms" | "misses"): string {
  const when = count.replacedBy === null ? "when it was made" : `when version ${count.replacedBy} replaced it`;
  return `${count.figures[key] ?? 0} of ${count.figures.images ?? 0} ${when}`;
}

/**
 * A version's false alarms or misses on the parts labelled by then, with when they were counted: "0 of 5 when it
 * was made" (its own change's "after") or "3 of 5 when version 2 replaced it" (the next change's "before", which
 * describes this version: each version is made from the one before it). "–" where neither was recorded.
 */
export function labelledFigure(version: ModelVersion, all: readonly ModelVersion[], key: "false_alarms" | "misses"): string {
  const { made, replaced } = countsOf(version, all);
  const count = made ?? replaced;
  return count ? countWords(count, key) : "–";
}

/**
 * Whether two counts were made on the same labelled parts: both name their parts and they are the same (ids and
 * labels), or, in records made before the parts were named, both are one change's before and after (the same
 * parts scored with the model before and after it). As many parts are not the same parts: through a shift labels
 * are given, corrected and cleared, so two counts of 14 may share none.
 */
function sameParts(x: LabelledCount, y: LabelledCount): boolean {
  const [p, q] = [x.figures.parts, y.figures.parts];
  if (typeof p === "string" && typeof q === "string") return p === q;
  return x.change === y.change && (x.figures.images ?? 0) === (y.figures.images ?? 0);
}

/**
 * The counts of two versions to put side by side. Each version may have two (when it was made, when the next one
 * replaced it), counted on the parts labelled at that time, which change through a shift: a version counted on 1
 * labelled part beside one counted on 14 reads as a change of the model where there is none ("1 of 1" against
 * "2 of 14" for a teach that took 10 of 14 to 2 of 14), and so does one counted on 14 other parts. So the pair
 * counted on the same parts ({@link sameParts}) is taken, the counts nearest in time first: a teach against the
 * version before it is its own "after" beside its "before". `comparable` is false where no such pair was recorded
 * (then each version's own count is shown, and {@link labelledCaveat} says they are not comparable).
 */
export function labelledPair(a: ModelVersion, b: ModelVersion, all: readonly ModelVersion[]): { a: LabelledCount | null; b: LabelledCount | null; comparable: boolean } {
  const [early, late] = a.version <= b.version ? [countsOf(a, all), countsOf(b, all)] : [countsOf(b, all), countsOf(a, all)];
  const tries: [LabelledCount | null, LabelledCount | null][] = [
    [early.replaced, late.made],
    [early.made, late.made],
    [early.replaced, late.replaced],
    [early.made, late.replaced],
  ];
  const same = tries.find(([x, y]) => x && y && sameParts(x, y));
  const [e, l] = same ?? [early.made ?? early.replaced, late.made ?? late.replaced];
  const comparable = same !== undefined || e === null || l === null;
  return a.version <= b.version ? { a: e, b: l, comparable } : { a: l, b: e, comparable };
}

/**
 * Said under the diff where the two versions' counts were not made on the same labelled parts (else null): they
 * describe different parts, not what the model did differently.
 */
export function labelledCaveat(a: ModelVersion, b: ModelVersion, all: readonly ModelVersion[]): string | null {
  const pair = labelledPair(a, b, all);
  if (pair.comparable || !pair.a || !pair.b) return null;
  const [n, m] = [pair.a.figures.images ?? 0, pair.b.figures.images ?? 0];
  const named = typeof pair.a.figures.parts === "string" && typeof pair.b.figures.parts === "string";
  const which =
    n !== m
      ? `were counted on different labelled parts (${n} and ${m})`
      : named
        ? `were counted on different labelled parts (${n} each, not the same ones)`
        : `were counted on labelled parts not known to be the same (${n} each, counted before the parts were recorded)`;
  return (
    `Versions ${a.version} and ${b.version} ${which}: their false alarms and misses are not comparable. Compare a ` +
    "version with the one before it to see what that change did, on the same parts."
  );
}

/**
 * A taught image's own file name, as inspected ("cell0078.png"), from the name the model stores it under:
 * "taught-<change>/<nnnn>-" in front (unique within the model), and, for images taught from inspections
 * before the service kept the inspection apart, that inspection's 32-hex id as well.
 */
export function taughtImageName(stored: string): string {
  return stored.replace(/^taught-\d+\/\d+-/, "").replace(/^[0-9a-f]{32}-/, "");
}

/**
 * The images a version's model was taught, following its lineage: a teach adds to the version before it, a
 * threshold change keeps the version before it, a rollback takes the version it went back to, a fit has none.
 */
export function taughtImages(version: ModelVersion, all: readonly ModelVersion[], depth = 0): string[] {
  if (depth > all.length) return []; // a malformed lineage (a rollback to itself): stop rather than loop
  const byNumber = (n: number | null | undefined) => all.find((v) => v.version === n);
  switch (version.action) {
    case "fit":
      return [];
    case "rollback": {
      const target = byNumber(version.to);
      return target ? taughtImages(target, all, depth + 1) : [];
    }
    default: {
      const before = byNumber(version.version - 1);
      const earlier = before ? taughtImages(before, all, depth + 1) : [];
      return version.action === "teach" ? [...earlier, ...(version.images_added ?? [])] : earlier;
    }
  }
}

/** "12.3 MB" for a byte count. */
export function formatBytes(bytes: number): string {
  if (bytes < 1000) return `${bytes} B`;
  if (bytes < 1_000_000) return `${(bytes / 1000).toFixed(1)} kB`;
  return `${(bytes / 1_000_000).toFixed(1)} MB`;
}

/**
 * The model version that scored an inspection (its record's `model_version`), as the Versions timeline names it:
 * "version 3". Null names no version: an export scored it (an export has no versions), or it was stored before
 * records named their version; said so, rather than a bare dash, since a missing number would otherwise look
 * like a fault.
 */
export function modelVersionText(version: number | null | undefined): string {
  return typeof version === "number" ? `version ${version}` : "no version recorded (an export, or stored before versions)";
}

/** The same, compact, for a table column: "v3", or "–". */
export function modelVersionShort(version: number | null | undefined): string {
  return typeof version === "number" ? `v${version}` : "–";
}

/**
 * Where a link to one model version (`#/categories/<name>?version=3`, a {@link VersionTarget}) lands in the
 * category's Versions timeline: `entry` (the version is listed: scroll to it and mark it), `damaged` (it is
 * kept but cannot be read: its line in the damaged list), or `note` with what to say instead (the version
 * is gone, the parameter is not a version number, or the service runs an export, which keeps no versions: then
 * the page follows the note with the export's own line, `needsFittedModelLine` in exported.ts, which says why).
 * `none` for a visit without a version. A link is never met with silence: the reader followed it for a reason.
 */
export type VersionLanding =
  | { kind: "none" }
  | { kind: "entry"; version: number }
  | { kind: "damaged"; version: number }
  | { kind: "note"; text: string };

export function versionLanding(
  target: VersionTarget,
  name: string,
  listed: { versions: readonly { version: number }[]; damaged?: readonly { version: number }[] | null },
  exportFormat?: string | null,
): VersionLanding {
  if (target.kind === "none") return { kind: "none" };
  if (exportFormat) {
    const what = target.kind === "version" ? `version ${target.version} of ${name}` : `a version of ${name}`;
    return { kind: "note", text: `The link points to ${what}, which cannot be shown here.` };
  }
  if (target.kind === "invalid") {
    return { kind: "note", text: `The link asks for version “${target.raw}” of ${name}, which is not a version number: the versions of ${name} are listed below.` };
  }
  const { version } = target;
  if (listed.versions.some((v) => v.version === version)) return { kind: "entry", version };
  if (listed.damaged?.some((v) => v.version === version)) return { kind: "damaged", version };
  const numbers = listed.versions.map((v) => v.version);
  const kept =
    numbers.length === 0
      ? "it has no readable version"
      : numbers.length === 1
        ? `the only version kept is version ${numbers[0]}, listed below`
        : `the versions kept are ${Math.min(...numbers)} to ${Math.max(...numbers)}, listed below`;
  return { kind: "note", text: `There is no version ${version} of ${name} (any more): ${kept}.` };
}
