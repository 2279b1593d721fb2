import { describe, expect, it } from "vitest";
import {
  actionForKey,
  answerNotices,
  WHY_MAX,
  isNotOlder,
  labelNotice,
  labelNoteText,
  noteLength,
  noteStatus,
  leftLine,
  lookLimit,
  nextPosition,
  reconcile,
  storedLabelLine,
  withFetchedRecord,
  withRecord,
  withoutCandidate,
  withoutDecision,
} from "./review";

describe("the review keys", () => {
  it("maps N, D, S, B (either case) and the left arrow, nothing else", () => {
    expect(["n", "N", "d", "D", "s", "S", "b", "B", "ArrowLeft"].map(actionForKey)).toEqual([
      "normal", "normal", "anomalous", "anomalous", "skip", "skip", "back", "back", "back",
    ]);
    expect(["x", "Enter", " ", "Dd", "ArrowRight"].map(actionForKey)).toEqual([null, null, null, null, null]);
  });
});

describe("the review cursor", () => {
  it("moves on after a decision or a skip, back by one, never outside the list", () => {
    expect(nextPosition(0, 3, "normal")).toBe(1);
    expect(nextPosition(2, 3, "skip")).toBe(3); // past the end: the batch is done
    expect(nextPosition(3, 3, "anomalous")).toBe(3);
    expect(nextPosition(2, 3, "back")).toBe(1);
    expect(nextPosition(0, 3, "back")).toBe(0);
  });

  it("says what is left", () => {
    expect([leftLine(0), leftLine(1), leftLine(7)]).toEqual(["Nothing left to review", "1 left to review", "7 left to review"]);
  });
});

