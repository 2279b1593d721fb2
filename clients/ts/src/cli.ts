/**
 * `eagle-client`: the service from a shell or a Node script (MES hooks, cron jobs) without Python.
 *
 * Output is JSON on stdout (one object per image for `inspect`), progress and messages on stderr,
 * so it pipes into `jq`. Exit codes: 0 done, 1 the service refused or failed, 2 bad usage or unreachable.
 */
import { randomBytes } from "node:crypto";
import { link, open, readFile, rename, stat, unlink } from "node:fs/promises";
import { basename, dirname, join, relative, resolve, sep } from "node:path";
import { parseArgs } from "node:util";

import { FIT_OPTIONS } from "./generated/fit-options.js";
import {
  EagleClient,
  PICTURE_KINDS,
  type Decision,
  type FitOptions,
  type FitSource,
  type InspectionRecord,
  type LabelFilter,
  type PictureKind,
} from "./client.js";
import { EagleApiError, EagleError, EagleFitError, EagleNetworkError, PathSegmentError } from "./errors.js";
import { toCsv, toJsonLines } from "./export.js";

const USAGE = `usage: eagle-client [--url URL] <command> [options]

commands:
  health                                  service version, MLLM, queue depth
  categories                              fitted categories
  category NAME                           one category with its training scores
  inspect --category C [--question Q] [--attention] IMAGE...
                                          inspect images (one JSON line each)
  inspect --local EXPORT IMAGE...         inspect images here, without the service, with a model written by
                                          'eagle export --format onnx' (EXPORT: its folder or model.onnx);
                                          prints the service's record (expert only: no question, no pictures)
  fit NAME (--folder DIR | FILE...) [--option key=value ...]
                                          fit a category from uploads or a server folder; progress on stderr
  history [--category C] [--decision anomalous|normal|unrecognised|undecided] [--label normal|anomalous|labelled|unlabelled]
          [--limit N] [--offset N] [--format json|csv|jsonl]
                                          json: one page as the service sends it (each record's
                                          reference.image: its nearest normal training image);
                                          csv / jsonl: every matching inspection (at most --limit), one
                                          row each, with reference_image and answered_by columns
  label ID normal|anomalous|none [--expected-revision N]
                                          record what inspection ID actually was (none clears it); with
                                          the record's label_revision you looked at (0: never labelled),
                                          refused if someone labelled it since (the error names them)
  picture ID --kind boxed|heatmap|reference --out FILE [--force]
                                          download a picture of inspection ID (reference: the nearest
                                          normal training image); FILE is never replaced without --force
  evaluations                             evaluation runs with their metrics

options:
  --url URL        service address (default: $EAGLE_URL or http://127.0.0.1:8000)
  --retries N      retries on 429/503 honouring Retry-After (default 3)
  the API key is read from $EAGLE_API_KEY (never from the command line, so it stays out of ps and history)
`;

class UsageError extends Error {}

/** A file this command was asked to write cannot be written (exit 2, like a usage error). */
class OutputError extends Error {}

function errnoOf(error: unknown): string | undefined {
  return error instanceof Error && "code" in error ? String(error.code) : undefined;
}

/**
 * Write `data` to `path` whole or not at all: a temporary file beside it, flushed, then moved in.
 * Without `force` the move is `link()`, which fails if `path` exists by then, so a file that appeared
 * meanwhile is never replaced either; with `force` it is `rename()`, atomic over an existing file.
 */
export async function writeFileAtomic(path: string, data: Uint8Array, force: boolean): Promise<void> {
  const target = resolve(path);
  const existing = await stat(target).catch(() => null);
  if (existing?.isDirectory()) throw new OutputError(`${path} is a folder; give a file name`);
  if (existing && !force) throw new OutputError(`${path} exists; pass --force to replace it`);
  const temporary = join(dirname(target), `.${basename(target)}.${randomBytes(6).toString("hex")}.tmp`);
  let handle;
  try {
    handle = await open(temporary, "wx", 0o644);
  } catch (error) {
    const why = errnoOf(error) === "ENOENT" ? "its folder does not exist" : error instanceof Error ? error.message : String(error);
    throw new OutputError(`cannot write ${path}: ${why}`);
  }
  try {
    try {
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      await handle.close();
    }
    if (force) {
      await rename(temporary, target);
    } else {
      try {
        await link(temporary, target);
      } catch (error) {
        if (errnoOf(error) === "EEXIST") throw new OutputError(`${path} exists; pass --force to replace it`);
        throw error;
      }
    }
  } finally {
    await unlink(temporary).catch(() => undefined);
  }
}

