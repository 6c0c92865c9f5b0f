/**
 * ecap tls against processes with a root of their own: a chroot, and a mount
 * namespace that pivot_root'ed into it (a container's shape), each running
 * OpenSSL 3.5 from Debian trixie (the host has 3.0), found whether it was
 * running before ecap started or started after. The kernel names their files
 * differently (from ecap's root for the chroot, from the namespace's root
 * for the container), and the version, hence the key layout, must be read
 * from the library the process maps, never the host's.
 * @module
 */
import assert from "node:assert/strict";
import { bpfTest, EcapRun, sh, waitFor } from "./_helpers.ts";
import { Nginx } from "./_nginx.ts";
import { httpRequestUris, stopAfterHandshakes, TsharkCapture } from "./_tshark.ts";

const HOME = Deno.env.get("HOME") ?? "/root";
const RELEASES = Deno.env.get("ECAP_OPENSSL_RELEASES") ?? `${HOME}/.cache/ecap/openssl-releases-v1`;
const LIB = "usr/lib/x86_64-linux-gnu";
const CLIENT_C = new URL("./fixtures/tls_client.c", import.meta.url).pathname;

/** A root holding OpenSSL 3.5, trixie's glibc and the test client at /client. */
async function makeRoot(): Promise<string> {
  const from = `${RELEASES}/3.5/${LIB}`;
  await Deno.stat(`${from}/libssl.so.3`).catch(() => {
    throw new Error(`${from}/libssl.so.3 is missing: run scripts/bootstrap.sh --test`);
  });
  const root = await Deno.makeTempDir({ prefix: "ecap-root-" });
  await Deno.chmod(root, 0o755);
  await Deno.mkdir(`${root}/${LIB}`, { recursive: true });
  await Deno.mkdir(`${root}/lib64`);
  await Deno.mkdir(`${root}/old`); // pivot_root puts the host here
  for (const f of ["ld-linux-x86-64.so.2", "libc.so.6", "libssl.so.3", "libcrypto.so.3"]) {
    await Deno.copyFile(`${from}/${f}`, `${root}/${LIB}/${f}`);
  }
  // libcrypto's own needs: bookworm's run on trixie's glibc
  for (const f of ["libz.so.1", "libzstd.so.1"]) {
    await Deno.copyFile(await Deno.realPath(`/${LIB}/${f}`), `${root}/${LIB}/${f}`);
  }
  await Deno.symlink(`../${LIB}/ld-linux-x86-64.so.2`, `${root}/lib64/ld-linux-x86-64.so.2`);
  const cc = await sh("gcc", [
    "-O1",
    "-o",
    `${root}/client`,
    CLIENT_C,
    `-L${from}`,
    "-l:libssl.so.3",
    "-l:libcrypto.so.3",
    "-Wl,--allow-shlib-undefined", // trixie's glibc symbols, found in the root at run time
  ]);
  assert.equal(cc.code, 0, cc.stderr);
  return root;
}

type Jail = "chroot" | "pivot_root";

/** argv that runs /client in `root` the way `jail` says. */
function jailed(jail: Jail, root: string, args: string[]): string[] {
  if (jail === "chroot") return ["chroot", root, "/client", ...args];
  const inner = `mount --make-rprivate / && mount --bind ${root} ${root} && cd ${root} && ` +
    `pivot_root . old && exec /client ${args.join(" ")}`;
  return ["unshare", "-m", "sh", "-c", inner];
}

/** The client, started and waiting for a line on stdin before it connects. */
class WaitingClient implements AsyncDisposable {
  #child: Deno.ChildProcess;
  #out = "";
  #done: Promise<number>;

  private constructor(child: Deno.ChildProcess) {
    this.#child = child;
    const pump = async () => {
      const d = new TextDecoder();
      for await (const chunk of child.stdout) this.#out += d.decode(chunk, { stream: true });
    };
    this.#done = Promise.all([pump(), child.status]).then(([, s]) => s.code);
  }

