import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { dirname, resolve } from "node:path";

const WEB = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const CONSOLE = resolve(WEB, "../src/eagle_iad/service/webui/index.html");

/** The service serves the built console; build it once if it is missing (a stale build is the caller's choice). */
export default function setup(): void {
  if (existsSync(CONSOLE)) return;
  console.log("[e2e] web console not built: running `npm run build`");
  execFileSync("npm", ["run", "build"], { cwd: WEB, stdio: "inherit" });
}
