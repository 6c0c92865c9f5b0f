import assert from "node:assert/strict";
import {
  findProcessesMapping,
  formatDev,
  hostPath,
  listPids,
  mappedFiles,
  MAX_SYMLINKS,
  parseMaps,
  processInfo,
  ProcMapsError,
  resolveInRoot,
} from "../../lib/binary/proc_maps.ts";
import { EcapError } from "../../lib/base/errors.ts";
import { mulberry32 } from "../_random.ts";

const SYNTHETIC = [
  "55d0c0a00000-55d0c0a02000 r--p 00000000 fe:00 260131                     /usr/bin/cat",
  "55d0c0a02000-55d0c0a07000 r-xp 00002000 fe:00 260131                     /usr/bin/cat",
  "55d0c1e4b000-55d0c1e6c000 rw-p 00000000 00:00 0                          [heap]",
  "7f0aa3622000-7f0aa36e6000 rw-p 00000000 00:00 0 ",
  "7f0aa3700000-7f0aa3710000 r-xp 00010000 08:01 42                         " +
  "/opt/my app/lib ssl.so.3 (deleted)",
  "7f0aa3710000-7f0aa3711000 rw-s 00000000 00:01 7                          /memfd:buf (deleted)",
  "7f0aa3711000-7f0aa3712000 r--p 00000000 103:02 9                         /tmp/new\\012line",
  "ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]",
  "",
].join("\n");

/** The real path of the running deno binary, as maps shows it. */
const DENO_EXE = Deno.realPathSync(Deno.execPath());

/** Spawns a long sleep that the test must kill. */
function sleeper(): Deno.ChildProcess {
  return new Deno.Command("/usr/bin/sleep", { args: ["30"], stdout: "null", stderr: "null" })
    .spawn();
}

async function stop(child: Deno.ChildProcess): Promise<void> {
  child.kill("SIGKILL");
  await child.status;
}

/** Waits until `pid` has exec'd into `exe` (spawn returns before execve). */
async function waitForExe(pid: number, exe: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const files = await mappedFiles(pid).catch(() => []);
    // exec maps the file before it lays out argv: wait for both
    const argv = await Deno.readFile(`/proc/${pid}/cmdline`).catch(() => new Uint8Array());
    if (files.some((f) => f.path === exe) && argv.length > 0) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`pid ${pid} never mapped ${exe}`);
}

Deno.test("parseMaps reads every field of synthetic lines", () => {
  const maps = parseMaps(SYNTHETIC);
  assert.equal(maps.length, 8);
  assert.deepEqual(maps[1], {
    start: 0x55d0c0a02000n,
    end: 0x55d0c0a07000n,
    perms: "r-xp",
    offset: 0x2000,
    dev: "fe:00",
    inode: 260131,
    path: "/usr/bin/cat",
    deleted: false,
  });
  assert.equal(maps[2].path, "[heap]");
  assert.equal(maps[3].path, "");
  assert.equal(maps[3].inode, 0);
  assert.equal(maps[4].path, "/opt/my app/lib ssl.so.3");
  assert.equal(maps[4].deleted, true);
  assert.equal(maps[5].perms, "rw-s");
  assert.equal(maps[5].path, "/memfd:buf");
  assert.equal(maps[6].dev, "103:02");
  assert.equal(maps[6].path, "/tmp/new\nline");
  // Above 2^53: exact only because addresses are bigints.
  assert.equal(maps[7].start, 0xffffffffff600000n);
  assert.deepEqual(parseMaps(""), []);
});

Deno.test("parseMaps rejects text that is not maps with ProcMapsError", () => {
  for (
    const bad of [
      "hello",
      "1000-2000 r-xp 0 fe:00",
      "1000-2000 rwxq 00000000 fe:00 1 /x",
      "1000-2000 r-xp 00000000 fe00 1 /x",
      "zz-2000 r-xp 00000000 fe:00 1 /x",
    ]
  ) {
    assert.throws(() => parseMaps(`${SYNTHETIC}${bad}\n`), ProcMapsError, bad);
  }
});

Deno.test("parseMaps reads this process's own maps", async () => {
  const maps = parseMaps(await Deno.readTextFile(`/proc/${Deno.pid}/maps`));
  assert.ok(maps.length > 10);
  for (let i = 0; i < maps.length; i++) {
    assert.ok(maps[i].start < maps[i].end);
    if (i > 0) assert.ok(maps[i - 1].end <= maps[i].start, "maps are sorted and disjoint");
  }
  const exe = maps.filter((m) => m.path === DENO_EXE);
  assert.ok(exe.some((m) => m.perms[2] === "x"), "deno's own text is mapped executable");
  const info = await Deno.stat(DENO_EXE);
  assert.equal(exe[0].inode, info.ino);
  assert.equal(exe[0].dev, formatDev(info.dev!));
});

