/**
 * What every TLS module (tls, gnutls, nss, gotls) shares: the options of
 * the three models (text, keylog, pcap), the key log and pcapng sinks, and
 * the spec parts that use tls_events.ts, tls_decoder.ts and tls_format.ts.
 * A module adds its probes and how it finds its targets:
 * `{ ...tlsFamily("gnutls", ...), name: "gnutls", probes, targets }`.
 * @module
 */
import { EcapError } from "../base/errors.ts";
import { numCpus, packetFilterError } from "../core/ffi.ts";
import { KeylogFile, loadCrypto } from "./keylog.ts";
import { loadZlib } from "../http/http1.ts";
import { type EventSink, type ModuleSpec, type OptionSpec, tcx, u32 } from "../core/module_spec.ts";
import {
  type CaptureInterface,
  DEFAULT_SNAPLEN,
  PcapSink,
  STDOUT_PATH,
} from "../pcap/pcap_sink.ts";
import { LINKTYPE_ETHERNET, LINKTYPE_RAW } from "../pcap/packet_headers.ts";
import type { TlsFamilyEvent, TlsFamilyOptions } from "./tls_events.ts";
import { tlsFamilyDecoder } from "./tls_decoder.ts";
import { exchangeDecoder } from "./tls_exchanges.ts";
import { HarFile } from "./har_sink.ts";
import denoJson from "../../deno.json" with { type: "json" };
import { formatSecret, formatTlsEvent, tlsEventJSON } from "./tls_format.ts";
import { TLS_VIEW } from "./tls_view.ts";

const DEFAULT_MAX_CALL = 1 << 20;

function parseBytes(v: string | boolean | undefined): number | undefined {
  if (v === undefined || typeof v === "boolean") return undefined;
  const m = /^(\d+)([KMG]?)$/i.exec(v);
  const scale: Record<string, number> = { "": 1, K: 1 << 10, M: 1 << 20, G: 1 << 30 };
  const n = m ? Number(m[1]) * scale[m[2].toUpperCase()] : NaN;
  if (!Number.isInteger(n) || n < 1 || n > 0xffffffff) {
    throw new EcapError(`Invalid --max-call-bytes "${v}": expected bytes such as 1M`, {
      kind: "usage",
    });
  }
  return n;
}

function parseTimeout(v: string | boolean | undefined): number | undefined {
  if (v === undefined || typeof v === "boolean") return undefined;
  const n = Number(v);
  if (!/^\d+(\.\d+)?$/.test(v) || !(n > 0)) {
    throw new EcapError(`Invalid --exchange-timeout "${v}": expected seconds such as 30`, {
      kind: "usage",
    });
  }
  return n;
}

/** ecap's version, for the HAR creator. */
const VERSION = denoJson.version;

const MODELS = ["text", "pcap", "pcapng", "keylog", "key"];
/** Probes for -m text only. */
export const TEXT_MODEL = ["text"];
/** Probes for the models that need secrets. */
export const SECRET_MODELS = ["keylog", "pcap"];

/** The model a user's -m names: pcapng is pcap, key is keylog. */
function canonicalModel(m: string): string {
  return m === "pcapng" ? "pcap" : m === "key" ? "keylog" : m;
}

/** The tcx programs of -m pcap, which every TLS object includes (kern/tls_packets.bpf.h). */
export const PACKET_PROBES = [
  tcx("tc_ingress", "ingress", { models: ["pcap"] }),
  tcx("tc_egress", "egress", { models: ["pcap"] }),
];

/** Interfaces by name (all that are up, if none named). */
export function findInterfaces(names: readonly string[]): CaptureInterface[] {
  const all = [...Deno.readDirSync("/sys/class/net")].map((e) => e.name).sort();
  // tcpdump's `-i any`: every interface that is up, as no -i at all
  const every = names.length === 0 || names.includes("any");
  const chosen = !every ? names : all.filter((n) => {
    try {
      const state = Deno.readTextFileSync(`/sys/class/net/${n}/operstate`).trim();
      return state === "up" || state === "unknown";
    } catch {
      return false;
    }
  });
  return chosen.map((name) => {
    let index: number, type: number;
    try {
      index = Number(Deno.readTextFileSync(`/sys/class/net/${name}/ifindex`));
      type = Number(Deno.readTextFileSync(`/sys/class/net/${name}/type`));
    } catch {
      throw new EcapError(`No network interface "${name}"`, {
        kind: "not-found",
        hint: `interfaces: ${all.join(", ")}`,
      });
    }
    // ARPHRD_ETHER and ARPHRD_LOOPBACK carry an Ethernet header at tc; others raw IP
    const linkType = type === 1 || type === 772 ? LINKTYPE_ETHERNET : LINKTYPE_RAW;
    return { name, index, loopback: type === 772, linkType };
  });
}

