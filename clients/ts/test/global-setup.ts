import type { TestProject } from "vitest/node";

import { FIXTURE_WORK, startServer } from "./server.js";

declare module "vitest" {
  export interface ProvidedContext {
    baseUrl: string;
    fixtureDir: string;
    /** Why the shared server could not start ("" when it runs); the suites fail with this text. */
    fixtureError: string;
  }
}

/**
 * Start the one shared server. A failure is not thrown from here: vitest would then report "No test
 * files found" and hide the reason below it. It is printed first and handed to the suites, which fail
 * with the fixture's own message (see fixture.ts) while the server-free tests still run.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  project.provide("fixtureDir", FIXTURE_WORK);
  try {
    const server = await startServer();
    project.provide("baseUrl", server.baseUrl);
    project.provide("fixtureError", "");
    return server.stop;
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    console.error(`\n[eagle fixture] the test server could not start; every test that needs it fails with:\n${message}\n`);
    project.provide("baseUrl", "");
    project.provide("fixtureError", message);
    return async () => {};
  }
}
