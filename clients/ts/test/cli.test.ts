/** The `eagle-client` executable (built `dist/bin.js`) as a user runs it, against the real service. */
import { execFile } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { beforeAll, describe, expect, it } from "vitest";

import { imageErrorLine, parseFitOptions, uploadNames } from "../src/cli.js";
import { EagleApiError, EagleClient } from "../src/index.js";
import { sharedServer } from "./fixture.js";

const BIN = resolve(import.meta.dirname, "..", "dist", "bin.js");

async function cli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [BIN, ...args], {
      env: { ...process.env, EAGLE_API_KEY: "", ...env },
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code: number; stdout: string; stderr: string };
    return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr };
  }
}

describe("eagle-client", () => {
  let baseUrl = "";
  let fixture = "";
  beforeAll(() => {
    ({ baseUrl, fixtureDir: fixture } = sharedServer());
  });

  it("names same-named images from different folders by their folders", async () => {
    const root = mkdtempSync(join(tmpdir(), "eagle-cli-names-"));
    const paths = ["cut", "hole"].map((folder) => {
      mkdirSync(join(root, folder));
      copyFileSync(join(fixture, "sample-good.png"), join(root, folder, "003.png"));
      return join(root, folder, "003.png");
    });
    const { code, stdout } = await cli(["--url", baseUrl, "inspect", "--category", "mono", ...paths]);
    expect(code).toBe(0);
    const names = stdout.trim().split("\n").map((line) => (JSON.parse(line) as { image_name: string }).image_name);
    expect(names).toEqual(["cut/003.png", "hole/003.png"]);
  });

  it("inspects images and prints one JSON line each; a bad file is reported and sets exit 1", async () => {
    const bad = join(fixture, "data", "broken", "a.png");
    const { code, stdout, stderr } = await cli(["--url", baseUrl, "inspect", "--category", "mono", join(fixture, "sample-good.png"), bad]);
    expect(code).toBe(1);
    const lines = stdout.trim().split("\n").map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatchObject({ category: "mono", image_name: "sample-good.png" });
    expect(lines[1]).toEqual({ image: bad, error: "a.png: not a recognised image format", status: 400, code: "invalid_image" });
    expect(stderr).toContain("a.png: not a recognised image");
  });

  it("fits from a server folder with progress on stderr and the job on stdout", async () => {
    const { code, stdout, stderr } = await cli(["--url", baseUrl, "fit", "cli-fit", "--folder", "mono-good", "--option", "coreset_ratio=0.5"]);
    expect(code).toBe(0);
    expect(JSON.parse(stdout)).toMatchObject({ category: "cli-fit", state: "succeeded", images: 6 });
    expect(stderr).toMatch(/job succeeded/);
    expect(stderr).toMatch(/\[#+\] \d+\/\d+/);
  });

  it("exports the history as CSV and JSON lines", async () => {
    const csv = await cli(["--url", baseUrl, "history", "--category", "mono", "--limit", "2", "--format", "csv"]);
    expect(csv.code).toBe(0);
    const rows = csv.stdout.trimEnd().split("\r\n");
    expect(rows[0]).toBe(
      "id,time,category,image,score,threshold,band_end,decision,in_band,caas_applied,answer,label,label_by,label_time,label_note," +
        "model_version,boxes,picture_box,picture_heatmap,reference_image,picture_reference,answered_by_backend,answered_by_route," +
        "answered_by_caas",
    );
    expect(rows).toHaveLength(3);
    expect(rows[1]).toContain(`,mono,`);
    expect(rows[1]).toContain(`${baseUrl}/v1/files/`);
    const jsonl = await cli(["--url", baseUrl, "history", "--category", "mono", "--format", "jsonl", "--limit", "1"]);
    const row = JSON.parse(jsonl.stdout) as {
      id: string;
      image: string;
      in_band: boolean;
      threshold: number;
      pictures: Record<string, string>;
      reference_image: string | null;
      answered_by: { backend: string; route: string; caas: string } | null;
    };
    expect(row.threshold).toBeGreaterThan(0);
    expect(row.pictures["heatmap"]).toMatch(new RegExp(`^${baseUrl}/v1/files/`));
    // The fixture's service answers with one in-process model (tiny Qwen2.5-VL): route "single".
    const stored = (await (await fetch(`${baseUrl}/v1/inspections/${row.id}`)).json()) as {
      reference: { image: string };
      answered_by: { backend: string; route: string; caas: string };
    };
    expect(row.reference_image).toBe(stored.reference.image);
    expect(row.reference_image).toMatch(/\.png$/);
    expect(row.pictures["reference"]).toMatch(new RegExp(`^${baseUrl}/v1/files/${row.id}/[^/]+_reference\\.jpg$`));
    expect(row.answered_by).toEqual(stored.answered_by);
    expect(row.answered_by).toMatchObject({ backend: expect.stringMatching(/^hf:.*tiny-qwen2\.5-vl$/), route: "single" });
    expect(row.answered_by?.caas).toBe(row.in_band ? "applied" : "not needed (outside the band)");
    const latest = rows.find((line) => line.startsWith(`${row.id},`)) as string;
    expect(latest.endsWith(
      `,${row.reference_image},${row.pictures["reference"]},${row.answered_by?.backend},single,${row.answered_by?.caas}`,
    )).toBe(true);
    expect((await cli(["--url", baseUrl, "history", "--format", "xml"])).stderr).toContain("--format must be json, csv or jsonl");
    const labelledId = row.id;
    const seen = (((await (await fetch(`${baseUrl}/v1/inspections/${labelledId}`)).json()) as { label_revision: number | null }).label_revision ?? 0);
    const labelled = await cli(["--url", baseUrl, "label", labelledId, "normal"]);
    expect(labelled.code).toBe(0);
    expect(JSON.parse(labelled.stdout)).toMatchObject({ label: "normal", label_revision: seen + 1 });
    // based on the revision before that label: refused, the label kept; based on the current one: stored
    const stale = await cli(["--url", baseUrl, "label", labelledId, "anomalous", "--expected-revision", String(seen)]);
    expect(stale.code).toBe(1);
    expect(stale.stderr).toContain(`${row.image} was labelled normal by local at `);
    expect(stale.stderr).toContain(" while you were looking. Your label was not stored: look at it again");
    // the same refusal through the client: the label stored now as fields, for a caller to word itself
    const refused: unknown = await new EagleClient({ baseUrl }).label(labelledId, "anomalous", { expectedRevision: seen }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(EagleApiError);
    expect((refused as EagleApiError).detail?.["label_changed"]).toMatchObject({
      id: labelledId, image_name: row.image, label: "normal", labelled_by: "local", label_revision: seen + 1,
    });
    const current = await cli(["--url", baseUrl, "label", labelledId, "anomalous", "--expected-revision", String(seen + 1)]);
    expect(JSON.parse(current.stdout)).toMatchObject({ label: "anomalous", label_revision: seen + 2 });
    expect((await cli(["--url", baseUrl, "label", labelledId, "normal"])).code).toBe(0); // as it was, for what follows
    const onlyLabelled = await cli(["--url", baseUrl, "history", "--label", "normal", "--format", "csv"]);
    expect(onlyLabelled.stdout.trimEnd().split("\r\n").slice(1).every((line) => line.includes(",normal,"))).toBe(true);
    expect((await cli(["--url", baseUrl, "label", "x", "maybe"])).code).toBe(2);
  });

  it("downloads an inspection's boxed, heatmap and reference pictures, never over a file without --force", async () => {
    const inspected = await cli(["--url", baseUrl, "inspect", "--category", "mono", join(fixture, "sample-crack.png")]);
    expect(inspected.code).toBe(0);
    const record = JSON.parse(inspected.stdout) as {
      id: string;
      pictures: Record<string, string>;
      reference: { image: string; unavailable: string | null };
    };
    expect(record.reference.unavailable).toBeNull();
    const served = async (key: string): Promise<Buffer> => {
      const response = await fetch(`${baseUrl}${record.pictures[key] as string}`);
      expect(response.status).toBe(200);
      return Buffer.from(await response.arrayBuffer());
    };
    const dir = mkdtempSync(join(tmpdir(), "eagle-cli-picture-"));
    const cases = [
      ["boxed", "box", "image/png"],
      ["heatmap", "heatmap", "image/png"],
      ["reference", "reference", "image/jpeg"],
    ] as const;
    for (const [kind, key, type] of cases) {
      const out = join(dir, `${kind}.img`);
      const result = await cli(["--url", baseUrl, "picture", record.id, "--kind", kind, "--out", out]);
      expect(result.code, result.stderr).toBe(0);
      const expected = await served(key);
      expect(JSON.parse(result.stdout)).toEqual({ id: record.id, kind, path: out, type, bytes: expected.length });
      expect(readFileSync(out).equals(expected)).toBe(true);
    }
    const boxed = join(dir, "boxed.img");
    const refused = await cli(["--url", baseUrl, "picture", record.id, "--kind", "heatmap", "--out", boxed]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toBe(`eagle-client: ${boxed} exists; pass --force to replace it\n`);
    expect(readFileSync(boxed).equals(await served("box"))).toBe(true);
    const forced = await cli(["--url", baseUrl, "picture", record.id, "--kind", "heatmap", "--out", boxed, "--force"]);
    expect(forced.code).toBe(0);
    expect(readFileSync(boxed).equals(await served("heatmap"))).toBe(true);
    expect(readdirSync(dir).sort()).toEqual(["boxed.img", "heatmap.img", "reference.img"]); // no temporary files left

    const fresh = join(dir, "fresh.png");
    const unknownId = await cli(["--url", baseUrl, "picture", "nope", "--kind", "reference", "--out", fresh]);
    expect(unknownId.code).toBe(1);
    expect(unknownId.stderr).toBe("eagle-client: no inspection 'nope'\n");
    const unknownIdBoxed = await cli(["--url", baseUrl, "picture", "nope", "--kind", "boxed", "--out", fresh]);
    expect(unknownIdBoxed.stderr).toBe("eagle-client: no inspection 'nope'\n");
    const badKind = await cli(["--url", baseUrl, "picture", record.id, "--kind", "mask", "--out", fresh]);
    expect(badKind.code).toBe(2);
    expect(badKind.stderr).toContain('eagle-client: picture needs --kind boxed|heatmap|reference (got "mask")');
    const noOut = await cli(["--url", baseUrl, "picture", record.id, "--kind", "boxed"]);
    expect(noOut.stderr).toContain("eagle-client: picture needs --out FILE");
    const noFolder = join(dir, "missing", "x.png");
    const missing = await cli(["--url", baseUrl, "picture", record.id, "--kind", "boxed", "--out", noFolder]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toBe(`eagle-client: cannot write ${noFolder}: its folder does not exist\n`);
    const folder = await cli(["--url", baseUrl, "picture", record.id, "--kind", "boxed", "--out", dir, "--force"]);
    expect(folder.stderr).toBe(`eagle-client: ${dir} is a folder; give a file name\n`);
    expect(existsSync(fresh)).toBe(false);
  });

  it("reads history with filters", async () => {
    const { code, stdout } = await cli(["--url", baseUrl, "history", "--category", "mono", "--limit", "2"]);
    expect(code).toBe(0);
    const page = JSON.parse(stdout) as { limit: number; items: Array<{ category: string; reference: { image: string } | null }> };
    expect(page.limit).toBe(2);
    expect(page.items.every((item) => item.category === "mono")).toBe(true);
    // Each item names its nearest normal training image (the fixture's model records references).
    expect(page.items.every((item) => /\.png$/.test(item.reference?.image ?? ""))).toBe(true);
  });

  it("refuses bad usage with exit 2 and the reason", async () => {
    const decision = await cli(["--url", baseUrl, "history", "--decision", "maybe"]);
    expect(decision.code).toBe(2);
    expect(decision.stderr).toContain("--decision must be anomalous, normal, unrecognised or undecided");
    const unknown = await cli(["frobnicate"]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('unknown command "frobnicate"');
    const both = await cli(["fit", "x"]);
    expect(both.stderr).toContain("fit needs either --folder DIR");
  });

  it("says when the service cannot be reached (exit 2)", async () => {
    const { code, stderr } = await cli(["--url", "http://127.0.0.1:9", "--retries", "0", "health"]);
    expect(code).toBe(2);
    expect(stderr).toContain("cannot reach the EAGLE service at http://127.0.0.1:9");
  });

  it("maps an API error to exit 1 with the service's message", async () => {
    const { code, stderr } = await cli(["--url", baseUrl, "category", "nope"]);
    expect(code).toBe(1);
    expect(stderr).toBe("eagle-client: no fitted category 'nope'\n");
  });
});

describe("uploadNames", () => {
  it("keeps file names, and the folders below the common one where names clash", () => {
    expect(uploadNames(["a/x.png", "b/y.png"])).toEqual(["x.png", "y.png"]);
    expect(uploadNames(["/d/lot/cut/003.png", "/d/lot/hole/003.png", "/d/other/004.png"])).toEqual(["cut/003.png", "hole/003.png", "004.png"]);
    expect(uploadNames(["/d/cut/a/003.png", "/d/003.png"])).toEqual(["cut/a/003.png", "003.png"]);
  });
});

describe("imageErrorLine", () => {
  it("names the file once: the path, then the reason without the name the message starts with", () => {
    // it read `eagle-client: shots/anim.gif: anim.gif: not a recognised image format ...`
    expect(imageErrorLine("shots/anim.gif", "anim.gif", "anim.gif: not a recognised image format (the local runtime reads PNG and JPEG)"))
      .toBe("eagle-client: shots/anim.gif: not a recognised image format (the local runtime reads PNG and JPEG)\n");
    expect(imageErrorLine("a/x.png", "x.png", "queue full")).toBe("eagle-client: a/x.png: queue full\n");
    expect(imageErrorLine("a/x.png", "x.png", "x.pngx: odd")).toBe("eagle-client: a/x.png: x.pngx: odd\n");
  });
});

describe("parseFitOptions", () => {
  it("types numbers and strings and refuses unknown keys and non-numbers", () => {
    expect(parseFitOptions(["k=2.5", "rule=mad", "seed=3"])).toEqual({ k: 2.5, rule: "mad", seed: 3 });
    expect(() => parseFitOptions(["kk=1"])).toThrow('unknown fit option "kk"');
    expect(() => parseFitOptions(["k=abc"])).toThrow('fit option k must be a number, got "abc"');
    expect(() => parseFitOptions(["k="])).toThrow("must be a number");
    expect(() => parseFitOptions(["=3"])).toThrow("--option expects key=value");
  });
});
