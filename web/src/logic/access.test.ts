import { createServer, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { Me } from "@eagle-iad/client";
import { afterEach, describe, expect, it } from "vitest";
import { EagleApiError } from "@eagle-iad/client";
import { allows, askWhoAmI, keyRequest, refusalLine, signedInLine, storedKeyRefused } from "./access";
import { describeError, unsavedLine } from "./errors";

const me = (role: Me["role"], open = false): Me => ({ name: open ? "local" : "anna", role, open, may: [], roles: {} });

describe("access", () => {
  it("allows a role what it and the roles below may do", () => {
    expect(allows(me("operator"), "viewer")).toBe(true);
    expect(allows(me("operator"), "operator")).toBe(true);
    expect(allows(me("operator"), "engineer")).toBe(false);
    expect(allows(me("viewer"), "operator")).toBe(false);
    expect(allows(me("admin"), "engineer")).toBe(true);
    expect(allows(null, "admin")).toBe(true); // not known yet: the service still refuses
  });
  it("says who is signed in and why a control is missing", () => {
    expect(signedInLine(me("operator"))).toBe("Signed in as anna (operator)");
    expect(signedInLine(me("admin", true))).toBe("Open: no keys (one local user)");
    expect(refusalLine(me("viewer"), "operator", "Inspecting")).toBe(
      "Inspecting needs the operator role; anna is a viewer. An admin can give you a key with that role.",
    );
    expect(refusalLine(me("operator"), "engineer", "Fitting")).toBe(
      "Fitting needs the engineer role; anna is an operator. An admin can give you a key with that role.",
    );
    expect(refusalLine(me("engineer"), "admin", "Keys")).toBe(
      "Keys needs the admin role; anna is an engineer. An admin can give you a key with that role.",
    );
  });
});

describe("the key form's request", () => {
  it("asks for the kind of key the service takes (its /healthz auth)", () => {
    expect(keyRequest("keys")).toMatch(/^This service takes named API keys: enter yours\. An admin makes one with `eagle keys add/);
    expect(keyRequest("keys")).not.toContain("EAGLE_API_KEY"); // not the single key of earlier versions
    expect(keyRequest("api_key")).toBe("This service runs with one shared key, its `EAGLE_API_KEY`: enter that key.");
    expect(keyRequest("open")).toContain("needs no key");
    expect(keyRequest(null)).toContain("`eagle keys add`, or the service's `EAGLE_API_KEY`"); // an older service: both
  });
});

describe("a stored key refused mid-shift", () => {
  it("says the service's reason (revoked, when, ask an admin) and the decision that was not saved", () => {
    const revoked = describeError(
      new EagleApiError("this key was revoked at 2026-12-07T04:45:01+00:00; ask an admin for a new key", 401, "revoked_api_key"),
    );
    expect(storedKeyRefused(revoked, unsavedLine("cut_008.png", "normal"))).toBe(
      "The service refused the key stored in this tab: this key was revoked at 2026-12-07T04:45:01+00:00; ask an admin for a new key. " +
        "Your “actually normal” for cut_008.png was not saved: with a working key, decide it again.",
    );
    // A key the service does not know is told nothing more (a guess learns nothing).
    const unknown = describeError(new EagleApiError("missing or wrong API key", 401, "invalid_api_key"));
    expect(storedKeyRefused(unknown)).toBe("The service refused the key stored in this tab.");
    expect(storedKeyRefused(null)).toBe("The service refused the key stored in this tab.");
  });
});

describe("asking who the key is", () => {
  // a real HTTP server on a free port, answering as the test says; every request it saw is counted
  let server: Server | null = null;
  let seen = 0;
  const hanging: ServerResponse[] = [];
  async function serve(answer: (response: ServerResponse) => void): Promise<string> {
    seen = 0;
    server = createServer((request, response) => {
      seen += 1;
      request.resume();
      answer(response);
    });
    await new Promise<void>((resolve) => server!.listen(0, "127.0.0.1", resolve));
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }
  afterEach(async () => {
    for (const response of hanging.splice(0)) response.destroy();
    server?.closeAllConnections();
    await new Promise((resolve) => server?.close(resolve));
    server = null;
  });

  it("says who the key is", async () => {
    const who = { name: "anna", role: "operator", open: false, may: [], roles: {} };
    const baseUrl = await serve((response) => response.writeHead(200, { "Content-Type": "application/json" }).end(JSON.stringify(who)));
    expect(await askWhoAmI({ baseUrl, apiKey: "k" }, new AbortController().signal)).toEqual(who);
  });

  it("asks once: a 503 with Retry-After is not waited out (the pages wait for this answer)", async () => {
    const baseUrl = await serve((response) =>
      response
        .writeHead(503, { "Content-Type": "application/json", "Retry-After": "5" })
        .end(JSON.stringify({ error: { code: "history_unavailable", message: "history unavailable" } })),
    );
    const failed = await askWhoAmI({ baseUrl, apiKey: "" }, new AbortController().signal).catch((e: unknown) => e);
    expect(failed).toBeInstanceOf(EagleApiError);
    expect((failed as EagleApiError).status).toBe(503);
    expect(seen).toBe(1);
  });

  it("gives up on a service that accepts and never answers", async () => {
    const baseUrl = await serve((response) => hanging.push(response));
    const failed = await askWhoAmI({ baseUrl, apiKey: "" }, new AbortController().signal, 300).catch((e: unknown) => e);
    expect((failed as Error).name).toBe("TimeoutError");
    expect((failed as Error).message).toBe("the service did not say who the key is within 0.3 s");
    expect(seen).toBe(1);
  });

  it("stops when the caller aborts", async () => {
    const baseUrl = await serve((response) => hanging.push(response));
    const controller = new AbortController();
    const asked = askWhoAmI({ baseUrl, apiKey: "" }, controller.signal, 60_000).catch((e: unknown) => e);
    controller.abort(new DOMException("replaced", "AbortError"));
    expect(((await asked) as Error).message).toBe("replaced");
  });
});
