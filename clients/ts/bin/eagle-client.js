#!/usr/bin/env node
// The `eagle-client` command as npm links it: a committed file, so `npm ci` can link it before the
// TypeScript build exists (npm skips a bin whose target is missing, leaving nothing on PATH).
import { existsSync } from "node:fs";

const built = new URL("../dist/bin.js", import.meta.url);
if (!existsSync(built)) {
  process.stderr.write("eagle-client: the client is not built yet; run `npm run build -w clients/ts` in the checkout\n");
  process.exit(2);
}
await import(built.href);