/** The JSON type of each fit option, from the generated table (the service's one source). */
const FIT_OPTION_TYPES: Record<string, "string" | "number" | "integer" | "boolean"> = Object.fromEntries(
  Object.entries(FIT_OPTIONS).map(([name, option]) => [name, option.type]),
);

/** `key=value` fit options, typed and checked here so a typo fails before any upload. */
export function parseFitOptions(pairs: string[]): FitOptions {
  const options: Record<string, string | number | boolean> = {};
  for (const pair of pairs) {
    const eq = pair.indexOf("=");
    if (eq <= 0) throw new UsageError(`--option expects key=value, got ${JSON.stringify(pair)}`);
    const key = pair.slice(0, eq);
    const raw = pair.slice(eq + 1);
    const kind = Object.hasOwn(FIT_OPTION_TYPES, key) ? FIT_OPTION_TYPES[key] : undefined;
    if (kind === undefined) {
      throw new UsageError(`unknown fit option ${JSON.stringify(key)}; known: ${Object.keys(FIT_OPTION_TYPES).join(", ")}`);
    }
    if (kind === "number" || kind === "integer") {
      const value = Number(raw);
      if (raw.trim() === "" || !Number.isFinite(value)) throw new UsageError(`fit option ${key} must be a number, got ${JSON.stringify(raw)}`);
      if (kind === "integer" && !Number.isInteger(value)) throw new UsageError(`fit option ${key} must be an integer, got ${JSON.stringify(raw)}`);
      options[key] = value;
    } else if (kind === "boolean") {
      if (raw !== "true" && raw !== "false") throw new UsageError(`fit option ${key} must be true or false, got ${JSON.stringify(raw)}`);
      options[key] = raw === "true";
    } else {
      options[key] = raw;
    }
  }
  return options as FitOptions;
}

/**
 * The names the service records for IMAGE arguments: the file name, and for files that share one
 * (`cut/003.png`, `hole/003.png`) the path below the deepest folder they have in common, so the
 * history and this command's output tell them apart (the engine's own naming rule, naming.py).
 */
/**
 * An image's error line: `eagle-client: PATH: REASON`. The service and the local runtime name the file in their
 * message already (`a.png: not a recognised image format`), which the line would repeat after its path.
 */
export function imageErrorLine(path: string, name: string, message: string): string {
  const reason = message.startsWith(`${name}: `) ? message.slice(name.length + 2) : message;
  return `eagle-client: ${path}: ${reason}\n`;
}

export function uploadNames(paths: readonly string[]): string[] {
  const names = paths.map((path) => basename(path));
  const count = new Map<string, number>();
  for (const name of names) count.set(name, (count.get(name) ?? 0) + 1);
  const clashing = names.flatMap((name, i) => ((count.get(name) ?? 0) > 1 ? [i] : []));
  if (clashing.length === 0) return names;
  const dirs = clashing.map((i) => dirname(resolve(paths[i] as string)).split(sep));
  const common: string[] = [];
  for (let k = 0; dirs.every((d) => k < d.length && d[k] === dirs[0]?.[k]); k++) common.push(dirs[0]?.[k] as string);
  const root = common.join(sep) || sep;
  for (const i of clashing) names[i] = relative(root, resolve(paths[i] as string)).split(sep).join("/");
  return names;
}

