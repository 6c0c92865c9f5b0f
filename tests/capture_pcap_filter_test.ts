/**
 * A filter expression on a live interface: libpcap's program runs in the
 * kernel in front of the capture, so the packets it drops never reach
 * ecap. Datagrams to two ports on loopback, a filter naming one: the file
 * tshark reads holds exactly that port's datagrams, and ecap's own count of
 * packets says no other came up.
 * @module
 */
import assert from "node:assert/strict";
import { bpfTest, EcapRun, sh } from "./_helpers.ts";
import { pcapArgs } from "./_tshark.ts";

const KEPT = 20, DROPPED = 200;

/** n datagrams with payload to 127.0.0.1:port, from bash (no listener needed). */
async function sendDatagrams(port: number, n: number, payload: string) {
  const r = await sh("bash", [
    "-c",
    `for i in $(seq ${n}); do printf '%s' '${payload}' >/dev/udp/127.0.0.1/${port}; done`,
  ]);
  assert.equal(r.code, 0, r.stderr);
}

bpfTest("a filter expression keeps other packets out of ecap, in the kernel", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ecap-pcap-filter-" });
  try {
    const kept = 20000 + Math.floor(Math.random() * 20000), other = kept + 1;
    const out = `${dir}/out.pcapng`;
    await using run = await EcapRun.start(pcapArgs("tls", out, "udp", "dst", "port", String(kept)));
    assert.match(
      run.stderr,
      new RegExp(`packet filter \\(libpcap, in the kernel\\): udp dst port ${kept}`),
    );
    await sendDatagrams(other, DROPPED, "dropped");
    await sendDatagrams(kept, KEPT, "kept");
    await sendDatagrams(other, DROPPED, "dropped");
    const code = await run.stop();
    assert.equal(code, 0, run.stderr);
    assert.match(run.stderr, new RegExp(`\\b${KEPT} packets, 0 key log lines written`), run.stderr);
    const t = await sh("tshark", [
      "-r",
      out,
      "-T",
      "fields",
      "-e",
      "udp.dstport",
      "-e",
      "data.data",
    ]);
    assert.equal(t.code, 0, t.stderr);
    const lines = t.stdout.trim().split("\n");
    const keptHex = [...new TextEncoder().encode("kept")].map((b) =>
      b.toString(16).padStart(2, "0")
    ).join("");
    assert.deepEqual(lines, new Array(KEPT).fill(`${kept}\t${keptHex}`));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
