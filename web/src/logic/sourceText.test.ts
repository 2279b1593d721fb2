import { describe, expect, it } from "vitest";
import { sourceText } from "./stations";

/** A station of the service as the list gets it: its spec's source, and the service's description of it. */
function listed(source: Record<string, unknown> | null, described = "described by the service") {
  return { source: described, spec: source === null ? null : { name: "zline", category: "tire2", source } };
}

describe("sourceText: a station's source named by its kind", () => {
  it("calls a folder source a hot folder, by the path it was created with", () => {
    expect(sourceText(listed({ kind: "folder", path: "incoming/line-1", settle_s: 0.5 }))).toBe("hot folder incoming/line-1");
  });

  it("never calls a plugin source with a path a hot folder: its kind, then its path", () => {
    expect(sourceText(listed({ kind: "zipdrop", path: "drops/zips" }))).toBe("zipdrop source drops/zips");
  });

  it("names a plugin source by its kind alone where no option tells where it takes images from", () => {
    expect(sourceText(listed({ kind: "scanner", rate_hz: 5, url: "https://user:secret@scanner.line" }))).toBe("scanner source");
  });

  it("takes the first telling option a plugin source has, a number included", () => {
    expect(sourceText(listed({ kind: "grabber", device: 2 }))).toBe("grabber source 2");
    expect(sourceText(listed({ kind: "grabber", path: "", folder: "frames" }))).toBe("grabber source frames");
  });

  it("leaves a camera, and a station of a stations file (no spec), as the service describes them", () => {
    expect(sourceText(listed({ kind: "camera", url: "clip.mp4", path: "x" }, "camera clip.mp4 every 1000 ms"))).toBe(
      "camera clip.mp4 every 1000 ms",
    );
    expect(sourceText(listed(null, "hot folder /srv/line/incoming"))).toBe("hot folder /srv/line/incoming");
  });
});
