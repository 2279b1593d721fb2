/** The shared server of the global setup, as the test files see it. */
import { inject } from "vitest";

/** Its URL and cache folder; throws the fixture's own error when the global setup could not start it. */
export function sharedServer(): { baseUrl: string; fixtureDir: string } {
  const error = inject("fixtureError");
  if (error) throw new Error(`tests/serve_fixture.py failed, so this suite cannot run:\n${error}`);
  return { baseUrl: inject("baseUrl"), fixtureDir: inject("fixtureDir") };
}
