/**
 * Benchmark 3: how many events per second ecap's user space takes out of
 * the ring buffer. bench_produce (kern/bench_empty.bpf.c), run with
 * BPF_PROG_TEST_RUN by bench/ring_bench.c, writes records as fast as the
 * ring has room; ecap's consumer (lib/core/capture.ts: BpfHandle.poll, the batch
 * walk, and a decoder reading each record's header and copying its payload)
 * takes them, and so does a minimal C consumer on libbpf, in the same run.
 * @module
 */
import emptyObject from "../build/bench_empty.bpf.o" with { type: "bytes" };
import { Capture } from "../lib/core/capture.ts";
import { BpfHandle } from "../lib/core/ffi.ts";
import type { EventBase, ModuleSpec } from "../lib/core/module_spec.ts";
import { copyBytes } from "../lib/base/bytes.ts";
import { headerReader } from "../lib/core/record_header.ts";
import {
  type BenchOptions,
  compileHelper,
  DEPS,
  fmt,
  median,
  Proc,
  ratioText,
  ROOT,
  type Row,
  sh,
  sleep,
} from "./_util.ts";

const RING_BYTES = 8 << 20; // ecap's default --mapsize

interface BenchEvent extends EventBase {
  data: Uint8Array;
}

const ringSpec: ModuleSpec = {
  name: "bench-ring",
  summary: "benchmark producer",
  object: emptyObject,
  probes: [],
  options: [],
  parseOptions: () => ({}),
  targets: () => Promise.resolve({ files: {}, notes: [] }),
  globals: () => ({}),
  decoder(ctx) {
    const hdr = headerReader(ctx.btf, ctx.wallClock);
    return {
      decode(view, offset, length): BenchEvent[] {
        const h = hdr.read(view, offset, length);
        const start = view.byteOffset + offset + hdr.size;
        // fields one by one, as the modules' hot decoders do (no object rest)
        return [{
          module: "bench",
          timeNs: h.timeNs,
          pid: h.pid,
          tid: h.tid,
          uid: h.uid,
          comm: h.comm,
          cgroupId: h.cgroupId,
          data: copyBytes(new Uint8Array(view.buffer, start, length - hdr.size)),
        }];
      },
      flush: () => [],
    };
  },
  format: () => "",
  toJSON: (e) => ({ ...e }),
};

interface Result {
  rate: number;
  bytesPerSec: number;
  lost: number;
  events: number;
  produced: number;
}

async function tsConsumer(helper: string, size: number, seconds: number): Promise<Result> {
  const cap = await Capture.start(ringSpec, { mapSize: RING_BYTES });
  let events = 0, counted = 0, first = 0, last = 0;
  const consume = (async () => {
    for await (const batch of cap.batches()) {
      const t = performance.now();
      events += batch.length;
      if (first === 0) {
        first = t;
        counted = events;
      }
      last = t;
    }
  })();
  const p = new Proc(helper, ["produce", String(size), String(seconds)]);
  const code = await p.done;
  const m = /produced=(\d+)/.exec(p.stdout);
  if (code !== 0 || !m) {
    cap.stop();
    await consume;
    throw new Error(`ring_bench produce failed: ${p.stderr}`);
  }
  const produced = Number(m[1]);
  for (let i = 0; i < 200 && events < produced; i++) await sleep(10);
  cap.stop();
  await consume;
  const s = cap.stats();
  const secs = (last - first) / 1000;
  return {
    rate: (events - counted) / secs,
    bytesPerSec: (events - counted) * size / secs,
    lost: s.lost,
    events,
    produced,
  };
}

/** The FFI path alone: BpfHandle.poll into one buffer, records not decoded. */
async function pollOnly(helper: string, size: number, seconds: number): Promise<Result> {
  const h = BpfHandle.open(emptyObject, "bench_poll");
  try {
    h.setMapSize("events", RING_BYTES);
    h.load();
    const buf = new Uint8Array(4 << 20);
    const slot = 8 + ((size + 7) & ~7);
    const p = new Proc(helper, ["produce", String(size), String(seconds)]);
    let first = 0, last = 0, records = 0, counted = 0;
    while (!p.exited) {
      const n = await h.poll(buf, 100);
      if (n === 0) continue;
      const t = performance.now();
      records += n / slot;
      if (first === 0) first = t, counted = records;
      last = t;
    }
    while (true) {
      const n = await h.poll(buf, 0);
      if (n === 0) break;
      records += n / slot;
      last = performance.now();
    }
    const produced = Number(/produced=(\d+)/.exec(p.stdout)?.[1] ?? NaN);
    const secs = (last - first) / 1000;
    return {
      rate: (records - counted) / secs,
      bytesPerSec: (records - counted) * size / secs,
      lost: Number(h.readPerCpu("ecap_stats", 1).reduce((a, b) => a + b, 0n)),
      events: records,
      produced,
    };
  } finally {
    h.close();
  }
}

