import { defineConfig } from "vitest/config";

// Browser tests against a real `eagle serve` (tests/serve_fixture.py); run after `npm run build`
// (globalSetup builds the console when the service's webui folder lacks it).
export default defineConfig({
  test: {
    include: ["e2e/**/*.e2e.ts"],
    environment: "node",
    globalSetup: ["e2e/global-setup.ts"],
    testTimeout: 180_000,
    hookTimeout: 240_000,
    fileParallelism: false,
    sequence: { concurrent: false },
  },
});
