/**
 * Start `tests/serve_fixture.py` (a real `eagle serve`: an expert fitted on real elpv solar cells, the tiny
 * random Qwen2.5-VL, an evaluation run) on a free loopback port, and stop its whole process group.
 * Shared by the client's tests and the console's browser tests (web/e2e re-exports it).
 */

import { spawn, type ChildProcess } from "node:child_process";
import { rmSync } from "node:fs";
import { createServer } from "node:net";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
export const FIXTURE_WORK = process.env["EAGLE_FIXTURE_DIR"] || resolve(REPO, ".cache/e2e-fixture");

export function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolvePort(port));
    });
  });
}

export interface RunningServer {
  baseUrl: string;
  process: ChildProcess;
  log: () => string;
  stop: () => Promise<void>;
}

export async function startServer(
  extraEnv: Record<string, string> = {},
  timeoutMs = 180_000,
  fixtureArgs: string[] = [],
): Promise<RunningServer> {
  const port = await freePort();
  const python = process.env["EAGLE_PYTHON"] || resolve(REPO, ".venv/bin/python");
  const pythonPath = [resolve(REPO, "src"), process.env["PYTHONPATH"]].filter(Boolean).join(":");
  let output = "";
  const env: NodeJS.ProcessEnv = { ...process.env, PYTHONPATH: pythonPath, HF_HUB_OFFLINE: "1", TOKENIZERS_PARALLELISM: "false" };
  delete env["EAGLE_API_KEY"]; // a key in the developer's shell must not leak into the keyless server
  const child = spawn(python, ["tests/serve_fixture.py", "--work", FIXTURE_WORK, "--port", String(port), ...fixtureArgs], {
    cwd: REPO,
    // This checkout's src first, so the service serves this checkout's built console.
    env: { ...env, ...extraEnv },
    detached: true, // its own process group: stop() ends the server and anything it started
    stdio: ["ignore", "pipe", "pipe"],
  });
  const keep = (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-20_000);
  };
  child.stdout?.on("data", keep);
  child.stderr?.on("data", keep);
  let exited: number | null = null;
  child.on("exit", (code) => {
    exited = code ?? -1;
  });
  const baseUrl = `http://127.0.0.1:${port}`;
  const stop = async () => {
    if (child.pid === undefined || exited !== null) return;
    const gone = new Promise<void>((done) => child.once("exit", () => done()));
    try {
      process.kill(-child.pid, "SIGTERM");
    } catch {
      return;
    }
    const timer = setTimeout(() => {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, "SIGKILL");
      } catch {
        /* already gone */
      }
    }, 5_000);
    await gone;
    clearTimeout(timer);
    // The fixture gave this server its own state (history, pictures, fitted copies): drop it.
    rmSync(resolve(FIXTURE_WORK, `state-${port}`), { recursive: true, force: true });
  };
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (exited !== null) throw new Error(`serve_fixture.py exited with ${exited}:\n${output}`);
    try {
      const response = await fetch(`${baseUrl}/healthz`);
      if (response.ok) return { baseUrl, process: child, log: () => output, stop };
    } catch {
      /* not listening yet */
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  await stop();
  throw new Error(`eagle serve did not answer /healthz within ${timeoutMs / 1000} s:\n${output}`);
}
