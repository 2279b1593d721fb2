import { describe, expect, it } from "vitest";
import { byCategory, namesLine, taughtLine, teachLabel, teachNotes } from "./teach";

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
});
