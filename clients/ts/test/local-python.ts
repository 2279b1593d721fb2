/**
 * The Python side of the local runtime's parity tests: eagle's Python (EAGLE_PYTHON, default the
 * checkout's .venv) runs scripts/local_fixtures.py or the `eagle` CLI. Without it the parity suites
 * skip and say why: a client-only checkout has no Python to compare with.
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

import { REPO } from "./server.js";

export const PYTHON = process.env["EAGLE_PYTHON"] || resolve(REPO, ".venv/bin/python");

/** Why the parity tests cannot run here ("" when eagle's Python is available). */
export const NO_PYTHON = existsSync(PYTHON)
  ? ""
  : `eagle's Python not found at ${PYTHON} (set EAGLE_PYTHON or run 'make install'): the Python parity tests are skipped`;

export function runPython(args: string[], timeoutMs = 600_000): string {
  return execFileSync(PYTHON, args, {
    cwd: REPO,
    encoding: "utf8",
    timeout: timeoutMs,
    maxBuffer: 256 * 1024 * 1024,
    env: { ...process.env, PYTHONPATH: [resolve(REPO, "src"), process.env["PYTHONPATH"]].filter(Boolean).join(":"), HF_HUB_OFFLINE: "1" },
  });
}

export function scratch(prefix: string): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export function bytes(b64: string): Uint8Array {
  return new Uint8Array(Buffer.from(b64, "base64"));
}

export function floats(b64: string): Float32Array {
  const raw = Buffer.from(b64, "base64");
  return new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength));
}
