/**
 * The Stations page's arithmetic: a station's state and last verdict read out of the service's answer,
 * its figures in words, and the create form checked and turned into a `POST /v1/stations` body.
 */

import { STATION_DUPLICATES, type SinkInfo, type StationBody, type StationInfo } from "@eagle-iad/client";

/** How often the page asks for the stations' figures while it is visible. */
export const REFRESH_MS = 2000;

/** The service's rule for station names (src/eagle_iad/station/config.py: STATION_NAME). */
export const STATION_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
export const STATION_NAME_RULE = "1–64 letters, digits, “_”, “.” and “-”, starting with a letter or digit.";

/** The service's defaults when a station sets no limit (docs/STATIONS.md). */
export const DEFAULT_BACKLOG_LIMIT = 1000;
export const DEFAULT_DEADLINE_S = 10;

export type StateTone = "running" | "paused" | "waiting" | "error" | "stopped";

export interface StateView {
  tone: StateTone;
  label: string;
  /** Why it waits, or what went wrong (the service's words); null for running and paused. */
  detail: string | null;
}

/**
 * `running`, `paused`, `waiting: <why>` (intake paused by a fault, or a camera's PLC trigger away), `error: <what>`; a station of a stations file
 * run by `eagle station run` also `stopped: <when>` (its command stopped cleanly) and `not seen since <time>: <who>`
 * (no heartbeat for longer than the service's limit: killed, or cut off; never shown as running).
 */
export function stateView(state: string): StateView {
  if (state.startsWith("not seen since ")) {
    return { tone: "error", label: "Not seen", detail: state.slice("not seen ".length) };
  }
  const [head = "", ...rest] = state.split(":");
  const detail = rest.join(":").trim() || null;
  switch (head.trim()) {
    case "running":
      return { tone: "running", label: "Running", detail: null };
    case "paused":
      return { tone: "paused", label: "Paused", detail: null };
    case "waiting":
      return { tone: "waiting", label: "Waiting", detail };
    case "error":
      return { tone: "error", label: "Error", detail };
    case "stopped":
      return { tone: "stopped", label: "Stopped", detail };
    default:
      return { tone: "error", label: state || "Unknown", detail: null };
  }
}

/** Who runs a station of a stations file (`eagle station run` on a machine), in words; null: the service's own. */
export function runByText(info: StationInfo): string | null {
  const run = info.run_by;
  if (!run) return null;
  return `run by eagle station run on ${run.host} (${run.file})`;
}

export function isPaused(info: StationInfo): boolean {
  return stateView(info.state).tone === "paused";
}

export interface LastVerdict {
  decision: string | null;
  score: number | null;
  /** Unix seconds the verdict was stored. */
  time: number | null;
  /** The same instant in UTC ISO 8601 (the service's `time_iso`, or made from `time` by an older service). */
  timeIso: string | null;
  image: string | null;
  recordId: string | null;
}

/** The last verdict of a station (`last_verdict` is a free-form object in the schema: read it field by field). */
export function lastVerdictOf(info: StationInfo): LastVerdict | null {
  const raw = info.last_verdict;
  if (!raw || typeof raw !== "object") return null;
  const text = (key: string) => (typeof raw[key] === "string" ? (raw[key] as string) : null);
  const number = (key: string) => (typeof raw[key] === "number" && Number.isFinite(raw[key]) ? (raw[key] as number) : null);
  const time = number("time");
  return {
    decision: text("decision"),
    score: number("score"),
    time,
    timeIso: text("time_iso") ?? isoOf(time),
    image: text("image"),
    recordId: text("record_id"),
  };
}

/** Unix seconds as UTC ISO 8601 (what a `<time dateTime>` holds), or null where there is no valid time. */
function isoOf(unixSeconds: number | null): string | null {
  if (unixSeconds === null) return null;
  const date = new Date(unixSeconds * 1000);
  return Number.isNaN(date.getTime()) ? null : date.toISOString();
}

/** Seconds as the latency column shows them: "0.412 s", "3.21 s", "42.5 s", "–". */
export function formatSeconds(value: number | null | undefined): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return "–";
  if (value < 1) return `${value.toFixed(3)} s`;
  if (value < 10) return `${value.toFixed(2)} s`;
  return `${value.toFixed(1)} s`;
}

/** "p50 0.412 s · p95 0.801 s · p99 0.950 s", or "no image delivered yet". */
export function latencyText(latency: StationInfo["latency_s"]): string {
  if (!latency) return "no image delivered yet";
  return (["p50", "p95", "p99"] as const).map((q) => `${q} ${formatSeconds(latency[q])}`).join(" · ");
}

