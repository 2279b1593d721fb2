/**
 * The Stations page in a real browser against a real `eagle serve` (tests/serve_fixture.py): a station
 * created through the form on a hot folder inside the fixture's data root, a real elpv cell dropped in
 * (node fs) and its verdict on the page, pause and resume, delete with its confirm step; a station in
 * trouble (backlog over its limit, a webhook nobody answers) with its warnings, dead letters and Retry, and its
 * delete refused while it owes a verdict, then done with "Delete and drop them";
 * axe-core's WCAG 2.x A/AA rules on the page at 1280 and 390 px. Screenshots land in web/e2e/artifacts.
 */

import { EagleClient, type StationInfo } from "@eagle-iad/client";
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { Browser, BrowserContext, Locator, Page } from "playwright-core";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { FIXTURE_WORK, PHONE, REPO, axeViolations, launchBrowser, measure, openPage, shot, startServer, type RunningServer } from "./fixture";
import { freePort } from "./server";

let server: RunningServer;
let browser: Browser;
let client: EagleClient;
let context: BrowserContext;
let page: Page;
const problems: string[] = [];
/** Unique per run: the fixture's data root is shared by every server it starts. */
const tag = `${process.pid}-${Date.now().toString(36)}`;
const DATA = resolve(FIXTURE_WORK, "data");
const folders = {
  line: `e2e-hot-${tag}`,
  sorted: `e2e-sorted-${tag}`,
  trouble: `e2e-trouble-${tag}`,
  file: `e2e-file-${tag}`,
  camera: `e2e-camera-${tag}`,
};
const LINE = `e2e-line-${tag}`;
const TROUBLE = `e2e-trouble-${tag}`;
const FILED = `e2e-file-${tag}`;
const CAMERA = `e2e-camera-${tag}`;

/** Drop a fixture cell into a hot folder as a camera would: written under a name never taken, then renamed. */
function drop(file: string, folder: string, name: string): void {
  const target = join(DATA, folder, name);
  copyFileSync(resolve(FIXTURE_WORK, file), `${target}.part`);
  renameSync(`${target}.part`, target);
}

async function until(what: string, check: () => Promise<boolean>, timeoutMs = 90_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}`);
}

/** The row of a station in the (desktop) table. */
function row(name: string): Locator {
  return page.getByRole("table", { name: "Stations" }).locator(`tr[data-station="${name}"]`);
}

async function openStations(): Promise<void> {
  await page.goto(`${server.baseUrl}/#/stations`);
  await page.getByRole("heading", { name: "Stations", level: 1 }).waitFor();
}

beforeAll(async () => {
  // after the server starts: a first start prepares the fixture afresh, removing its data root (run alone, this
  // file's folders made before were gone)
  [server, browser] = await Promise.all([startServer(), launchBrowser()]);
  for (const folder of [folders.line, folders.trouble, folders.file]) mkdirSync(join(DATA, folder), { recursive: true });
  client = new EagleClient({ baseUrl: server.baseUrl });
});

beforeEach(async () => {
  ({ context, page } = await openPage(browser, problems));
});

afterEach(async () => {
  await context?.close();
});

afterAll(async () => {
  for (const name of [LINE, TROUBLE, CAMERA]) await client?.deleteStation(name, { discardPending: true }).catch(() => undefined);
  await browser?.close();
  await server?.stop();
  for (const folder of Object.values(folders)) rmSync(join(DATA, folder), { recursive: true, force: true });
});

