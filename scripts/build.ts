/**
 * Builds ecap: vmlinux.h from the running kernel's BTF, one BPF object per
 * kern/*.bpf.c, the libbpf shim, the man page build/ecap.1, and (unless
 * --assets) the single `ecap` binary through `deno compile`, which embeds
 * the objects and the shim.
 *
 *   deno run -A scripts/build.ts [--assets] [--quiet]
 *
 * Steps are skipped when their outputs are newer than their inputs.
 * ECAP_DEPS names the static PIC libbpf/libelf/zlib (scripts/bootstrap.sh);
 * DENORT_BIN, if set, is the runtime `deno compile` packages.
 * @module
 */
import { parseArgs } from "node:util";
import { V8_FLAGS_ARG } from "../lib/core/v8_flags.ts";

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const BUILD = `${ROOT}/build`;
const HOME = Deno.env.get("HOME") ?? "/root";
const DEPS = Deno.env.get("ECAP_DEPS") ?? `${HOME}/.cache/ecap/deps-v1`;
const ARCH: Record<string, string> = { x86_64: "x86", aarch64: "arm64" };

const { values: flags } = parseArgs({
  options: { assets: { type: "boolean" }, quiet: { type: "boolean" } },
});

function say(msg: string) {
  if (!flags.quiet) console.error(`build: ${msg}`);
}

function die(msg: string): never {
  console.error(`build: ${msg}`);
  Deno.exit(1);
}

async function mtime(path: string): Promise<number> {
  try {
    return (await Deno.stat(path)).mtime?.getTime() ?? 0;
  } catch {
    return 0;
  }
}

/** True when out is missing or older than any input. */
async function stale(out: string, inputs: string[]): Promise<boolean> {
  const built = await mtime(out);
  if (built === 0) return true;
  for (const input of inputs) if (await mtime(input) > built) return true;
  return false;
}

async function run(cmd: string, args: string[], opts: { stdout?: string } = {}) {
  let child;
  try {
    child = new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).spawn();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      die(`${cmd} not found: run scripts/bootstrap.sh (or ./run) to install the toolchain`);
    }
    throw e;
  }
  const out = await child.output();
  if (!out.success) {
    const err = new TextDecoder().decode(out.stderr).trim();
    die(`${cmd} ${args.join(" ")} failed:\n${err}`);
  }
  if (opts.stdout) await Deno.writeFile(opts.stdout, out.stdout);
  return out;
}

async function listFiles(dir: string, suffix: string): Promise<string[]> {
  const files: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    if (e.isFile && e.name.endsWith(suffix)) files.push(`${dir}/${e.name}`);
  }
  return files.sort();
}

async function buildVmlinux(): Promise<string> {
  const out = `${BUILD}/vmlinux.h`;
  const btf = "/sys/kernel/btf/vmlinux";
  if (await mtime(btf) === 0) {
    die(`${btf} not found: the kernel has no BTF (CONFIG_DEBUG_INFO_BTF)`);
  }
  if (!await stale(out, [btf])) return out;
  say("vmlinux.h from the kernel's BTF");
  await run("bpftool", ["btf", "dump", "file", btf, "format", "c"], { stdout: out });
  return out;
}

async function buildObjects(vmlinux: string) {
  const arch = ARCH[Deno.build.arch];
  if (!arch) die(`unsupported architecture ${Deno.build.arch}`);
  const headers = [vmlinux, ...await listFiles(`${ROOT}/kern`, ".h")];
  for (const src of await listFiles(`${ROOT}/kern`, ".bpf.c")) {
    const name = src.slice(src.lastIndexOf("/") + 1).replace(/\.c$/, ".o");
    const out = `${BUILD}/${name}`;
    if (!await stale(out, [src, ...headers])) continue;
    say(`kern/${name}`);
    await run("clang-19", [
      "-g",
      "-O2",
      "-target",
      "bpf",
      `-D__TARGET_ARCH_${arch}`,
      "-Wall",
      "-Werror",
      `-I${BUILD}`,
      `-I${ROOT}/kern`,
      `-I${DEPS}/include`,
      "-c",
      src,
      "-o",
      out,
    ]);
    // DWARF is only needed to produce BTF; the object shrinks ~20x without it.
    await run("llvm-strip-19", ["-g", out]);
  }
}

