import { describe, expect, it } from "vitest";
import { cancelOnEscape } from "./keys";

function press(key: string, busy = false) {
  const seen = { prevented: false, cancelled: 0 };
  const taken = cancelOnEscape({ key, preventDefault: () => (seen.prevented = true) }, busy, () => (seen.cancelled += 1));
  return { taken, ...seen };
}

describe("cancelOnEscape", () => {
  it("cancels on Escape, as Cancel does, and keeps the key from going further", () => {
    expect(press("Escape")).toEqual({ taken: true, prevented: true, cancelled: 1 });
  });
  it("leaves every other key to the form (typing the reason, Enter to send)", () => {
    for (const key of ["Enter", "a", "Esc", " ", "Tab"]) expect(press(key)).toEqual({ taken: false, prevented: false, cancelled: 0 });
  });
  it("does nothing while the change is being sent", () => {
    expect(press("Escape", true)).toEqual({ taken: false, prevented: false, cancelled: 0 });
  });
});
