import { describe, expect, it } from "vitest";
import { auditInspection, ID_HINT, inspectionRoute, openFailed, routeIdProblem, typedInspectionId } from "./inspectionId";
import { parseRoute } from "./route";

const ID = "0123456789abcdef0123456789abcdef";

describe("opening an inspection by id", () => {
  it("takes a pasted id trimmed, and one in capitals lowercased", () => {
    expect(typedInspectionId(`  ${ID}\n`)).toEqual({ id: ID });
    expect(typedInspectionId(ID.toUpperCase())).toEqual({ id: ID });
    expect(typedInspectionId("band")).toEqual({ id: "band" }); // not shaped as the service's: the service says
  });
  it("refuses what cannot be asked for, saying what an id looks like", () => {
    expect(typedInspectionId("   ")).toEqual({ problem: `Type or paste an inspection id. ${ID_HINT}` });
    expect(typedInspectionId("a/b")).toEqual({ problem: `“a/b” is not an inspection id: it has a slash. ${ID_HINT}` });
    // `.` and `..` would be normalised by the browser: /v1/inspections/.. is the list, shown as if a record
    expect(typedInspectionId(".")).toEqual({ problem: `“.” is not an inspection id: it has “.”, which no id has. ${ID_HINT}` });
    expect(typedInspectionId(" .. ")).toEqual({ problem: `“..” is not an inspection id: it has “.”, which no id has. ${ID_HINT}` });
    expect(typedInspectionId(`${ID}.png`)).toEqual({
      problem: `“${ID}.png” is not an inspection id: it has “.”, which no id has. ${ID_HINT}`,
    });
    expect(typedInspectionId("a b")).toEqual({ problem: `“a b” is not an inspection id: it has a space inside it. ${ID_HINT}` });
    expect(typedInspectionId("a?b")).toEqual({ problem: `“a?b” is not an inspection id: it has “?”, which no id has. ${ID_HINT}` });
    expect(typedInspectionId("line-1_band")).toEqual({ id: "line-1_band" }); // letters, digits, - and _: asked for
  });
  it("does not ask for an id a route names that is no id (#/history/.. would fetch the list), and says so", () => {
    expect(routeIdProblem(parseRoute("#/history/..").item!)).toEqual({
      kind: "invalid_request",
      title: "Inspection “..” could not be opened",
      message: `“..” is not an inspection id: it has “.”, which no id has. ${ID_HINT}`,
      retryable: false,
    });
    expect(routeIdProblem(parseRoute("#/history/a%2Fb").item!)?.message).toBe(
      `“a/b” is not an inspection id: it has a slash. ${ID_HINT}`,
    );
    expect(routeIdProblem(ID)).toBeNull();
    expect(routeIdProblem("band")).toBeNull();
  });
  it("routes to History with the id, keeping the filters, and reads the route back", () => {
    const route = inspectionRoute(ID, new URLSearchParams({ category: "mono" }));
    expect(route).toBe(`#/history/${ID}?category=mono`);
    const parsed = parseRoute(route);
    expect([parsed.page, parsed.item, parsed.params.get("category")]).toEqual(["history", ID, "mono"]);
    expect(inspectionRoute("a b?#")).toBe("#/history/a%20b%3F%23");
    expect(parseRoute(inspectionRoute("a b?#")).item).toBe("a b?#");
  });
  it("reads the API's path as an alias: #/inspections/<id> opens it in History", () => {
    const parsed = parseRoute(`#/inspections/${ID}`);
    expect([parsed.page, parsed.item]).toEqual(["history", ID]);
    expect(parseRoute("#/inspections").page).toBe("history");
  });
  it("titles the service's reason with the id, and says what an id looks like when this one is not shaped as one", () => {
    const notFound = { kind: "not_found" as const, title: "Not found", message: "no inspection 'band'", retryable: false };
    expect(openFailed("band", notFound)).toEqual({
      ...notFound,
      title: "Inspection “band” could not be opened",
      message: `no inspection 'band'. ${ID_HINT}`,
    });
    expect(openFailed(ID, { ...notFound, message: `no inspection '${ID}'` }).message).toBe(`no inspection '${ID}'.`);
    const down = { kind: "network" as const, title: "Service unreachable", message: "…", retryable: true };
    expect(openFailed(ID, down)).toBe(down);
  });
  it("links an audit row of a label to its inspection, not a deletion's", () => {
    expect(auditInspection({ method: "PUT", path: `/v1/inspections/${ID}/label` })).toBe(ID);
    expect(auditInspection({ method: "DELETE", path: `/v1/inspections/${ID}` })).toBeNull();
    expect(auditInspection({ method: "POST", path: "/v1/categories/mono/threshold" })).toBeNull();
    expect(auditInspection({ method: "PUT", path: "/v1/inspections/%E0%A4%A/label" })).toBeNull();
  });
});
