import { defineConfig } from "vitest/config";

// The local runtime's tests alone (`npm run test:local`): they need eagle's Python for their fixtures
// but not the shared `eagle serve` of the main config's global setup.
export default defineConfig({
  test: {
    include: ["test/local-*.test.ts"],
    fileParallelism: false,
    testTimeout: 600_000,
    hookTimeout: 900_000,
  },
});