describe("a part labelled meanwhile", () => {
  it("replaces only that part's record, so the next decision is based on what is stored now", () => {
    const items: Array<{ record: { id: string; label_revision: number | null }; reasons: string[] }> = [
      { record: { id: "a", label_revision: null }, reasons: ["band"] },
      { record: { id: "b", label_revision: null }, reasons: ["close_call"] },
    ];
    const reloaded = withRecord(items, { id: "b", label_revision: 1 });
    expect(reloaded).toEqual([items[0], { record: { id: "b", label_revision: 1 }, reasons: ["close_call"] }]);
    expect(items[1]?.record.label_revision).toBeNull(); // the fetched list is not changed in place
  });
  it("keeps a decision stored here over a fetch of the part begun before it (Back, then N at once)", () => {
    // Back fetched b at revision 1; before that answer came, N stored revision 2 here: the late answer is older.
    type Held = { record: { id: string; label: string | null; label_by: string | null; label_revision: number | null } };
    const items: Held[] = [{ record: { id: "b", label: "normal", label_by: "bert", label_revision: 2 } }];
    const late = { id: "b", label: "anomalous", label_by: "bert", label_revision: 1 };
    expect(isNotOlder(late, items[0]!.record)).toBe(false);
    expect(withFetchedRecord(items, late)).toBe(items); // kept: the next relabel is based on revision 2
    expect(labelNotice(withFetchedRecord(items, late)[0]!.record, 2)).toMatch(/^You labelled this one actually normal/);
    // the same revision (nothing since) or a newer one (someone relabelled it) replaces it, as does a clearing
    const same = { id: "b", label: "normal", label_by: "bert", label_revision: 2 };
    const olga = { id: "b", label: "anomalous", label_by: "olga", label_revision: 3 };
    const cleared = { id: "b", label: null, label_by: null, label_revision: 4 };
    for (const fresh of [same, olga, cleared]) expect(withFetchedRecord(items, fresh)[0]!.record).toBe(fresh);
    expect(isNotOlder({ label_revision: 1 }, { label_revision: null })).toBe(true); // never labelled: 0
    expect(withFetchedRecord(items, { ...late, id: "z" })).toEqual(items); // not held: nothing to replace
  });
  it("says what it is labelled now, by whom and when, in the reader's time", () => {
    const now = new Date(2026, 11, 6, 22, 0, 0);
    const earlier = new Date(2026, 11, 6, 21, 50, 23).toISOString();
    expect(storedLabelLine({ label: "anomalous", label_by: "ana", label_time: earlier }, now, "en-US")).toBe(
      "Labelled actually defective by ana at 9:50:23 PM.",
    );
    const seconds = new Date(2026, 11, 6, 21, 59, 40).toISOString();
    expect(storedLabelLine({ label: "normal", label_by: "olga", label_time: seconds }, now, "en-US")).toBe("Labelled actually normal by olga just now.");
    const yesterday = new Date(2026, 11, 5, 8, 0, 0).toISOString();
    expect(storedLabelLine({ label: "normal", label_by: "olga", label_time: yesterday }, now, "en-US")).toBe(
      "Labelled actually normal by olga on 12/5/2026, 8:00:00 AM.",
    );
    expect(storedLabelLine({ label: "normal", label_by: null, label_time: null }, now)).toBe("Labelled actually normal.");
    expect(storedLabelLine({ label: null }, now)).toBeNull();
  });
  it("says 'You labelled this one' only while the stored label is the one given here", () => {
    const now = new Date(2026, 11, 6, 22, 0, 0);
    const time = new Date(2026, 11, 6, 21, 59, 50).toISOString();
    const mine = { label: "anomalous", label_by: "bert", label_time: time, label_revision: 1 };
    expect(labelNotice(mine, 1, now)).toBe("You labelled this one actually defective; a decision now replaces it.");
    // olga relabelled it normal after bert (revision 2): hers is said, with who and when
    const hers = { label: "normal", label_by: "olga", label_time: time, label_revision: 2 };
    expect(labelNotice(hers, 1, now)).toBe("Labelled actually normal by olga just now, after your label. A decision now replaces it.");
    expect(labelNotice(hers, undefined, now)).toBe("Labelled actually normal by olga just now. A decision now replaces it.");
    expect(labelNotice({ label: null, label_revision: 2 }, 1, now)).toBe("Its label was cleared since you labelled it: it waits for a decision again.");
    expect(labelNotice({ label: null, label_revision: null }, undefined, now)).toBeNull();
  });
  it("forgets this visit's earlier decision on a part whose new one was refused: nothing to show or teach of it", () => {
    const labelled: Record<string, number> = { a: 1, b: 1, c: 3 };
    const toTeach = [
      { id: "a", category: "mono", imageName: "a.png" },
      { id: "b", category: "mono", imageName: "b.png" },
    ];
    expect(withoutDecision(labelled, "b")).toEqual({ a: 1, c: 3 });
    expect("b" in withoutDecision(labelled, "b")).toBe(false); // the page asks `id in labelled`
    expect(withoutCandidate(toTeach, "b")).toEqual([{ id: "a", category: "mono", imageName: "a.png" }]);
    expect(labelled).toEqual({ a: 1, b: 1, c: 3 }); // not changed in place
    expect(toTeach).toHaveLength(2);
    // never decided here: nothing to forget
    expect([withoutDecision(labelled, "z"), withoutCandidate(toTeach, "z")]).toEqual([labelled, toTeach]);
  });
});

describe("two people reviewing at once", () => {
  const item = (id: string, label: string | null = null) => ({ record: { id, label } });
  it("drops the parts ahead that someone else labelled, keeps the one shown (to fetch) and the ones behind", () => {
    // bert is on c; olga labelled b (behind, skipped), c (shown), e (ahead); a was labelled here
    const items = ["a", "b", "c", "d", "e", "f"].map((id) => item(id));
    const seen = reconcile(items, 2, new Set(["d", "f", "g"]), { a: 1 }, ["b"], true);
    expect(seen.dropped).toEqual(["e"]);
    expect(seen.items.map((i) => i.record.id)).toEqual(["a", "b", "c", "d", "f"]);
    expect(seen.currentGone).toBe(true);
    expect(seen.skipped).toEqual([]); // b no longer waits: not counted as skipped, nor in the next fetch's offset
    expect(items).toHaveLength(6); // not changed in place
  });
  it("leaves alone a part whose label is known here (given here, or already fetched as someone else's)", () => {
    const items = [item("a"), item("b", "normal"), item("c")];
    const seen = reconcile(items, 1, new Set(["c"]), { a: 1 }, ["c"], true);
    expect([seen.dropped, seen.currentGone, seen.skipped]).toEqual([[], false, ["c"]]);
    expect(reconcile(items, 3, new Set(), {}, [], true).currentGone).toBe(false); // past the end: nothing shown
  });
  it("drops nothing after a look that saw only the queue's front: a part missing from it may lie past it", () => {
    // 30 cleared labels came back ahead of bert's batch; the look (limit 73) saw them and the front of his,
    // not d, e, f nor the skipped b: the queue's total (80) is more than the 73 returned.
    const items = ["a", "b", "c", "d", "e", "f"].map((id) => item(id));
    const front = new Set(["c", ...Array.from({ length: 72 }, (_, i) => `cleared-${i}`)]);
    const seen = reconcile(items, 2, front, { a: 1 }, ["b"], false);
    expect([seen.dropped, seen.currentGone, seen.skipped]).toEqual([[], false, ["b"]]);
    expect(seen.items.map((i) => i.record.id)).toEqual(["a", "b", "c", "d", "e", "f"]);
    // the shown part missing from a front-only look is not fetched as labelled elsewhere either
    expect(reconcile(items, 3, front, { a: 1 }, ["b"], false).currentGone).toBe(false);
  });
  it("asks for every part this visit holds, with room, at most what the service serves", () => {
    expect(lookLimit(3, 50)).toBe(73);
    expect(lookLimit(480, 50)).toBe(500);
  });
});

