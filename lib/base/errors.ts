/**
 * Errors a caller can catch: what failed, why (errno), and what to do.
 * @module
 */

const ERRNO_NAMES: Record<number, string> = {
  1: "EPERM",
  2: "ENOENT",
  3: "ESRCH",
  4: "EINTR",
  5: "EIO",
  7: "E2BIG",
  9: "EBADF",
  12: "ENOMEM",
  13: "EACCES",
  14: "EFAULT",
  16: "EBUSY",
  17: "EEXIST",
  19: "ENODEV",
  22: "EINVAL",
  24: "EMFILE",
  28: "ENOSPC",
  38: "ENOSYS",
  95: "EOPNOTSUPP",
  524: "ENOTSUPP",
};

/** Names an errno as its symbol, e.g. 2 → "ENOENT". */
export function errnoName(errno: number): string {
  return ERRNO_NAMES[Math.abs(errno)] ?? `errno ${Math.abs(errno)}`;
}

/** Why ecap failed, as the CLI maps it to an exit code. */
export type EcapErrorKind =
  | "usage"
  | "permission"
  | "not-found"
  | "unsupported"
  | "io"
  | "internal";

/**
 * A failure a caller is expected to catch and show: one line that says what
 * failed and why, plus a hint on what to do.
 *
 * @example Tell a missing privilege from other failures
 * ```ts ignore
 * try {
 *   await capture("bash", {});
 * } catch (e) {
 *   if (e instanceof EcapError && e.kind === "permission") console.error("run as root");
 *   else throw e;
 * }
 * ```
 */
export class EcapError extends Error {
  /** Broad class of the failure; picks the CLI's exit code. */
  readonly kind: EcapErrorKind;
  /** errno name ("ENOENT") when the cause is a system call. */
  readonly code?: string;
  /** What the user can do about it. */
  readonly hint?: string;
  /** Long diagnostics (e.g. the verifier log), shown with --verbose. */
  readonly detail?: string;

  constructor(
    message: string,
    opts: {
      kind?: EcapErrorKind;
      code?: string;
      hint?: string;
      detail?: string;
      cause?: unknown;
    } = {},
  ) {
    super(message, { cause: opts.cause });
    this.name = "EcapError";
    this.kind = opts.kind ?? "internal";
    this.code = opts.code;
    this.hint = opts.hint;
    this.detail = opts.detail;
  }
}

/** The exit code the CLI uses for each kind of failure (documented in README). */
export const EXIT_CODES: Record<EcapErrorKind, number> = {
  usage: 2,
  permission: 3,
  "not-found": 4,
  unsupported: 5,
  io: 6,
  internal: 1,
};
