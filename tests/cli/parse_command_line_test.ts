import assert from "node:assert/strict";
import { parseCommandLine, type Parsed } from "../../lib/cli/parse_command_line.ts";
import { EcapError } from "../../lib/base/errors.ts";
import type { TlsOptions } from "../../lib/modules/tls.ts";

async function parsed(...argv: string[]): Promise<Parsed> {
  const p = await parseCommandLine(argv);
  assert.ok(typeof p !== "string", `${argv.join(" ")} runs a capture`);
  return p;
}

async function printed(...argv: string[]): Promise<string> {
  const p = await parseCommandLine(argv);
  assert.equal(typeof p, "string", `${argv.join(" ")} prints`);
  return p as string;
}

/** The one line ecap prints for a usage error: `MESSAGE (HINT)`. */
async function usage(...argv: string[]): Promise<string> {
  try {
    await parseCommandLine(argv);
  } catch (e) {
    assert.ok(e instanceof EcapError, String(e));
    assert.equal(e.kind, "usage", e.message);
    const line = `${e.message}${e.hint ? ` (${e.hint})` : ""}`;
    assert.ok(!line.includes("\n"), `one line: ${line}`);
    return line;
  }
  throw new assert.AssertionError({ message: `${argv.join(" ")} was accepted` });
}

Deno.test("parseCommandLine() takes -c N as a count, as tcpdump does", async () => {
  const p = await parsed("bash", "-c", "10");
  assert.equal(p.count, 10);
  assert.equal(p.opts.count, 10);
  assert.equal(p.opts.comm, undefined);
  assert.equal((await parsed("bash", "-c5")).count, 5);
  assert.equal((await parsed("bash", "--count=7")).count, 7);
});

Deno.test("parseCommandLine() filters on a name with --comm only", async () => {
  assert.equal((await parsed("tls", "--comm", "curl")).opts.comm, "curl");
  assert.equal(
    await usage("tls", "-c", "curl"),
    'Invalid -c "curl": expected a positive number of events (--comm curl filters on a process name)',
  );
  for (const bad of ["0", "-3", "1.5", ""]) {
    assert.match(await usage("bash", `--count=${bad}`), /^Invalid -c /);
  }
});

Deno.test("parseCommandLine() takes -w FILE alone as -m pcap and -k FILE as -m keylog", async () => {
  const w = (await parsed("tls", "-w", "out.pcapng")).opts as TlsOptions;
  assert.equal(w.model, "pcap");
  assert.equal(w.pcapFile, "out.pcapng");
  const k = (await parsed("tls", "-k", "keys.log")).opts as TlsOptions;
  assert.equal(k.model, "keylog");
  assert.equal(k.keylogFile, "keys.log");
  assert.equal(((await parsed("gnutls", "-w", "x")).opts as TlsOptions).model, "pcap");
  assert.equal(((await parsed("tls")).opts as TlsOptions).model, "text");
});

Deno.test("parseCommandLine() refuses a file option of another model in one line", async () => {
  assert.equal(
    await usage("tls", "-m", "text", "-w", "x"),
    "-w writes pcapng: it cannot go with -m text",
  );
  assert.equal(
    await usage("tls", "-m", "text", "-k", "x"),
    "-k writes a key log: it cannot go with -m text",
  );
  assert.match(await usage("tls", "-m", "keylog", "-k", "k", "-w", "x"), /^-w and -k pick/);
  assert.match(await usage("tls", "-m", "pcap", "-w", "x", "-k", "k"), /^-w and -k pick/);
  assert.equal(await usage("tls", "-m", "pcap"), "-m pcap needs -w/--pcapfile FILE");
  assert.equal(await usage("tls", "-i", "lo"), "-i goes with -w FILE (pcap), not -m text");
});

Deno.test("parseCommandLine() takes -w - as pcapng on stdout, with nothing else there", async () => {
  const p = await parsed("tls", "-w", "-");
  assert.equal(p.sinkOnStdout, true);
  assert.equal(p.output, undefined);
  assert.equal(
    (await parsed("tls", "-w", "-", "--json", "-o", "events.jsonl")).output,
    "events.jsonl",
  );
  assert.match(await usage("tls", "-w", "-", "-o", "-"), /^-w - and -o - both write to stdout/);
  assert.match(
    await usage("tls", "-w", "-", "--json"),
    /^--json writes to stdout, which -w - takes/,
  );
  assert.match(await usage("tls", "-w", "-", "--list-targets"), /^--list-targets prints to stdout/);
  assert.equal((await parsed("tls", "-w", "x")).sinkOnStdout, false);
  assert.equal((await parsed("bash", "-o", "-")).output, undefined, "-o - is stdout");
});

Deno.test("parseCommandLine() takes -s SNAPLEN with pcap and refuses bad values", async () => {
  assert.equal(((await parsed("tls", "-w", "x", "-s", "128")).opts as TlsOptions).snapLen, 128);
  assert.equal(((await parsed("tls", "-w", "x")).opts as TlsOptions).snapLen, undefined);
  for (const bad of ["0", "-1", "1.5", "abc", "1e3"]) {
    assert.equal(
      await usage("tls", "-w", "x", `--snaplen=${bad}`),
      `Invalid -s "${bad}": expected a positive number of bytes`,
    );
  }
  assert.equal(await usage("tls", "-s", "100"), "-s goes with -w FILE (pcap), not -m text");
});

