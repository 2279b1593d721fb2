/**
 * The Stations page's arithmetic: a station's state and last verdict read out of the service's answer,
 * its figures in words, and the create form checked and turned into a `POST /v1/stations` body.
 *
 * The form's sources and sinks, their options, limits and defaults are the service's (`STATION_SOURCES` and
 * `STATION_SINKS`, generated from the `x-kinds` of its OpenAPI document, src/eagle_iad/station/part_options.py): a
 * kind, option or limit the service adds reaches the form by regenerating the client, never by retyping it here.
 */

import { STATION_DUPLICATES, STATION_SINKS, STATION_SOURCES, type SinkInfo, type StationBody, type StationInfo } from "@eagle-iad/client";

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

/**
 * The options that say best where a plugin source takes its images from, the first one set shown: a plugin's
 * `path` is any path it reads, not a hot folder's, so the source is named by its kind, never "hot folder".
 * No URL: one may carry a password.
 */
const TELLING_OPTIONS = ["path", "folder", "directory", "file", "device"] as const;

/**
 * A station's source in the list, named by its kind: `folder` is "hot folder <path>" as the station was created
 * with it (relative to the data root); any other kind but the camera "<kind> source <its most telling option>";
 * a camera, or a station of a stations file (no spec), as the service describes it.
 */