/**
 * What the latency cell says while there is no latency. Latency is measured until every sink has an image
 * (status.py: file seen -> all sinks delivered), so a folder sink that delivered beside a webhook that never
 * did leaves none: "no image delivered yet" beside "2 delivered" contradicts itself.
 */
export function noLatencyText(info: StationInfo): string {
  const sinks = sinksOf(info);
  if (sinks.some(([, sink]) => sink.delivered > 0)) return "no image delivered to every sink yet";
  return sinks.length === 0 ? "no image inspected yet" : "no image delivered yet"; // without sinks: until stored
}

/**
 * The service's words, easier to read: an OS error's "[Errno 111] Connection refused" as "connection refused",
 * and its UTC instants ("2026-12-06T22:03:14.737+00:00") in local time, as the page shows every other time.
 */
export function plainWords(text: string, now: Date = new Date()): string {
  return text
    .replace(/<urlopen error (.*?)>/g, "$1")
    .replace(/\[Errno -?\d+\] ([^;,()]*)/g, (_, what: string) => what.charAt(0).toLowerCase() + what.slice(1))
    .replace(/\b\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})/g, (iso) => {
      const ms = Date.parse(iso);
      return Number.isNaN(ms) ? iso : formatVerdictTime(ms / 1000, now);
    });
}

/**
 * Whether the station warns that its p95 latency is over the deadline. The warning is of the images delivered in
 * the last minutes (`latency_recent_s`), while `latency_s` is over the last 1,000: after an outage long past that
 * p95 stays high on a slow line, so marking it against the deadline would show an alarm the service no longer gives.
 */
export function latencyOverDeadline(info: StationInfo): boolean {
  return info.warnings.some((warning) => warning.startsWith("p95 latency "));
}

/** How far back a window of seconds looks: "last 5 min", "last 90 s". */
export function windowText(seconds: number): string {
  return seconds >= 60 && seconds % 60 === 0 ? `last ${seconds / 60} min` : `last ${seconds} s`;
}

/** Which images `latency_s` is over: "last 1,000 images", "last 12 images", "last image". */
export function latencyScope(images: number): string {
  return images === 1 ? "last image" : `last ${images.toLocaleString("en-US")} images`;
}

export interface RecentLatencyView {
  /** "p95 30.0 s". */
  text: string;
  /** What it is over: "last 5 min · 12 images". */
  scope: string;
  /** The service warns of it (over the deadline): this is the figure to mark, not the p95 of the last 1,000. */
  over: boolean;
}

/**
 * The p95 of the images delivered lately, which the deadline warning judges, with the window it covers ("p95 –",
 * "last 5 min · no image" while none was delivered in it). The window of an image-less one is the service's own
 * (`recentS`, the `recent_s` of its /healthz; "no image lately" before it was read), not a copy kept here. Shown beside the figures over the last 1,000 images, so
 * a marked number is the warning's own: a low p95 of the last 1,000 is never red, and a high one of an outage long
 * past is not the figure the deadline is held to.
 */
export function recentLatency(info: StationInfo, recentS: number | null): RecentLatencyView {
  const recent = info.latency_recent_s;
  if (!recent) return { text: "p95 –", scope: recentS !== null ? `${windowText(recentS)} · no image` : "no image lately", over: false };
  const images = `${recent.images} image${recent.images === 1 ? "" : "s"}`;
  return { text: `p95 ${formatSeconds(recent.p95)}`, scope: `${windowText(recent.window_s)} · ${images}`, over: latencyOverDeadline(info) };
}

/** Images per second over the last minute: "0.05", "12.3". */
export function formatImagesPerSecond(value: number): string {
  if (!Number.isFinite(value)) return "–";
  if (value === 0) return "0";
  return value < 10 ? value.toFixed(2) : value.toFixed(1);
}

/** When a verdict was stored: the time alone today, date and time before. */
export function formatVerdictTime(unixSeconds: number | null, now: Date = new Date()): string {
  if (unixSeconds === null) return "–";
  const date = new Date(unixSeconds * 1000);
  return date.toDateString() === now.toDateString() ? date.toLocaleTimeString() : date.toLocaleString();
}

/** The station's limits as configured (a station from a stations file has no spec: the defaults are assumed). */
export function limitsOf(info: StationInfo): { backlog: number; deadlineS: number } {
  const spec = info.spec ?? {};
  const backlog = typeof spec["backlog_limit"] === "number" ? spec["backlog_limit"] : DEFAULT_BACKLOG_LIMIT;
  const deadlineS = typeof spec["deadline_s"] === "number" ? spec["deadline_s"] : DEFAULT_DEADLINE_S;
  return { backlog, deadlineS };
}

/** The sinks in the service's order, with their names. */
export function sinksOf(info: StationInfo): Array<[string, SinkInfo]> {
  return Object.entries(info.sinks);
}

