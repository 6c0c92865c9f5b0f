/**
 * A throwaway PostgreSQL 15 server for the postgres capture tests: its own
 * data directory and unix socket in a temp dir, no TCP, run as the
 * `postgres` user, stopped and removed on dispose even if a test failed.
 * @module
 */
import { sh } from "./_helpers.ts";

/** Debian's server and tools (not /usr/local/bin, which may be another build). */
export const PG_BIN = "/usr/lib/postgresql/15/bin";
/** The server binary the tests probe. */
export const PG_SERVER = `${PG_BIN}/postgres`;

const PORT = 5432; // the socket lives in a directory of its own

/** Runs a command from / (the postgres user cannot read our cwd); throws on failure. */
async function run(cmd: string, args: string[], what: string) {
  const out = await new Deno.Command(cmd, { args, cwd: "/", stdout: "piped", stderr: "piped" })
    .output();
  const text = new TextDecoder();
  if (out.code !== 0) {
    throw new Error(`${what} failed (${out.code}): ${text.decode(out.stderr)}`);
  }
  return text.decode(out.stdout);
}

/** A running server with a login role and a database of its own. */
export class PgServer implements AsyncDisposable {
  /** Directory holding the data directory, the log and the socket. */
  readonly dir: string;
  /** A role made for the test, and its database. */
  readonly user: string;
  readonly database: string;
  #stopped = false;

  private constructor(dir: string, user: string, database: string) {
    this.dir = dir;
    this.user = user;
    this.database = database;
  }

  get data(): string {
    return `${this.dir}/data`;
  }

  /**
   * initdb, pg_ctl start, then CREATE ROLE and DATABASE. With `copy`, the
   * server runs from a copy of Debian's binary (another inode) in a tree
   * laid out like /usr, so it finds its share and lib directories.
   */
  static async start(opts: { copy?: boolean } = {}): Promise<PgServer> {
    const dir = await Deno.makeTempDir({ prefix: "ecap-pg-" });
    await Deno.chmod(dir, 0o711); // the postgres user reaches its files below
    await run("chown", ["postgres:postgres", dir], "chown");
    let serverArgs: string[] = [];
    if (opts.copy) {
      const bin = `${dir}/usr/lib/postgresql/15/bin`;
      await Deno.mkdir(bin, { recursive: true, mode: 0o755 });
      await Deno.copyFile(PG_SERVER, `${bin}/postgres`);
      await Deno.chmod(`${bin}/postgres`, 0o755);
      await Deno.symlink("/usr/lib/postgresql/15/lib", `${dir}/usr/lib/postgresql/15/lib`);
      await Deno.symlink("/usr/share", `${dir}/usr/share`);
      serverArgs = ["-p", `${bin}/postgres`];
    }
    const tag = `${Deno.pid}_${Math.floor(Math.random() * 1e6)}`;
    const server = new PgServer(dir, `ecap_user_${tag}`, `ecap_db_${tag}`);
    try {
      await server.#asPostgres(`${PG_BIN}/initdb`, [
        "-D",
        server.data,
        "-A",
        "trust",
        "-U",
        "postgres",
        "--no-sync",
      ]);
      await server.#asPostgres(`${PG_BIN}/pg_ctl`, [
        "start",
        ...serverArgs,
        "-w",
        "-D",
        server.data,
        "-l",
        `${dir}/log`,
        "-o",
        `-k ${dir} -p ${PORT} -c listen_addresses='' -c fsync=off`,
      ]);
      await server.psql("postgres", "postgres", [`CREATE ROLE ${server.user} LOGIN`]);
      await server.psql("postgres", "postgres", [
        `CREATE DATABASE ${server.database} OWNER ${server.user}`,
      ]);
    } catch (e) {
      await server[Symbol.asyncDispose]();
      throw e;
    }
    return server;
  }

  #asPostgres(cmd: string, args: string[]) {
    return run("runuser", ["-u", "postgres", "--", cmd, ...args], cmd);
  }

  /** Connection options for libpq clients. */
  get conninfo(): string {
    return `host=${this.dir} port=${PORT} user=${this.user} dbname=${this.database}`;
  }

  /** Runs each of `commands` as one Query message (psql -c), errors allowed. */
  async psql(user: string, database: string, commands: string[]) {
    const args = ["-X", "-q", "-h", this.dir, "-p", String(PORT), "-U", user, "-d", database];
    for (const c of commands) args.push("-c", c);
    return await sh(`${PG_BIN}/psql`, args);
  }

  /** Runs a Python script under /usr/bin/python3 (Debian's psycopg 3); CONNINFO is set. */
  async python(script: string) {
    const out = await new Deno.Command("/usr/bin/python3", {
      args: ["-c", script],
      env: { CONNINFO: this.conninfo },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder();
    return { code: out.code, stdout: text.decode(out.stdout), stderr: text.decode(out.stderr) };
  }

  /** pgbench with a custom script over the given protocol (-M). */
  async pgbench(script: string, mode: "simple" | "extended" | "prepared", transactions: number) {
    const file = `${this.dir}/bench.sql`;
    await Deno.writeTextFile(file, script);
    return await sh(`${PG_BIN}/pgbench`, [
      "-n",
      "-M",
      mode,
      "-f",
      file,
      "-t",
      String(transactions),
      "-h",
      this.dir,
      "-p",
      String(PORT),
      "-U",
      this.user,
      this.database,
    ]);
  }

  /** The postmaster's pid, from postmaster.pid; undefined when not running. */
  async postmasterPid(): Promise<number | undefined> {
    try {
      const pid = Number((await Deno.readTextFile(`${this.data}/postmaster.pid`)).split("\n")[0]);
      return Number.isInteger(pid) && pid > 0 ? pid : undefined;
    } catch {
      return undefined;
    }
  }

  /** Stops the server (fast, then SIGKILL if it hangs) and removes its files. */
  async [Symbol.asyncDispose]() {
    if (this.#stopped) return;
    this.#stopped = true;
    const pid = await this.postmasterPid();
    if (pid !== undefined) {
      try {
        await this.#asPostgres(`${PG_BIN}/pg_ctl`, ["stop", "-w", "-m", "fast", "-D", this.data]);
      } catch {
        try {
          Deno.kill(pid, "SIGKILL");
        } catch { /* already gone */ }
      }
    }
    await Deno.remove(this.dir, { recursive: true });
  }
}
