import assert from "node:assert/strict";
import { type CaptureInterface, PcapSink } from "../../lib/pcap/pcap_sink.ts";
import { readPcapng } from "../../lib/pcap/pcapng_reader.ts";

const LO: CaptureInterface = { name: "lo", index: 1, loopback: true, linkType: 1 };

function packet(bytes: number, length = bytes) {
  return {
    timeNs: 1_700_000_000_000_000_000n,
    ifindex: 1,
    length,
    data: new Uint8Array(bytes).fill(0xab),
    direction: "egress" as const,
  };
}

async function inTempDir(fn: (dir: string) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "ecap-pcap-sink-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("PcapSink cuts packets to the snap length and keeps their original length", async () => {
  await inTempDir(async (dir) => {
    const sink = new PcapSink(`${dir}/s.pcapng`, [LO], { application: "test", snapLen: 100 });
    sink.packet(packet(300, 1500));
    sink.packet(packet(60));
    sink.close();
    const file = readPcapng(await Deno.readFile(`${dir}/s.pcapng`));
    assert.equal(file.interfaces[0].snapLen, 100);
    assert.deepEqual(file.packets.map((p) => [p.data.length, p.originalLength]), [
      [100, 1500],
      [60, 60],
    ]);
  });
});

Deno.test("PcapSink's default snap length is tcpdump's, 262144", async () => {
  await inTempDir(async (dir) => {
    const sink = new PcapSink(`${dir}/d.pcapng`, [LO], { application: "test" });
    sink.close();
    assert.equal(readPcapng(await Deno.readFile(`${dir}/d.pcapng`)).interfaces[0].snapLen, 262144);
  });
});

Deno.test("PcapSink replaces an existing file, as tcpdump -w does, and keeps it 0600", async () => {
  await inTempDir(async (dir) => {
    const path = `${dir}/r.pcapng`;
    await Deno.writeTextFile(path, "an older capture ".repeat(1000), { mode: 0o644 });
    const sink = new PcapSink(path, [LO], { application: "test" });
    sink.packet(packet(40));
    sink.close();
    const file = readPcapng(await Deno.readFile(path));
    assert.equal(file.sections.length, 1);
    assert.equal(file.packets.length, 1);
    assert.equal((await Deno.stat(path)).mode! & 0o777, 0o600);
  });
});

Deno.test("PcapSink takes `limit` packets and then says it is full", async () => {
  await inTempDir(async (dir) => {
    const sink = new PcapSink(`${dir}/c.pcapng`, [LO], { application: "test", limit: 2 });
    sink.packet(packet(10));
    assert.equal(sink.full, false);
    sink.packet(packet(11));
    assert.equal(sink.full, true);
    sink.packet(packet(12));
    sink.close();
    const file = readPcapng(await Deno.readFile(`${dir}/c.pcapng`));
    assert.deepEqual(file.packets.map((p) => p.data.length), [10, 11]);
  });
});

Deno.test("PcapSink writes pcapng to stdout for -w -", async () => {
  // a child writes through the sink; this side reads its stdout as a pipe
  const script = `
    import { PcapSink } from "${new URL("../../lib/pcap/pcap_sink.ts", import.meta.url).href}";
    const sink = new PcapSink("-", [{ name: "lo", index: 1, loopback: true, linkType: 1 }],
      { application: "test" });
    sink.packet({ timeNs: 1n, ifindex: 1, length: 42, data: new Uint8Array(42), direction: "ingress" });
    sink.tick(true);
    console.error("flushed");
    await new Promise((r) => setTimeout(r, 100));
    sink.close();`;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--ext=ts", script],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  const file = readPcapng(out.stdout);
  assert.equal(file.packets.length, 1);
  assert.equal(file.packets[0].originalLength, 42);
});

Deno.test("PcapSink writes every packet once, in order, when held bytes force out some at a time", async () => {
  await inTempDir(async (dir) => {
    const sink = new PcapSink(`${dir}/h.pcapng`, [LO], { application: "test" });
    // 40 MB: past the 16 MiB held, each tick writes the oldest, the rest wait
    const count = 10_000;
    for (let k = 0; k < count; k++) {
      const p = packet(4000);
      new DataView(p.data.buffer).setUint32(0, k);
      sink.packet(p);
      if (k % 100 === 99) sink.tick();
    }
    assert.ok(sink.packets > 4096 && sink.packets < count, `${sink.packets} written before close`);
    sink.close();
    const file = readPcapng(await Deno.readFile(`${dir}/h.pcapng`));
    assert.equal(file.packets.length, count);
    file.packets.forEach((p, k) => {
      assert.equal(new DataView(p.data.buffer, p.data.byteOffset).getUint32(0), k);
    });
  });
});