export function deadLetters(info: StationInfo): number {
  return sinksOf(info).reduce((sum, [, sink]) => sum + sink.dead_letters, 0);
}

/** A sink's counts in words ("3 delivered", "1 pending", "2 dead letters"), `warn` on dead letters present. */
export function sinkCounts(sink: SinkInfo): Array<{ text: string; warn: boolean }> {
  return [
    { text: `${sink.delivered} delivered`, warn: false },
    { text: `${sink.pending} pending`, warn: false },
    { text: `${sink.dead_letters} dead letter${sink.dead_letters === 1 ? "" : "s"}`, warn: sink.dead_letters > 0 },
  ];
}

/** Every warning of every station, for the page's summary. */
export function allWarnings(stations: readonly StationInfo[]): Array<{ station: string; warning: string }> {
  return stations.flatMap((info) => info.warnings.map((warning) => ({ station: info.station, warning })));
}

/** A station's `duplicates` choice, as the service declares them (`STATION_DUPLICATES`). */
export type Duplicates = (typeof STATION_DUPLICATES.choices)[number];

/** The form's words for each choice, short enough for a phone's select (the field's hint says the rest); a choice the
 * service adds later is offered by its own name. */
export function duplicatesText(choice: Duplicates | string): string {
  if (choice === "refuse") return "Refuse: tell the sinks";
  if (choice === "skip") return "Skip: tell no sink";
  return choice;
}

/** What the create form holds, as typed. */
export interface StationForm {
  name: string;
  category: string;
  folder: string;
  settleS: string;
  /** The folder source's `recursive`: take the images of the hot folder's subfolders too (docs/STATIONS.md). */
  recursive: boolean;
  /** The station's `duplicates`, one of the service's declared choices; "" leaves the service's default. */
  duplicates: "" | Duplicates;
  backlogLimit: string;
  deadlineS: string;
  sinkFolder: string;
  webhookUrl: string;
}

export const EMPTY_FORM: StationForm = {
  name: "",
  category: "",
  folder: "",
  settleS: "1",
  recursive: false,
  duplicates: "",
  backlogLimit: "",
  deadlineS: "",
  sinkFolder: "",
  webhookUrl: "",
};

function numberOf(text: string): number | null {
  const trimmed = text.trim();
  if (trimmed === "") return null;
  const value = Number(trimmed);
  return Number.isFinite(value) ? value : Number.NaN;
}

/** Why the form cannot be sent yet, in words; null when it can (the service still checks everything). */
export function stationFormProblem(form: StationForm): string | null {
  if (form.name === "") return "Enter a name for the station.";
  if (!STATION_NAME.test(form.name)) return `The name may only use ${STATION_NAME_RULE}`;
  if (form.category === "") return "Choose the category that scores the station's images.";
  if (form.folder.trim() === "") return "Enter the hot folder (inside the service's data root).";
  const settle = numberOf(form.settleS);
  if (settle === null || Number.isNaN(settle) || settle < 0 || settle > 3600) return "Settle time: a number of seconds from 0 to 3600.";
  const backlog = numberOf(form.backlogLimit);
  if (backlog !== null && (!Number.isInteger(backlog) || backlog < 1)) return "Backlog limit: a whole number of images, at least 1.";
  const deadline = numberOf(form.deadlineS);
  if (deadline !== null && (Number.isNaN(deadline) || deadline <= 0 || deadline > 86400)) return "Deadline: a number of seconds above 0 (at most 86400).";
  const url = form.webhookUrl.trim();
  if (url !== "" && !/^https?:\/\/[^\s/?#]+/i.test(url)) return "The webhook URL must start with http:// or https:// and name a host.";
  return null;
}

/** The `POST /v1/stations` body of a checked form: a folder source, then the sinks that were filled in. */
export function stationBody(form: StationForm): StationBody {
  const body: StationBody = {
    name: form.name,
    category: form.category,
    source: { kind: "folder", path: form.folder.trim(), settle_s: numberOf(form.settleS) ?? 1 },
    sinks: [],
  };
  // only when asked: the service's default (false) stays the source's own
  if (form.recursive) body.source.recursive = true;
  if (form.duplicates !== "") body.duplicates = form.duplicates;
  const backlog = numberOf(form.backlogLimit);
  if (backlog !== null) body.backlog_limit = backlog;
  const deadline = numberOf(form.deadlineS);
  if (deadline !== null) body.deadline_s = deadline;
  if (form.sinkFolder.trim() !== "") body.sinks?.push({ kind: "folder", path: form.sinkFolder.trim() });
  if (form.webhookUrl.trim() !== "") body.sinks?.push({ kind: "webhook", url: form.webhookUrl.trim() });
  return body;
}
