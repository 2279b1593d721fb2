import { STATION_DUPLICATES, type StationInfo } from "@eagle-iad/client";
import { describe, expect, it } from "vitest";
import {
  EMPTY_FORM,
  allWarnings,
  deadLetters,
  duplicatesText,
  formatImagesPerSecond,
  formatSeconds,
  formatVerdictTime,
  isPaused,
  lastVerdictOf,
  latencyOverDeadline,
  latencyScope,
  latencyText,
  limitsOf,
  noLatencyText,
  plainWords,
  recentLatency,
  sinkCounts,
  stateView,
  stationBody,
  stationFormIssue,
  stationFormProblem,
  windowText,
  SINKS,
  SOURCES,
  choiceLabel,
  defaultText,
  emptyPart,
  foldedOptions,
  isRequired,
  limitsText,
  namesFolded,
  optionLabel,
  optionProblem,
  partTable,
  quotedChoice,
  refusedField,
  shownOptions,
  triggerChoices,
  type Kinds,
  type PartForm,
  type StationForm,
} from "./stations";

function station(extra: Partial<StationInfo> = {}): StationInfo {
  return {
    station: "line-1",
    category: "mono",
    state: "running",
    created_by: "api",
    source: "folder /data/hot",
    inspected: 3,
    failed: 0,
    backlog: 0,
    images_per_s: 0.05,
    latency_s: { p50: 0.4123, p95: 1.5, p99: 12.25 },
    latency_images: 1000,
    latency_recent_s: { p95: 0.8, images: 12, window_s: 300 },
    last_verdict: { image: "a.png", record_id: "r1", time: 1_700_000_000.5, time_iso: "2023-11-14T22:13:20.500+00:00", decision: "anomalous", score: 142.31 },
    sinks: {
      folder: { kind: "folder", pending: 1, delivered: 2, dead_letters: 0, last_error: null },
      hook: { kind: "webhook", pending: 0, delivered: 0, dead_letters: 2, last_error: "HTTP 500" },
    },
    duplicates: 0,
    ignored: 0,
    warnings: [],
    spec: { name: "line-1", category: "mono", backlog_limit: 50, source: { kind: "folder", path: "hot" } },
    ...extra,
  };
}

describe("stateView", () => {
  it("reads the service's states, keeping the reason", () => {
    expect(stateView("running")).toEqual({ tone: "running", label: "Running", detail: null });
    expect(stateView("paused")).toEqual({ tone: "paused", label: "Paused", detail: null });
    expect(stateView("waiting: disk full: no space")).toEqual({ tone: "waiting", label: "Waiting", detail: "disk full: no space" });
    expect(stateView("error: OSError: gone")).toEqual({ tone: "error", label: "Error", detail: "OSError: gone" });
    expect(stateView("strange").tone).toBe("error");
    // a stations file's station (eagle station run): stopped cleanly, or silent (the time's colons kept whole)
    expect(stateView("stopped: eagle station run on h1 stopped at 2026-12-07T04:36:00.000+00:00")).toEqual({
      tone: "stopped", label: "Stopped", detail: "eagle station run on h1 stopped at 2026-12-07T04:36:00.000+00:00",
    });
    const silent = "not seen since 2026-12-07T04:36:00.000+00:00: eagle station run on h1 (pid 7) sent no heartbeat for 45 s";
    expect(stateView(silent)).toEqual({ tone: "error", label: "Not seen", detail: silent.slice("not seen ".length) });
    expect(isPaused(station({ state: "paused" }))).toBe(true);
    expect(isPaused(station())).toBe(false);
  });
});

