/**
 * What every browser suite shares: the Chromium it drives, a fresh page that records script errors,
 * screenshots into web/e2e/artifacts, waits for pictures, and the phone-width measurement.
 *
 * One module so the suites cannot drift apart (they used to copy these, and the phone measurement
 * existed twice); the server they run against is ./server (tests/serve_fixture.py).
 */

import { mkdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { resolve } from "node:path";
import { crc32 } from "node:zlib";
import { chromium, type Browser, type BrowserContext, type Page } from "playwright-core";
import { FIXTURE_WORK, REPO } from "./server";

export { FIXTURE_WORK, REPO, startServer, type RunningServer } from "./server";

/** Screenshots of every page the suites visit (not committed; docs/img holds the chosen ones). */
export const ARTIFACTS = resolve(REPO, "web/e2e/artifacts");
/** Debian's chromium (`make test` installs it); CHROMIUM names another build. */
export const CHROMIUM = process.env["CHROMIUM"] || "/usr/bin/chromium";
export const DESKTOP = { width: 1280, height: 900 } as const;
export const PHONE = { width: 390, height: 844 } as const;

/** Headless Chromium without the background traffic (updates, sync) a test run has no use for. */
export function launchBrowser(): Promise<Browser> {
  mkdirSync(ARTIFACTS, { recursive: true });
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ["--no-sandbox", "--disable-background-networking", "--disable-gpu", "--disable-component-update", "--disable-sync", "--no-first-run"],
  });
}

/**
 * Record the page's script errors and console errors into `problems` (a suite asserts it stays empty).
 * Console lines about 4xx answers are left out: the console shows those to the user on purpose.
 */
export function recordProblems(page: Page, problems: string[], tag = ""): void {
  const where = tag ? ` (${tag})` : "";
  page.on("console", (message) => {
    if (message.type() === "error" && !/status of 4\d\d/.test(message.text())) problems.push(`console${where}: ${message.text()}`);
  });
  page.on("pageerror", (error) => problems.push(`page error${where}: ${error.message}`));
}

/** A page in a context of its own (its own storage and IndexedDB), recording into `problems`. */
export async function openPage(
  browser: Browser,
  problems: string[],
  viewport: { width: number; height: number } = DESKTOP,
  tag = "",
): Promise<{ context: BrowserContext; page: Page }> {
  const context = await browser.newContext({ viewport, deviceScaleFactor: 1 });
  const page = await context.newPage();
  recordProblems(page, problems, tag);
  // Playwright turns on file-chooser interception when the first "filechooser" listener is added,
  // without waiting for the browser to confirm; a waitForEvent added just before the key press
  // raced it (CI: the chooser opened unintercepted and the wait never resolved). A listener added
  // here switches interception on long before any test opens a chooser.
  page.on("filechooser", () => undefined);
  return { context, page };
}

/** A full-page screenshot into ARTIFACTS; returns its path. */
export async function shot(page: Page, name: string): Promise<string> {
  const path = resolve(ARTIFACTS, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  return path;
}

/** Wait until every <img> matching `selector` has decoded (blob: pictures fetched through the client). */
export async function imagesLoaded(page: Page, selector: string, timeout = 30_000): Promise<void> {
  await page.waitForFunction(
    (sel) => {
      const images = Array.from(document.querySelectorAll<HTMLImageElement>(sel));
      return images.length > 0 && images.every((img) => img.complete && img.naturalWidth > 0);
    },
    selector,
    { timeout },
  );
}

/** Horizontal overflow and text under 11 px (SVG text scaled as drawn): what a phone-width page must not have. */
export function measure(page: Page): Promise<{ scrollWidth: number; tiny: string[] }> {
  return page.evaluate(() => {
    const tiny: string[] = [];
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      const text = node.textContent?.trim();
      const el = node.parentElement;
      if (!text || !el || el.closest(".sr-only, title, style, script")) continue;
      const rect = el.getBoundingClientRect();
      if (rect.width === 0 && rect.height === 0) continue; // not rendered
      let size = parseFloat(getComputedStyle(el).fontSize);
      const svg = el.closest("svg");
      if (svg && svg.viewBox.baseVal && svg.viewBox.baseVal.width > 0) size *= svg.getBoundingClientRect().width / svg.viewBox.baseVal.width;
      if (size < 11 - 1e-6) tiny.push(`${text.slice(0, 30)} (${size.toFixed(1)} px)`);
    }
    return { scrollWidth: document.documentElement.scrollWidth, tiny };
  });
}

const AXE_SOURCE = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");
/** axe-core's tags for WCAG 2.0, 2.1 and 2.2 at levels A and AA. */
export const WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"];

/**
 * axe-core's WCAG 2.x A/AA violations on the page as it is, each prefixed with `where` (evaluated, not
 * injected as a <script>: the console's CSP forbids inline scripts).
 */
export async function axeViolations(page: Page, where: string): Promise<string[]> {
  await page.evaluate(AXE_SOURCE);
  const violations = await page.evaluate(async (tags) => {
    const axe = (window as unknown as { axe: { run: (ctx: Document, options: object) => Promise<{ violations: Array<{ id: string; help: string; nodes: Array<{ target: unknown[] }> }> }> } }).axe;
    const result = await axe.run(document, { runOnly: { type: "tag", values: tags }, resultTypes: ["violations"] });
    return result.violations.map((v) => `${v.id}: ${v.help} (${v.nodes.map((n) => n.target.join(" ")).slice(0, 3).join(", ")})`);
  }, WCAG_TAGS);
  return violations.map((v) => `${where}: ${v}`);
}

/** A file of the fixture (tests/serve_fixture.py's work folder), e.g. "sample-crack.png". */
export function fixtureFile(name: string): Buffer {
  return readFileSync(resolve(FIXTURE_WORK, name));
}

/**
 * A fixture PNG with the same pixels (so the same scores) and bytes of its own: a tEXt chunk naming `tag` after the
 * header. The history knows an image by its bytes' SHA-256 (a teach refuses one labelled defective anywhere in
 * it, and skips one it was taught before), so a test that labels or teaches its own copy leans on no other test,
 * run alone, with another under a -t filter, or in the full suite's order.
 */
export function ownCopy(name: string, tag: string): Buffer {
  const png = fixtureFile(name);
  const headerEnd = 8 + 4 + 4 + 13 + 4; // signature, then IHDR: length, type, 13 bytes of data, CRC
  if (png.subarray(12, 16).toString("latin1") !== "IHDR") throw new Error(`${name}: not a PNG starting with IHDR`);
  const body = Buffer.concat([Buffer.from("tEXt", "latin1"), Buffer.from(`eagle-e2e\0${tag}`, "latin1")]);
  const length = Buffer.alloc(4);
  length.writeUInt32BE(body.length - 4);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([png.subarray(0, headerEnd), length, body, crc, png.subarray(headerEnd)]);
}

/** Open the Inspect page at `baseUrl` and choose `category`, waiting until the drop zone names it. */
export async function openInspect(page: Page, baseUrl: string, category = "mono"): Promise<void> {
  await page.goto(`${baseUrl}/#/inspect`);
  await page.getByRole("heading", { name: "Inspect", level: 1 }).waitFor();
  const select = page.getByLabel("Category", { exact: true });
  await select.locator(`option[value="${category}"]`).waitFor({ state: "attached" });
  await select.selectOption(category);
  await page.getByText(`inspected against “${category}”`).waitFor();
}
