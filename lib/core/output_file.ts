/**
 * Opens a file that will hold captured data (plaintext, secrets): created
 * 0600, never through a symbolic link, appended to when it exists. A FIFO
 * the user made is written to once its reader has come.
 * @module
 */
import { EcapError } from "../base/errors.ts";

/** FIFOs open for writing (openFifoOutputs), by path: each is taken once. */
const openedFifos = new Map<string, Deno.FsFile>();

/**
 * Opens those of paths that are FIFOs, each once a reader has opened its
 * other end. The wait is on a thread of its own: a signal still ends ecap
 * (nothing has started yet). say() tells the user what ecap waits for.
 */
export async function openFifoOutputs(paths: readonly string[], say: (line: string) => void) {
  for (const path of paths) {
    let st: Deno.FileInfo;
    try {
      st = Deno.lstatSync(path);
    } catch {
      continue;
    }
    if (!st.isFifo || openedFifos.has(path)) continue;
    say(`"${path}" is a FIFO: waiting for a reader to open it (Ctrl-C to stop)`);
    try {
      openedFifos.set(path, await Deno.open(path, { write: true }));
    } catch (e) {
      throw ioError(path, e);
    }
  }
}

/** The FIFO openFifoOutputs opened at path, handed over once. */
function takeFifo(path: string): Deno.FsFile | undefined {
  const f = openedFifos.get(path);
  openedFifos.delete(path);
  return f;
}

/**
 * Opens path for appending captured data. A new file is created 0600 with
 * O_EXCL, which does not follow a link planted in its place; an existing
 * path must be a regular file, not a link.
 *
 * @throws {EcapError} If the path is a link, a directory, or cannot be written.
 */
export function openOutputFile(path: string): Deno.FsFile {
  const fifo = takeFifo(path);
  if (fifo) return fifo;
  const st = checkOutputPath(path);
  try {
    return st
      ? Deno.openSync(path, { append: true })
      : Deno.openSync(path, { write: true, createNew: true, mode: 0o600 });
  } catch (e) {
    throw ioError(path, e);
  }
}

/** Pseudo file systems: a file there keeps nothing written to it. */
const PSEUDO_MOUNTS = ["/proc", "/sys"];

function pseudoMount(dev: number): string | undefined {
  return PSEUDO_MOUNTS.find((m) => {
    try {
      return Deno.statSync(m).dev === dev;
    } catch {
      return false;
    }
  });
}

/**
 * What is at an output path now (undefined: nothing); refuses links,
 * directories, and what is not a regular file (a device, a socket, a file
 * of /proc or /sys; a FIFO not opened by openFifoOutputs), where captured
 * data would go nowhere or block.
 */
function checkOutputPath(path: string): Deno.FileInfo | undefined {
  let st: Deno.FileInfo | undefined;
  try {
    st = Deno.lstatSync(path);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw ioError(path, e);
  }
  if (st?.isSymlink) {
    throw new EcapError(`Refusing to write to "${path}": it is a symbolic link`, {
      kind: "permission",
      hint: "name the file itself, not a link to it",
    });
  }
  if (st?.isDirectory) {
    throw new EcapError(`Cannot write to "${path}": it is a directory`, {
      kind: "io",
      hint: "name a file inside it",
    });
  }
  if (st && !st.isFile) {
    throw new EcapError(
      `Cannot write to "${path}": it is not a regular file (a device, FIFO or socket)`,
      {
        kind: "io",
        hint: "name a regular file or a FIFO, or leave -o out and pipe stdout",
      },
    );
  }
  const mount = st && pseudoMount(st.dev);
  if (mount) {
    throw new EcapError(
      `Cannot write to "${path}": it is in ${mount}, which keeps nothing written`,
      {
        kind: "io",
        hint: "name a regular file",
      },
    );
  }
  return st;
}

/**
 * Opens a file that a run writes anew (a HAR document): created 0600, or
 * an existing regular file emptied, as tcpdump -w does; the same refusals
 * as {@link openOutputFile} (a symbolic link, a directory).
 */
export function openReplacedFile(path: string): Deno.FsFile {
  const fifo = takeFifo(path);
  if (fifo) return fifo;
  const st = checkOutputPath(path);
  try {
    if (!st) return Deno.openSync(path, { write: true, createNew: true, mode: 0o600 });
    const file = Deno.openSync(path, { write: true, truncate: true });
    Deno.chmodSync(path, 0o600); // it holds what processes said in the clear
    return file;
  } catch (e) {
    throw ioError(path, e);
  }
}

/** An I/O failure on path as a one-line EcapError. */
export function ioError(path: string, e: unknown): EcapError {
  const message = (e as Error)?.message ?? String(e);
  if (e instanceof Deno.errors.PermissionDenied) {
    return new EcapError(`Cannot write to "${path}": permission denied`, {
      kind: "permission",
      cause: e,
    });
  }
  if (e instanceof Deno.errors.NotFound) {
    return new EcapError(`Cannot write to "${path}": its directory does not exist`, {
      kind: "not-found",
      cause: e,
    });
  }
  if (e instanceof Deno.errors.AlreadyExists) {
    return new EcapError(`Cannot create "${path}": something appeared there (a link?)`, {
      kind: "permission",
      cause: e,
    });
  }
  return new EcapError(`Cannot write to "${path}": ${message.replace(/ \(os error \d+\)$/, "")}`, {
    kind: "io",
    cause: e,
  });
}