Deno.test("mappedFiles lists executable files once, or all with {all: true}", async () => {
  const exec = await mappedFiles(Deno.pid);
  const all = await mappedFiles(Deno.pid, { all: true });
  assert.equal(exec.filter((f) => f.path === DENO_EXE).length, 1);
  assert.ok(exec.some((f) => f.path.includes("/libc.so")));
  assert.ok(all.length >= exec.length);
  for (const f of exec) assert.ok(all.some((a) => a.inode === f.inode && a.path === f.path));
  assert.ok(all.every((f) => f.path.startsWith("/") && f.inode !== 0));
  // map_files opens the mapped file itself (root only).
  const deno = exec.find((f) => f.path === DENO_EXE)!;
  assert.match(deno.mapFile, new RegExp(`^/proc/${Deno.pid}/map_files/[0-9a-f]+-[0-9a-f]+$`));
  assert.equal((await Deno.stat(deno.mapFile)).ino, deno.inode);
});

Deno.test("mappedFiles and processInfo report a vanished pid as not-found", async () => {
  const child = new Deno.Command("true").spawn();
  await child.status;
  for (const call of [() => mappedFiles(child.pid), () => processInfo(child.pid)]) {
    await assert.rejects(call(), (e: unknown) => {
      assert.ok(e instanceof EcapError);
      assert.equal(e.kind, "not-found");
      assert.equal(e.message, `No process with pid ${child.pid}`);
      return true;
    });
  }
});

Deno.test("listPids includes this process and init", async () => {
  const pids = await listPids();
  assert.ok(pids.includes(Deno.pid));
  assert.ok(pids.includes(1));
  assert.deepEqual(pids, [...pids].sort((a, b) => a - b));
});

Deno.test("processInfo describes this process and a child", async () => {
  const self = await processInfo(Deno.pid);
  assert.equal(self.pid, Deno.pid);
  assert.equal(self.exe, DENO_EXE);
  assert.equal(self.uid, Deno.uid());
  assert.ok(self.cmdline.length > 1);
  assert.ok(self.cmdline.includes("test"));
  const cgroupFile = await Deno.readTextFile("/proc/self/cgroup");
  assert.equal(self.cgroup, /^0::(.*)$/m.exec(cgroupFile)?.[1]);

  const child = sleeper();
  try {
    const sleepExe = Deno.realPathSync("/usr/bin/sleep");
    await waitForExe(child.pid, sleepExe);
    const info = await processInfo(child.pid);
    assert.equal(info.comm, "sleep");
    assert.deepEqual(info.cmdline, ["/usr/bin/sleep", "30"]);
    assert.equal(info.exe, sleepExe);
  } finally {
    await stop(child);
  }
});