describe("figures", () => {
  it("reads the last verdict field by field", () => {
    expect(lastVerdictOf(station())).toEqual({
      decision: "anomalous",
      score: 142.31,
      time: 1_700_000_000.5,
      timeIso: "2023-11-14T22:13:20.500+00:00",
      image: "a.png",
      recordId: "r1",
    });
    // A service before time_iso: the ISO is made from the seconds (for the page's <time dateTime>).
    expect(lastVerdictOf(station({ last_verdict: { decision: "normal", time: 1_700_000_000.5 } }))?.timeIso).toBe("2023-11-14T22:13:20.500Z");
    expect(lastVerdictOf(station({ last_verdict: null }))).toBeNull();
    expect(lastVerdictOf(station({ last_verdict: { decision: null, score: "x" } }))).toEqual({
      decision: null,
      score: null,
      time: null,
      timeIso: null,
      image: null,
      recordId: null,
    });
  });

  it("formats latency, throughput and time", () => {
    expect(formatSeconds(0.4123)).toBe("0.412 s");
    expect(formatSeconds(1.5)).toBe("1.50 s");
    expect(formatSeconds(12.25)).toBe("12.3 s");
    expect(formatSeconds(null)).toBe("–");
    expect(latencyText(station().latency_s)).toBe("p50 0.412 s · p95 1.50 s · p99 12.3 s");
    expect(latencyText(null)).toBe("no image delivered yet");
    // the p95 is marked only while the service warns of it (its last minutes), not for an outage long past
    const slowLongAgo = station({ latency_s: { p50: 0.4, p95: 97, p99: 97 }, warnings: [] });
    expect(latencyOverDeadline(slowLongAgo)).toBe(false);
    const slowNow = station({ warnings: ["p95 latency 30 s over the last 5 min (12 images) is over the deadline 5 s"] });
    expect(latencyOverDeadline(slowNow)).toBe(true);
  });

  it("marks the p95 the deadline warning is of, not the p95 of the last 1,000 images, and says what each covers", () => {
    expect(windowText(300)).toBe("last 5 min");
    expect(windowText(90)).toBe("last 90 s");
    expect(latencyScope(1000)).toBe("last 1,000 images");
    expect(latencyScope(12)).toBe("last 12 images");
    expect(latencyScope(1)).toBe("last image");
    // an outage long past: the last 1,000 keep a high p95, the last 5 minutes are fast, nothing is marked
    const slowLongAgo = station({ latency_s: { p50: 0.4, p95: 97, p99: 97 }, latency_recent_s: { p95: 0.5, images: 10, window_s: 300 }, warnings: [] });
    expect(recentLatency(slowLongAgo, 300)).toEqual({ text: "p95 0.500 s", scope: "last 5 min · 10 images", over: false });
    // slow now, while the last 1,000 still look fast: the marked number is the warning's own 30 s, not 1.50 s
    const slowNow = station({
      latency_recent_s: { p95: 30, images: 12, window_s: 300 },
      warnings: ["p95 latency 30 s over the last 5 min (12 images) is over the deadline 5 s"],
    });
    expect(recentLatency(slowNow, 300)).toEqual({ text: "p95 30.0 s", scope: "last 5 min · 12 images", over: true });
    expect(recentLatency(station({ latency_recent_s: { p95: 2, images: 1, window_s: 300 } }), 300).scope).toBe("last 5 min · 1 image");
    // none delivered lately: no figure, and nothing marked
    expect(recentLatency(station({ latency_recent_s: null }), 300)).toEqual({ text: "p95 –", scope: "last 5 min · no image", over: false });
    // the window is the service's (recent_s of its /healthz): another one served is the one said
    expect(recentLatency(station({ latency_recent_s: null }), 600).scope).toBe("last 10 min · no image");
    expect(recentLatency(station({ latency_recent_s: null }), null).scope).toBe("no image lately");
    expect(formatImagesPerSecond(0)).toBe("0");
    expect(formatImagesPerSecond(0.05)).toBe("0.05");
    expect(formatImagesPerSecond(12.34)).toBe("12.3");
    expect(formatVerdictTime(null)).toBe("–");
    const now = new Date(2027, 0, 2, 15, 0, 0);
    const today = new Date(2027, 0, 2, 9, 30, 0).getTime() / 1000;
    const before = new Date(2027, 0, 1, 9, 30, 0).getTime() / 1000;
    expect(formatVerdictTime(today, now)).toBe(new Date(today * 1000).toLocaleTimeString());
    expect(formatVerdictTime(before, now)).toBe(new Date(before * 1000).toLocaleString());
  });

  it("counts dead letters, describes sinks, collects warnings and reads the limits", () => {
    expect(deadLetters(station())).toBe(2);
    expect(sinkCounts({ kind: "folder", pending: 1, delivered: 2, dead_letters: 1, last_error: null })).toEqual([
      { text: "2 delivered", warn: false },
      { text: "1 pending", warn: false },
      { text: "1 dead letter", warn: true },
    ]);
    expect(sinkCounts({ kind: "folder", pending: 0, delivered: 0, dead_letters: 0, last_error: null })[2]).toEqual({ text: "0 dead letters", warn: false });
    const warned = station({ station: "b", warnings: ["backlog 60 is over the limit 50", "2 dead letters"] });
    expect(allWarnings([station(), warned])).toEqual([
      { station: "b", warning: "backlog 60 is over the limit 50" },
      { station: "b", warning: "2 dead letters" },
    ]);
    expect(limitsOf(station())).toEqual({ backlog: 50, deadlineS: 10 });
    expect(limitsOf(station({ spec: null }))).toEqual({ backlog: 1000, deadlineS: 10 });
  });
});