describe("stations page", () => {
  it("creates a station through the form, shows the dropped cell's verdict, pauses, resumes and deletes it", async () => {
    await openStations();
    await page.getByText(/^No station yet/).waitFor({ timeout: 60_000 });
    const create = page.getByRole("region", { name: "Create a station" });
    expect(await create.locator('[data-testid="create-blocked"]').textContent()).toBe("Enter a name for the station.");
    await create.getByLabel("Name").fill(LINE);
    const category = create.getByLabel("Category");
    await category.locator('option[value="mono"]').waitFor({ state: "attached" });
    await category.selectOption("mono");
    await create.getByLabel("Hot folder (relative to the data root)").fill(folders.line);
    await create.getByLabel("Settle time (seconds)").fill("0.2");
    // Sinks are added by kind (the service's declared sinks), each with its own fields.
    expect(await create.getByLabel("Sink kind").locator("option").allTextContents()).toEqual(["A folder", "A webhook", "An MQTT broker", "An OPC UA server (a PLC)"]);
    await create.getByRole("button", { name: "Add sink" }).click();
    await create.getByRole("group", { name: "Sink 1: A folder" }).getByLabel("Folder (relative to the data root)").fill(folders.sorted);
    // The service's declared choices for a repeated content, the default first, the hint read with the field.
    const duplicates = create.getByLabel("An image whose content was already inspected");
    expect(await duplicates.locator("option").allTextContents()).toEqual(["Service default (refuse)", "Refuse: tell the sinks", "Skip: tell no sink"]);
    expect(await duplicates.getAttribute("aria-describedby")).toBe(await create.locator(".hint", { hasText: "A frozen camera" }).getAttribute("id"));
    await duplicates.selectOption("skip");
    expect(await create.locator('[data-testid="create-blocked"]').count()).toBe(0);
    await create.getByRole("button", { name: "Create station" }).click();
    await create.getByText(`Created ${LINE}: images written into its hot folder are inspected against mono.`).waitFor();
    const line = row(LINE);
    await line.waitFor();
    expect(await line.locator('[data-testid="station-state"]').textContent()).toBe("▶Running");
    expect(await line.locator('[data-field="inspected"]').textContent()).toBe("0");
    expect(await line.locator('[data-field="last-verdict"]').textContent()).toBe("none yet");
    // The form's body reached the service as typed.
    const made = await client.getStation(LINE);
    expect(made.spec).toMatchObject({
      name: LINE,
      category: "mono",
      duplicates: "skip",
      source: { kind: "folder", path: folders.line, settle_s: 0.2 },
      sinks: [{ kind: "folder", path: folders.sorted }],
    });

    // A real cell into the hot folder: the page, refreshing on its own, shows it inspected and its verdict.
    drop("sample-crack.png", folders.line, "cell-01.png");
    await page.waitForFunction((name) => document.querySelector(`tr[data-station="${name}"] [data-field="inspected"]`)?.textContent === "1", LINE, {
      timeout: 90_000,
    });
    const verdict = line.locator('[data-testid="last-verdict"]');
    await verdict.waitFor();
    let info: StationInfo = made;
    await until("the delivery to the folder sink", async () => {
      info = await client.getStation(LINE);
      return info.sinks["folder"]?.delivered === 1;
    });
    const last = info.last_verdict as { decision: string | null; score: number; image: string; time_iso: string };
    const label = last.decision === "anomalous" ? "Anomalous" : last.decision === "normal" ? "Normal" : "Undecided";
    expect(await verdict.locator(".decision").textContent()).toContain(label);
    // When: local time to read, the service's UTC ISO instant in the <time> element's datetime and title.
    const when = verdict.locator("time");
    expect(await when.getAttribute("datetime")).toBe(last.time_iso);
    expect(await when.getAttribute("title")).toBe(last.time_iso);
    // The time alone for a verdict from today, date and time for one from before (formatVerdictTime): which one
    // depends on the page's clock when it drew the row, so around local midnight either is right.
    const forms = await page.evaluate((iso) => [new Date(iso).toLocaleTimeString(), new Date(iso).toLocaleString()], last.time_iso);
    expect(forms).toContain(await when.textContent());
    expect(await verdict.textContent()).toContain("cell-01.png");
    expect(await verdict.textContent()).toMatch(/score \d+(\.\d+)?/);
    await page.waitForFunction(
      (name) => document.querySelector(`tr[data-station="${name}"] [data-field="sinks"]`)?.textContent?.includes("1 delivered · 0 pending · 0 dead letters"),
      LINE,
      { timeout: 30_000 },
    );
    // The p95 over the last 1,000 images and the one of the last 5 minutes (what the deadline warning judges),
    // each saying what it covers; neither marked, as the service does not warn.
    expect(await line.locator('[data-field="latency"]').textContent()).toMatch(
      /^p50 [\d.]+ sp95 [\d.]+ sp99 [\d.]+ slast imagep95 [\d.]+ s last 5 min · 1 imagedeadline 10.0 s$/,
    );
    expect(await line.locator('[data-field="latency"] .over').count()).toBe(0);
    expect(await page.locator('[data-testid="station-warnings"]').textContent()).toBe("");
    await shot(page, "stations-line-1280");

    // Pause and resume: the button says what it will do, and keeps the keyboard focus.
    const pause = line.getByRole("button", { name: `Pause ${LINE}` });
    await pause.click();
    await line.locator('[data-testid="station-state"]', { hasText: "Paused" }).waitFor();
    expect((await client.getStation(LINE)).state).toBe("paused");
    const resume = line.getByRole("button", { name: `Resume ${LINE}` });
    expect(await resume.evaluate((el) => el === document.activeElement)).toBe(true);
    expect(await page.locator('[data-testid="station-notice"]').textContent()).toBe(`${LINE} is paused: it takes no new images (deliveries go on).`);
    await resume.click();
    await line.locator('[data-testid="station-state"]', { hasText: "Running" }).waitFor();
    expect((await client.getStation(LINE)).state).toBe("running");

    // Delete asks first; Cancel puts the focus back; confirming removes the row and the station.
    const remove = line.getByRole("button", { name: `Delete ${LINE}` });
    await remove.click();
    const confirm = line.getByRole("group", { name: new RegExp(`^Delete ${LINE}\\?`) });
    await confirm.waitFor();
    expect(await confirm.getByRole("button", { name: "Cancel" }).evaluate((el) => el === document.activeElement)).toBe(true);
    await confirm.getByRole("button", { name: "Cancel" }).click();
    await remove.waitFor();
    expect(await remove.evaluate((el) => el === document.activeElement)).toBe(true);
    expect((await client.getStation(LINE)).station).toBe(LINE); // still there
    // Escape answers no as well, the focus back on Delete.
    await remove.press("Enter");
    await confirm.waitFor();
    await page.keyboard.press("Escape");
    await remove.waitFor();
    expect(await remove.evaluate((el) => el === document.activeElement)).toBe(true);
    await remove.click();
    await confirm.getByRole("button", { name: "Yes, delete" }).click();
    await line.waitFor({ state: "detached" });
    expect(await page.locator('[data-testid="station-notice"]').textContent()).toBe(`${LINE} is deleted; its inspections stay in the history.`);
    await expect(client.getStation(LINE)).rejects.toMatchObject({ status: 404, code: "station_not_found" });
    expect(await page.getByRole("heading", { name: "Stations", level: 1 }).evaluate((el) => el === document.activeElement)).toBe(true);
  });

  it("shows the service's refusal of a hot folder outside the data root in the error banner and beside the field", async () => {
    await openStations();
    const create = page.getByRole("region", { name: "Create a station" });
    await create.getByLabel("Name").fill(`e2e-outside-${tag}`);
    await create.getByLabel("Category").locator('option[value="mono"]').waitFor({ state: "attached" });
    await create.getByLabel("Category").selectOption("mono");
    await create.getByLabel("Hot folder (relative to the data root)").fill("/tmp");
    await create.getByRole("button", { name: "Create station" }).click();
    const banner = create.locator(".error-banner");
    await banner.waitFor();
    expect(await banner.getAttribute("role")).toBe("alert");
    expect(await banner.locator("strong").textContent()).toBe("Request refused (400)");
    expect(await banner.textContent()).toContain(`station 'e2e-outside-${tag}': source: path '/tmp' is outside the service's data root`);
    // beside the field the message names, read out with it
    const field = create.getByLabel("Hot folder (relative to the data root)");
    expect(await field.getAttribute("aria-invalid")).toBe("true");
    const note = create.locator('[data-testid="field-refused"]');
    expect(await note.count()).toBe(1);
    expect(await note.textContent()).toContain("path '/tmp' is outside the service's data root");
    expect((await field.getAttribute("aria-describedby"))?.split(" ")).toContain(await note.getAttribute("id"));
    // changed: the note goes (the banner says what the service said last)
    await field.fill(folders.line);
    expect(await note.count()).toBe(0);
    expect((await client.listStations()).map((s) => s.station)).not.toContain(`e2e-outside-${tag}`);
  });

  it("opens a sink's More options when the service's refusal names an option folded there", async () => {
    await openStations();
    const create = page.getByRole("region", { name: "Create a station" });
    await create.getByLabel("Name").fill(`e2e-folded-${tag}`);
    await create.getByLabel("Category").locator('option[value="mono"]').waitFor({ state: "attached" });
    await create.getByLabel("Category").selectOption("mono");
    await create.getByLabel("Hot folder (relative to the data root)").fill(folders.line);
    await create.getByLabel("Sink kind").selectOption("webhook");
    await create.getByRole("button", { name: "Add sink" }).click();
    const sink = create.getByRole("group", { name: "Sink 1: A webhook" });
    await sink.getByLabel("Webhook URL").fill("http://mes.local/verdicts");
    // a CA file with an http:// url (the service refuses it), typed and folded away again
    const more = sink.locator("details.part-more");
    await more.locator("summary").click();
    await sink.getByLabel("CA file").fill("ca.pem");
    await more.locator("summary").click();
    expect(await more.evaluate((d) => (d as HTMLDetailsElement).open)).toBe(false);
    await create.getByRole("button", { name: "Create station" }).click();
    await create.locator(".error-banner").waitFor();
    // the section opens: the note beside the field it names is seen
    const note = sink.locator('[data-testid="field-refused"]');
    await note.waitFor();
    expect(await note.textContent()).toContain("ca_file needs an https:// url");
    expect(await more.evaluate((d) => (d as HTMLDetailsElement).open)).toBe(true);
    expect(await note.isVisible()).toBe(true);
    // changed: the note goes, the section stays open under the typing
    await sink.getByLabel("CA file").fill("");
    expect(await note.count()).toBe(0);
    expect(await more.evaluate((d) => (d as HTMLDetailsElement).open)).toBe(true);
    expect((await client.listStations()).map((s) => s.station)).not.toContain(`e2e-folded-${tag}`);
  });

  it("warns about a station in trouble, retries its dead letters, and passes axe at 1280 and 390 px", async () => {
    // A webhook nobody answers (one try each: dead letters at once) and a backlog limit of 1.
    const port = await freePort();
    await client.createStation({
      name: TROUBLE,
      category: "mono",
      backlog_limit: 1,
      source: { kind: "folder", path: folders.trouble, settle_s: 0.2, poll_s: 0.1 },
      sinks: [{ kind: "webhook", name: "mes", url: `http://127.0.0.1:${port}/verdicts`, max_attempts: 1, timeout_s: 2 }],
    });
    drop("sample-good.png", folders.trouble, "cell-01.png");
    await until("the dead letter", async () => (await client.getStation(TROUBLE)).sinks["mes"]?.dead_letters === 1);
    await client.pauseStation(TROUBLE);
    drop("sample-crack.png", folders.trouble, "cell-02.png");
    drop("data/mono-good/00.png", folders.trouble, "cell-03.png");
    const info = await client.getStation(TROUBLE);
    const requeue = `1 dead letter (the console's Retry on the Stations page, or POST /v1/stations/${TROUBLE}/retry, requeues them)`;
    // sink by sink, how many and why the last was given up on: what to fix before a retry
    const deadLetter = `${requeue}; sink mes: 1, the last given up on: http://127.0.0.1:${port}/verdicts: [Errno 111] Connection refused`;
    // never reached since its start-up check: said until its first delivery (the dead letter is no delivery)
    const unreached = `sink mes: not reached at start: http://127.0.0.1:${port}/verdicts: Connection refused; verdicts wait in the outbox until it is reachable`;
    expect(info.warnings).toEqual(["backlog 2 is over the limit 1", unreached, deadLetter]);

    await openStations();
    const warnings = page.locator('[data-testid="station-warnings"]');
    await warnings.getByText("backlog 2 is over the limit 1").waitFor({ timeout: 30_000 });
    expect(await warnings.getAttribute("role")).toBe("status");
    expect(await warnings.locator("li").allTextContents()).toEqual([
      `⚠ ${TROUBLE}: backlog 2 is over the limit 1`,
      `⚠ ${TROUBLE}: ${unreached}`,
      `⚠ ${TROUBLE}: ${requeue}; sink mes: 1, the last given up on: http://127.0.0.1:${port}/verdicts: connection refused`,
    ]);
    const trouble = row(TROUBLE);
    expect(await trouble.getAttribute("class")).toBe("has-warning");
    expect(await trouble.locator('[data-field="backlog"] .over').textContent()).toBe("2");
    const sink = trouble.locator('[data-sink="mes"]');
    expect(await sink.textContent()).toContain("0 delivered · 0 pending · 1 dead letter");
    expect(await sink.locator(".sink-error").textContent()).toMatch(/^last error: /);
    await shot(page, "stations-1280");
    const found = await axeViolations(page, "stations at 1280 px");

    // Retry: the dead letter goes back in the queue (and, the webhook still down, dies again).
    await trouble.getByRole("button", { name: `Retry 1 dead letter of ${TROUBLE}` }).click();
    await page.locator('[data-testid="station-notice"]').getByText(`1 dead letter of ${TROUBLE} back in their queues.`).waitFor();
    await until("the dead letter again", async () => (await client.getStation(TROUBLE)).sinks["mes"]?.dead_letters === 1);

    // At phone width the stations are cards: same figures, no sideways scrolling, no tiny text.
    await page.setViewportSize(PHONE);
    const card = page.getByRole("article", { name: TROUBLE });
    await card.waitFor();
    await card.getByRole("button", { name: `Retry 1 dead letter of ${TROUBLE}` }).waitFor({ timeout: 30_000 });
    expect(await card.locator('[data-testid="station-state"]').textContent()).toBe("❚❚Paused");
    expect(await card.locator('[data-field="inspected"]').textContent()).toBe("1");
    const { scrollWidth, tiny } = await measure(page);
    expect({ scrollWidth, tiny }).toEqual({ scrollWidth: PHONE.width, tiny: [] });
    await shot(page, "stations-390");
    found.push(...(await axeViolations(page, "stations at 390 px")));
    expect(found).toEqual([]);

    // Delete: refused while its sink owes a verdict (the service's 409 says how many), asked again with that
    // message, the focus on Cancel; "Delete and drop them" deletes it anyway.
    await card.getByRole("button", { name: `Delete ${TROUBLE}` }).click();
    await card.getByRole("group", { name: new RegExp(`^Delete ${TROUBLE}\\?`) }).getByRole("button", { name: "Yes, delete" }).click();
    const owing = card.getByRole("group", { name: new RegExp(`^Delete ${TROUBLE} anyway\\?`) });
    await owing.waitFor();
    expect(await owing.locator('[role="alert"]').textContent()).toBe(
      `Delete ${TROUBLE} anyway? station '${TROUBLE}': its sinks still owe 1 delivery (a verdict or a refusal): 0 pending, 1 dead letter; deleting it would ` +
        `drop them. Let them be delivered (GET /v1/stations/${TROUBLE} shows each sink's pending; POST /v1/stations/${TROUBLE}/retry ` +
        "requeues dead letters), or delete it with ?discard_pending=true to drop them",
    );
    expect(await owing.getByRole("button", { name: "Cancel" }).evaluate((el) => el === document.activeElement)).toBe(true);
    expect((await client.getStation(TROUBLE)).station).toBe(TROUBLE); // still there
    await owing.getByRole("button", { name: "Delete and drop them" }).click();
    await card.waitFor({ state: "detached" });
    expect(await page.locator('[data-testid="station-notice"]').textContent()).toBe(`${TROUBLE} is deleted; its inspections stay in the history.`);
    await expect(client.getStation(TROUBLE)).rejects.toMatchObject({ status: 404, code: "station_not_found" });
  });

  it("lists a station run by eagle station run read-only, stopped once its command stops, axe at 1280 and 390 px", async () => {
    // A real `eagle station run` on a stations file naming the service's own history (an SQLite file it shares).
    const state = join(FIXTURE_WORK, `state-${new URL(server.baseUrl).port}`);
    const work = mkdtempSync(join(tmpdir(), "eagle-e2e-file-"));
    const file = join(work, "stations.toml");
    writeFileSync(file, [
      `models = ${JSON.stringify(join(state, "models"))}`, `state = ${JSON.stringify(join(work, "state"))}`,
      `history = ${JSON.stringify(`sqlite:///${join(state, "eagle.sqlite3")}`)}`, "", "[[station]]",
      `name = "${FILED}"`, 'category = "mono"',
      `source = { kind = "folder", path = ${JSON.stringify(join(DATA, folders.file))}, settle_s = 0.2 }`, "",
    ].join("\n"));
    const python = process.env["EAGLE_PYTHON"] || resolve(REPO, ".venv/bin/python");
    const pythonPath = [resolve(REPO, "src"), process.env["PYTHONPATH"]].filter(Boolean).join(":");
    let log = "";
    const runner: ChildProcess = spawn(python, ["-m", "eagle_iad.cli", "station", "run", "--quiet", file],
      { env: { ...process.env, PYTHONPATH: pythonPath }, stdio: ["ignore", "pipe", "pipe"] });
    runner.stderr?.on("data", (chunk: Buffer) => (log += chunk.toString()));
    try {
      const listed = async (): Promise<StationInfo | undefined> => (await client.listStations()).find((s) => s.station === FILED);
      await until("the station published", async () => (await listed())?.state === "running").catch((error: Error) => {
        throw new Error(`${error.message}; eagle station run said: ${log || "nothing"} (exit ${runner.exitCode})`);
      });
      drop("sample-good.png", folders.file, "cell-01.png");
      await until("its verdict published", async () => (await listed())?.inspected === 1);
      const info = (await listed()) as StationInfo;
      expect(info.run_by).toMatchObject({ host: hostname(), pid: runner.pid, file, silent: false, stopped: null });
      await expect(client.pauseStation(FILED)).rejects.toMatchObject({ status: 409, code: "station_run_by_file" });

      await openStations();
      const filed = row(FILED);
      await filed.waitFor({ timeout: 30_000 });
      expect(await filed.locator('[data-testid="station-state"]').textContent()).toBe("▶Running");
      expect(await filed.locator(".station-path").textContent()).toContain(`run by eagle station run on ${hostname()} (${file})`);
      expect(await filed.locator('[data-testid="run-by"]').textContent()).toBe(
        `Read-only here: run by eagle station run on ${hostname()}; change, pause or retry it there (${file}).`,
      );
      expect(await filed.getByRole("button").count()).toBe(0); // nothing the API would refuse is offered
      // keyboard: the page's controls are reached with Tab and none of them is this row's
      for (let i = 0; i < 30; i += 1) {
        await page.keyboard.press("Tab");
        expect(await page.evaluate((name) => !!document.activeElement?.closest(`tr[data-station="${name}"]`), FILED)).toBe(false);
      }
      const found = await axeViolations(page, "a file's station at 1280 px");
      await page.setViewportSize(PHONE);
      const card = page.getByRole("article", { name: FILED });
      await card.waitFor();
      expect(await card.locator('[data-testid="run-by"]').count()).toBe(1);
      const { scrollWidth, tiny } = await measure(page);
      expect({ scrollWidth, tiny }).toEqual({ scrollWidth: PHONE.width, tiny: [] });
      found.push(...(await axeViolations(page, "a file's station at 390 px")));
      await shot(page, "stations-file-390");

      runner.kill("SIGTERM"); // a clean stop: every replica shows it stopped
      await card.locator('[data-testid="station-state"]').getByText("Stopped").waitFor({ timeout: 60_000 });
      found.push(...(await axeViolations(page, "a stopped file's station at 390 px")));
      expect(found).toEqual([]);
    } finally {
      runner.kill("SIGKILL");
      await client.deleteStation(FILED).catch(() => undefined); // a stopped one is forgotten from the listings
      rmSync(work, { recursive: true, force: true });
    }
  });

  it("creates a camera station on a video file through the form, keyboard alone, listed with its trigger; axe at 1280 and 390 px", async () => {
    // A real video file in the data root (OpenCV, as the camera source reads it): 10 frames of a fixture cell.
    mkdirSync(join(DATA, folders.camera), { recursive: true });
    const clip = `${folders.camera}/clip.avi`;
    const python = process.env["EAGLE_PYTHON"] || resolve(REPO, ".venv/bin/python");
    execFileSync(python, ["-c", [
      "import sys, cv2",
      "cell = cv2.resize(cv2.imread(sys.argv[1]), (128, 128))",
      "out = cv2.VideoWriter(sys.argv[2], cv2.VideoWriter_fourcc(*'MJPG'), 10.0, (128, 128))",
      "[out.write(cell) for _ in range(10)]",
      "out.release()",
    ].join("\n"), resolve(FIXTURE_WORK, "sample-good.png"), join(DATA, clip)]);

    await openStations();
    const create = page.getByRole("region", { name: "Create a station" });
    await create.getByLabel("Category").locator('option[value="mono"]').waitFor({ state: "attached" });
    // Keyboard alone: Tab to each control, type, choose with the arrow keys, Enter on the button.
    const tabTo = async (target: Locator): Promise<void> => {
      for (let i = 0; i < 120; i += 1) {
        if (await target.evaluate((el) => el === document.activeElement)) return;
        await page.keyboard.press("Tab");
      }
      throw new Error(`Tab never reached ${await target.evaluate((el) => el.outerHTML.slice(0, 120))}`);
    };
    const choose = async (select: Locator, value: string): Promise<void> => {
      await tabTo(select);
      const values = await select.locator("option").evaluateAll((options) => options.map((o) => (o as HTMLOptionElement).value));
      const key = values.indexOf(value) < values.indexOf(await select.inputValue()) ? "ArrowUp" : "ArrowDown";
      for (let i = 0; i < 10 && (await select.inputValue()) !== value; i += 1) await page.keyboard.press(key);
      expect(await select.inputValue()).toBe(value);
    };
    await create.getByLabel("Name").focus();
    await page.keyboard.type(CAMERA);
    await choose(create.getByLabel("Category"), "mono");
    const kind = create.getByLabel("Takes images from");
    expect(await kind.locator("option").allTextContents()).toEqual(["A hot folder", "A camera, stream or video file"]);
    await choose(kind, "camera");
    // the trigger choices the service declares, each showing its own options
    const trigger = create.getByLabel("Take a frame");
    expect(await trigger.locator("option").allTextContents()).toEqual([
      "Every N-th frame", "Every so many milliseconds", "On each API trigger (POST …/trigger)", "On a PLC's signal (OPC UA node)",
    ]);
    expect(await trigger.inputValue()).toBe("every_ms");
    const everyMs = create.getByLabel("Every (milliseconds)");
    expect([await everyMs.getAttribute("placeholder"), await everyMs.getAttribute("max")]).toEqual(["1000", "86400000"]);
    await trigger.selectOption("opcua");
    await create.getByLabel("Trigger node").waitFor();
    expect(await create.getByLabel("PLC endpoint").getAttribute("aria-required")).toBe("true");
    expect(await create.getByLabel("User name").getAttribute("aria-required")).toBe("false");
    expect(await create.locator('[data-testid="create-blocked"]').textContent()).toBe("Source: enter the video file or stream URL.");
    await trigger.selectOption("every_ms");
    expect(await create.getByLabel("Trigger node").count()).toBe(0);
    await choose(trigger, "every_n_frames");
    const everyN = create.getByLabel("Every N-th frame");
    expect([await everyN.getAttribute("min"), await everyN.getAttribute("max"), await everyN.getAttribute("placeholder")]).toEqual(["1", "1000000", "1"]);
    await tabTo(create.getByLabel("Video file or stream URL"));
    await page.keyboard.type(clip);
    await tabTo(everyN);
    await page.keyboard.type("0");
    // the service's limit, checked before sending, said beside the field and on the button
    expect(await create.locator('[data-testid="create-blocked"]').textContent()).toBe("Source: Every N-th frame must be a whole number from 1 to 1000000.");
    expect(await everyN.getAttribute("aria-invalid")).toBe("true");
    await page.keyboard.press("Backspace");
    await page.keyboard.type("5");
    // More options (the frames folder) open with the keyboard too
    const more = create.locator(".station-source details.part-more > summary");
    await tabTo(more);
    await page.keyboard.press("Enter");
    await tabTo(create.getByLabel("Frames folder (relative to the data root)"));
    await page.keyboard.type(`${folders.camera}/frames`);
    expect(await create.locator('[data-testid="create-blocked"]').count()).toBe(0);
    const found = await axeViolations(page, "the camera form at 1280 px");
    await shot(page, "stations-camera-form-1280");
    await tabTo(create.getByRole("button", { name: "Create station" }));
    await page.keyboard.press("Enter");
    await create.getByText(new RegExp(`^✓ Created ${CAMERA}: camera .*clip\\.avi \\(a frame every 5 frames`)).waitFor();

    // The body reached the service as chosen, and the station is listed with its trigger.
    const made = await client.getStation(CAMERA);
    expect(made.spec).toEqual({
      name: CAMERA, category: "mono", sinks: [],
      source: { kind: "camera", url: clip, every_n_frames: 5, frames: `${folders.camera}/frames` },
    });
    const listed = row(CAMERA);
    await listed.waitFor();
    expect(await listed.locator(".station-path").textContent()).toBe(`camera ${clip} (a frame every 5 frames, saved in ${folders.camera}/frames; finished at its end)`);
    await until("the video's frames 0 and 5 inspected", async () => (await client.getStation(CAMERA)).inspected === 2);
    await page.setViewportSize(PHONE);
    const card = page.getByRole("article", { name: CAMERA });
    await card.waitFor();
    expect(await card.locator(".station-path").textContent()).toContain("(a frame every 5 frames");
    // the form at phone width: the camera's fields fit, nothing scrolls sideways
    await create.getByLabel("Takes images from").selectOption("camera");
    await create.getByLabel("Take a frame").selectOption("opcua");
    await create.getByRole("button", { name: "Add sink" }).click();
    const { scrollWidth, tiny } = await measure(page);
    expect({ scrollWidth, tiny }).toEqual({ scrollWidth: PHONE.width, tiny: [] });
    await shot(page, "stations-camera-390");
    found.push(...(await axeViolations(page, "the camera form at 390 px")));
    expect(found).toEqual([]);
  });

  it("logged no script errors or CSP violations", () => {
    expect(problems).toEqual([]);
  });
});
