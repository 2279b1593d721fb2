import { defineConfig } from "vitest/config";

// One real `eagle serve` (tests/serve_fixture.py) is started for the whole run by the global setup;
// files run one after another because they share it (and its history).
export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    globalSetup: ["test/global-setup.ts"],
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 300_000,
  },
});
