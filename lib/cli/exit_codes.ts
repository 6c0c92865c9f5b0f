/**
 * What each exit code means, for help and the man page: the codes come
 * from EXIT_CODES, so a new kind of failure shows up in both.
 * @module
 */
import { type EcapErrorKind, EXIT_CODES } from "../base/errors.ts";

const MEANINGS: Record<EcapErrorKind, string> = {
  internal: "internal error (a bug: please report it with --verbose's output)",
  usage: "usage: a bad option, value or combination",
  permission: "permission: not root, or an output ecap refuses (a symbolic link)",
  "not-found": "target not found: no such process, program, library, cgroup or interface",
  unsupported: "unsupported: the kernel or the binary lacks what ecap needs",
  io: "I/O: an output cannot be written",
};

/** [code, meaning] rows, 0 first. */
export const EXIT_CODE_ROWS: readonly (readonly [number, string])[] = [
  [0, "success: stopped by Ctrl-C, SIGTERM, --duration, -c, or the traced processes' end"],
  ...(Object.entries(EXIT_CODES) as [EcapErrorKind, number][])
    .sort((a, b) => a[1] - b[1])
    .map(([kind, code]) => [code, MEANINGS[kind]] as const),
];
