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
import { pcapArgs, tsharkFields } from "./_tshark.ts";
import { findInterfaces } from "../lib/tls/tls_family.ts";

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
    const lines = await tsharkFields(out, "", ["udp.dstport", "data.data"]);
    const keptHex = [...new TextEncoder().encode("kept")].map((b) =>
      b.toString(16).padStart(2, "0")
    ).join("");
    assert.deepEqual(lines, new Array(KEPT).fill(`${kept}\t${keptHex}`));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("-i any names every interface that is up, as no -i does", () => {
  const names = (l: { name: string }[]) => l.map((i) => i.name);
  assert.deepEqual(names(findInterfaces(["any"])), names(findInterfaces([])));
  assert.ok(names(findInterfaces(["any"])).includes("lo"));
});

bpfTest("a filter on a raw-IP interface (tun) is compiled for raw IP", async () => {
  // in a network namespace of the test's own: a tun device, whose packets
  // have no link-layer header at tc, held open (so its carrier is up) by a
  // reader that drops them; ecap runs in that namespace too
  const ns = `ecap-raw-${Deno.pid}`;
  const inNs = (...args: string[]) => ["ip", "netns", "exec", ns, ...args];
  assert.equal((await sh("ip", ["netns", "add", ns])).code, 0);
  const dir = await Deno.makeTempDir({ prefix: "ecap-pcap-raw-" });
  let reader: Deno.ChildProcess | undefined;
  try {
    reader = new Deno.Command(inNs()[0], {
      args: [...inNs("/usr/bin/python3", "-c", TUN_READER).slice(1)],
      stdout: "piped",
    }).spawn();
    const ready = await reader.stdout.getReader().read();
    assert.equal(new TextDecoder().decode(ready.value), "up\n");
    for (
      const step of [
        ["link", "set", "lo", "up"],
        ["addr", "add", "10.99.0.1/24", "dev", "tun0"],
        ["link", "set", "tun0", "up"],
      ]
    ) {
      const r = await sh("ip", ["-n", ns, ...step]);
      assert.equal(r.code, 0, `ip ${step.join(" ")}: ${r.stderr}`);
    }
    const port = 20000 + Math.floor(Math.random() * 20000);
    const out = `${dir}/out.pcapng`;
    await using run = await EcapRun.start(
      ["tls", "-w", out, "-i", "tun0", "ip", "and", "udp", "dst", "port", String(port)],
      { prefix: inNs() },
    );
    const send = (p: number, n: number) =>
      sh(inNs()[0], [
        ...inNs("bash", "-c", `for i in $(seq ${n}); do printf raw >/dev/udp/10.99.0.2/${p}; done`)
          .slice(1),
      ]);
    await send(port + 1, 50);
    await send(port, 5);
    assert.equal(await run.stop(), 0, run.stderr);
    // encapsulation 7: raw IP
    assert.deepEqual(
      await tsharkFields(out, "", ["frame.encap_type", "udp.dstport"]),
      new Array(5).fill(`7\t${port}`),
    );
  } finally {
    reader?.kill();
    await reader?.status;
    await sh("ip", ["netns", "del", ns]);
    await Deno.remove(dir, { recursive: true });
  }
});

/** Creates tun0 (IFF_TUN | IFF_NO_PI), says "up", then reads and drops its packets. */
const TUN_READER = `
import fcntl, os, struct, sys
fd = os.open("/dev/net/tun", os.O_RDWR)
fcntl.ioctl(fd, 0x400454ca, struct.pack("16sH", b"tun0", 0x0001 | 0x1000))
sys.stdout.write("up\\n"); sys.stdout.flush()
while True:
    os.read(fd, 65536)
`;
