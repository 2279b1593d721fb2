import { describe, expect, it } from "vitest";
import { byCategory, namesLine, taughtInspections, taughtLine, taughtOf, teachLabel, teachNotes, untaughtNormal } from "./teach";

describe("teaching from the review queue", () => {
  it("groups the parts labelled normal by category, in name order, keeping their order", () => {
    const groups = byCategory([
      { id: "a", category: "tire", imageName: "1.png" },
      { id: "b", category: "mono", imageName: "2.png" },
      { id: "c", category: "tire", imageName: "3.png" },
    ]);
    expect(groups.map(([name, items]) => [name, items.map((item) => item.id)])).toEqual([
      ["mono", ["b"]],
      ["tire", ["a", "c"]],
    ]);
    expect(byCategory([])).toEqual([]);
  });

  it("names a few parts, then counts the rest", () => {
    expect(namesLine(["a.png", "b.png"])).toBe("a.png, b.png");
    expect(namesLine(["a", "b", "c", "d", "e"])).toBe("a, b, c and 2 more");
    expect(namesLine([])).toBe("");
  });

  it("says what it will do and what it did", () => {
    expect([teachLabel(1, "mono"), teachLabel(3, "tire")]).toEqual(["Teach this one to mono", "Teach these 3 to tire"]);
    expect(taughtLine("mono", 2, { before: 117.50453, after: 114.6973 }, { before: 6400, after: 7689 })).toBe(
      "Taught 2 images to mono: tau 117.5 → 114.7, memory bank 6400 → 7689 patches. The next inspection uses it.",
    );
    expect(taughtLine("mono", 1, { before: 5, after: 5 }, { before: 10, after: 12 })).toBe(
      "Taught 1 image to mono: tau stays 5.000, memory bank 10 → 12 patches. The next inspection uses it.",
    );
    expect(taughtLine("mono", 1, { before: 5, after: 5 }, { before: 10, after: 12 }, 2)).toBe(
      "Taught 1 image to mono (2 skipped: in the model already or given twice): tau stays 5.000, memory bank 10 → 12 patches. The next inspection uses it.",
    );
    // a tau far above every score (set by hand) or far below, in plain digits, not "1.000e+9"
    expect(taughtLine("mono", 1, { before: 1e9, after: 1e9 }, { before: 10, after: 12 })).toBe(
      "Taught 1 image to mono: tau stays 1000000000, memory bank 10 → 12 patches. The next inspection uses it.",
    );
    expect(taughtLine("mono", 1, { before: 0.00000012345, after: 0 }, { before: 10, after: 12 })).toBe(
      "Taught 1 image to mono: tau 0.0000001235 → 0.000, memory bank 10 → 12 patches. The next inspection uses it.",
    );
  });

  it("names what a teach was forced past and the images it took above s_max", () => {
    expect(teachNotes(null, null)).toBe("");
    expect(teachNotes([], undefined)).toBe("");
    const warning = "a-cell.png scored 141.8, above s_max 135 (the largest normal score): it was taught, and s_max is now 141.8; check that it is normal";
    expect(teachNotes(null, [warning])).toBe(`Warning: ${warning}.`);
    const forced = "b-black.png is unrecognised: 90% of it is beyond the training images (20% or more makes an image unlike them)";
    expect(teachNotes([forced], [warning, warning])).toBe(
      `Taught although the checks refused: ${forced}. Warnings: ${warning}; ${warning}.`,
    );
  });
  it("says the teach answer's notices first, each a sentence", () => {
    const labelled = "c-dust.png, which nobody had labelled, is now labelled normal in your name (taught by force)";
    expect(teachNotes(null, null, [labelled])).toBe(`${labelled}.`);
    expect(teachNotes(null, ["w"], ["Done already."])).toBe("Done already. Warning: w.");
  });
});

describe("what the shift labelled normal and the model was not taught", () => {
  const v = (version: number, action: string, extra: object = {}) => ({ version, action, current: false, ...extra });
  it("follows the current model's lineage: teaches add, a rollback drops what came after its target", () => {
    const all = [
      v(1, "fit"),
      v(2, "teach", { inspections_added: ["a", "b"] }),
      v(3, "threshold"),
      v(4, "teach", { inspections_added: ["c"] }),
    ];
    expect([...taughtInspections([...all.slice(0, 3), { ...all[3]!, current: true }])]).toEqual(["a", "b", "c"]);
    const rolledBack = [...all, v(5, "rollback", { to: 3, current: true })];
    expect([...taughtInspections(rolledBack)]).toEqual(["a", "b"]); // c's teach was rolled back: not taught
    expect(taughtInspections([{ ...v(1, "fit"), current: true }]).size).toBe(0);
    expect(taughtInspections([v(1, "rollback", { to: 1, current: true })]).size).toBe(0); // a malformed lineage ends
  });
  it("takes the service's own list of what the current model was taught, walking the versions only without it", () => {
    // version 2 (the teach of a and b) pruned by hand: the walk stops at the gap, the service's list does not
    const gap = [v(1, "fit"), v(3, "teach", { inspections_added: ["c"], current: true })];
    expect([...taughtOf({ versions: gap, taught_inspections: ["a", "b", "c"] })]).toEqual(["a", "b", "c"]);
    expect([...taughtOf({ versions: gap })]).toEqual(["c"]);
    expect(taughtOf({ versions: gap, taught_inspections: [] }).size).toBe(0);
  });
  it("lists the parts labelled normal not in the model, oldest label first, not those taught here or labelled defective", () => {
    const part = (id: string, label: string, at: string) => ({ id, category: "tire", image_name: `${id}.png`, time: at, label, label_by: "omar", label_time: at });
    const parts = [part("d", "normal", "04:40"), part("c", "anomalous", "04:39"), part("b", "normal", "04:38"), part("a", "normal", "04:37")];
    expect(untaughtNormal(parts, new Set(["a"])).map((p) => p.id)).toEqual(["b", "d"]);
    expect(untaughtNormal(parts, new Set(["a"]), new Set(["d"])).map((p) => p.id)).toEqual(["b"]);
  });
});