async function cConsumer(helper: string, size: number, seconds: number): Promise<Result> {
  const r = await sh(helper, [
    "consume",
    `${ROOT}/build/bench_empty.bpf.o`,
    String(size),
    String(seconds),
    String(RING_BYTES),
  ]);
  const get = (k: string) => Number(new RegExp(`${k}=([\\d.]+)`).exec(r.stdout)?.[1] ?? NaN);
  return {
    rate: get("events") / get("seconds"),
    bytesPerSec: get("bytes") / get("seconds"),
    lost: get("lost"),
    events: get("events"),
    produced: get("produced"),
  };
}

export async function runRing(o: BenchOptions): Promise<Row[]> {
  const helper = await compileHelper("ring_bench", [
    `-I${DEPS}/include`,
    `${DEPS}/lib/libbpf.a`,
    `${DEPS}/lib/libelf.a`,
    `${DEPS}/lib/libz.a`,
    "-lpthread",
  ]);
  const seconds = o.quick ? 0.5 : 3;
  const reps = o.quick ? 1 : 3;
  const rows: Row[] = [];
  for (const size of [64, 16384]) {
    const ts: Result[] = [], c: Result[] = [], raw: Result[] = [];
    for (let rep = 0; rep < reps; rep++) {
      ts.push(await tsConsumer(helper, size, seconds));
      c.push(await cConsumer(helper, size, seconds));
      raw.push(await pollOnly(helper, size, seconds));
      o.log(
        `  ring ${size} B rep ${rep + 1}: ecap (TS) ${fmt(ts.at(-1)!.rate)} ev/s ${
          fmt(ts.at(-1)!.bytesPerSec / 1e6)
        } MB/s lost ${ts.at(-1)!.lost}; C ${fmt(c.at(-1)!.rate)} ev/s ${
          fmt(c.at(-1)!.bytesPerSec / 1e6)
        } MB/s lost ${c.at(-1)!.lost}; BpfHandle.poll alone ${fmt(raw.at(-1)!.rate)} ev/s`,
      );
    }
    const tsRate = median(ts.map((r) => r.rate)), cRate = median(c.map((r) => r.rate));
    const tsBw = median(ts.map((r) => r.bytesPerSec)), cBw = median(c.map((r) => r.bytesPerSec));
    const lost = ts.reduce((a, r) => a + r.lost, 0);
    const label = size === 64 ? "64 B" : "16 KiB";
    if (size === 64) {
      rows.push({
        bench: "3 consumer",
        figure: `ecap (TS) events/s, ${label} records`,
        value: `${fmt(tsRate / 1e6)} M/s`,
        baseline: "-",
        ratio: "-",
        target: ">= 5 M/s",
        pass: tsRate >= 5e6,
      });
    } else {
      rows.push({
        bench: "3 consumer",
        figure: `ecap (TS) bytes/s, ${label} records`,
        value: `${fmt(tsBw / 1e9)} GB/s`,
        baseline: "-",
        ratio: "-",
        target: ">= 1 GB/s",
        pass: tsBw >= 1e9,
      });
    }
    rows.push({
      bench: "3 consumer",
      figure: `ecap (TS) vs C libbpf consumer, ${label}`,
      value: `${fmt(tsRate / 1e6)} M ev/s`,
      baseline: `${fmt(cRate / 1e6)} M ev/s (${fmt(cBw / 1e9)} GB/s)`,
      ratio: ratioText(tsRate / cRate),
      target: ">= 0.8",
      pass: tsRate / cRate >= 0.8,
    });
    const rawRate = median(raw.map((r) => r.rate));
    rows.push({
      bench: "3 consumer",
      figure: `BpfHandle.poll alone (no decoding) vs C, ${label}`,
      value: `${fmt(rawRate / 1e6)} M ev/s`,
      baseline: `${fmt(cRate / 1e6)} M ev/s (C)`,
      ratio: ratioText(rawRate / cRate),
      target: "-",
    });
    rows.push({
      bench: "3 consumer",
      figure: `ecap (TS) drops, ${label}`,
      value: `${lost}`,
      baseline: `${ts.reduce((a, r) => a + r.produced, 0)} produced`,
      ratio: "-",
      target: "0",
      pass: lost === 0 && ts.every((r) => r.events === r.produced),
    });
  }
  return rows;
}