/** The options of every TLS module (after its own, e.g. --libssl). */
const FAMILY_OPTIONS: readonly OptionSpec[] = [
  {
    name: "model",
    short: "m",
    type: "string",
    arg: "MODEL",
    help: "text (plaintext), keylog (key log file), pcap (pcapng with keys); " +
      "default text, or what -w or -k picks",
  },
  { name: "hex", type: "boolean", help: "show payloads as hex dumps (text)" },
  {
    name: "calls",
    type: "boolean",
    help: "one event per read/write call instead of one per HTTP exchange (text)",
  },
  {
    name: "exchange-timeout",
    type: "string",
    arg: "S",
    help: "report a request with no response after S seconds, marked incomplete (default 30)",
  },
  { name: "har", type: "string", arg: "FILE", help: "also write the exchanges to FILE as HAR 1.2" },
  {
    name: "max-call-bytes",
    type: "string",
    arg: "BYTES",
    help: "capture at most this much of one read/write call (default 1M)",
  },
  {
    name: "keylogfile",
    short: "k",
    type: "string",
    arg: "FILE",
    help: "write the key log to FILE (appended to); alone it means -m keylog",
  },
  {
    name: "pcapfile",
    short: "w",
    type: "string",
    arg: "FILE",
    help: "write pcapng to FILE (replaced if it exists; - is stdout); alone it means -m pcap",
  },
  {
    name: "snaplen",
    short: "s",
    type: "string",
    arg: "SNAPLEN",
    help: `pcap: keep at most SNAPLEN bytes of a packet (default ${DEFAULT_SNAPLEN})`,
  },
  {
    name: "ifname",
    short: "i",
    type: "string",
    arg: "IFACES",
    help: "interfaces, comma-separated (pcap; default: every interface that is up)",
  },
];

function usage(message: string): EcapError {
  return new EcapError(message, { kind: "usage" });
}

const stringValue = (v: string | boolean | undefined) => typeof v === "string" ? v : undefined;

/**
 * The model asked for: -m, else the one its file option implies (-w pcap,
 * -k keylog, as tcpdump's -w needs nothing more); a file option of another
 * model is refused rather than ignored.
 */
function chooseModel(v: Record<string, string | boolean | undefined>): [string, string] {
  const pcapFile = stringValue(v.pcapfile), keylogFile = stringValue(v.keylogfile);
  if (pcapFile !== undefined && keylogFile !== undefined) {
    throw usage(
      "-w and -k pick different models (pcap, keylog): -w writes the keys into the pcapng",
    );
  }
  const asked = stringValue(v.model) ??
    (pcapFile !== undefined ? "pcap" : keylogFile !== undefined ? "keylog" : "text");
  if (!MODELS.includes(asked)) {
    throw usage(`Unknown --model "${asked}" (models: ${MODELS.join(", ")})`);
  }
  const model = canonicalModel(asked);
  if (model === "pcap" && pcapFile === undefined) {
    throw usage(`-m ${asked} needs -w/--pcapfile FILE`);
  }
  if (model === "keylog" && keylogFile === undefined) {
    throw usage(`-m ${asked} needs -k/--keylogfile FILE`);
  }
  if (pcapFile !== undefined && model !== "pcap") {
    throw usage(`-w writes pcapng: it cannot go with -m ${asked}`);
  }
  if (keylogFile !== undefined && model !== "keylog") {
    throw usage(`-k writes a key log: it cannot go with -m ${asked}`);
  }
  for (const [name, option] of [["snaplen", "-s"], ["ifname", "-i"]]) {
    if (v[name] !== undefined && model !== "pcap") {
      throw usage(`${option} goes with -w FILE (pcap), not -m ${asked}`);
    }
  }
  return [asked, model];
}

function parseSnapLen(v: string | boolean | undefined): number | undefined {
  if (v === undefined || typeof v === "boolean") return undefined;
  const n = Number(v);
  if (!/^\d+$/.test(v) || n < 1 || n > 0xffffffff) {
    throw usage(`Invalid -s "${v}": expected a positive number of bytes`);
  }
  return n;
}

