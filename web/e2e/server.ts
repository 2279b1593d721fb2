// One server starter for both TypeScript suites: the client's tests own it.
export { FIXTURE_WORK, REPO, freePort, startServer, type RunningServer } from "../../clients/ts/test/server";