/** ffi/guardian.c: freestanding, a few KiB, embedded in libecap.so. */
async function buildGuardian(): Promise<string> {
  const out = `${BUILD}/ecap-guardian`;
  const src = `${ROOT}/ffi/guardian.c`;
  if (!await stale(out, [src])) return out;
  say("ffi/guardian.c");
  await run("gcc", [
    "-static",
    "-nostdlib",
    "-ffreestanding",
    "-fno-stack-protector",
    "-fno-asynchronous-unwind-tables",
    "-fno-pie",
    "-no-pie",
    "-Os",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-Wl,--build-id=none",
    "-s",
    src,
    "-o",
    out,
  ]);
  return out;
}

async function buildShim() {
  const out = `${BUILD}/libecap.so`;
  const guardian = await buildGuardian();
  const sources = ["ecap.c", "kernel_btf.c", "packet_filter.c", "pcap_compile.c", "ring_reader.c"]
    .map((f) => `${ROOT}/ffi/${f}`);
  const headers = ["ecap.h", "kernel_btf.h", "packet_filter.h", "ring_reader.h"].map((f) =>
    `${ROOT}/ffi/${f}`
  );
  const src = [...sources, ...headers, guardian];
  const libs = ["libbpf.a", "libelf.a", "libz.a", "libpcap.a"].map((l) => `${DEPS}/lib/${l}`);
  const missing = [];
  for (const lib of libs) if (await mtime(lib) === 0) missing.push(lib);
  // A shim built from these sources does not need the libraries again: a
  // user with another HOME (no cache) gets the capture's own messages.
  if (missing.length > 0 && !await stale(out, src)) return;
  if (missing.length > 0) {
    die(
      `${
        missing[0]
      } not found: run scripts/bootstrap.sh to build libbpf and libpcap static and PIC`,
    );
  }
  if (!await stale(out, [...src, ...libs])) return;
  say("ffi/libecap.so (libbpf and libpcap linked in statically)");
  await run("gcc", [
    "-shared",
    "-fPIC",
    "-fvisibility=hidden",
    "-O2",
    "-g",
    "-Wall",
    "-Wextra",
    "-Wno-unused-parameter",
    "-Werror",
    `-I${DEPS}/include`,
    `-DGUARDIAN_ELF="${guardian}"`,
    ...sources,
    ...libs,
    "-lpthread",
    // libbpf's own calls: loads running together share one parse (kernel_btf.c)
    "-Wl,--wrap=btf__load_vmlinux_btf",
    "-Wl,--exclude-libs,ALL",
    "-Wl,-z,noexecstack",
    "-o",
    out,
  ]);
  await run("strip", ["--strip-unneeded", out]);
}

/** build/ecap.1 from the command line's tables; written only when its text changes. */
async function buildManPage() {
  // a process of its own: the modules embed the objects this one has just built
  const out = `${BUILD}/ecap.1`;
  const res = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${ROOT}/scripts/manpage.ts`, out],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!res.success) die(`the man page: ${new TextDecoder().decode(res.stderr).trim()}`);
  if (new TextDecoder().decode(res.stdout).includes("changed")) say("ecap.1 (man page)");
}

async function compileBinary() {
  const out = `${BUILD}/ecap`;
  say("ecap binary (deno compile)");
  const env: Record<string, string> = {};
  const denort = Deno.env.get("DENORT_BIN");
  if (denort) env.DENORT_BIN = denort;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["compile", "-A", V8_FLAGS_ARG, "--no-check", "--output", out, `${ROOT}/cli.ts`],
    env: { ...env, NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const res = await child.output();
  if (!res.success) {
    // deno's error is a cause chain: the deepest cause line says why
    const lines = new TextDecoder().decode(res.stderr).split("\n");
    const causes = lines.map((l) => /^\s+\d+: (.+)$/.exec(l)?.[1]).filter((l) =>
      l && l !== "<unknown>"
    );
    const err = causes.find((l) => l!.includes("error")) ?? lines.find((l) =>
      l.startsWith("error")
    ) ?? "failed";
    die(
      `deno compile could not make ${out} (${err}); the other artifacts are in ${BUILD}: ` +
        "set DENORT_BIN to a denort binary where Deno cannot download it",
    );
  }
  say(`wrote ${out}`);
}

await Deno.mkdir(BUILD, { recursive: true });
const vmlinux = await buildVmlinux();
await buildObjects(vmlinux);
await buildShim();
await buildManPage();
if (!flags.assets) await compileBinary();
