import { describe, expect, it } from "vitest";
import { auditCountLine, auditQuery, auditWhat } from "./audit";

describe("the audit page", () => {
  it("asks for one person's and one category's rows, leaving empty filters out", () => {
    expect(auditQuery({ actor: "  omar ", category: "tire", offset: 50 })).toEqual({ limit: 50, offset: 50, actor: "omar", category: "tire" });
    expect(auditQuery({ actor: " ", category: "", offset: 0 })).toEqual({ limit: 50, offset: 0 });
  });
  it("says which rows show, or that none match", () => {
    expect(auditCountLine(123, 50, 50, { actor: "", category: "", offset: 50 })).toBe("Rows 51–100 of 123, newest first.");
    expect(auditCountLine(0, 0, 0, { actor: "sam", category: "tire", offset: 0 })).toBe("No changes by sam to tire in the audit log.");
  });
  it("says what changed: the detail, else the route", () => {
    expect(auditWhat({ method: "PUT", route: "/v1/inspections/{inspection_id}/label", detail: "label normal" })).toBe("label normal");
    expect(auditWhat({ method: "POST", route: "/v1/keys", detail: null })).toBe("POST /v1/keys");
  });
});
