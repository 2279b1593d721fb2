import type { ModelVersion } from "@eagle-iad/client";
import { describe, expect, it } from "vitest";
import {
  formatBytes,
  labelledCaveat,
  labelledFigure,
  modelVersionShort,
  modelVersionText,
  sameAsCurrent,
  taughtImageName,
  versionDiff,
  versionLanding,
  whatMadeIt,
} from "./versions";

const base: ModelVersion = {
  version: 1, action: "fit", at: "2026-12-01T08:00:00+00:00", by: null, why: null, current: false,
  tau: 117.5045, s_max: 121.04, rule: "ksigma", train_images: 10, bank_size: 1600, bytes_added: 6_700_000,
};
const versions: ModelVersion[] = [
  base,
  { ...base, version: 2, action: "teach", images_added: ["taught-1/0001-a.png", "taught-1/0002-b.png"], tau: 114.697, train_images: 12, bank_size: 1900, bytes_added: 8_000_000 },
  {
    ...base, version: 3, action: "threshold", tau: 110, rule: "fixed", train_images: 12, bank_size: 1900, bytes_added: 3000,
    labelled: { before: { images: 20, false_alarms: 3, misses: 1 }, after: { images: 20, false_alarms: 1, misses: 2 } },
  },
  { ...base, version: 4, action: "rollback", to: 1, current: true, bytes_added: 3100 },
  { ...base, version: 5, action: "threshold", restored: 2 },
];

