import { describe, expect, it } from "vitest";

import { parseSseChunk, readSse } from "../src/sse.js";

function streamOf(chunks: string[]): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder();
  return new ReadableStream({
    start(controller) {
      for (const chunk of chunks) controller.enqueue(encoder.encode(chunk));
      controller.close();
    },
  });
}

describe("parseSseChunk", () => {
  it("parses complete frames and keeps the unfinished tail", () => {
    const { events, rest } = parseSseChunk('id: 0\nevent: state\ndata: {"a":1}\n\nid: 1\nevent: progr');
    expect(events).toEqual([{ id: "0", event: "state", data: '{"a":1}' }]);
    expect(rest).toBe("id: 1\nevent: progr");
  });

  it("joins multi-line data, ignores comments, defaults the event name, accepts CRLF", () => {
    const { events, rest } = parseSseChunk(": keep-alive\r\ndata: one\r\ndata:two\r\n\r\n");
    expect(events).toEqual([{ id: null, event: "message", data: "one\ntwo" }]);
    expect(rest).toBe("");
  });
});

describe("readSse", () => {
  it("reassembles events split across arbitrary chunk boundaries, including inside a UTF-8 character", async () => {
    const text = 'id: 7\nevent: progress\ndata: {"stage":"features ✓"}\n\nid: 8\nevent: state\ndata: {"state":"succeeded"}\n\n';
    const bytes = new TextEncoder().encode(text);
    const tick = bytes.indexOf(0xe2) + 1; // split inside the 3-byte check mark
    const decoder = new TextDecoder();
    const pieces = [bytes.slice(0, 5), bytes.slice(5, tick), bytes.slice(tick, 60), bytes.slice(60)];
    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        for (const piece of pieces) controller.enqueue(piece);
        controller.close();
      },
    });
    const events = [];
    for await (const event of readSse(stream)) events.push(event);
    expect(events).toEqual([
      { id: "7", event: "progress", data: '{"stage":"features ✓"}' },
      { id: "8", event: "state", data: '{"state":"succeeded"}' },
    ]);
    expect(decoder.decode(bytes)).toBe(text);
  });

  it("delivers a last frame that lacks the closing blank line", async () => {
    const events = [];
    for await (const event of readSse(streamOf(["data: last"]))) events.push(event);
    expect(events).toEqual([{ id: null, event: "message", data: "last" }]);
  });
});
