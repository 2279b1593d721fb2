/**
 * The console pictures of README.md and docs/SERVICE.md (docs/img/console.png, console-phone.png,
 * console-categories.png) from a
 * running service that has the `mono` category: inspects the fixture's two sample cells in headless
 * Chromium, then moves the category's candidate threshold to 125 to show the tuning preview.
 *
 *   node web/scripts/readme-shots.mjs http://127.0.0.1:8000 .cache/e2e-fixture docs/img
 *
 * The pictures were taken from an expert-only service on the browser tests' fixture
 * (`eagle serve --models <copy of .cache/e2e-fixture/models> --runs .cache/e2e-fixture/runs`) after
 * inspecting and labelling 12 elpv test cells.
 */
import { chromium } from "playwright-core";
import { resolve } from "node:path";

const [base, fixture, out] = process.argv.slice(2);
if (!base || !fixture || !out) {
  console.error("usage: node web/scripts/readme-shots.mjs SERVICE_URL FIXTURE_DIR OUT_DIR");
  process.exit(2);
}
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || "/usr/bin/chromium", headless: true, args: ["--no-sandbox", "--disable-gpu"] });
try {
  const page = await (await browser.newContext({ viewport: { width: 1280, height: 900 }, deviceScaleFactor: 1 })).newPage();
  await page.goto(`${base}/#/inspect`);
  const select = page.getByLabel("Category", { exact: true });
  await select.locator('option[value="mono"]').waitFor({ state: "attached" });
  await select.selectOption("mono");
  await page.locator('[data-testid="inspect-files"]').setInputFiles([resolve(fixture, "sample-crack.png"), resolve(fixture, "sample-good.png")]);
  await page.getByRole("article", { name: "Inspection of sample-good.png" }).locator('[data-testid="verdict"]').waitFor({ timeout: 120_000 });
  await page.waitForFunction(() => Array.from(document.querySelectorAll("article img")).every((img) => img.complete && img.naturalWidth > 0));
  await page.screenshot({ path: resolve(out, "console.png"), fullPage: true });
  await page.setViewportSize({ width: 390, height: 844 });
  await page.evaluate(() => {
    const card = document.querySelectorAll("article")[1];
    if (card) window.scrollTo(0, card.getBoundingClientRect().top + window.scrollY - 8);
  });
  await page.waitForTimeout(800);
  await page.screenshot({ path: resolve(out, "console-phone.png") });
  await page.setViewportSize({ width: 1280, height: 900 });
  await page.goto(`${base}/#/categories/mono`);
  await page.locator('[data-testid="dashboard-figures"]').waitFor({ timeout: 60_000 });
  await page.getByLabel("Threshold value").fill("125");
  await page.waitForTimeout(1500);
  await page.locator("section.detail").screenshot({ path: resolve(out, "console-categories.png") });
} finally {
  await browser.close();
}