describe("model versions", () => {
  it("say what made each", () => {
    expect(versions.map(whatMadeIt)).toEqual([
      "fit", "taught 2 images", "threshold change", "rollback to version 1", "threshold restored (undoes change #2)",
    ]);
  });

  it("name a restored change by the version it made, where the record says it", () => {
    expect(whatMadeIt({ ...base, version: 6, action: "threshold", restored: 2, restored_version: 3 })).toBe("threshold restored (undoes version 3)");
  });

  it("know which versions the current model copies by rollbacks (no rollback to them is offered)", () => {
    const chain: ModelVersion[] = [
      { ...base, version: 1 },
      { ...base, version: 2, action: "threshold" },
      { ...base, version: 3, action: "rollback", to: 1 },
      { ...base, version: 4, action: "threshold" },
      { ...base, version: 5, action: "rollback", to: 3, current: true },
    ];
    expect([...sameAsCurrent(chain)].sort()).toEqual([1, 3]);
    expect([...sameAsCurrent(versions)]).toEqual([1]); // version 4 is a rollback to 1
    expect([...sameAsCurrent(versions.map((v) => ({ ...v, current: v.version === 3 })))]).toEqual([]);
  });

  it("diff two versions field by field, in either order, with the images taught between them", () => {
    const rows = versionDiff(versions[0]!, versions[2]!, versions);
    expect(rows.map((row) => [row.label, row.a, row.b, row.changed])).toEqual([
      ["Made by", "fit", "threshold change", true],
      ["Threshold (τ)", "117.50", "110.00", true],
      ["Unsure band end (s_max)", "121.04", "121.04", false],
      ["Rule", "ksigma", "fixed", true],
      ["Training images", "10", "12", true],
      ["Memory bank (patches)", "1600", "1900", true],
      ["False alarms on labelled parts", "–", "1 of 20 when it was made", true],
      ["Misses on labelled parts", "–", "2 of 20 when it was made", true],
      ["Taught images in one only", "–", "a.png, b.png", true],
    ]);
    expect(versionDiff(versions[2]!, versions[0]!, versions).at(-1)?.a).toBe("a.png, b.png");
    // a tau set by hand far above every score, and a tiny one, in plain digits (toPrecision wrote "1.0000e+9")
    const far = versionDiff({ ...versions[0]!, tau: 1e9, s_max: 0.0000001 }, { ...versions[2]!, tau: -0.00001, s_max: 0 }, versions);
    expect(far.slice(1, 3).map((row) => [row.a, row.b])).toEqual([["1000000000", "-0.000010000"], ["0.00000010000", "0.0000"]]);
    // The rollback to the fit holds the fit's images: nothing taught differs, only what made it.
    expect(versionDiff(versions[0]!, versions[3]!, versions).filter((row) => row.changed).map((row) => row.label)).toEqual([
      "Made by",
    ]);
    expect(versionDiff(versions[3]!, versions[2]!, versions).at(-1)?.b).toBe("a.png, b.png");
  });

  it("give a version without a figure of its own the one counted when the next version replaced it", () => {
    // Version 2 (a teach here without figures) is what version 3's change started from: its "before" is version 2's.
    const rows = versionDiff(versions[1]!, versions[2]!, versions);
    expect(rows.filter((row) => row.label.endsWith("on labelled parts")).map((row) => [row.label, row.a, row.b])).toEqual([
      ["False alarms on labelled parts", "3 of 20 when version 3 replaced it", "1 of 20 when it was made"],
      ["Misses on labelled parts", "1 of 20 when version 3 replaced it", "2 of 20 when it was made"],
    ]);
    // The fit, followed by a teach that recorded nothing, has no figure: a dash, not a zero.
    expect(labelledFigure(versions[0]!, versions, "false_alarms")).toBe("–");
  });

  it("compare a teach with the version before it on the same labelled parts, not on the fewer labelled when that one was made", () => {
    // The shift's case: version 2, a threshold change, counted 1 labelled part; by the teach (version 3) 14 were
    // labelled, and the teach took them from 10 false alarms to 2. "1 of 1" beside "2 of 14" read as a rise.
    const shift: ModelVersion[] = [
      base,
      { ...base, version: 2, action: "threshold", tau: 110, labelled: { before: { images: 1, false_alarms: 1, misses: 0 }, after: { images: 1, false_alarms: 1, misses: 0 } } },
      {
        ...base, version: 3, action: "teach", images_added: ["taught-2/0001-c.png"], current: true,
        labelled: { before: { images: 14, false_alarms: 10, misses: 0 }, after: { images: 14, false_alarms: 2, misses: 1 } },
      },
    ];
    const rows = (a: number, b: number) =>
      versionDiff(shift[a - 1]!, shift[b - 1]!, shift)
        .filter((row) => row.label.endsWith("on labelled parts"))
        .map((row) => [row.label, row.a, row.b, row.changed]);
    expect(rows(2, 3)).toEqual([
      ["False alarms on labelled parts", "10 of 14 when version 3 replaced it", "2 of 14 when it was made", true],
      ["Misses on labelled parts", "0 of 14 when version 3 replaced it", "1 of 14 when it was made", true],
    ]);
    expect(rows(3, 2).map((row) => [row[1], row[2]])).toEqual([
      ["2 of 14 when it was made", "10 of 14 when version 3 replaced it"],
      ["1 of 14 when it was made", "0 of 14 when version 3 replaced it"],
    ]);
    expect(labelledCaveat(shift[1]!, shift[2]!, shift)).toBeNull();
    // Version 2 against the fit before it: the fit's count is the one version 2 made "before", on the same part.
    expect(rows(1, 2).map((row) => [row[1], row[2]])).toEqual([
      ["1 of 1 when version 2 replaced it", "1 of 1 when it was made"],
      ["0 of 1 when version 2 replaced it", "0 of 1 when it was made"],
    ]);
  });

  it("do not mark counts of different labelled parts as a change, and say they are not comparable", () => {
    const apart: ModelVersion[] = [
      { ...base, labelled: null },
      { ...base, version: 2, action: "threshold", labelled: { before: { images: 1, false_alarms: 0, misses: 0 }, after: { images: 1, false_alarms: 1, misses: 0 } } },
      { ...base, version: 3, action: "rollback", to: 1 },
      { ...base, version: 4, action: "threshold", current: true, labelled: { before: { images: 14, false_alarms: 9, misses: 0 }, after: { images: 14, false_alarms: 2, misses: 0 } } },
    ];
    const rows = versionDiff(apart[1]!, apart[3]!, apart).filter((row) => row.label.endsWith("on labelled parts"));
    expect(rows.map((row) => [row.a, row.b, row.changed])).toEqual([
      ["1 of 1 when it was made", "2 of 14 when it was made", false],
      ["0 of 1 when it was made", "0 of 14 when it was made", false],
    ]);
    expect(labelledCaveat(apart[1]!, apart[3]!, apart)).toBe(
      "Versions 2 and 4 were counted on different labelled parts (1 and 14): their false alarms and misses are not comparable. " +
        "Compare a version with the one before it to see what that change did, on the same parts.",
    );
    expect(labelledCaveat(apart[3]!, apart[1]!, apart)).toBe(
      "Versions 4 and 2 were counted on different labelled parts (14 and 1): their false alarms and misses are not comparable. " +
        "Compare a version with the one before it to see what that change did, on the same parts.",
    );
  });

  it("compare two versions only on the same labelled parts, not on as many other parts", () => {
    // Versions 2 and 4 (a rollback between them) each counted 14 labelled parts, but not the same 14: labels were
    // given, corrected and cleared meanwhile. Side by side they would read as the model's change.
    const count = (parts: string | undefined, false_alarms: number) => ({ images: 14, false_alarms, misses: 0, ...(parts ? { parts } : {}) });
    const made = (version: number, before: object, after: object, extra: Partial<ModelVersion> = {}): ModelVersion => ({
      ...base, version, action: "threshold", labelled: { before, after } as ModelVersion["labelled"], ...extra,
    });
    const shift = (second: string | undefined, fourth: string | undefined): ModelVersion[] => [
      { ...base, labelled: null },
      made(2, count(second, 6), count(second, 5)),
      { ...base, version: 3, action: "rollback", to: 1 },
      made(4, count(fourth, 9), count(fourth, 2), { current: true }),
    ];
    const rows = (all: ModelVersion[]) =>
      versionDiff(all[1]!, all[3]!, all)
        .filter((row) => row.label.endsWith("on labelled parts"))
        .map((row) => [row.a, row.b, row.changed]);
    const other = shift("1a2b3c4d5e6f7a8b", "99aa88bb77cc66dd");
    expect(rows(other)).toEqual([
      ["5 of 14 when it was made", "2 of 14 when it was made", false],
      ["0 of 14 when it was made", "0 of 14 when it was made", false],
    ]);
    expect(labelledCaveat(other[1]!, other[3]!, other)).toBe(
      "Versions 2 and 4 were counted on different labelled parts (14 each, not the same ones): their false alarms and " +
        "misses are not comparable. Compare a version with the one before it to see what that change did, on the same parts.",
    );
    // The same parts (ids and labels): compared, and a difference is the models'.
    const same = shift("1a2b3c4d5e6f7a8b", "1a2b3c4d5e6f7a8b");
    expect(rows(same)).toEqual([
      ["5 of 14 when it was made", "2 of 14 when it was made", true],
      ["0 of 14 when it was made", "0 of 14 when it was made", false],
    ]);
    expect(labelledCaveat(same[1]!, same[3]!, same)).toBeNull();
    // Counted before the parts were recorded: as many parts of two changes are not known to be the same.
    const older = shift(undefined, undefined);
    expect(rows(older).map((row) => row[2])).toEqual([false, false]);
    expect(labelledCaveat(older[1]!, older[3]!, older)).toBe(
      "Versions 2 and 4 were counted on labelled parts not known to be the same (14 each, counted before the parts were " +
        "recorded): their false alarms and misses are not comparable. Compare a version with the one before it to see " +
        "what that change did, on the same parts.",
    );
  });

  it("formats disk sizes", () => {
    expect([formatBytes(512), formatBytes(3100), formatBytes(6_700_000)]).toEqual(["512 B", "3.1 kB", "6.7 MB"]);
  });
});

