#!/usr/bin/env node
// The `eagle-client` executable: everything lives in cli.ts so tests can call `main` in-process.
import { main } from "./cli.js";

process.exitCode = await main(process.argv.slice(2));
