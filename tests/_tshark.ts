/**
 * tshark (Wireshark's engine) as the tests' independent judge: a live
 * capture beside ecap, and the fields it reads (and decrypts) from a pcapng.
 * @module
 */
import { sh, waitFor } from "./_helpers.ts";

/** Runs `tshark -n ...args`; returns its stdout, or throws with its stderr. */
export async function tshark(args: string[]): Promise<string> {
  // -n: no name lookups, which are slow and would turn addresses into names
  const r = await sh("tshark", ["-n", ...args]);
  if (r.code !== 0) throw new Error(`tshark ${args.join(" ")} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

/**
 * The fields of each packet of a pcapng that matches a display filter: one
 * line a packet, fields separated by tabs, none when no packet matches.
 * With keyLog, tshark decrypts TLS with that key log file's secrets.
 */
export async function tsharkFields(
  file: string,
  filter: string,
  fields: string[],
  keyLog?: string,
): Promise<string[]> {
  const out = await tshark([
    "-r",
    file,
    ...(keyLog ? ["-o", `tls.keylog_file:${keyLog}`] : []),
    "-Y",
    filter,
    "-T",
    "fields",
    ...fields.flatMap((f) => ["-e", f]),
  ]);
  // not filtered: a matching packet without the field stays an (empty) line
  const text = out.trim();
  return text ? text.split("\n") : [];
}

/** The client randoms of the ClientHellos in a pcapng, as hex the way key log files write them. */
export async function clientRandoms(file: string): Promise<string[]> {
  const randoms = await tsharkFields(file, "tls.handshake.type == 1", ["tls.handshake.random"]);
  return randoms.map((r) => r.replaceAll(":", ""));
}

/** The URIs of the HTTP/1 requests tshark finds (decrypted with keyLog if given), in order. */
export function httpRequestUris(file: string, keyLog?: string): Promise<string[]> {
  return tsharkFields(file, "http.request", ["http.request.uri"], keyLog);
}

/** The bodies of the HTTP/1 responses tshark finds (decrypted with keyLog if given), in order. */
export function httpResponseBodies(file: string, keyLog?: string): Promise<string[]> {
  return tsharkFields(file, "http.response", ["http.file_data"], keyLog);
}

/** tshark writing the packets of one TCP port on an interface to a file; dispose to stop it. */
export class TsharkCapture implements AsyncDisposable {
  #child: Deno.ChildProcess;
  #stopped?: Promise<Deno.CommandStatus>;

  private constructor(child: Deno.ChildProcess) {
    this.#child = child;
  }

  /** Starts capturing and resolves once tshark is listening (its "Capture started" line). */
  static async start(file: string, port: number, iface = "lo"): Promise<TsharkCapture> {
    const child = new Deno.Command("tshark", {
      args: ["-n", "-i", iface, "-f", `tcp port ${port}`, "-w", file],
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const cap = new TsharkCapture(child);
    const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
    let err = "";
    try {
      await waitFor(async () => {
        const { value, done } = await reader.read();
        if (done) throw new Error(`tshark exited before capturing: ${err}`);
        err += value;
        return err.includes("Capture started");
      }, "tshark to capture");
    } catch (e) {
      await cap.stop();
      throw e;
    }
    // keep draining its stderr so it never blocks on a full pipe
    (async () => {
      while (!(await reader.read()).done) { /* discard */ }
    })();
    await new Promise((r) => setTimeout(r, 500)); // "started" comes a moment early
    return cap;
  }

  /** Stops it as Ctrl-C would, so it finishes the file; waits for it to exit. */
  stop(): Promise<Deno.CommandStatus> {
    this.#stopped ??= (async () => {
      try {
        this.#child.kill("SIGINT");
      } catch { /* already gone */ }
      return await this.#child.status;
    })();
    return this.#stopped;
  }

  async [Symbol.asyncDispose]() {
    await this.stop();
  }
}

/** ecap's arguments for `-m pcap` of loopback into out, then the rest (options, a filter). */
export function pcapArgs(module: string, out: string, ...rest: string[]): string[] {
  return [module, "-m", "pcap", "-w", out, "-i", "lo", ...rest];
}

/**
 * Waits until the key log file keys holds a TLS 1.2 handshake's line
 * (CLIENT_RANDOM) and the TLS 1.3 line `last`, then stops cap half a second
 * later: the handshakes' last packets may still be on their way to it.
 */
export async function stopAfterKeys(
  keys: string,
  cap: TsharkCapture,
  last = "CLIENT_TRAFFIC_SECRET_0",
): Promise<void> {
  await waitFor(async () => {
    const t = await Deno.readTextFile(keys).catch(() => "");
    return t.includes("CLIENT_RANDOM") && t.includes(last);
  }, "both handshakes' keys");
  await new Promise((r) => setTimeout(r, 500));
  await cap.stop();
}

/**
 * Waits until the key log file keys holds n TLS 1.3 handshakes (their
 * CLIENT_TRAFFIC_SECRET_0 lines), then stops cap half a second later.
 */
export async function stopAfterHandshakes(
  keys: string,
  cap: TsharkCapture,
  n: number,
): Promise<void> {
  await waitFor(async () => {
    const t = await Deno.readTextFile(keys).catch(() => "");
    return t.split("CLIENT_TRAFFIC_SECRET_0").length - 1 === n;
  }, `${n} handshakes' keys`);
  await new Promise((r) => setTimeout(r, 500));
  await cap.stop();
}
