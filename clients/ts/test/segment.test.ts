import { describe, expect, it } from "vitest";

import { EagleClient, segment } from "../src/client.js";
import { main } from "../src/cli.js";
import { PathSegmentError } from "../src/errors.js";

/** A client whose fetch records the URLs it was asked for and answers an empty object. */
function recording(): { client: EagleClient; urls: string[] } {
  const urls: string[] = [];
  const client = new EagleClient({
    baseUrl: "http://127.0.0.1:9",
    fetch: async (url) => {
      urls.push(String(url));
      return new Response("{}", { status: 200, headers: { "Content-Type": "application/json" } });
    },
  });
  return { client, urls };
}

describe("path segments", () => {
  it("encodes a name and refuses what a URL would drop from the path", () => {
    expect(segment("line 1/a")).toBe("line%201%2Fa");
    expect(segment("...")).toBe("...");
    for (const bad of ["", ".", ".."]) {
      expect(() => segment(bad)).toThrow(`${JSON.stringify(bad)} cannot name a category, inspection, job, station or key: a URL would drop it from the path`);
    }
  });

  it("sends no request for an inspection '.' (it would have read the history's list as a record)", async () => {
    const { client, urls } = recording();
    // thrown before the request, as a wrong argument is (an async caller sees a rejection)
    await expect(async () => client.inspection(".")).rejects.toThrow(PathSegmentError);
    await expect(async () => client.category("..")).rejects.toThrow(TypeError);
    await expect(async () => client.label("", "normal")).rejects.toThrow(TypeError);
    await expect(async () => client.pauseStation("..")).rejects.toThrow(TypeError);
    expect(urls).toEqual([]);
    await client.inspection("a.b");
    expect(urls).toEqual(["http://127.0.0.1:9/v1/inspections/a.b"]);
  });
});

describe("the CLI", () => {
  it("says so in one line and exits 2, sending nothing", async () => {
    const written: string[] = [];
    const write = process.stderr.write.bind(process.stderr);
    process.stderr.write = ((chunk: string) => (written.push(String(chunk)), true)) as typeof process.stderr.write;
    try {
      expect(await main(["--url", "http://127.0.0.1:9", "label", "..", "normal"])).toBe(2);
    } finally {
      process.stderr.write = write;
    }
    expect(written.join("")).toBe('eagle-client: ".." cannot name a category, inspection, job, station or key: a URL would drop it from the path\n');
  });
});