describe("the label's note", () => {
  it("is shown with the label, as written, and only while there is a label", () => {
    const odd = "<b>bold</b><img src=x onerror=alert(1)> 🛞💥 \u202egnp.evitceted\u202c";
    expect(labelNoteText({ label: "normal", label_note: "  scuff only " })).toBe("scuff only");
    expect(labelNoteText({ label: "anomalous", label_note: odd })).toBe(odd); // drawn as text, never as markup
    expect(labelNoteText({ label: "normal", label_note: "   " })).toBeNull();
    expect(labelNoteText({ label: "normal", label_note: null })).toBeNull();
    expect(labelNoteText({ label: null, label_note: "left from a cleared label" })).toBeNull();
  });
  it("counts characters as the service does (code points), not UTF-16 units", () => {
    expect(noteLength("🛞💥")).toBe(2);
    expect("🛞💥".length).toBe(4);
    const twoEmoji = "a".repeat(496) + "🛞💥"; // 498 characters, 500 UTF-16 units
    expect(noteStatus(twoEmoji)).toEqual({ line: "498 of 500 characters", over: false, full: false });
    expect(noteStatus("é".repeat(500)).line).toBe("500 of 500 characters (full)");
  });
  it("refuses a note past the limit, saying by how much, instead of cutting it", () => {
    const pasted = "x".repeat(650);
    const status = noteStatus(pasted);
    expect(status.over).toBe(true);
    expect(status.line).toBe("650 of 500 characters: 150 too many; shorten the note to save the decision");
    expect(noteStatus(" ".repeat(600) + "ok").over).toBe(false); // the service trims: spaces do not count
  });
  it("counts a why (teach, threshold, rollback) as the service does, saying what to do to send it", () => {
    const emoji = "🛞".repeat(300); // 300 characters the service takes, 600 UTF-16 units a maxLength of 500 refused
    expect(noteStatus(emoji, WHY_MAX, "shorten it to teach")).toEqual({ line: "300 of 500 characters", over: false, full: false });
    expect(noteStatus("🛞".repeat(501), WHY_MAX, "shorten it to teach").line).toBe("501 of 500 characters: 1 too many; shorten it to teach");
  });
});

describe("an answer's notices", () => {
  const theirs = "band.png was already labelled defective by olga at 2026-12-07T05:00:00Z; their label stands, and yours, with your note, is kept in its label history";
  it("are shown on a label that was saved, each naming its part", () => {
    expect(answerNotices({ notices: [theirs] }, "band.png")).toEqual([theirs]); // names it already
    expect(answerNotices({ notices: ["it is one of the current model's training images"] }, "cut.png")).toEqual([
      "cut.png: it is one of the current model's training images",
    ]);
  });
  it("leave out blanks and repeats, and are none on an answer without them", () => {
    expect(answerNotices({ notices: [" ", theirs, `${theirs} `] })).toEqual([theirs]);
    expect(answerNotices({})).toEqual([]);
    expect(answerNotices({ notices: null })).toEqual([]);
    expect(answerNotices(undefined)).toEqual([]);
  });
});