  static async start(argv: string[]): Promise<WaitingClient> {
    const child = new Deno.Command(argv[0], {
      args: argv.slice(1),
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const c = new WaitingClient(child);
    await waitFor(() => c.#out.startsWith("ready\n"), "the client to start");
    return c;
  }

  /** The client's own pid (the chroot or unshare+sh it runs under exec'd into it). */
  get pid(): number {
    return this.#child.pid;
  }

  /** Lets it connect; resolves with what it printed once it exits. */
  async go(): Promise<string> {
    const w = this.#child.stdin.getWriter();
    await w.write(new TextEncoder().encode("go\n"));
    await w.close();
    assert.equal(await this.#done, 0, "client exit status");
    return this.#out;
  }

  async [Symbol.asyncDispose]() {
    try {
      this.#child.kill("SIGKILL");
    } catch { /* gone */ }
    await this.#done.catch(() => {});
  }
}

function requestText(run: EcapRun, pid: number): string {
  return run.json().filter((e) => e.pid === pid && e.direction === "write")
    .map((e) => atob(e.data as string)).join("");
}

for (const jail of ["chroot", "pivot_root"] as const) {
  for (const order of ["before", "after"] as const) {
    bpfTest(`ecap tls captures a ${jail} process started ${order} it`, async () => {
      const root = await makeRoot();
      try {
        await using nginx = await Nginx.start({ "j.txt": "jailed\n" });
        const path = `/j.txt?${jail}-${order}-${crypto.randomUUID()}`;
        const argv = jailed(jail, root, [String(nginx.port), path, "13", "wait"]);
        let client: WaitingClient | undefined;
        if (order === "before") client = await WaitingClient.start(argv);
        await using run = await EcapRun.start(["tls", "--calls", "--json"]);
        client ??= await WaitingClient.start(argv);
        await using _ = client;
        // the version is the root's library's, not the host's 3.0
        if (order === "before") assert.match(run.stderr, /libssl\.so\.3: OpenSSL 3\.5\.\d+/);
        assert.match(await client.go(), /jailed/);
        await waitFor(
          () => requestText(run, client.pid).includes(`GET ${path} HTTP/1.1`),
          "the jailed client's request",
        );
        assert.equal(await run.stop(), 0);
        assert.equal(run.stats()?.lost, 0);
      } finally {
        await Deno.remove(root, { recursive: true });
      }
    });
  }
}

bpfTest("ecap tls --list-targets lists a chroot's libssl, with its version", async () => {
  const root = await makeRoot();
  try {
    await using nginx = await Nginx.start();
    await using client = await WaitingClient.start(
      jailed("chroot", root, [String(nginx.port), "/", "13", "wait"]),
    );
    const r = await sh(Deno.execPath(), [
      "run",
      "-A",
      new URL("../cli.ts", import.meta.url).pathname,
      "tls",
      "--list-targets",
      "--json",
    ]);
    assert.equal(r.code, 0, r.stderr);
    const targets = r.stdout.trim().split("\n").map((l) =>
      (JSON.parse(l) as { target: { path: string; kind: string; processes: { pid: number }[] } })
        .target
    );
    const mine = targets.find((t) => t.processes.some((p) => p.pid === client.pid));
    assert.ok(mine, r.stdout);
    assert.equal(mine.path, `${root}/${LIB}/libssl.so.3`);
    assert.match(mine.kind, /OpenSSL 3\.5\.\d+/);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

for (const jail of ["chroot", "pivot_root"] as const) {
  bpfTest(`ecap tls -m keylog: a ${jail}'s OpenSSL 3.5 keys decrypt tshark's capture`, async () => {
    const root = await makeRoot();
    const dir = await Deno.makeTempDir({ prefix: "ecap-rootkeys-" });
    try {
      await using nginx = await Nginx.start({ "k.txt": "jailed keys\n" });
      const keys = `${dir}/keys.log`;
      const argv = (path: string) => jailed(jail, root, [String(nginx.port), path, "13", "wait"]);
      // one client running before ecap, one started after; only theirs are
      // probed (--comm), so nginx's copy of the same keys cannot stand in
      await using early = await WaitingClient.start(argv("/k.txt?early"));
      await using run = await EcapRun.start([
        "tls",
        "--calls",
        "-m",
        "keylog",
        "-k",
        keys,
        "--comm",
        "client",
      ]);
      // the early client's library: the host path of the root's copy
      const said = run.stderr.split("\n").filter((l) =>
        new RegExp(`^ecap: (${root}|/proc/\\d+/root)/${LIB}/libssl\\.so\\.3: `).test(l)
      );
      assert.equal(said.length, 1, run.stderr);
      assert.match(said[0], /: OpenSSL 3\.5\.\d+; keys from the 3\.5 layout$/);
      await using cap = await TsharkCapture.start(`${dir}/cap.pcapng`, nginx.port);
      await early.go();
      await using late = await WaitingClient.start(argv("/k.txt?late"));
      await late.go();
      await stopAfterHandshakes(keys, cap, 2);
      assert.equal(await run.stop(), 0);
      assert.match(run.stderr, /2 handshakes/);
      const uris = await httpRequestUris(`${dir}/cap.pcapng`, keys);
      assert.deepEqual(uris.sort(), ["/k.txt?early", "/k.txt?late"]);
    } finally {
      await Deno.remove(dir, { recursive: true });
      await Deno.remove(root, { recursive: true });
    }
  });
}
