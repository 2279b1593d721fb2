/**
 * The package's main entry stays browser-safe: nothing it imports, directly or through other
 * modules, reaches the local runtime (src/local/) or its Node-only dependencies.
 */
import { readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

import { describe, expect, it } from "vitest";

const SRC = resolve(dirname(fileURLToPath(import.meta.url)), "../src");
const NODE_ONLY = ["onnxruntime-node", "pngjs"];

/** Every module specifier reachable from `file` through static imports and re-exports. */
function reachable(file: string, seen = new Set<string>()): Set<string> {
  if (seen.has(file)) return seen;
  seen.add(file);
  const text = readFileSync(file, "utf8");
  for (const match of text.matchAll(/(?:import|export)\s[^;]*?from\s+"([^"]+)"|import\(\s*"([^"]+)"\s*\)/g)) {
    const spec = (match[1] ?? match[2]) as string;
    if (spec.startsWith(".")) reachable(join(dirname(file), spec.replace(/\.js$/, ".ts")), seen);
    else seen.add(spec);
  }
  return seen;
}

describe("the main entry", () => {
  it("does not reach the local runtime or its Node-only dependencies", () => {
    const modules = [...reachable(join(SRC, "index.ts"))];
    expect(modules.filter((m) => m.includes(`${join(SRC, "local")}/`) || NODE_ONLY.includes(m))).toEqual([]);
    // The guard itself works: the local entry does reach them.
    const local = [...reachable(join(SRC, "local", "index.ts"))];
    expect(local).toEqual(expect.arrayContaining(["pngjs", "onnxruntime-node"]));
  });
});