function parseFamilyOptions(
  v: Record<string, string | boolean | undefined>,
): Partial<TlsFamilyOptions> {
  const [asked, model] = chooseModel(v);
  if (typeof v.positionals === "string" && model !== "pcap") {
    throw usage(`A filter expression needs -m pcap: "${v.positionals}"`);
  }
  const filter = typeof v.positionals === "string" ? v.positionals : undefined;
  const snapLen = parseSnapLen(v.snaplen);
  if (filter !== undefined) {
    // Ethernet accepts the most; an interface of another kind is checked when attached
    const wrong = packetFilterError({
      expression: filter,
      linkType: LINKTYPE_ETHERNET,
      snapLen: snapLen ?? DEFAULT_SNAPLEN,
    });
    if (wrong) throw usage(`Invalid filter expression "${filter}": ${wrong}`);
  }
  const har = stringValue(v.har);
  if (har !== undefined && model !== "text") {
    throw usage(`--har needs the text model (plaintext), not -m ${asked}`);
  }
  if (har !== undefined && v.calls === true) {
    throw usage("--har writes exchanges: it cannot go with --calls");
  }
  return {
    model,
    hex: v.hex === true,
    calls: v.calls === true,
    exchangeTimeout: parseTimeout(v["exchange-timeout"]),
    harFile: har,
    maxCallBytes: parseBytes(v["max-call-bytes"]),
    keylogFile: stringValue(v.keylogfile),
    pcapFile: stringValue(v.pcapfile),
    snapLen,
    interfaces: typeof v.ifname === "string"
      ? v.ifname.split(",").map((x) => x.trim()).filter(Boolean)
      : undefined,
    filter,
  };
}

/**
 * The interfaces -m pcap captures, each with the filter expression compiled
 * for its link type, and the note that says so; nothing for other models.
 */
export function packetInterfaces(
  opts: TlsFamilyOptions,
): { interfaces?: CaptureInterface[]; notes: string[] } {
  if (opts.model !== "pcap") return { notes: [] };
  const expression = opts.filter;
  const snapLen = opts.snapLen ?? DEFAULT_SNAPLEN;
  const interfaces = findInterfaces(opts.interfaces ?? []).map((i) =>
    expression === undefined ? i : { ...i, filter: { expression, linkType: i.linkType, snapLen } }
  );
  const notes = [`packets of ${interfaces.map((i) => i.name).join(", ")}`];
  if (expression !== undefined) notes.push(`packet filter (libpcap, in the kernel): ${expression}`);
  return { interfaces, notes };
}

type FamilyPart<O extends TlsFamilyOptions, M extends string> = Pick<
  ModuleSpec<O, TlsFamilyEvent<M>>,
  | "options"
  | "parseOptions"
  | "positionals"
  | "mapSizes"
  | "globals"
  | "prepare"
  | "decoder"
  | "createSink"
  | "outputPaths"
  | "format"
  | "toJSON"
  | "view"
  | "writesStdout"
>;

/** OpenSSL's key maps in kern/tls.bpf.c: GnuTLS and NSS keys take other paths. */
export const OPENSSL_KEY_MAPS = ["secrets_sent", "boringssl_hs_secrets"];
/** NSS's key maps in kern/tls.bpf.c: used by `ecap nss -m keylog|pcap` alone. */
export const NSS_KEY_MAPS = ["nss_hello_randoms", "nss_derives"];

/**
 * The parts of a TLS module's spec that do not depend on its library.
 * `own` are the module's options listed before the shared ones, and
 * `parseOwn` reads them. `unusedMaps` are maps of the shared object that
 * this library never touches: a hash map's entries are all made at load
 * (65,536 in an LRU map: 5-10 ms), so they get one.
 */