describe("the model version an inspection names", () => {
  it("names it as the timeline does, or says why there is none", () => {
    expect(modelVersionText(3)).toBe("version 3");
    expect(modelVersionText(null)).toBe("no version recorded (an export, or stored before versions)");
    expect(modelVersionText(undefined)).toBe(modelVersionText(null));
    expect(modelVersionShort(12)).toBe("v12");
    expect(modelVersionShort(null)).toBe("–");
  });
});

describe("versionLanding", () => {
  const listed = { versions: [{ version: 1 }, { version: 2 }, { version: 4 }], damaged: [{ version: 3 }] };
  it("lands on the entry of a listed version, the oldest included", () => {
    expect(versionLanding({ kind: "version", version: 4 }, "mono", listed)).toEqual({ kind: "entry", version: 4 });
    expect(versionLanding({ kind: "version", version: 1 }, "mono", listed)).toEqual({ kind: "entry", version: 1 });
  });
  it("lands on a damaged version's line", () => {
    expect(versionLanding({ kind: "version", version: 3 }, "mono", listed)).toEqual({ kind: "damaged", version: 3 });
  });
  it("does nothing on an ordinary visit", () => {
    expect(versionLanding({ kind: "none" }, "mono", listed)).toEqual({ kind: "none" });
    expect(versionLanding({ kind: "none" }, "mono", { versions: [] }, "onnx")).toEqual({ kind: "none" });
  });
  it("says a version that is gone, with the versions kept", () => {
    expect(versionLanding({ kind: "version", version: 9 }, "mono", listed)).toEqual({
      kind: "note",
      text: "There is no version 9 of mono (any more): the versions kept are 1 to 4, listed below.",
    });
    expect(versionLanding({ kind: "version", version: 0 }, "tire", { versions: [{ version: 1 }] })).toEqual({
      kind: "note",
      text: "There is no version 0 of tire (any more): the only version kept is version 1, listed below.",
    });
    expect(versionLanding({ kind: "version", version: 2 }, "tire", { versions: [], damaged: [{ version: 1 }] })).toEqual({
      kind: "note",
      text: "There is no version 2 of tire (any more): it has no readable version.",
    });
  });
  it("says a parameter that is not a version number", () => {
    expect(versionLanding({ kind: "invalid", raw: "abc" }, "mono", listed)).toEqual({
      kind: "note",
      text: "The link asks for version “abc” of mono, which is not a version number: the versions of mono are listed below.",
    });
  });
  it("says an export keeps no versions", () => {
    // (the page follows it with the export's own line: what needs the fitted model, and why)
    expect(versionLanding({ kind: "version", version: 3 }, "mono", listed, "onnx")).toEqual({
      kind: "note",
      text: "The link points to version 3 of mono, which cannot be shown here.",
    });
    expect(versionLanding({ kind: "invalid", raw: "x" }, "mono", { versions: [] }, "openvino")).toEqual({
      kind: "note",
      text: "The link points to a version of mono, which cannot be shown here.",
    });
  });
});

describe("taughtImageName", () => {
  it("shows a taught image by its own file name, not the name the model stores it under", () => {
    expect(taughtImageName("taught-1/0001-cell0078.png")).toBe("cell0078.png");
    expect(taughtImageName("taught-12/0003-3d721be90718458c8124b3993c0a16b9-cell0078.png")).toBe("cell0078.png"); // taught before
    expect(taughtImageName("good/001.png")).toBe("good/001.png"); // a training image: as it is
  });
});
