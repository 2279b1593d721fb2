/**
 * The nearest normal training image beside an inspected one, in a real browser against a real
 * `eagle serve` (tests/serve_fixture.py): in the result card, in the History detail, on a phone,
 * and the service's reason when a model keeps no reference pictures (fitted before model schema 4).
 */

import { execFileSync } from "node:child_process";
import { resolve } from "node:path";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FIXTURE_WORK, PHONE, REPO, launchBrowser, openInspect, openPage, shot, startServer, type RunningServer } from "./fixture";

const OLD_MODEL_REASON = "No reference: model fitted before model schema 4; refit to get one";

let server: RunningServer;
let browser: Browser;
let page: Page;
const problems: string[] = [];

interface Reference {
  index: number;
  image: string;
  bank_row: number;
  unavailable: string | null;
}

/** The newest stored inspection of `name`, as the service has it (the page must agree with it). */
async function stored(name: string): Promise<{ id: string; reference: Reference | null; pictures: Record<string, string> }> {
  const page = (await (await fetch(`${server.baseUrl}/v1/inspections?limit=20`)).json()) as {
    items: Array<{ id: string; image_name: string; reference: Reference | null; pictures: Record<string, string> }>;
  };
  const found = page.items.find((item) => item.image_name === name);
  if (!found) throw new Error(`no stored inspection of ${name}`);
  return found;
}

/** Decoded size of the first <img> matching `selector`, once it has loaded from its blob: URL. */
async function loadedSize(where: Page, selector: string): Promise<{ width: number; height: number; blob: boolean }> {
  await where.waitForFunction((sel) => {
    const img = document.querySelector<HTMLImageElement>(sel);
    return img !== null && img.complete && img.naturalWidth > 0;
  }, selector, { timeout: 30_000 });
  return where.evaluate((sel) => {
    const img = document.querySelector<HTMLImageElement>(sel)!;
    return { width: img.naturalWidth, height: img.naturalHeight, blob: img.src.startsWith("blob:") };
  }, selector);
}

async function inspect(where: Page, category: string, file: string): Promise<void> {
  await openInspect(where, server.baseUrl, category);
  await where.locator('[data-testid="inspect-files"]').setInputFiles(resolve(FIXTURE_WORK, file));
  await where.getByRole("article", { name: `Inspection of ${file}` }).locator('[data-testid="verdict"]').waitFor({ timeout: 120_000 });
}

beforeAll(async () => {
  [server, browser] = await Promise.all([startServer(), launchBrowser()]);
  // This run's models folder (the fixture serves a copy per port): its model saved again without
  // reference pictures by the real store code, as a model fitted before schema 4 is read.
  const models = resolve(FIXTURE_WORK, `state-${new URL(server.baseUrl).port}`, "models");
  const python = process.env["EAGLE_PYTHON"] || resolve(REPO, ".venv/bin/python");
  execFileSync(python, ["-c", [
    "import sys, dataclasses",
    "from eagle_iad.expert import load, save",
    "model = load(sys.argv[1])",
    "save(dataclasses.replace(model, category='legacy', references=None), sys.argv[2])",
  ].join("\n"), resolve(models, "mono"), resolve(models, "legacy")], {
    env: { ...process.env, PYTHONPATH: [resolve(REPO, "src"), process.env["PYTHONPATH"]].filter(Boolean).join(":") },
  });
  ({ page } = await openPage(browser, problems));
});

afterAll(async () => {
  await browser?.close();
  await server?.stop();
});

describe("nearest normal reference", () => {
  it("shows the nearest normal training image beside the inspected one, in the card and in the History detail", async () => {
    await inspect(page, "mono", "sample-crack.png");
    const record = await stored("sample-crack.png");
    expect(record.reference?.unavailable).toBeNull();
    const name = record.reference!.image;
    const card = page.getByRole("article", { name: "Inspection of sample-crack.png" });
    const figure = card.locator('[data-testid="reference"]');
    expect(await figure.locator("figcaption").textContent()).toBe(`Nearest normal training image: ${name}`);
    const alt = `Nearest normal training image ${name}`;
    const size = await loadedSize(page, `article img[alt="${alt}"]`);
    expect(size.blob).toBe(true);
    expect(Math.max(size.width, size.height)).toBeLessThanOrEqual(512);
    // Beside the inspected picture: same row, to its right.
    const main = await card.locator('img[alt$=" of sample-crack.png"]').boundingBox();
    const ref = await figure.locator("img").boundingBox();
    expect(main !== null && ref !== null && ref.x >= main.x + main.width && Math.abs(ref.y - main.y) < 2).toBe(true);
    // The picture is the one stored with the inspection (the service's JPEG, not another image).
    const served = await fetch(`${server.baseUrl}/v1/inspections/${record.id}/reference`);
    expect(served.headers.get("content-type")).toBe("image/jpeg");
    await shot(page, "reference-card");

    await page.getByRole("link", { name: "History" }).click();
    const table = page.getByRole("table", { name: "Inspection history" });
    await table.getByRole("button", { name: /^Show sample-crack\.png/ }).first().click();
    const detail = page.getByRole("region", { name: "Selected inspection" });
    await detail.waitFor();
    expect(await detail.locator('[data-testid="reference"] figcaption').textContent()).toBe(`Nearest normal training image: ${name}`);
    await loadedSize(page, `section[aria-label="Selected inspection"] img[alt="${alt}"]`);
    await shot(page, "reference-history");
  });

  it("says why there is no reference for a model fitted before model schema 4", async () => {
    await inspect(page, "legacy", "sample-good.png");
    const record = await stored("sample-good.png");
    expect(record.reference?.unavailable).toBe("no reference: model fitted before model schema 4; refit to get one");
    expect(record.pictures["reference"]).toBeUndefined();
    const figure = page.getByRole("article", { name: "Inspection of sample-good.png" }).locator('[data-testid="reference"]');
    expect(await figure.locator('[data-testid="reference-unavailable"]').textContent()).toBe(OLD_MODEL_REASON);
    expect(await figure.locator("figcaption").textContent()).toBe(`Nearest normal training image: ${record.reference!.image}`);
    expect(await figure.locator("img").count()).toBe(0);
  });

  it("stacks the reference under the picture on a phone (390 px) without sideways scrolling", async () => {
    const { context: phone, page: small } = await openPage(browser, problems, PHONE, "phone");
    await inspect(small, "mono", "sample-crack.png");
    const card = small.getByRole("article", { name: "Inspection of sample-crack.png" });
    await loadedSize(small, 'article [data-testid="reference"] img');
    const main = await card.locator('img[alt$=" of sample-crack.png"]').boundingBox();
    const ref = await card.locator('[data-testid="reference"] img').boundingBox();
    expect(main !== null && ref !== null && ref.y >= main.y + main.height).toBe(true);
    expect(await small.evaluate(() => document.documentElement.scrollWidth)).toBe(390);
    await shot(small, "reference-phone");
    await phone.close();
  });

  it("logged no script errors", () => {
    expect(problems).toEqual([]);
  });
});
