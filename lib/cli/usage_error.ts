/**
 * A mistake on the command line: one line, exit code 2.
 * @module
 */
import { EcapError } from "../base/errors.ts";

/**
 * An EcapError of kind "usage", printed as `ecap: MESSAGE (HINT)`.
 *
 * @param message What is wrong, e.g. `Invalid --duration "0": expected …`.
 * @param hint What to do; by default where the help is.
 * @returns The error, to throw.
 */
export function usageError(message: string, hint = "see ecap --help"): EcapError {
  return new EcapError(message, { kind: "usage", hint });
}
