import { describe, expect, it } from "vitest";
import {
  actionForKey,
  labelledSinceFetched,
  leftLine,
  leftToReview,
  nextPosition,
  storedLabelLine,
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

  it("counts what is left", () => {
    expect(leftToReview(12, 3)).toBe(9);
    expect(leftToReview(2, 5)).toBe(0);
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
  it("says what it is labelled now, by whom and when", () => {
    const at = (iso: string) => (iso === "2026-12-06T12:01:02Z" ? "6 Dec 2026, 12:01" : "?");
    expect(storedLabelLine({ label: "anomalous", label_by: "ana", label_time: "2026-12-06T12:01:02Z" }, at)).toBe(
      "Labelled actually defective by ana on 6 Dec 2026, 12:01.",
    );
    expect(storedLabelLine({ label: "normal", label_by: null, label_time: null }, at)).toBe("Labelled actually normal.");
    expect(storedLabelLine({ label: null }, at)).toBeNull();
  });
  it("forgets this visit's earlier decision on a part whose new one was refused: nothing to show or teach of it", () => {
    const labelled: Record<string, "normal" | "anomalous"> = { a: "normal", b: "normal", c: "anomalous" };
    const toTeach = [
      { id: "a", category: "mono", imageName: "a.png" },
      { id: "b", category: "mono", imageName: "b.png" },
    ];
    expect(withoutDecision(labelled, "b")).toEqual({ a: "normal", c: "anomalous" });
    expect("b" in withoutDecision(labelled, "b")).toBe(false); // the page asks `id in labelled`
    expect(withoutCandidate(toTeach, "b")).toEqual([{ id: "a", category: "mono", imageName: "a.png" }]);
    expect(labelled).toEqual({ a: "normal", b: "normal", c: "anomalous" }); // not changed in place
    expect(toTeach).toHaveLength(2);
    // never decided here: nothing to forget
    expect([withoutDecision(labelled, "z"), withoutCandidate(toTeach, "z")]).toEqual([labelled, toTeach]);
  });
  it("counts a part labelled since the queue was fetched once, whoever labelled it; a cleared one is left again", () => {
    const fetched = [{ record: { label: null } }, { record: { label: null } }, { record: { label: null } }];
    expect(labelledSinceFetched(fetched)).toBe(0);
    // labelled here (relabelled after Back: still one), and one shown again as someone else labelled it
    const now = [{ record: { label: "anomalous" } }, { record: { label: "normal" } }, { record: { label: null } }];
    expect(labelledSinceFetched(now)).toBe(2);
    expect(leftToReview(7, labelledSinceFetched(now))).toBe(5);
  });
});
