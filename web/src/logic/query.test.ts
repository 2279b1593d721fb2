import { describe, expect, it } from "vitest";
import { DECISIONS, DEFAULT_LIMIT, decisionFilterOf, filterFromParams, knownCategories, filterToParams, missingCategory, pageInfo, withFilter } from "./query";

describe("filterFromParams", () => {
  it("reads valid values", () => {
    const filter = filterFromParams(new URLSearchParams("category=tire&decision=anomalous&limit=10&offset=20"));
    expect(filter).toEqual({ category: "tire", decision: "anomalous", limit: 10, offset: 20 });
  });
  it("drops invalid values and snaps the offset to a page boundary", () => {
    const filter = filterFromParams(new URLSearchParams("category=../x&decision=maybe&limit=-3&offset=37"));
    expect(filter).toEqual({ category: null, decision: null, limit: DEFAULT_LIMIT, offset: 25 });
    expect(filterFromParams(new URLSearchParams("limit=9999")).limit).toBe(500);
    expect(filterFromParams(new URLSearchParams("limit=0")).limit).toBe(1);
  });
});

describe("the decision filter", () => {
  it("offers unrecognised apart from undecided, as the service filters", () => {
    expect(DECISIONS).toEqual(["anomalous", "normal", "unrecognised", "undecided"]);
    expect(filterFromParams(new URLSearchParams("decision=unrecognised")).decision).toBe("unrecognised");
    expect(["anomalous", "normal", "unrecognised", "unparsable", null].map(decisionFilterOf)).toEqual([
      "anomalous",
      "normal",
      "unrecognised",
      "undecided",
      "undecided",
    ]);
  });
});

describe("filterToParams", () => {
  it("writes only non-defaults, in a stable order", () => {
    expect(filterToParams({ category: null, decision: null, limit: DEFAULT_LIMIT, offset: 0 }).toString()).toBe("");
    expect(filterToParams({ category: "tire", decision: "normal", limit: 10, offset: 30 }).toString()).toBe(
      "category=tire&decision=normal&limit=10&offset=30",
    );
  });
  it("round-trips", () => {
    const filter = { category: "e2e-small", decision: "undecided" as const, limit: 50, offset: 100 };
    expect(filterFromParams(filterToParams(filter))).toEqual(filter);
  });
});

describe("withFilter", () => {
  it("goes back to the first page", () => {
    expect(withFilter({ category: null, decision: null, limit: 25, offset: 75 }, { decision: "normal" })).toEqual({
      category: null,
      decision: "normal",
      limit: 25,
      offset: 0,
    });
  });
});

describe("pageInfo", () => {
  it("describes a middle page", () => {
    expect(pageInfo(60, 25, 25, 25)).toEqual({ page: 2, pages: 3, from: 26, to: 50, prevOffset: 0, nextOffset: 50 });
  });
  it("describes the last and an empty page", () => {
    expect(pageInfo(60, 25, 50, 10)).toEqual({ page: 3, pages: 3, from: 51, to: 60, prevOffset: 25, nextOffset: null });
    expect(pageInfo(0, 25, 0, 0)).toEqual({ page: 1, pages: 1, from: 0, to: 0, prevOffset: null, nextOffset: null });
  });
});

describe("knownCategories", () => {
  it("lists the fitted categories and keeps a filtered one that is gone", () => {
    const fitted = [{ name: "tire" }, { name: "cable" }];
    expect(knownCategories(fitted, null)).toEqual(["tire", "cable"]);
    expect(knownCategories(fitted, "tire")).toEqual(["tire", "cable"]);
    expect(knownCategories(fitted, "old")).toEqual(["tire", "cable", "old"]);
    expect(knownCategories([], "old")).toEqual(["old"]);
  });
});

describe("label filter", () => {
  it("reads, writes and round-trips the user's label filter, dropping unknown values", () => {
    const filter = filterFromParams(new URLSearchParams("label=anomalous&category=tire"));
    expect(filter).toEqual({ category: "tire", decision: null, label: "anomalous", limit: DEFAULT_LIMIT, offset: 0 });
    expect(filterToParams(filter).toString()).toBe("category=tire&label=anomalous");
    expect(filterFromParams(new URLSearchParams("label=maybe")).label).toBeUndefined();
    expect(filterFromParams(filterToParams({ ...filter, label: "unlabelled" })).label).toBe("unlabelled");
  });
});

describe("missingCategory", () => {
  const fitted = [{ name: "tire" }];
  const filter = (query: string) => filterFromParams(new URLSearchParams(query));
  it("says a category in the address that does not exist, instead of offering it as a choice", () => {
    expect(missingCategory(fitted, filter("category=nosuch"), 0)).toEqual({
      unknown: true,
      text: "There is no category “nosuch”: none is fitted under that name, and the history holds no inspections of it.",
    });
    expect(missingCategory(fitted, filter("category=nosuch&decision=normal"), 0)?.text).toContain("none of its inspections match these filters");
  });
  it("lists a deleted category's stored inspections, saying it is not fitted any more", () => {
    expect(missingCategory(fitted, filter("category=old"), 3)).toEqual({ unknown: false, text: "“old” is not fitted any more; its stored inspections are listed." });
  });
  it("says nothing of a fitted category, or before the categories and the page are loaded", () => {
    expect(missingCategory(fitted, filter("category=tire"), 0)).toBeNull();
    expect(missingCategory(undefined, filter("category=nosuch"), 0)).toBeNull();
    expect(missingCategory(fitted, filter("category=nosuch"), undefined)).toBeNull();
  });
});
