import { describe, expect, it } from "vitest";
import { actionForKey, leftLine, leftToReview, nextPosition } from "./review";

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
