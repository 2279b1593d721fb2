import type { TestProject } from "vitest/node";

import { FIXTURE_WORK, startServer } from "./server.js";

declare module "vitest" {
  export interface ProvidedContext {
    baseUrl: string;
    fixtureDir: string;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const server = await startServer();
  project.provide("baseUrl", server.baseUrl);
  project.provide("fixtureDir", FIXTURE_WORK);
  return server.stop;
}