describe("the create form", () => {
  const folder = (values: Record<string, string> = {}) => ({ ...emptyPart(SOURCES, "folder"), values: { ...emptyPart(SOURCES, "folder").values, ...values } });
  const filled: StationForm = { ...EMPTY_FORM, name: "line-1", category: "mono", source: folder({ path: " hot/line-1 " }) };
  const camera = (extra: Partial<PartForm> = {}, values: Record<string, string> = {}): PartForm => {
    const part = emptyPart(SOURCES, "camera");
    return { ...part, ...extra, values: { ...part.values, ...values } };
  };

  it("offers the service's sources and sinks, in its order, with its limits and defaults", () => {
    expect(SOURCES.order).toEqual(["folder", "camera"]);
    expect(SINKS.order).toEqual(["folder", "webhook", "mqtt", "opcua"]);
    // the camera's declared limits (src/eagle_iad/station/sources/camera.py: EVERY_N_FRAMES, EVERY_MS)
    const everyN = SOURCES.kinds["camera"]!.properties["every_n_frames"]!;
    expect([everyN.minimum, everyN.maximum, everyN.default]).toEqual([1, 1_000_000, 1]);
    const everyMs = SOURCES.kinds["camera"]!.properties["every_ms"]!;
    expect(limitsText(everyMs)).toBe("above 0, at most 86400000");
    expect(defaultText(everyMs)).toBe("1000");
    expect(limitsText(SOURCES.kinds["folder"]!.properties["settle_s"]!)).toBe("from 0 to 3600");
    expect(defaultText(SINKS.kinds["mqtt"]!.properties["port"]!)).toBe("1883, or 8883 with tls");
    expect(optionLabel("source", "folder", "path", SOURCES.kinds["folder"]!.properties["path"]!)).toBe("Hot folder (relative to the data root)");
    expect(optionLabel("source", "folder", "settle_s", SOURCES.kinds["folder"]!.properties["settle_s"]!)).toBe("Settle time (seconds)");
    expect(optionLabel("sink", "folder", "path", SINKS.kinds["folder"]!.properties["path"]!)).toBe("Folder (relative to the data root)");
    expect(optionLabel("source", "camera", "every_ms", everyMs)).toBe("Every (milliseconds)");
    // an option the service adds later is offered under its own name
    expect(optionLabel("sink", "x", "new_thing_s", { type: "number", description: "" })).toBe("new thing (seconds)");
  });

  it("shows a camera's url or device, and only the options of its trigger choice", () => {
    expect(camera()).toMatchObject({ kind: "camera", reads: "url", trigger: "every_ms" });
    expect(triggerChoices(SOURCES.kinds["camera"])).toEqual(["every_n_frames", "every_ms", "http", "opcua"]);
    expect(triggerChoices(SOURCES.kinds["folder"])).toEqual([]);
    const base = ["reconnect_s", "poll_s", "name_prefix", "frames"];
    expect(shownOptions(SOURCES, camera())).toEqual(["url", "every_ms", ...base]);
    expect(shownOptions(SOURCES, camera({ reads: "device", trigger: "every_n_frames" }))).toEqual(["device", "every_n_frames", ...base]);
    expect(shownOptions(SOURCES, camera({ trigger: "http" }))).toEqual(["url", ...base]);
    expect(shownOptions(SOURCES, camera({ trigger: "opcua" }))).toEqual(["url", "trigger_endpoint", "trigger_node", "username", "password_env", ...base]);
    expect(isRequired(SOURCES, camera({ trigger: "opcua" }), "trigger_node")).toBe(true);
    expect(isRequired(SOURCES, camera({ trigger: "opcua" }), "username")).toBe(false);
    expect(isRequired(SOURCES, camera(), "url")).toBe(true);
    expect(isRequired(SOURCES, camera(), "frames")).toBe(false);
    expect(isRequired(SOURCES, camera({ trigger: "opcua" }), "trigger_endpoint")).toBe(true);
    expect(isRequired(SOURCES, camera({ trigger: "opcua" }), "password_env")).toBe(false);
    expect(isRequired(SOURCES, camera({ trigger: "http" }), "trigger_node")).toBe(false); // not this trigger's
  });

  it("marks a trigger's options required as the service declares them, not by their want of a default", () => {
    // A trigger the service adds later: its address is required, its user (no default either) is not.
    const plc: Kinds = {
      order: ["cam"],
      kinds: {
        cam: {
          title: "A camera",
          properties: { address: { type: "string", description: "where" }, user: { type: "string", description: "who" } },
          required: [],
          "x-order": ["address", "user"],
          "x-triggers": { plc: { options: ["address", "user"], required: ["address"], table: { trigger: "plc" } } },
        },
      },
    };
    const part = { kind: "cam", values: {}, trigger: "plc" };
    expect([isRequired(plc, part, "address"), isRequired(plc, part, "user")]).toEqual([true, false]);
  });

  it("builds a camera's table: numbers as numbers, the trigger's own keys, nothing of another trigger", () => {
    const typed = { url: " clips/line-1.avi ", every_n_frames: "5", every_ms: "250", trigger_node: "ns=2;s=X" };
    expect(partTable(SOURCES, camera({ trigger: "every_n_frames" }, typed))).toEqual({ kind: "camera", url: "clips/line-1.avi", every_n_frames: 5 });
    expect(partTable(SOURCES, camera({}, typed))).toEqual({ kind: "camera", url: "clips/line-1.avi", every_ms: 250 });
    expect(partTable(SOURCES, camera({ trigger: "http" }, typed))).toEqual({ kind: "camera", url: "clips/line-1.avi", trigger: "http" });
    expect(partTable(SOURCES, camera({ trigger: "opcua" }, { ...typed, trigger_endpoint: "opc.tcp://plc:4840" }))).toEqual({
      kind: "camera", url: "clips/line-1.avi", trigger: "opcua", trigger_endpoint: "opc.tcp://plc:4840", trigger_node: "ns=2;s=X",
    });
    expect(partTable(SOURCES, camera({ reads: "device" }, { ...typed, device: "0" }))).toEqual({ kind: "camera", device: 0, every_ms: 250 });
    // the trigger's option left empty: its declared default, so the body still says which trigger (no key at all
    // would be the service's every_ms 1000, not every N-th frame)
    expect(partTable(SOURCES, camera({ trigger: "every_n_frames" }, { url: "clip.avi", every_n_frames: " " }))).toEqual({ kind: "camera", url: "clip.avi", every_n_frames: 1 });
    expect(partTable(SOURCES, camera({}, { url: "clip.avi" }))).toEqual({ kind: "camera", url: "clip.avi", every_ms: 1000 });
    // an OPC UA sink's nodes: only the fields mapped
    const sink = { ...emptyPart(SINKS, "opcua"), values: { endpoint: "opc.tcp://plc:4840", "nodes.decision": " ns=2;s=D ", "nodes.score": "" } };
    expect(partTable(SINKS, sink)).toEqual({ kind: "opcua", endpoint: "opc.tcp://plc:4840", nodes: { decision: "ns=2;s=D" } });
  });

  it("says what is missing or wrong, first problem first, naming the field", () => {
    expect(stationFormProblem(EMPTY_FORM)).toBe("Enter a name for the station.");
    expect(stationFormProblem({ ...filled, name: "-x" })).toMatch(/^The name may only use/);
    expect(stationFormProblem({ ...filled, name: "a".repeat(65) })).toMatch(/^The name may only use/);
    expect(stationFormProblem({ ...filled, category: "" })).toBe("Choose the category that scores the station's images.");
    expect(stationFormIssue({ ...filled, source: folder({ path: " " }) })).toEqual({ field: "source.path", message: "Source: enter the hot folder (relative to the data root)." });
    expect(stationFormIssue({ ...filled, source: folder({ path: "hot", settle_s: "-1" }) })).toEqual({
      field: "source.settle_s", message: "Source: Settle time (seconds) must be a number from 0 to 3600.",
    });
    expect(stationFormProblem({ ...filled, backlogLimit: "2.5" })).toMatch(/^Backlog limit/);
    expect(stationFormProblem({ ...filled, deadlineS: "0" })).toMatch(/^Deadline/);
    const cam = { ...filled, source: camera({ trigger: "every_n_frames" }, { url: "clip.avi", every_n_frames: "0" }) };
    expect(stationFormIssue(cam)).toEqual({ field: "source.every_n_frames", message: "Source: Every N-th frame must be a whole number from 1 to 1000000." });
    expect(stationFormIssue({ ...filled, source: camera({}, { url: "clip.avi", every_ms: "0" }) })?.message).toBe("Source: Every (milliseconds) must be a number above 0, at most 86400000.");
    expect(stationFormIssue({ ...filled, source: camera({ trigger: "opcua" }, { url: "clip.avi", trigger_endpoint: "opc.tcp://plc:4840" }) })).toEqual({
      field: "source.trigger_node", message: "Source: enter the trigger node.",
    });
    const sink = { ...emptyPart(SINKS, "mqtt"), values: { ...emptyPart(SINKS, "mqtt").values, host: "broker", qos: "3" } };
    expect(stationFormIssue({ ...filled, sinks: [sink] })).toEqual({ field: "sinks.0.qos", message: "Sink 1 (mqtt): QoS must be a whole number from 0 to 2." });
    expect(stationFormIssue({ ...filled, sinks: [emptyPart(SINKS, "opcua")] })?.field).toBe("sinks.0.endpoint");
    expect(stationFormProblem(filled)).toBeNull();
  });

  it("builds the body: the source's table and the sinks added, booleans only where changed", () => {
    expect(stationBody(filled)).toEqual({ name: "line-1", category: "mono", source: { kind: "folder", path: "hot/line-1" }, sinks: [] });
    const webhook = { ...emptyPart(SINKS, "webhook"), values: { ...emptyPart(SINKS, "webhook").values, url: "http://mes.local/hook" } };
    const sorted = { ...emptyPart(SINKS, "folder"), values: { ...emptyPart(SINKS, "folder").values, path: "sorted" } };
    expect(
      stationBody({ ...filled, source: folder({ path: "hot/line-1", settle_s: "0.5" }), backlogLimit: "20", deadlineS: "2.5", sinks: [sorted, webhook] }),
    ).toEqual({
      name: "line-1",
      category: "mono",
      backlog_limit: 20,
      deadline_s: 2.5,
      source: { kind: "folder", path: "hot/line-1", settle_s: 0.5 },
      sinks: [
        { kind: "folder", path: "sorted" },
        { kind: "webhook", url: "http://mes.local/hook" },
      ],
    });
    // a box left at the service's default is not sent; a changed one is
    expect(stationBody({ ...filled, source: folder({ path: "hot", recursive: "true" }) }).source).toEqual({ kind: "folder", path: "hot", recursive: true });
    expect(stationBody({ ...filled, source: folder({ path: "hot", recursive: "false" }) }).source).not.toHaveProperty("recursive");
    const noVerify = { ...webhook, values: { ...webhook.values, verify_tls: "false" } };
    expect(stationBody({ ...filled, sinks: [noVerify] }).sinks).toEqual([{ kind: "webhook", url: "http://mes.local/hook", verify_tls: false }]);
  });

  it("takes a whitespace choice as written and quotes choices as the service does (a CSV sink's tab separator)", () => {
    const sep = { type: "string" as const, description: "the separator", enum: [",", ";", "\t"], default: "," };
    const csv: Kinds = { order: ["csvlog"], kinds: { csvlog: { title: "CSV log", required: ["path"], "x-order": ["path", "sep"], properties: { path: { type: "string", description: "the file" }, sep } } } };
    const part: PartForm = { kind: "csvlog", values: { path: "verdicts.csv", sep: "\t" } };
    expect(partTable(csv, part)).toEqual({ kind: "csvlog", path: "verdicts.csv", sep: "\t" });
    expect(partTable(csv, { ...part, values: { path: " verdicts.csv ", sep: "" } })).toEqual({ kind: "csvlog", path: "verdicts.csv" });
    expect(optionProblem(sep, "|")).toBe("must be one of ',', ';', '\\t'");
    expect(choiceLabel("\t")).toBe("'\\t'");
    expect(choiceLabel(";")).toBe(";");
    expect(quotedChoice("it's")).toBe('"it\'s"'); // as Python's repr
    expect(quotedChoice(`it's "x"`)).toBe("'it\\'s \"x\"'");
  });

  it("words a pattern's refusal: the name prefix's rule, another option's by its description", () => {
    const prefix = SOURCES.kinds["camera"]!.properties["name_prefix"]!;
    expect(optionProblem(prefix, "cam-1")).toBeNull();
    expect(optionProblem(prefix, "-cam")).toBe("must be 1–64 letters, digits, “_”, “.” and “-”, starting with a letter or digit");
    const line = { type: "string" as const, description: "the line's code, L and its number", pattern: "L[0-9]+" };
    expect(optionProblem(line, "L12")).toBeNull();
    expect(optionProblem(line, "line 12")).toBe("is not of the form asked (the line's code, L and its number)");
  });

  it("finds the field a refusal of the service names", () => {
    expect(refusedField("station 'line-1': source: path '/tmp' is outside the service's data root (stations ...)")).toBe("source.path");
    expect(refusedField("station 'line-1': source: url clips/x.avi is not a video file (no such file)")).toBe("source.url");
    expect(refusedField("station 'line-1': source: every_ms must be in (0, 86400000], not 0")).toBe("source.every_ms");
    expect(refusedField("station 'line-1': sink 2 (webhook): url 'x' is not an http:// or https:// URL")).toBe("sinks.1.url");
    expect(refusedField("station 'line-1': sink 1 (opcua): nodes.decision 'x' is not a node id")).toBe("sinks.0.nodes.decision");
    expect(refusedField("station 'line-1': category 'x' is not fitted in /m (eagle fit ...)")).toBe("category");
    expect(refusedField("station: name '-x' is not a station name: use ...")).toBe("name");
    expect(refusedField("station 'line-1': source: unknown option 'foo'")).toBeNull();
    expect(refusedField("station 'line-1' exists already; change it with PATCH")).toBeNull();
  });

  it("opens a part's \"More options\" when a refusal names an option folded there", () => {
    const cam = camera();
    expect(foldedOptions(SOURCES, cam)).toEqual(["reconnect_s", "poll_s", "name_prefix", "frames"]);
    const named = (message: string) => refusedField(message);
    expect(namesFolded(SOURCES, cam, "source", named("station 'line-1': source: frames /data/f exists and is not a folder"))).toBe(true);
    expect(namesFolded(SOURCES, cam, "source", named("station 'line-1': source: url clips/x.avi is not a video file (no such file)"))).toBe(false);
    expect(namesFolded(SOURCES, cam, "source", null)).toBe(false);
    // a sink's: only that sink's section
    const webhook = { ...emptyPart(SINKS, "webhook"), values: { url: "http://mes.local/hook" } };
    const caFile = named("station 'line-1': sink 2 (webhook): ca_file certs/ca.pem is not a file");
    expect(namesFolded(SINKS, webhook, "sinks.1", caFile)).toBe(true);
    expect(namesFolded(SINKS, webhook, "sinks.0", caFile)).toBe(false);
    expect(namesFolded(SINKS, webhook, "sinks.1", named("station 'line-1': sink 2 (webhook): url 'x' is not an http:// or https:// URL"))).toBe(false);
  });

  it("sends duplicates only when a choice was made, from the service's declared choices", () => {
    expect(STATION_DUPLICATES.choices).toEqual(["refuse", "skip"]);
    expect(STATION_DUPLICATES.default).toBe("refuse");
    expect(stationBody({ ...filled, duplicates: "skip" }).duplicates).toBe("skip");
    expect(stationBody({ ...filled, duplicates: "refuse" }).duplicates).toBe("refuse");
    expect(stationBody({ ...filled, duplicates: "" })).not.toHaveProperty("duplicates");
    expect(duplicatesText("skip")).toBe("Skip: tell no sink");
    expect(duplicatesText("later")).toBe("later");
  });
});

