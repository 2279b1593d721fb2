import { describe, expect, it } from "vitest";
import { formatRoute, parseRoute } from "./route";

describe("parseRoute", () => {
  it("reads page, item and parameters", () => {
    const route = parseRoute("#/history?category=tire&decision=normal");
    expect(route.page).toBe("history");
    expect(route.item).toBeNull();
    expect(route.params.get("category")).toBe("tire");
    expect(route.params.get("decision")).toBe("normal");
  });
  it("decodes the item", () => {
    expect(parseRoute("#/categories/e2e-small").item).toBe("e2e-small");
    expect(parseRoute("#/evaluations/a%20b").item).toBe("a b");
    expect(parseRoute("#/evaluations/%E0%A4%A").item).toBe("%E0%A4%A");
  });
  it("falls back to inspect for an empty or unknown hash", () => {
    expect(parseRoute("").page).toBe("inspect");
    expect(parseRoute("#/").page).toBe("inspect");
    expect(parseRoute("#/nope?x=1")).toMatchObject({ page: "inspect", item: null });
    expect(parseRoute("#/nope?x=1").params.size).toBe(0);
  });
  it("tolerates a missing slash", () => {
    expect(parseRoute("#categories").page).toBe("categories");
  });
  it("knows the Stations page", () => {
    expect(parseRoute("#/stations")).toMatchObject({ page: "stations", item: null });
    expect(formatRoute("stations")).toBe("#/stations");
  });
});

describe("formatRoute", () => {
  it("is the inverse of parseRoute", () => {
    const params = new URLSearchParams({ decision: "anomalous", offset: "25" });
    const hash = formatRoute("history", null, params);
    expect(hash).toBe("#/history?decision=anomalous&offset=25");
    const back = parseRoute(hash);
    expect(back.page).toBe("history");
    expect(back.params.toString()).toBe(params.toString());
    expect(formatRoute("categories", "a b/c")).toBe("#/categories/a%20b%2Fc");
    expect(parseRoute(formatRoute("categories", "a b")).item).toBe("a b");
  });
});
