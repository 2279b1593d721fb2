import { EagleError } from "../errors.js";

/** The local runtime refused an input: an unreadable image, an export that does not match its sidecar, a missing runtime. */
export class EagleLocalError extends EagleError {
  override name = "EagleLocalError";
}
