/**
 * A little-endian pcapng writer (draft-ietf-opsawg-pcapng): Section Header,
 * Interface Description, Enhanced Packet and Decryption Secrets blocks.
 * Blocks are built whole in memory and written whole, so a file only ever
 * stops at a block boundary unless the sink itself fails mid-write.
 * @module
 */

/** Where the bytes go: a `Deno.FsFile` or anything with the same `writeSync`. */
export interface PcapngSink {
  /** Writes some prefix of `p` and returns how many bytes were written. */
  writeSync(p: Uint8Array): number;
}

/** Text for the Section Header Block options. */
export interface PcapngWriterOptions {
  /** `shb_userappl`, e.g. "ecap 0.1.0". */
  application?: string;
  /** `shb_os`, e.g. "Linux 6.8.0". */
  os?: string;
  /** `shb_hardware`, e.g. "x86_64". */
  hardware?: string;
}

/** An interface to describe with an Interface Description Block. */
export interface PcapngInterface {
  /** `if_name`, e.g. "eth0" or "tls:nginx". */
  name: string;
  /** LINKTYPE_* value: 1 = Ethernet, 101 = raw IP. */
  linkType: number;
  /** Largest captured length; 0 (the default) means unlimited. */
  snapLen?: number;
  /** `if_description`. */
  description?: string;
}

/** A packet for an Enhanced Packet Block. */
export interface PcapngPacket {
  /** An id returned by {@linkcode PcapngWriter.addInterface}. */
  interfaceId: number;
  /** Capture time in nanoseconds since the Unix epoch. */
  timestampNs: bigint;
  /** The captured bytes, starting at the interface's link-layer header. */
  data: Uint8Array;
  /** Length on the wire when larger than `data`; defaults to `data.length`. */
  originalLength?: number;
  /** Stored in `epb_flags` bits 0-1. */
  direction?: "inbound" | "outbound";
  /**
   * `opt_comment`, shown by Wireshark as the frame comment: text, or its
   * UTF-8 bytes (for a comment repeated on many packets, encoded once).
   */
  comment?: string | Uint8Array;
}

/** Block types written here (and read by the reader). */
export const BLOCK_SHB = 0x0a0d0d0a;
/** Interface Description Block. */
export const BLOCK_IDB = 0x00000001;
/** Simple Packet Block (read only). */
export const BLOCK_SPB = 0x00000003;
/** Enhanced Packet Block. */
export const BLOCK_EPB = 0x00000006;
/** Decryption Secrets Block. */
export const BLOCK_DSB = 0x0000000a;
/** DSB secrets type for an NSS key log ("TLSK"). */
export const SECRETS_TLS_KEYLOG = 0x544c534b;

/** The buffer is written out once it holds more than this. */
const FLUSH_THRESHOLD = 256 * 1024;

const OPT_ENDOFOPT = 0;
const OPT_COMMENT = 1;
const SHB_HARDWARE = 2;
const SHB_OS = 3;
const SHB_USERAPPL = 4;
const IF_NAME = 2;
const IF_DESCRIPTION = 3;
const IF_TSRESOL = 9;
const EPB_FLAGS = 2;

const encoder = new TextEncoder();

type Option = [code: number, value: Uint8Array];

/** Rounds up to a multiple of 4 (arithmetic: lengths may exceed 2^31). */
function pad4(n: number): number {
  return n + ((4 - (n % 4)) % 4);
}

/** epb_flags values: fixed, so no packet allocates its own. */
const INBOUND = Uint8Array.of(0b01, 0, 0, 0);
const OUTBOUND = Uint8Array.of(0b10, 0, 0, 0);

function optionsLength(options: Option[]): number {
  if (options.length === 0) return 0;
  let n = 4; // opt_endofopt
  for (const [, value] of options) n += 4 + pad4(value.length);
  return n;
}

/**
 * Writes pcapng blocks to a sink. Not thread-safe; call {@linkcode close} (or
 * {@linkcode flush}) before the file is read.
 */
export class PcapngWriter {
  #sink: PcapngSink;
  #buf = new Uint8Array(64 * 1024);
  #len = 0;
  #written = 0;
  #interfaces: { snapLen: number }[] = [];

