import { describe, expect, it } from "vitest";
import { categoryVersionRoute, formatRoute, parseRoute, versionTarget } from "./route";

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

describe("versionTarget", () => {
  it("reads the version a category link points at", () => {
    const route = parseRoute("#/categories/mono?version=3");
    expect(route).toMatchObject({ page: "categories", item: "mono" });
    expect(versionTarget(route.params)).toEqual({ kind: "version", version: 3 });
    expect(versionTarget(parseRoute("#/categories/a%20b?version=12").params)).toEqual({ kind: "version", version: 12 });
    expect(versionTarget(parseRoute("#/categories/mono?version=%203%20").params)).toEqual({ kind: "version", version: 3 });
  });
  it("is none without a version parameter (an ordinary visit)", () => {
    expect(versionTarget(parseRoute("#/categories/mono").params)).toEqual({ kind: "none" });
    expect(versionTarget(parseRoute("#/categories/mono?other=1").params)).toEqual({ kind: "none" });
    expect(versionTarget(parseRoute("#/nope?version=3").params)).toEqual({ kind: "none" });
  });
  it("keeps what is not a version number, to say so", () => {
    for (const raw of ["", "abc", "3.5", "-1", "1e3", "0x10", "9999999999"]) {
      expect(versionTarget(parseRoute(`#/categories/mono?version=${encodeURIComponent(raw)}`).params)).toEqual({ kind: "invalid", raw });
    }
  });
});

describe("categoryVersionRoute", () => {
  it("links a category's page at one version, and parses back", () => {
    expect(categoryVersionRoute("mono", 3)).toBe("#/categories/mono?version=3");
    expect(categoryVersionRoute("a b/c", 1)).toBe("#/categories/a%20b%2Fc?version=1");
    const back = parseRoute(categoryVersionRoute("a b/c", 17));
    expect([back.page, back.item, versionTarget(back.params)]).toEqual(["categories", "a b/c", { kind: "version", version: 17 }]);
  });
});