Deno.test("parseCommandLine() names an unknown option and what was meant", async () => {
  assert.equal(await usage("tls", "--hexx"), "Unknown option --hexx (did you mean --hex?)");
  assert.equal(await usage("bash", "--har", "x"), "Unknown option --har (see ecap bash --help)");
  assert.equal(
    await usage("bash", "--dur", "5"),
    "Unknown option --dur (did you mean --duration?)",
  );
  assert.equal(await usage("bash", "-json"), "Unknown option -json (did you mean --json?)");
  assert.equal(await usage("bash", "-qx"), "Unknown option -x (see ecap bash --help)");
  assert.equal(await usage("--bogus"), "Unknown option --bogus (see ecap --help)");
  assert.equal(await usage("bash", "stray"), "Unexpected argument 'stray' (see ecap bash --help)");
});

Deno.test("parseCommandLine() names an unknown module and what was meant", async () => {
  assert.equal(await usage("tsl"), 'Unknown module "tsl" (did you mean tls?)');
  assert.equal(await usage("bsah", "--help"), 'Unknown module "bsah" (did you mean bash?)');
  assert.match(await usage("xyzzy"), /^Unknown module "xyzzy" \(modules: bash, zsh, tls/);
  assert.match(await usage("--json"), /^Missing module/);
});

Deno.test("parseCommandLine() says what a value is missing or extra", async () => {
  assert.equal(
    await usage("bash", "--duration"),
    "Option --duration needs a value (SECONDS) (see ecap bash --help)",
  );
  assert.equal(
    await usage("bash", "--json=yes"),
    "Option --json takes no value (see ecap bash --help)",
  );
});

Deno.test("parseCommandLine() takes options before or after the module", async () => {
  const before = await parsed("--json", "-p", "1", "bash", "-c", "3");
  const after = await parsed("bash", "--json", "-p", "1", "-c", "3");
  assert.deepEqual(
    [before.spec.name, before.json, before.opts.pids, before.count],
    [after.spec.name, after.json, after.opts.pids, after.count],
  );
  // an option of the module's own, before its name
  assert.equal(((await parsed("-m", "pcap", "tls", "-w", "x")).opts as TlsOptions).model, "pcap");
  assert.equal(await usage("-m", "pcap", "bash"), "Unknown option -m (see ecap bash --help)");
});

Deno.test("parseCommandLine() takes -q, -v and the old -d", async () => {
  const qv = await parsed("bash", "-qv");
  assert.deepEqual([qv.quiet, qv.verbose], [true, true]);
  assert.equal((await parsed("bash", "-d")).verbose, true);
  assert.equal((await parsed("bash", "--verbose")).verbose, true);
  assert.deepEqual([(await parsed("bash")).quiet, (await parsed("bash")).verbose], [false, false]);
});

Deno.test("parseCommandLine() keeps the values that need care: --nice -5, a bare --web", async () => {
  assert.equal((await parsed("bash", "--nice", "-5")).nice, -5);
  assert.equal((await parsed("bash", "--web")).web?.address.port, 7070);
  assert.equal((await parsed("bash", "--web", "8080")).web?.address.port, 8080);
  assert.deepEqual((await parsed("bash", "-p", "1", "-p", "2")).opts.pids, [1, 2]);
});

Deno.test("parseCommandLine() prints --version and --help anywhere", async () => {
  for (const argv of [["--version"], ["tls", "--version"], ["-V"], ["bash", "--bogus", "-V"]]) {
    assert.match(await printed(...argv), /^ecap \d+\.\d+\.\d+$/, argv.join(" "));
  }
  assert.match(await printed("-h"), /^ecap .*\n\nUsage: ecap MODULE/);
  assert.match(await printed(), /^ecap .*\n\nUsage: ecap MODULE/);
  assert.match(await printed("help"), /^ecap .*\n\nUsage: ecap MODULE/);
  for (
    const argv of [["tls", "-h"], ["--help", "tls"], ["help", "tls"], ["tls", "--bogus", "--help"]]
  ) {
    assert.match(await printed(...argv), /^ecap tls: /, argv.join(" "));
  }
  assert.match(await printed("help", "openssl"), /^ecap tls: /);
  assert.equal(
    await usage("help", "nope"),
    'Unknown module "nope" (modules: bash, zsh, tls, gotls, gnutls, nss, mysqld, postgres)',
  );
});

Deno.test("parseCommandLine() prints completion scripts and refuses other shells", async () => {
  assert.match(await printed("completions", "bash"), /complete -o filenames -F _ecap ecap/);
  assert.match(await printed("completions", "zsh"), /^#compdef ecap/);
  assert.equal(
    await usage("completions"),
    "ecap completions needs a shell: bash or zsh (see ecap --help)",
  );
  assert.match(await usage("completions", "fish"), /^Unknown shell "fish"/);
});
