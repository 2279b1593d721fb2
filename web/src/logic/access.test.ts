import type { Me } from "@eagle-iad/client";
import { describe, expect, it } from "vitest";
import { allows, keyRequest, refusalLine, signedInLine } from "./access";

const me = (role: Me["role"], open = false): Me => ({ name: open ? "local" : "anna", role, open, may: [], roles: {} });

describe("access", () => {
  it("allows a role what it and the roles below may do", () => {
    expect(allows(me("operator"), "viewer")).toBe(true);
    expect(allows(me("operator"), "operator")).toBe(true);
    expect(allows(me("operator"), "engineer")).toBe(false);
    expect(allows(me("viewer"), "operator")).toBe(false);
    expect(allows(me("admin"), "engineer")).toBe(true);
    expect(allows(null, "admin")).toBe(true); // not known yet: the service still refuses
  });
  it("says who is signed in and why a control is missing", () => {
    expect(signedInLine(me("operator"))).toBe("Signed in as anna (operator)");
    expect(signedInLine(me("admin", true))).toBe("Open: no keys (one local user)");
    expect(refusalLine(me("viewer"), "operator", "Inspecting")).toBe(
      "Inspecting needs the operator role; anna is a viewer. An admin can give you a key with that role.",
    );
    expect(refusalLine(me("operator"), "engineer", "Fitting")).toBe(
      "Fitting needs the engineer role; anna is an operator. An admin can give you a key with that role.",
    );
    expect(refusalLine(me("engineer"), "admin", "Keys")).toBe(
      "Keys needs the admin role; anna is an engineer. An admin can give you a key with that role.",
    );
  });
});

describe("the key form's request", () => {
  it("asks for the kind of key the service takes (its /healthz auth)", () => {
    expect(keyRequest("keys")).toMatch(/^This service takes named API keys: enter yours\. An admin makes one with `eagle keys add/);
    expect(keyRequest("keys")).not.toContain("EAGLE_API_KEY"); // not the single key of earlier versions
    expect(keyRequest("api_key")).toBe("This service runs with one shared key, its `EAGLE_API_KEY`: enter that key.");
    expect(keyRequest("open")).toContain("needs no key");
    expect(keyRequest(null)).toContain("`eagle keys add`, or the service's `EAGLE_API_KEY`"); // an older service: both
  });
});