export function sourceText(info: Pick<StationInfo, "spec" | "source">): string {
  const source = info.spec?.["source"];
  if (!source || typeof source !== "object") return info.source;
  const table = source as Record<string, unknown>;
  const kind = table["kind"];
  if (typeof kind !== "string" || kind === "camera") return info.source;
  const shown = (value: unknown): value is string | number =>
    (typeof value === "string" && value !== "") || typeof value === "number";
  if (kind === "folder") {
    const path = table["path"];
    return shown(path) ? `hot folder ${path}` : info.source;
  }
  const telling = TELLING_OPTIONS.map((key) => table[key]).find(shown);
  return telling === undefined ? `${kind} source` : `${kind} source ${telling}`;
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

/** One option of a source or sink as the service declares it (JSON Schema, with the service's `x-` keywords). */
export interface OptionSchema {
  type: "string" | "number" | "integer" | "boolean" | "object";
  description: string;
  default?: string | number | boolean;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  exclusiveMaximum?: number;
  enum?: readonly string[];
  pattern?: string;
  /** A server path: relative to the service's data root. */
  "x-path"?: boolean;
  /** The name of a server environment variable holding a secret. */
  "x-secret"?: boolean;
  /** The default in words, where it is not one fixed value ("1883, or 8883 with tls"). */
  "x-default"?: string;
  /** An object's own fields (the OPC UA sink's `nodes`: field -> node id). */
  properties?: Readonly<Record<string, { type: string; description: string }>>;
}

/** A camera's trigger choice: the options it shows, those of them it must be given, and what it writes into the source's table. */
export interface TriggerSchema {
  options: readonly string[];
  /** The options the service refuses the choice without (the PLC's endpoint and node; not its user). */
  required?: readonly string[];
  table: Readonly<Record<string, string>>;
}

/** A source or sink kind as the service declares it. */
export interface KindSchema {
  title: string;
  properties: Readonly<Record<string, OptionSchema>>;
  required: readonly string[];
  "x-order": readonly string[];
  /** Exactly one of these options (a camera: url or device). */
  "x-one-of"?: readonly string[];
  "x-triggers"?: Readonly<Record<string, TriggerSchema>>;
  "x-default-trigger"?: string;
  /** The trigger choices in the service's order. */
  "x-trigger-order"?: readonly string[];
}

/** A kind's trigger choices (a camera's), in the service's order; none for a kind without. */
export function triggerChoices(schema: KindSchema | undefined): string[] {
  const triggers = schema?.["x-triggers"];
  if (!triggers) return [];
  const order = schema["x-trigger-order"] ?? [];
  return [...order.filter((key) => key in triggers), ...Object.keys(triggers).filter((key) => !order.includes(key))];
}

export interface Kinds {
  order: readonly string[];
  kinds: Readonly<Record<string, KindSchema>>;
}

/** The service's sources and sinks (the generated client's declarations, read through the shape above). */
export const SOURCES: Kinds = STATION_SOURCES as unknown as Kinds;
export const SINKS: Kinds = STATION_SINKS as unknown as Kinds;

/**
 * Options a form shows folded under "More options": the ones a line rarely changes (the service's defaults are
 * right for most). Presentation only: every option of a kind is offered, with the service's limits.
 */
export const MORE_OPTIONS: ReadonlySet<string> = new Set([
  "poll_s", "after", "max_file_mb", "reconnect_s", "name_prefix", "frames", "name", "max_attempts", "retry_base_s",
  "retry_max_s", "refusals", "secret_env", "verify_tls", "ca_file", "client_id", "protocol", "status_topic",
  "last_topic", "qos", "timeout_s", "ack_timeout_s", "min_interval_s", "link",
]);

/** A part's options shown now that are folded under its "More options", in the form's order. */
export function foldedOptions(kinds: Kinds, part: PartForm): string[] {
  return shownOptions(kinds, part).filter((key) => MORE_OPTIONS.has(key));
}

/**
 * Whether a part's "More options" must open: the field a refusal names (as {@link refusedField} gives it, e.g.
 * "source.name_prefix", "sinks.1.ca_file") is one folded there, whose note would otherwise be hidden. `field` is
 * the part's prefix ("source", "sinks.<index>").
 */
export function namesFolded(kinds: Kinds, part: PartForm, field: string, named: string | null | undefined): boolean {
  if (!named) return false;
  return foldedOptions(kinds, part).some((key) => named === `${field}.${key}` || named.startsWith(`${field}.${key}.`));
}

/** The console's words for an option (its label); the service's description is the field's hint. */
const LABELS: Readonly<Record<string, string>> = {
  "folder:path": "Hot folder",
  "sink:folder:path": "Folder",
  settle_s: "Settle time",
  recursive: "Also take images from its subfolders",
  url: "Video file or stream URL",
  "sink:webhook:url": "Webhook URL",
  device: "USB camera index",
  every_n_frames: "Every N-th frame",
  every_ms: "Every",
  trigger_endpoint: "PLC endpoint",
  trigger_node: "Trigger node",
  username: "User name",
  password_env: "Password variable",
  secret_env: "Signing secret variable",
  frames: "Frames folder",
  name_prefix: "Frame name prefix",
  reconnect_s: "Reconnect after",
  poll_s: "Look every",
  after: "After inspection",
  max_file_mb: "Largest file",
  max_attempts: "Tries before a dead letter",
  retry_base_s: "First retry after",
  retry_max_s: "Longest wait between tries",
  refusals: "Also send refused images",
  name: "Sink name",
  link: "Hard-link instead of copying",
  timeout_s: "Timeout",
  verify_tls: "Verify the TLS certificate",
  ca_file: "CA file",
  host: "Broker host",
  port: "Port",
  tls: "Use TLS",
  topic: "Topic",
  status_topic: "Status topic",
  last_topic: "Last verdict topic",
  qos: "QoS",
  client_id: "Client id",
  protocol: "Protocol",
  endpoint: "Server endpoint",
  ack_timeout_s: "Acknowledgement timeout",
  min_interval_s: "Least time between writes",
};

/** The unit an option's name says (`_s`, `_ms`, `_mb`), for its label. */
function unitOf(key: string): string {
  if (key.endsWith("_ms")) return "milliseconds";
  if (key.endsWith("_s")) return "seconds";
  if (key.endsWith("_mb")) return "MB";
  return "";
}

/**
 * An option's label: the console's word for it, its unit, and "relative to the data root" for a server path
 * ("Hot folder (relative to the data root)", "Settle time (seconds)"); an option the service adds later is
 * labelled by its own name.
 */
export function optionLabel(part: "source" | "sink", kind: string, key: string, option: OptionSchema): string {
  const word = LABELS[`${part === "sink" ? "sink:" : ""}${kind}:${key}`] ?? LABELS[key] ?? key.replace(/_(s|ms|mb)$/, "").replaceAll("_", " ");
  const unit = unitOf(key);
  const extra = option["x-path"] ? "relative to the data root" : unit;
  return extra ? `${word} (${extra})` : word;
}

/** An option's limits in words: "from 0 to 3600", "above 0, at most 86400000", "at least 1". */
export function limitsText(option: OptionSchema): string {
  const low = option.minimum !== undefined ? `at least ${option.minimum}` : option.exclusiveMinimum !== undefined ? `above ${option.exclusiveMinimum}` : "";
  const high = option.maximum !== undefined ? `at most ${option.maximum}` : option.exclusiveMaximum !== undefined ? `below ${option.exclusiveMaximum}` : "";
  if (option.minimum !== undefined && option.maximum !== undefined) return `from ${option.minimum} to ${option.maximum}`;
  return [low, high].filter(Boolean).join(", ");
}

/** What an empty field means: the service's default ("1000", "1883, or 8883 with tls"), or "" for none. */
export function defaultText(option: OptionSchema): string {
  if (option["x-default"] !== undefined) return option["x-default"];
  if (option.default === undefined) return "";
  return String(option.default);
}

/** One source or sink as typed: its kind, each option's text ("" leaves the service's default) and ticks. */
export interface PartForm {
  kind: string;
  /** Text and number options, as typed; booleans as "true"/"false" (the box as the service's default: absent). */
  values: Readonly<Record<string, string>>;
  /** A camera: what it reads, `url` or `device` (its `x-one-of`). */
  reads?: string;
  /** A camera: its trigger choice (a key of its `x-triggers`). */
  trigger?: string;
}

/** A part of a kind with nothing typed: each boolean at the service's default. */
export function emptyPart(kinds: Kinds, kind: string): PartForm {
  const schema = kinds.kinds[kind];
  const values: Record<string, string> = {};
  for (const [key, option] of Object.entries(schema?.properties ?? {})) {
    if (option.type === "boolean") values[key] = String(option.default ?? false);
  }
  const part: PartForm = { kind, values };
  const oneOf = schema?.["x-one-of"];
  if (oneOf?.[0] !== undefined) part.reads = oneOf[0];
  if (schema?.["x-default-trigger"] !== undefined) part.trigger = schema["x-default-trigger"];
  return part;
}

/**
 * The options a part's form shows now, in the service's order: a camera's url or device (what it reads) and only
 * the options of its trigger choice (the others are refused beside it by the service).
 */
export function shownOptions(kinds: Kinds, part: PartForm): string[] {
  const schema = kinds.kinds[part.kind];
  if (!schema) return [];
  const oneOf = schema["x-one-of"] ?? [];
  const triggers = schema["x-triggers"] ?? {};
  const triggerOptions = new Set(Object.values(triggers).flatMap((t) => t.options));
  const chosen = new Set(part.trigger !== undefined ? (triggers[part.trigger]?.options ?? []) : []);
  return schema["x-order"].filter((key) => {
    if (key === "trigger" && Object.keys(triggers).length > 0) return false; // the trigger choice is its own field
    if (oneOf.includes(key)) return key === part.reads;
    if (triggerOptions.has(key)) return chosen.has(key);
    return true;
  });
}

/** The form's field for an option that must be given (the service refuses the part without it). */
export function isRequired(kinds: Kinds, part: PartForm, key: string): boolean {
  const schema = kinds.kinds[part.kind];
  if (!schema) return false;
  if (schema.required.includes(key) || (schema["x-one-of"] ?? []).includes(key)) return true;
  // a trigger's options the service declares it needs (the PLC's endpoint and node; its user may be left out)
  const trigger = part.trigger !== undefined ? schema["x-triggers"]?.[part.trigger] : undefined;
  return !!trigger && (trigger.required ?? []).includes(key);
}

function numberOf(text: string): number | null {
  const trimmed = text.trim();
  if (trimmed === "") return null;
  const value = Number(trimmed);
  return Number.isFinite(value) ? value : Number.NaN;
}

/** The camera's `name_prefix` pattern, the one pattern the console words itself; another is told by its option's description. */
const NAME_PREFIX_PATTERN = SOURCES.kinds["camera"]?.properties["name_prefix"]?.pattern;

/**
 * A choice as the service's refusals write it (Python's `repr`: `'\\t'`, `"it's"`), so a choice that is whitespace
 * or punctuation (a CSV sink's tab separator) reads as itself, in the form's list and in its messages alike.
 */
export function quotedChoice(choice: string): string {
  const quote = choice.includes("'") && !choice.includes('"') ? '"' : "'";
  const escaped = choice.replace(/\\/g, "\\\\").replace(/\t/g, "\\t").replace(/\n/g, "\\n").replace(/\r/g, "\\r");
  return quote + (quote === "'" ? escaped.replace(/'/g, "\\'") : escaped) + quote;
}

/** How the form's list shows a choice: as written, quoted only where whitespace would leave it blank or unclear. */
export function choiceLabel(choice: string): string {
  return choice === "" || /\s/.test(choice) ? quotedChoice(choice) : choice;
}

/** Why a typed value is outside an option's declared type and limits, in words; null when it fits. */
export function optionProblem(option: OptionSchema, text: string): string | null {
  if (option.type === "number" || option.type === "integer") {
    const value = numberOf(text);
    if (value === null) return null;
    const limits = limitsText(option);
    const what = option.type === "integer" ? "a whole number" : "a number";
    const wanted = limits ? `${what} ${limits}` : what;
    if (Number.isNaN(value) || (option.type === "integer" && !Number.isInteger(value))) return `must be ${wanted}`;
    if (option.minimum !== undefined && value < option.minimum) return `must be ${wanted}`;
    if (option.exclusiveMinimum !== undefined && value <= option.exclusiveMinimum) return `must be ${wanted}`;
    if (option.maximum !== undefined && value > option.maximum) return `must be ${wanted}`;
    if (option.exclusiveMaximum !== undefined && value >= option.exclusiveMaximum) return `must be ${wanted}`;
    return null;
  }
  if (option.type === "string" && text.trim() !== "") {
    if (option.enum && !option.enum.includes(text)) return `must be one of ${option.enum.map(quotedChoice).join(", ")}`;
    if (option.pattern && !new RegExp(`^(?:${option.pattern})$`).test(text)) {
      return option.pattern === NAME_PREFIX_PATTERN
        ? "must be 1–64 letters, digits, “_”, “.” and “-”, starting with a letter or digit"
        : `is not of the form asked (${option.description})`;
    }
  }
  return null;
}

/**
 * A part's table for the body: its kind, each option typed (numbers as numbers), and its trigger's own keys, an
 * option of the chosen trigger left empty as its declared default.
 */
export function partTable(kinds: Kinds, part: PartForm): Record<string, unknown> {
  const schema = kinds.kinds[part.kind];
  const table: Record<string, unknown> = { kind: part.kind };
  if (!schema) return table;
  for (const key of shownOptions(kinds, part)) {
    const option = schema.properties[key];
    if (!option) continue;
    if (option.type === "object") {
      const fields: Record<string, string> = {};
      for (const field of Object.keys(option.properties ?? {})) {
        const text = (part.values[`${key}.${field}`] ?? "").trim();
        if (text !== "") fields[field] = text;
      }
      if (Object.keys(fields).length > 0) table[key] = fields;
      continue;
    }
    const text = part.values[key] ?? "";
    if (option.type === "boolean") {
      // only a change from the service's default is sent: the rest stays the part's own
      if (text !== "" && text !== String(option.default ?? false)) table[key] = text === "true";
    } else if (option.type === "number" || option.type === "integer") {
      const value = numberOf(text);
      if (value !== null) table[key] = value;
    } else if (option.enum?.includes(text)) {
      table[key] = text; // a declared choice as written: a tab separator trimmed would be no choice at all
    } else if (text.trim() !== "") {
      table[key] = text.trim();
    }
  }
  const trigger = part.trigger !== undefined ? schema["x-triggers"]?.[part.trigger] : undefined;
  if (trigger) {
    // the trigger is always explicit in the body: a choice known only by its option ("Every N-th frame") with
    // that option left empty would send no trigger key at all, which the service reads as its default
    // trigger (every_ms 1000), not as this choice; its declared default is written instead
    for (const key of trigger.options) {
      const fallback = schema.properties[key]?.default;
      if (table[key] === undefined && fallback !== undefined) table[key] = fallback;
    }
    Object.assign(table, trigger.table);
  }
  return table;
}

/** What the create form holds, as typed. */
export interface StationForm {
  name: string;
  category: string;
  /** The station's `duplicates`, one of the service's declared choices; "" leaves the service's default. */
  duplicates: "" | Duplicates;
  backlogLimit: string;
  deadlineS: string;
  source: PartForm;
  sinks: readonly PartForm[];
}

/** The form as it opens: a hot folder (the first source the service declares), no sinks. */
export const EMPTY_FORM: StationForm = {
  name: "",
  category: "",
  duplicates: "",
  backlogLimit: "",
  deadlineS: "",
  source: emptyPart(SOURCES, SOURCES.order[0] ?? "folder"),
  sinks: [],
};

/** Why the form cannot be sent yet: the field it is about (as {@link refusedField} names them) and the words. */
export interface FormIssue {
  /** "name", "category", "backlog_limit", "deadline_s", "source.<option>", "sinks.<index>.<option>". */
  field: string;
  message: string;
}

function partIssue(kinds: Kinds, part: PartForm, where: string, field: string, what: "source" | "sink"): FormIssue | null {
  const schema = kinds.kinds[part.kind];
  if (!schema) return { field: `${field}.kind`, message: `${where}: choose one of ${kinds.order.map(quotedChoice).join(", ")}.` };
  for (const key of shownOptions(kinds, part)) {
    const option = schema.properties[key];
    if (!option) continue;
    const label = optionLabel(what, part.kind, key, option);
    if (option.type === "object") {
      const given = Object.keys(option.properties ?? {}).some((f) => (part.values[`${key}.${f}`] ?? "").trim() !== "");
      if (!given && isRequired(kinds, part, key)) return { field: `${field}.${key}`, message: `${where}: map at least one field to a node (${label}).` };
      continue;
    }
    const text = part.values[key] ?? "";
    const chosen = option.enum?.includes(text) ?? false; // a whitespace choice (a tab) is given, not blank
    if (option.type !== "boolean" && !chosen && text.trim() === "" && isRequired(kinds, part, key)) {
      return { field: `${field}.${key}`, message: `${where}: enter the ${label[0]?.toLowerCase()}${label.slice(1)}.` };
    }
    const problem = optionProblem(option, text);
    if (problem) return { field: `${field}.${key}`, message: `${where}: ${label} ${problem}.` };
  }
  return null;
}

/** The first reason the form cannot be sent, with the field it names; null when it can (the service checks everything again). */
export function stationFormIssue(form: StationForm): FormIssue | null {
  if (form.name === "") return { field: "name", message: "Enter a name for the station." };
  if (!STATION_NAME.test(form.name)) return { field: "name", message: `The name may only use ${STATION_NAME_RULE}` };
  if (form.category === "") return { field: "category", message: "Choose the category that scores the station's images." };
  const backlog = numberOf(form.backlogLimit);
  if (backlog !== null && (!Number.isInteger(backlog) || backlog < 1)) return { field: "backlog_limit", message: "Backlog limit: a whole number of images, at least 1." };
  const deadline = numberOf(form.deadlineS);
  if (deadline !== null && (Number.isNaN(deadline) || deadline <= 0 || deadline > 86400)) {
    return { field: "deadline_s", message: "Deadline: a number of seconds above 0 (at most 86400)." };
  }
  const source = partIssue(SOURCES, form.source, "Source", "source", "source");
  if (source) return source;
  for (const [index, sink] of form.sinks.entries()) {
    const issue = partIssue(SINKS, sink, `Sink ${index + 1} (${sink.kind})`, `sinks.${index}`, "sink");
    if (issue) return issue;
  }
  return null;
}

/** Why the form cannot be sent yet, in words; null when it can. */
export function stationFormProblem(form: StationForm): string | null {
  return stationFormIssue(form)?.message ?? null;
}

/** The `POST /v1/stations` body of a checked form: its source's table, then its sinks' in order. */
export function stationBody(form: StationForm): StationBody {
  const body: StationBody = {
    name: form.name,
    category: form.category,
    source: partTable(SOURCES, form.source),
    sinks: form.sinks.map((sink) => partTable(SINKS, sink)),
  };
  if (form.duplicates !== "") body.duplicates = form.duplicates;
  const backlog = numberOf(form.backlogLimit);
  if (backlog !== null) body.backlog_limit = backlog;
  const deadline = numberOf(form.deadlineS);
  if (deadline !== null) body.deadline_s = deadline;
  return body;
}

/**
 * The form's field a refusal of the service names (its message's `station '<name>': source: <option> ...`, or
 * `sink <n> (<kind>): <option> ...`), as {@link FormIssue.field} names them; null when it names none (the error is
 * shown in the banner only). The service's words are kept: this only says where to show them.
 */
export function refusedField(message: string): string | null {
  const match = /^station(?: '(?:[^'\\]|\\.)*')?: (?:(source): |sink (\d+)(?: \([^)]*\))?: )?([a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)?) /.exec(message);
  if (!match) return null;
  const [, source, sink, key = ""] = match;
  if (key === "unknown") return null; // "unknown option 'x'": no field of the form
  if (source) return `source.${key}`;
  if (sink) return `sinks.${Number(sink) - 1}.${key}`;
  return key;
}
