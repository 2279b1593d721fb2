/**
 * Start the real service for tests: `tests/serve_fixture.py` prepares a tire expert (real images),
 * the tiny random Qwen2.5-VL and an evaluation run, then execs `eagle serve` on a free loopback port.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createServer } from "node:net";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
export const FIXTURE_WORK = process.env.EAGLE_FIXTURE_DIR ?? join(REPO, ".cache", "e2e-fixture");
const PYTHON = process.env.EAGLE_PYTHON ?? join(REPO, ".venv", "bin", "python");

export interface RunningServer {
  url: string;
  stop: () => Promise<void>;
  logs: () => string;
}

export function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const probe = createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const address = probe.address();
      probe.close(() => (typeof address === "object" && address ? resolvePort(address.port) : reject(new Error("no port"))));
    });
  });
}

export async function startServer(options: { apiKey?: string; timeoutMs?: number } = {}): Promise<RunningServer> {
  const port = await freePort();
  const env: NodeJS.ProcessEnv = { ...process.env, HF_HUB_OFFLINE: "1", OMP_NUM_THREADS: "1" };
  delete env.EAGLE_API_KEY;
  if (options.apiKey) env.EAGLE_API_KEY = options.apiKey;
  const child: ChildProcess = spawn(PYTHON, [join(REPO, "tests", "serve_fixture.py"), "--work", FIXTURE_WORK, "--port", String(port)], {
    cwd: REPO,
    env,
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout?.on("data", (chunk: Buffer) => (output = (output + chunk.toString()).slice(-20_000)));
  child.stderr?.on("data", (chunk: Buffer) => (output = (output + chunk.toString()).slice(-20_000)));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + (options.timeoutMs ?? 240_000);
  for (;;) {
    if (child.exitCode !== null) throw new Error(`eagle serve exited with ${child.exitCode}:\n${output}`);
    try {
      const response = await fetch(`${url}/healthz`);
      if (response.ok) break;
    } catch {
      // not up yet
    }
    if (Date.now() > deadline) {
      if (child.pid) process.kill(-child.pid, "SIGKILL");
      throw new Error(`eagle serve did not come up within the deadline:\n${output}`);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  return {
    url,
    logs: () => output,
    stop: async () => {
      if (child.exitCode !== null || !child.pid) return;
      const exited = new Promise<void>((r) => child.once("exit", () => r()));
      process.kill(-child.pid, "SIGTERM");
      const timer = setTimeout(() => child.pid && process.kill(-child.pid, "SIGKILL"), 15_000);
      await exited;
      clearTimeout(timer);
    },
  };
}
