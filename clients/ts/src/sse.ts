/**
 * A server-sent-events reader over a fetch body. `EventSource` cannot send the API key header and
 * does not exist in Node 20, so the client reads `text/event-stream` itself, in both runtimes.
 */

/** One event: `event` defaults to "message"; `data` lines are joined with newlines as the spec says. */
export interface SseEvent {
  id: string | null;
  event: string;
  data: string;
}

/** Parse complete SSE frames from text; returns the events and the unfinished tail to prepend next time. */
export function parseSseChunk(buffer: string): { events: SseEvent[]; rest: string } {
  const events: SseEvent[] = [];
  const normalised = buffer.replace(/\r\n?/g, "\n");
  const frames = normalised.split("\n\n");
  const rest = frames.pop() ?? "";
  for (const frame of frames) {
    let id: string | null = null;
    let event = "message";
    const data: string[] = [];
    for (const line of frame.split("\n")) {
      if (line === "" || line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon === -1 ? line : line.slice(0, colon);
      let value = colon === -1 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "id") id = value;
      else if (field === "event") event = value;
      else if (field === "data") data.push(value);
    }
    if (data.length > 0 || id !== null) events.push({ id, event, data: data.join("\n") });
  }
  return { events, rest };
}

/** Every event of a `text/event-stream` body, in order, until the stream ends. */
export async function* readSse(body: ReadableStream<Uint8Array>): AsyncGenerator<SseEvent> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      const { events, rest } = parseSseChunk(buffer);
      buffer = rest;
      yield* events;
    }
    buffer += decoder.decode();
    yield* parseSseChunk(buffer + "\n\n").events;
  } finally {
    reader.releaseLock();
  }
}
