/**
 * A MariaDB server of its own for a test: a fresh data directory in a
 * temporary directory, reachable only through a unix socket there; root
 * logs in without a password. Disposing stops it and removes its files.
 * @module
 */
import { sh, waitFor } from "./_helpers.ts";

/** A running mariadbd; dispose to stop it and remove its files. */
export class MariaDb implements AsyncDisposable {
  readonly dir: string;
  readonly socket: string;
  #child: Deno.ChildProcess;

  private constructor(dir: string, socket: string, child: Deno.ChildProcess) {
    this.dir = dir;
    this.socket = socket;
    this.#child = child;
  }

  /** The server's pid. */
  get pid(): number {
    return this.#child.pid;
  }

  /**
   * Initialises a data directory and starts mariadbd on it; with `copy`, from
   * a copy of Debian's binary (another inode).
   */
  static async start(opts: { copy?: boolean } = {}): Promise<MariaDb> {
    const dir = await Deno.makeTempDir({ prefix: "ecap-mariadb-" });
    let child: Deno.ChildProcess | undefined;
    try {
      await Deno.chmod(dir, 0o711); // the server runs as mysql
      let binary = "/usr/sbin/mariadbd";
      if (opts.copy) {
        binary = `${dir}/mariadbd`;
        await Deno.copyFile("/usr/sbin/mariadbd", binary);
        await Deno.chmod(binary, 0o755);
      }
      const data = `${dir}/data`;
      const install = await sh("mariadb-install-db", [
        "--no-defaults",
        "--user=mysql",
        `--datadir=${data}`,
        "--auth-root-authentication-method=normal",
        "--skip-test-db",
      ]);
      if (install.code !== 0) {
        throw new Error(`mariadb-install-db failed: ${install.stdout}${install.stderr}`);
      }
      // in the data directory: mysql may create files there, not in dir
      const socket = `${data}/mysqld.sock`;
      child = new Deno.Command(binary, {
        args: [
          "--no-defaults",
          "--user=mysql",
          `--datadir=${data}`,
          `--socket=${socket}`,
          `--pid-file=${data}/mysqld.pid`,
          `--log-error=${dir}/error.log`,
          "--skip-networking",
          "--skip-log-bin",
          "--innodb-buffer-pool-size=16M",
          "--innodb-log-file-size=8M",
          "--innodb-use-native-aio=0",
        ],
        stdin: "null",
        stdout: "null",
        stderr: "null",
      }).spawn();
      const server = new MariaDb(dir, socket, child);
      let exited = false;
      child.status.then(() => exited = true);
      await waitFor(
        async () => {
          if (exited) return true;
          return (await sh("mariadb-admin", [
            "--no-defaults",
            `--socket=${socket}`,
            "-uroot",
            "ping",
          ]))
            .code === 0;
        },
        "mariadbd to answer on its socket",
        60_000,
      );
      if (exited) {
        const log = await Deno.readTextFile(`${dir}/error.log`).catch(() => "");
        throw new Error(`mariadbd exited at start: ${log.slice(-2000)}`);
      }
      return server;
    } catch (e) {
      if (child) await stop(child);
      await Deno.remove(dir, { recursive: true }).catch(() => {});
      throw e;
    }
  }

  /** Runs SQL through the `mariadb` command-line client; throws unless it exits 0. */
  async sql(sql: string, opts: { allowError?: boolean } = {}): Promise<string> {
    const r = await this.client(["-e", sql]);
    if (r.code !== 0 && !opts.allowError) throw new Error(`mariadb failed: ${r.stderr}`);
    return r.stdout;
  }

  /** Runs the `mariadb` client with these arguments (batch mode, as root, on our socket). */
  client(args: string[], stdin?: string) {
    return run("mariadb", [
      "--no-defaults",
      `--socket=${this.socket}`,
      "-uroot",
      "--batch",
      "--skip-column-names",
      ...args,
    ], stdin);
  }

  async [Symbol.asyncDispose]() {
    await stop(this.#child);
    await Deno.remove(this.dir, { recursive: true }).catch(() => {});
  }
}

/** Stops mariadbd: SIGTERM is a clean shutdown; SIGKILL if it takes too long. */
async function stop(child: Deno.ChildProcess) {
  try {
    child.kill("SIGTERM");
  } catch { /* already gone */ }
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch { /* gone */ }
  }, 30_000);
  await child.status;
  clearTimeout(timer);
}

/** Runs a command with optional stdin text; returns its exit code and output. */
export async function run(cmd: string, args: string[], stdin?: string) {
  const child = new Deno.Command(cmd, {
    args,
    stdin: stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  // read while writing: a client answers before it has read all its input
  const output = child.output();
  if (stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(stdin));
    await w.close();
  }
  const out = await output;
  const d = new TextDecoder();
  return { code: out.code, stdout: d.decode(out.stdout), stderr: d.decode(out.stderr) };
}
