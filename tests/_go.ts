/**
 * The Go programs the tests run (tests/fixtures/gotls): built once per run
 * with the system's Go, offline, and a Go HTTPS server to talk to.
 * @module
 */
import assert from "node:assert/strict";
import { waitFor } from "./_helpers.ts";

const FIXTURES = new URL("./fixtures/gotls/", import.meta.url).pathname;
const HOME = Deno.env.get("HOME") ?? "/root";
const GO_CACHE = `${HOME}/.cache/ecap/go`;

/** The programs the tests run, built once per run (Go's cache makes it seconds). */
export interface GoPrograms {
  dir: string;
  server: string;
  client: string;
  /** The client built with -ldflags=-s -w: no symbol table, no DWARF. */
  strippedClient: string;
}

let built: Promise<GoPrograms> | undefined;

async function goBuild(src: string, out: string, ldflags?: string) {
  const env = {
    PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
    HOME,
    GOPATH: `${GO_CACHE}/path`,
    GOCACHE: `${GO_CACHE}/build`,
    GOTOOLCHAIN: "local",
    GOPROXY: "off",
    GO111MODULE: "off",
    GOFLAGS: "",
    CGO_ENABLED: "0",
  };
  const args = ["build", "-o", out, ...(ldflags ? [`-ldflags=${ldflags}`] : []), src];
  const r = await new Deno.Command("go", { args, env, clearEnv: true }).output();
  if (r.code !== 0) throw new Error(`go ${args.join(" ")}: ${new TextDecoder().decode(r.stderr)}`);
}

export function programs(): Promise<GoPrograms> {
  return built ??= (async () => {
    const dir = await Deno.makeTempDir({ prefix: "ecap-gotls-" });
    await Deno.chmod(dir, 0o755);
    globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));
    const p = {
      dir,
      server: `${dir}/gotls-server`,
      client: `${dir}/gotls-client`,
      strippedClient: `${dir}/gotls-client-s`,
    };
    await goBuild(`${FIXTURES}server.go`, p.server);
    await goBuild(`${FIXTURES}client.go`, p.client);
    await goBuild(`${FIXTURES}client.go`, p.strippedClient, "-s -w");
    return p;
  })();
}

/** The test bodies: byte i is i % 251 (as the Go programs make them). */
export function pattern(n: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = i % 251;
  return b;
}

/** The Go HTTPS server, stopped (and waited for) on dispose. */
export class GoServer implements AsyncDisposable {
  private constructor(readonly child: Deno.ChildProcess, readonly port: number) {}

  static async start(path: string, args: string[] = []): Promise<GoServer> {
    const child = new Deno.Command(path, { args, stdout: "piped", stderr: "null" }).spawn();
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let out = "";
    try {
      await waitFor(async () => {
        const { value, done } = await reader.read();
        if (done) throw new Error(`${path} exited: ${out}`);
        out += value;
        return /listening \d+\n/.test(out);
      }, "the Go server to listen");
    } catch (e) {
      child.kill("SIGKILL");
      await child.status;
      throw e;
    }
    (async () => {
      while (!(await reader.read()).done) { /* keep its pipe drained */ }
    })();
    return new GoServer(child, Number(/listening (\d+)/.exec(out)![1]));
  }

  get pid(): number {
    return this.child.pid;
  }

  url(path: string): string {
    return `https://127.0.0.1:${this.port}${path}`;
  }

  async [Symbol.asyncDispose]() {
    try {
      this.child.kill("SIGKILL");
    } catch { /* gone */ }
    await this.child.status;
  }
}

/** Runs the Go client to its end; returns its pid and output. */
export async function runClient(path: string, args: string[]) {
  const child = new Deno.Command(path, { args, stdout: "piped", stderr: "piped" }).spawn();
  const out = await child.output();
  const d = new TextDecoder();
  assert.equal(out.code, 0, `client ${args.join(" ")}: ${d.decode(out.stderr)}`);
  return { pid: child.pid, stdout: d.decode(out.stdout) };
}