Deno.test("resolveInRoot follows symlinks inside the root and never escapes", async () => {
  const root = await Deno.makeTempDir({ prefix: "ecap_root_" });
  try {
    const at = (p: string) => `${root}${p}`;
    await Deno.mkdir(at("/etc"));
    await Deno.mkdir(at("/usr/lib"), { recursive: true });
    await Deno.writeTextFile(at("/etc/passwd"), "fake\n");
    await Deno.writeTextFile(at("/usr/lib/libssl.so.3"), "lib\n");
    await Deno.symlink("usr/lib", at("/lib"));
    await Deno.symlink("libssl.so.3", at("/usr/lib/libssl.so"));
    await Deno.symlink("/usr/lib/libssl.so", at("/abs"));
    await Deno.symlink("../../etc/passwd", at("/escape"));
    await Deno.symlink("../../../../../../../etc", at("/usr/lib/up"));
    await Deno.symlink("/../../..", at("/rootdots"));
    await Deno.symlink("loop2", at("/loop1"));
    await Deno.symlink("loop1", at("/loop2"));
    await Deno.symlink("/nowhere", at("/dangling"));
    // A chain of exactly MAX_SYMLINKS links resolves; one more does not.
    for (let i = 1; i <= MAX_SYMLINKS + 1; i++) {
      await Deno.symlink(i === 1 ? "/etc/passwd" : `/chain${i - 1}`, at(`/chain${i}`));
    }

    const cases: [string, string | undefined][] = [
      ["/etc/passwd", "/etc/passwd"],
      ["/", ""],
      ["/lib/libssl.so", "/usr/lib/libssl.so.3"],
      ["/abs", "/usr/lib/libssl.so.3"],
      ["/escape", "/etc/passwd"],
      ["/../../../etc/passwd", "/etc/passwd"],
      ["/usr/lib/up/passwd", "/etc/passwd"],
      ["/rootdots/etc/passwd", "/etc/passwd"],
      // `..` after a symlink applies to its target, as in the kernel: lib/.. is /usr.
      ["lib/./../lib/libssl.so.3", "/usr/lib/libssl.so.3"],
      ["lib/../../etc/passwd", "/etc/passwd"],
      [`/chain${MAX_SYMLINKS}`, "/etc/passwd"],
      [`/chain${MAX_SYMLINKS + 1}`, undefined],
      ["/loop1", undefined],
      ["/dangling", undefined],
      ["/missing", undefined],
      ["/etc/passwd/x", undefined],
    ];
    for (const [path, want] of cases) {
      const got = await resolveInRoot(root, path);
      assert.equal(got, want === undefined ? undefined : root + want, path);
    }
    assert.equal(await Deno.readTextFile((await resolveInRoot(root, "/escape"))!), "fake\n");
    // A trailing slash on the root changes nothing.
    assert.equal(await resolveInRoot(`${root}/`, "/abs"), at("/usr/lib/libssl.so.3"));
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("hostPath opens files through /proc/PID/root", async () => {
  const path = await hostPath(Deno.pid, DENO_EXE);
  assert.equal(path, `/proc/${Deno.pid}/root${DENO_EXE}`);
  assert.equal((await Deno.stat(path!)).ino, (await Deno.stat(DENO_EXE)).ino);
  // /lib is a symlink to usr/lib on merged-/usr systems; it resolves inside the root.
  const libc = await hostPath(Deno.pid, "/lib/x86_64-linux-gnu/libc.so.6");
  if (libc !== undefined) assert.ok(libc.startsWith(`/proc/${Deno.pid}/root/`));
  assert.equal(await hostPath(Deno.pid, "/nonexistent/file"), undefined);
});

Deno.test("findProcessesMapping groups processes by mapped file", async () => {
  const sleepExe = Deno.realPathSync("/usr/bin/sleep");
  const children = [sleeper(), sleeper()];
  try {
    for (const c of children) await waitForExe(c.pid, sleepExe);
    const found = await findProcessesMapping((p) => p === sleepExe || p === DENO_EXE);
    const sleepEntries = [...found.values()].filter((v) => v.path === sleepExe);
    assert.equal(sleepEntries.length, 1, "one entry per (dev, inode)");
    for (const c of children) assert.ok(sleepEntries[0].pids.includes(c.pid));
    const [key, deno] = [...found].find(([, v]) => v.path === DENO_EXE)!;
    assert.ok(deno.pids.includes(Deno.pid));
    // keyed by a host path: the path itself, reachable from this root
    assert.equal(key, DENO_EXE);
    assert.equal((await Deno.stat(key)).ino, deno.inode);
  } finally {
    for (const c of children) await stop(c);
  }
});

Deno.test("formatDev matches the kernel's major:minor", () => {
  assert.equal(formatDev(0xfe00), "fe:00");
  assert.equal(formatDev(0x801), "08:01");
  assert.equal(formatDev(0x10302), "103:02");
  // glibc keeps high minor bits above bit 12.
  assert.equal(formatDev(0x12345678), "456:12378");
});

Deno.test("fuzz: parseMaps only ever throws ProcMapsError", async () => {
  const real = await Deno.readTextFile(`/proc/${Deno.pid}/maps`);
  const seeds = [SYNTHETIC, real.slice(0, 8192)];
  const alphabet = "0123456789abcdef-:/ rwxps()\\\n\0\u00e9[]";
  const rand = mulberry32(0xec4b);
  const int = (n: number) => Math.floor(rand() * n);
  const started = performance.now();
  let parsed = 0;
  for (let i = 0; i < 2000; i++) {
    const chars = [...seeds[i % seeds.length]];
    for (let n = 1 + int(3); n > 0; n--) {
      const at = int(chars.length);
      const c = alphabet[int(alphabet.length)];
      switch (int(4)) {
        case 0:
          chars[at] = c;
          break;
        case 1:
          chars.splice(at, 0, c.repeat(1 + int(20)));
          break;
        case 2:
          chars.splice(at, 1 + int(10));
          break;
        default:
          chars.length = at;
      }
    }
    try {
      for (const m of parseMaps(chars.join(""))) {
        assert.equal(typeof m.start, "bigint");
        assert.ok(Number.isFinite(m.inode) && Number.isFinite(m.offset));
      }
      parsed++;
    } catch (e) {
      if (!(e instanceof ProcMapsError)) throw new Error(`iteration ${i}: ${e}`, { cause: e });
    }
  }
  assert.ok(parsed > 0, "some mutations still parse");
  assert.ok(performance.now() - started < 5000, "fuzzing took too long");
});