function print(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value)}\n`);
}

function progressLine(stage: string, done: number, total: number): string {
  const width = 24;
  const filled = total > 0 ? Math.round((done / total) * width) : 0;
  return `${stage.padEnd(16)} [${"#".repeat(filled)}${".".repeat(width - filled)}] ${done}/${total}`;
}

async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      url: { type: "string" },
      retries: { type: "string" },
      category: { type: "string" },
      question: { type: "string" },
      attention: { type: "boolean" },
      folder: { type: "string" },
      option: { type: "string", multiple: true },
      decision: { type: "string" },
      limit: { type: "string" },
      offset: { type: "string" },
      format: { type: "string" },
      label: { type: "string" },
      "expected-revision": { type: "string" },
      kind: { type: "string" },
      out: { type: "string" },
      force: { type: "boolean" },
      local: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  const [command, ...rest] = positionals;
  if (values.help || command === undefined) {
    process.stdout.write(USAGE);
    return command === undefined && !values.help ? 2 : 0;
  }
  if (values.local !== undefined) {
    if (command !== "inspect") throw new UsageError("--local goes with inspect");
    return inspectLocal(values.local, rest, values);
  }
  const retries = values.retries === undefined ? 3 : Number(values.retries);
  if (!Number.isInteger(retries) || retries < 0) throw new UsageError(`--retries must be a whole number >= 0`);
  const apiKey = process.env.EAGLE_API_KEY;
  const client = new EagleClient({
    baseUrl: values.url ?? process.env.EAGLE_URL ?? "http://127.0.0.1:8000",
    maxRetries: retries,
    ...(apiKey ? { apiKey } : {}),
    onRetry: ({ waitMs, status }) =>
      process.stderr.write(`eagle-client: ${status === 429 ? "queue full" : "not reachable"}, retrying in ${(waitMs / 1000).toFixed(1)} s\n`),
  });
  const integer = (name: string, raw: string | undefined): number | undefined => {
    if (raw === undefined) return undefined;
    const value = Number(raw);
    if (!Number.isInteger(value) || value < 0) throw new UsageError(`--${name} must be a whole number >= 0`);
    return value;
  };

  switch (command) {
    case "health":
      print(await client.health());
      return 0;
    case "categories":
      print(await client.categories());
      return 0;
    case "category": {
      if (rest.length !== 1) throw new UsageError("category takes one NAME");
      print(await client.category(rest[0] as string));
      return 0;
    }
    case "inspect": {
      if (!values.category) throw new UsageError("inspect needs --category");
      if (rest.length === 0) throw new UsageError("inspect needs at least one IMAGE");
      let failures = 0;
      const names = uploadNames(rest);
      for (const [index, path] of rest.entries()) {
        try {
          const data = await readFile(path);
          const record = await client.inspect(data, values.category, {
            filename: names[index] as string,
            ...(values.question !== undefined ? { question: values.question } : {}),
            ...(values.attention ? { attention: true } : {}),
          });
          print(record);
        } catch (error) {
          if (error instanceof EagleNetworkError) throw error;
          failures++;
          const message = error instanceof Error ? error.message : String(error);
          process.stderr.write(imageErrorLine(path, names[index] as string, message));
          print({ image: path, error: message, ...(error instanceof EagleApiError ? { status: error.status, code: error.code } : {}) });
        }
      }
      return failures > 0 ? 1 : 0;
    }
    case "fit": {
      if (rest.length < 1) throw new UsageError("fit needs a category NAME");
      const [name, ...files] = rest as [string, ...string[]];
      if ((values.folder === undefined) === (files.length === 0)) {
        throw new UsageError("fit needs either --folder DIR (on the server) or image/zip FILEs, not both");
      }
      const options = parseFitOptions(values.option ?? []);
      const source: FitSource =
        values.folder !== undefined
          ? { folder: values.folder }
          : { files: await Promise.all(files.map(async (path) => ({ name: basename(path), data: await readFile(path) }))) };
      const tty = process.stderr.isTTY;
      const job = await client.fit(name, source, options, {
        onEvent: (event) => {
          if (event.event === "progress" && event.stage) {
            const line = progressLine(event.stage, event.done ?? 0, event.total ?? 0);
            process.stderr.write(tty ? `\r${line}` : `${line}\n`);
          } else if (event.event === "state") {
            process.stderr.write(`${tty ? "\n" : ""}job ${event.state}\n`);
          }
        },
      });
      print(job);
      return 0;
    }
    case "history": {
      const decision = values.decision;
      if (decision !== undefined && !["anomalous", "normal", "unrecognised", "undecided"].includes(decision)) {
        throw new UsageError("--decision must be anomalous, normal, unrecognised or undecided");
      }
      const label = values.label;
      if (label !== undefined && !["normal", "anomalous", "labelled", "unlabelled"].includes(label)) {
        throw new UsageError("--label must be normal, anomalous, labelled or unlabelled");
      }
      const limit = integer("limit", values.limit);
      const offset = integer("offset", values.offset);
      const format = values.format ?? "json";
      if (!["json", "csv", "jsonl"].includes(format)) throw new UsageError("--format must be json, csv or jsonl");
      if (format !== "json") {
        const records: InspectionRecord[] = [];
        let skip = offset ?? 0;
        for await (const record of client.historyAll({
          ...(values.category ? { category: values.category } : {}),
          ...(decision ? { decision: decision as Decision } : {}),
          ...(label ? { label: label as LabelFilter } : {}),
        })) {
          if (skip > 0) {
            skip--;
            continue;
          }
          if (limit !== undefined && records.length >= limit) break;
          records.push(record);
        }
        process.stdout.write(format === "csv" ? toCsv(records, client.baseUrl) : toJsonLines(records, client.baseUrl));
        return 0;
      }
      print(
        await client.history({
          ...(limit !== undefined ? { limit } : {}),
          ...(offset !== undefined ? { offset } : {}),
          ...(values.category ? { category: values.category } : {}),
          ...(decision ? { decision: decision as Decision } : {}),
          ...(label ? { label: label as LabelFilter } : {}),
        }),
      );
      return 0;
    }
    case "label": {
      const [id, value] = rest;
      if (rest.length !== 2 || id === undefined || !["normal", "anomalous", "none"].includes(value ?? "")) {
        throw new UsageError("label takes an inspection ID and normal, anomalous or none");
      }
      const expectedRevision = integer("expected-revision", values["expected-revision"]);
      print(await client.label(id, value === "none" ? null : (value as "normal" | "anomalous"), expectedRevision === undefined ? {} : { expectedRevision }));
      return 0;
    }
    case "evaluations":
      print(await client.evaluations());
      return 0;
    case "picture": {
      const [id] = rest;
      if (rest.length !== 1 || id === undefined) throw new UsageError("picture takes one inspection ID");
      const kind = values.kind;
      if (kind === undefined || !(PICTURE_KINDS as readonly string[]).includes(kind)) {
        const given = kind === undefined ? "" : ` (got ${JSON.stringify(kind)})`;
        throw new UsageError(`picture needs --kind ${PICTURE_KINDS.join("|")}${given}`);
      }
      if (!values.out) throw new UsageError("picture needs --out FILE");
      const out = values.out;
      const force = values.force === true;
      const existing = await stat(out).catch(() => null);  // refuse before downloading anything
      if (existing?.isDirectory()) throw new OutputError(`${out} is a folder; give a file name`);
      if (existing && !force) throw new OutputError(`${out} exists; pass --force to replace it`);
      const picture = await client.inspectionPicture(id, kind as PictureKind);
      await writeFileAtomic(out, picture.data, force);
      print({ id, kind, path: out, type: picture.type, bytes: picture.data.length });
      return 0;
    }
    default:
      throw new UsageError(`unknown command ${JSON.stringify(command)}`);
  }
}

/**
 * `inspect --local`: the exported model runs in this process (onnxruntime-node, loaded only here).
 * Same output as the service path: one record per image, a failed image as {image, error} and exit 1.
 */
async function inspectLocal(
  exportPath: string,
  images: string[],
  values: { category?: string | undefined; question?: string | undefined; attention?: boolean | undefined },
): Promise<number> {
  if (images.length === 0) throw new UsageError("inspect needs at least one IMAGE");
  if (values.question !== undefined || values.attention) {
    throw new UsageError("--local runs the expert only: questions and attention need the service's MLLM");
  }
  const { LocalExpert } = await import("./local/index.js");
  const expert = await LocalExpert.open(exportPath);
  if (values.category !== undefined && values.category !== expert.category) {
    throw new UsageError(`--category ${values.category} does not match the export's category ${expert.category}`);
  }
  let failures = 0;
  const names = uploadNames(images);
  try {
    for (const [index, path] of images.entries()) {
      try {
        print(await expert.inspect(await readFile(path), names[index] as string));
      } catch (error) {
        failures++;
        const message = error instanceof Error ? error.message : String(error);
        process.stderr.write(imageErrorLine(path, names[index] as string, message));
        print({ image: path, error: message });
      }
    }
  } finally {
    await expert.close();
  }
  return failures > 0 ? 1 : 0;
}

/** Runs the CLI and maps errors to exit codes and one readable line on stderr. */
export async function main(argv: string[]): Promise<number> {
  try {
    return await run(argv);
  } catch (error) {
    if (error instanceof UsageError || (error instanceof TypeError && "code" in error && String(error.code).startsWith("ERR_PARSE_ARGS"))) {
      process.stderr.write(`eagle-client: ${error.message}\n\n${USAGE}`);
      return 2;
    }
    if (error instanceof OutputError || error instanceof PathSegmentError) {
      process.stderr.write(`eagle-client: ${error.message}\n`);
      return 2;
    }
    if (error instanceof EagleNetworkError) {
      process.stderr.write(`eagle-client: ${error.message}\n`);
      return 2;
    }
    if (error instanceof EagleFitError || error instanceof EagleApiError || error instanceof EagleError) {
      process.stderr.write(`eagle-client: ${error.message}\n`);
      return 1;
    }
    if (error instanceof Error && "code" in error && error.code === "ENOENT") {
      process.stderr.write(`eagle-client: ${error.message}\n`);
      return 2;
    }
    throw error;
  }
}