  /** Starts a section: the Section Header Block is buffered at once. */
  constructor(sink: PcapngSink, opts: PcapngWriterOptions = {}) {
    this.#sink = sink;
    const options: Option[] = [];
    if (opts.hardware !== undefined) options.push([SHB_HARDWARE, encoder.encode(opts.hardware)]);
    if (opts.os !== undefined) options.push([SHB_OS, encoder.encode(opts.os)]);
    if (opts.application !== undefined) {
      options.push([SHB_USERAPPL, encoder.encode(opts.application)]);
    }
    this.#block(BLOCK_SHB, 16, options, (v) => {
      v.setUint32(0, 0x1a2b3c4d, true);
      v.setUint16(4, 1, true); // major version
      v.setUint16(6, 0, true); // minor version
      v.setBigInt64(8, -1n, true); // section length not known up front
    });
  }

  /** Bytes the sink has accepted so far (buffered bytes not included). */
  get bytesWritten(): number {
    return this.#written;
  }

  /** Bytes held in memory waiting for {@linkcode flush}. */
  get bytesBuffered(): number {
    return this.#len;
  }

  /**
   * Writes an Interface Description Block with nanosecond timestamps
   * (`if_tsresol` = 9) and returns the new interface's id (0, 1, …).
   */
  addInterface(opts: PcapngInterface): number {
    const snapLen = opts.snapLen ?? 0;
    if (!Number.isInteger(opts.linkType) || opts.linkType < 0 || opts.linkType > 0xffff) {
      throw new RangeError(`invalid link type ${opts.linkType}`);
    }
    if (!Number.isInteger(snapLen) || snapLen < 0 || snapLen > 0xffffffff) {
      throw new RangeError(`invalid snap length ${snapLen}`);
    }
    const options: Option[] = [[IF_NAME, encoder.encode(opts.name)]];
    if (opts.description !== undefined) {
      options.push([IF_DESCRIPTION, encoder.encode(opts.description)]);
    }
    options.push([IF_TSRESOL, Uint8Array.of(9)]);
    this.#block(BLOCK_IDB, 8, options, (v) => {
      v.setUint16(0, opts.linkType, true);
      v.setUint16(2, 0, true); // reserved
      v.setUint32(4, snapLen, true);
    });
    this.#interfaces.push({ snapLen });
    return this.#interfaces.length - 1;
  }

  /**
   * Writes an Enhanced Packet Block. Data longer than the interface's snap
   * length is cut to it (the original length still records the full size).
   */
  addPacket(p: PcapngPacket): void {
    const iface = this.#interfaces[p.interfaceId];
    if (iface === undefined) throw new RangeError(`unknown interface id ${p.interfaceId}`);
    if (p.timestampNs < 0n || p.timestampNs >= 1n << 64n) {
      throw new RangeError(`timestamp ${p.timestampNs} does not fit in 64 bits`);
    }
    const data = iface.snapLen > 0 && p.data.length > iface.snapLen
      ? p.data.subarray(0, iface.snapLen)
      : p.data;
    const originalLength = Math.max(p.originalLength ?? p.data.length, data.length);
    if (originalLength > 0xffffffff) throw new RangeError(`packet too long: ${originalLength}`);
    const options: Option[] = [];
    if (p.direction !== undefined) {
      options.push([EPB_FLAGS, p.direction === "inbound" ? INBOUND : OUTBOUND]);
    }
    if (p.comment !== undefined) {
      const c = p.comment;
      options.push([OPT_COMMENT, typeof c === "string" ? encoder.encode(c) : c]);
    }
    const ts = p.timestampNs;
    this.#block(BLOCK_EPB, 20 + pad4(data.length), options, (v, body) => {
      v.setUint32(0, p.interfaceId, true);
      v.setUint32(4, Number(ts >> 32n), true);
      v.setUint32(8, Number(ts & 0xffffffffn), true);
      v.setUint32(12, data.length, true);
      v.setUint32(16, originalLength, true);
      body.set(data, 20);
      body.fill(0, 20 + data.length); // padding
    });
  }

  /**
   * Writes a Decryption Secrets Block holding NSS key log lines
   * ("CLIENT_RANDOM …"), which Wireshark uses to decrypt TLS in this file.
   */
  addTlsKeyLog(lines: string): void {
    const secrets = encoder.encode(lines);
    this.#block(BLOCK_DSB, 8 + pad4(secrets.length), [], (v, body) => {
      v.setUint32(0, SECRETS_TLS_KEYLOG, true);
      v.setUint32(4, secrets.length, true);
      body.set(secrets, 8);
      body.fill(0, 8 + secrets.length); // padding
    });
  }

  /**
   * Writes all buffered blocks to the sink. A sink error propagates; the
   * bytes it did accept are dropped from the buffer so a retry continues
   * where the failed write stopped.
   */
  flush(): void {
    let off = 0;
    try {
      while (off < this.#len) {
        const n = this.#sink.writeSync(this.#buf.subarray(off, this.#len));
        if (!Number.isInteger(n) || n <= 0) throw new Error(`sink wrote ${n} bytes`);
        off += n;
        this.#written += n;
      }
    } finally {
      this.#buf.copyWithin(0, off, this.#len);
      this.#len -= off;
    }
  }

  /** Flushes; the sink itself is left open for its owner to close. */
  close(): void {
    this.flush();
  }

  /**
   * Appends one block: `fixed` bytes of body filled by `fill` (every byte,
   * padding included: the buffer may hold old bytes), then the options,
   * framed by the type and the total length (repeated at the end).
   */
  #block(
    type: number,
    fixed: number,
    options: Option[],
    fill: (view: DataView, body: Uint8Array) => void,
  ): void {
    for (const [code, value] of options) {
      if (value.length > 0xffff) throw new RangeError(`option ${code} is too long`);
    }
    const total = 12 + fixed + optionsLength(options);
    if (total > 0xffffffff) throw new RangeError(`block too long: ${total} bytes`);
    const block = this.#reserve(total);
    const v = new DataView(block.buffer, block.byteOffset, block.byteLength);
    v.setUint32(0, type, true);
    v.setUint32(4, total, true);
    const body = block.subarray(8, 8 + fixed);
    fill(new DataView(body.buffer, body.byteOffset, body.byteLength), body);
    let off = 8 + fixed;
    if (options.length > 0) {
      for (const [code, value] of options) {
        v.setUint16(off, code, true);
        v.setUint16(off + 2, value.length, true);
        block.set(value, off + 4);
        block.fill(0, off + 4 + value.length, off + 4 + pad4(value.length)); // padding
        off += 4 + pad4(value.length);
      }
      v.setUint16(off, OPT_ENDOFOPT, true);
      v.setUint16(off + 2, 0, true);
      off += 4;
    }
    v.setUint32(off, total, true);
    this.#len += total;
    if (this.#len > FLUSH_THRESHOLD) this.flush();
  }

  /** Room for `n` more bytes at the end of the buffer (not yet counted). */
  #reserve(n: number): Uint8Array {
    if (this.#len + n > this.#buf.length) {
      let size = this.#buf.length * 2;
      while (size < this.#len + n) size *= 2;
      const grown = new Uint8Array(size);
      grown.set(this.#buf.subarray(0, this.#len));
      this.#buf = grown;
    }
    return this.#buf.subarray(this.#len, this.#len + n);
  }
}