export function tlsFamily<O extends TlsFamilyOptions, M extends string>(
  name: M,
  own: readonly OptionSpec[],
  parseOwn: (v: Record<string, string | boolean | undefined>) => Partial<O>,
  unusedMaps: readonly string[] = [],
): FamilyPart<O, M> {
  return {
    positionals: "FILTER EXPRESSION (-m pcap, e.g. tcp port 443)",
    options: [...own, ...FAMILY_OPTIONS],
    parseOptions: (v) => ({ ...parseFamilyOptions(v), ...parseOwn(v) }) as Partial<O>,
    mapSizes: () => ({
      packet_scratch: Math.max(1, numCpus()),
      ...Object.fromEntries(unusedMaps.map((m) => [m, 1])),
    }),
    // what the model uses: gzip and the like for bodies in text, HKDF for key
    // log lines (node:crypto alone took 35 ms of a start)
    prepare: async (opts) => {
      await ((opts.model ?? "text") === "text" ? loadZlib() : loadCrypto());
    },
    globals(opts) {
      const g: Record<string, Uint8Array> = {
        max_call_bytes: u32(opts.maxCallBytes ?? DEFAULT_MAX_CALL),
      };
      // -s: cut in the kernel, before the copy to the ring
      if (opts.snapLen !== undefined) g.pkt_snaplen = u32(opts.snapLen); // parseSnapLen kept it to a u32
      return g;
    },
    decoder(ctx, opts) {
      // keylog and pcap carry no plaintext; --calls asks for the calls themselves
      if (opts.calls || (opts.model ?? "text") !== "text") return tlsFamilyDecoder(name, ctx);
      // the exchange view takes each call within decode(): it may lend their bytes
      const calls = tlsFamilyDecoder(name, ctx, { borrowData: true });
      return exchangeDecoder(name, calls, opts.exchangeTimeout, opts.exchanges);
    },
    createSink(opts) {
      if (opts.model === "keylog") return keylogSink<M>(opts.keylogFile!, opts.count);
      if (opts.model === "pcap") {
        return pcapSink<M>(opts.pcapFile!, findInterfaces(opts.interfaces ?? []), opts);
      }
      if (opts.harFile !== undefined) return harSink<M>(opts.harFile, opts);
      return undefined;
    },
    writesStdout: (opts) => opts.model === "pcap" && opts.pcapFile === STDOUT_PATH,
    // not --har: a HAR document is rewritten in place, which a FIFO cannot be
    outputPaths: (opts) =>
      [opts.keylogFile, opts.pcapFile].filter((f): f is string =>
        f !== undefined && f !== STDOUT_PATH
      ),
    format: formatTlsEvent,
    toJSON: tlsEventJSON,
    view: TLS_VIEW,
  };
}

/**
 * -m keylog: secrets to the key log file, a line per handshake to stdout;
 * with -c, `count` handshakes.
 */
function keylogSink<M extends string>(
  path: string,
  count = Infinity,
): EventSink<TlsFamilyEvent<M>> {
  const file = new KeylogFile(path);
  let handshakes = 0;
  return {
    get full() {
      return handshakes >= count;
    },
    write(batch) {
      let text = "";
      for (const ev of batch) {
        if (handshakes >= count) break;
        if (ev.kind !== "secret" || ev.keylog.length === 0) continue;
        if (file.add(ev.keylog).length === 0 || !ev.complete) continue;
        handshakes++;
        text += formatSecret(ev) + "\n";
      }
      return text;
    },
    tick() {},
    close() {
      file.close();
      return `${handshakes} handshakes, ${file.written} key log lines written to ${path}`;
    },
  };
}

/** -m pcap: packets and secrets to a pcapng file (or stdout); with -c, `count` packets. */
function pcapSink<M extends string>(
  path: string,
  interfaces: CaptureInterface[],
  opts: TlsFamilyOptions,
): EventSink<TlsFamilyEvent<M>> {
  const sink = new PcapSink(path, interfaces, {
    application: "ecap",
    snapLen: opts.snapLen,
    limit: opts.count,
  });
  const seen = new Set<string>();
  const where = path === STDOUT_PATH ? "stdout" : path;
  return {
    get full() {
      return sink.full;
    },
    write(batch) {
      let text = "";
      for (const ev of batch) {
        if (ev.kind === "packet") {
          sink.packet({
            timeNs: ev.timeNs,
            ifindex: ev.ifindex,
            length: ev.length,
            data: ev.data,
            direction: ev.direction,
          });
        } else if (ev.kind === "secret") {
          sink.owner({
            pid: ev.pid,
            comm: ev.process ?? ev.comm,
            local: ev.local,
            remote: ev.remote,
          });
          const fresh = ev.keylog.filter((l) => !seen.has(l));
          for (const l of fresh) seen.add(l);
          sink.secrets(fresh);
          if (fresh.length && ev.complete) text += formatSecret(ev) + "\n";
        }
      }
      sink.tick();
      return text;
    },
    tick: () => sink.tick(),
    close() {
      sink.close();
      return `${sink.packets} packets, ${sink.secretLines} key log lines written to ${where}`;
    },
  };
}

/** --har: exchanges to a HAR file; the text output stays as it is. */
function harSink<M extends string>(
  path: string,
  opts: TlsFamilyOptions,
): EventSink<TlsFamilyEvent<M>> {
  const har = new HarFile(path, VERSION);
  let last = 0;
  return {
    write(batch) {
      let text = "";
      for (const ev of batch) {
        if (ev.kind === "http") har.add(ev);
        const t = formatTlsEvent(ev, opts);
        if (t) text += t + "\n";
      }
      return text;
    },
    tick() {
      // the file is a whole document again at most a second after an exchange
      if (Date.now() - last < 1000) return;
      last = Date.now();
      har.flush();
    },
    close() {
      har.close();
      return `${har.entries} exchanges written to ${path} (HAR)`;
    },
  };
}