describe("the station's figures in plain words", () => {
  it("does not say no image was delivered while a sink delivered some (latency waits for every sink)", () => {
    expect(noLatencyText(station({ latency_s: null }))).toBe("no image delivered to every sink yet"); // folder: 2 delivered
    const none = station({ latency_s: null, sinks: { hook: { kind: "webhook", pending: 2, delivered: 0, dead_letters: 0, last_error: null } } });
    expect(noLatencyText(none)).toBe("no image delivered yet");
    expect(noLatencyText(station({ latency_s: null, sinks: {} }))).toBe("no image inspected yet");
  });
  it("says an OS error in words and a UTC instant in local time", () => {
    const now = new Date(Date.parse("2026-12-06T22:03:30Z"));
    const local = new Date(Date.parse("2026-12-06T22:03:14.737Z")).toLocaleTimeString();
    const warning = "sink webhook: 2 deliveries wait, the oldest stored 12 s ago (2026-12-06T22:03:14.737+00:00); last error: http://127.0.0.1:9/hook: [Errno 111] Connection refused";
    expect(plainWords(warning, now)).toBe(`sink webhook: 2 deliveries wait, the oldest stored 12 s ago (${local}); last error: http://127.0.0.1:9/hook: connection refused`);
    expect(plainWords("http://x/: <urlopen error [Errno -2] Name or service not known>", now)).toBe("http://x/: name or service not known");
    expect(plainWords("HTTP 500", now)).toBe("HTTP 500");
  });
});
