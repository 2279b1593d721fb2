/**
 * Retries over real HTTP: a node:http server on loopback plays a service whose queue is full
 * (429 + Retry-After) for a while, so the client's waits and give-up are observed end to end.
 * (The real service's 429 is covered by tests/test_service.py; filling its queue from here would
 * need a model slow enough to block, which the tiny MLLM is not.)
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";

import { EagleApiError, EagleClient, EagleNetworkError } from "../src/index.js";

let server: Server | undefined;

async function serve(handler: (req: IncomingMessage, res: ServerResponse, body: Buffer) => void): Promise<string> {
  server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => handler(req, res, Buffer.concat(chunks)));
  });
  await new Promise<void>((resolve) => server?.listen(0, "127.0.0.1", resolve));
  return `http://127.0.0.1:${(server?.address() as AddressInfo).port}`;
}

afterEach(async () => {
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  server = undefined;
});

const queueFull = (res: ServerResponse, retryAfter: string): void => {
  res.writeHead(429, { "Content-Type": "application/json", "Retry-After": retryAfter });
  res.end(JSON.stringify({ error: { message: "the MLLM queue is full (4 waiting); retry later", type: "rate_limit", code: "queue_full" } }));
};

describe("429 with Retry-After", () => {
  it("waits what the service asks and re-sends the whole multipart body", async () => {
    const bodies: string[] = [];
    const url = await serve((req, res, body) => {
      bodies.push(body.toString("latin1"));
      if (bodies.length <= 2) return queueFull(res, String(bodies.length));
      res.writeHead(200, { "Content-Type": "application/json" });
      res.end(JSON.stringify({ id: "x", category: "tire", decision: "normal" }));
    });
    const waits: number[] = [];
    const client = new EagleClient({ baseUrl: url, sleep: async (ms) => void waits.push(ms) });
    const record = await client.inspect(new Uint8Array([137, 80, 78, 71]), "tire", { filename: "a.png" });
    expect(record.decision).toBe("normal");
    expect(waits).toEqual([1000, 2000]);
    expect(bodies).toHaveLength(3);
    for (const body of bodies) {
      expect(body).toContain('name="category"\r\n\r\ntire');
      expect(body).toContain('filename="a.png"');
      expect(body).toContain("\x89PNG");
    }
  });

  it("gives up after maxRetries with the service's message, code and Retry-After", async () => {
    let calls = 0;
    const url = await serve((_req, res) => {
      calls++;
      queueFull(res, "7");
    });
    const client = new EagleClient({ baseUrl: url, maxRetries: 2, maxRetryWaitS: 5, sleep: async () => undefined });
    const error = await client.inspect(new Uint8Array([1]), "tire").catch((e: unknown) => e);
    expect(error).toBeInstanceOf(EagleApiError);
    expect(error).toMatchObject({ status: 429, code: "queue_full", retryAfterS: 7, message: "the MLLM queue is full (4 waiting); retry later" });
    expect(calls).toBe(3);
  });

  it("does not retry other errors", async () => {
    let calls = 0;
    const url = await serve((_req, res) => {
      calls++;
      res.writeHead(400, { "Content-Type": "application/json" });
      res.end(JSON.stringify({ error: { message: "image.png: not a recognised image", type: "invalid_request_error", code: "invalid_image" } }));
    });
    const client = new EagleClient({ baseUrl: url, sleep: async () => undefined });
    await expect(client.inspect(new Uint8Array([1]), "tire")).rejects.toMatchObject({ status: 400, code: "invalid_image" });
    expect(calls).toBe(1);
  });

  it("keeps the status line when the error body is not JSON (a proxy's page)", async () => {
    const url = await serve((_req, res) => {
      res.writeHead(502, { "Content-Type": "text/html" });
      res.end("<h1>Bad gateway</h1>");
    });
    const client = new EagleClient({ baseUrl: url });
    await expect(client.categories()).rejects.toMatchObject({ status: 502, message: "HTTP 502 Bad Gateway", code: null });
  });
});

describe("unreachable service", () => {
  it("retries a GET and a keyed upload, never another POST, and names the address", async () => {
    const url = await serve(() => undefined);
    await new Promise<void>((resolve) => server?.close(() => resolve()));
    server = undefined;
    const waits: number[] = [];
    const client = new EagleClient({ baseUrl: url, maxRetries: 2, sleep: async (ms) => void waits.push(ms) });
    const getError = await client.categories().catch((e: unknown) => e);
    expect(getError).toBeInstanceOf(EagleNetworkError);
    expect((getError as Error).message).toContain(`cannot reach the EAGLE service at ${url}`);
    expect(waits).toEqual([500, 1000]);
    waits.length = 0;
    await expect(client.changeThreshold("tire", { tau: 1, reason: "r" } as never)).rejects.toBeInstanceOf(EagleNetworkError);
    expect(waits).toEqual([]); // a POST without a key may have reached the service: never repeated
    await expect(client.inspect(new Uint8Array([1]), "tire")).rejects.toBeInstanceOf(EagleNetworkError);
    expect(waits).toEqual([500, 1000]); // an upload carries its key: a repeat cannot store it twice
  });

  it("sends one key per upload, the same on every retry of it", async () => {
    const keys: Array<string | undefined> = [];
    let calls = 0;
    const url = await serve((req, res) => {
      keys.push(req.headers["idempotency-key"] as string | undefined);
      calls += 1;
      if (calls === 1) {
        res.socket?.destroy(); // the connection drops after the service read the upload
        return;
      }
      res.writeHead(200, { "Content-Type": "application/json" });
      res.end(JSON.stringify({ id: "r1" }));
    });
    const client = new EagleClient({ baseUrl: url, maxRetries: 2, sleep: async () => undefined });
    expect(await client.inspect(new Uint8Array([1]), "tire")).toEqual({ id: "r1" });
    expect(keys).toHaveLength(2);
    expect(keys[0]).toMatch(/^[0-9a-f]{32}$/);
    expect(keys[1]).toBe(keys[0]);
    await client.inspect(new Uint8Array([1]), "tire");
    expect(keys[2]).toMatch(/^[0-9a-f]{32}$/);
    expect(keys[2]).not.toBe(keys[0]); // a new upload, a new key
    await client.inspect(new Uint8Array([1]), "tire", { idempotencyKey: "queue-item-7" });
    expect(keys[3]).toBe("queue-item-7");
  });
});

describe("construction", () => {
  it("needs an absolute http(s) address outside a browser", () => {
    expect(() => new EagleClient()).toThrow("baseUrl is required outside a browser");
    expect(() => new EagleClient({ baseUrl: "ftp://host" })).toThrow("baseUrl must start with http:// or https://");
    expect(new EagleClient({ baseUrl: "http://h:1/" }).url("/v1/x")).toBe("http://h:1/v1/x");
  });
});
