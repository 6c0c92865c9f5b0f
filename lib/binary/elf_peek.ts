/**
 * A cheap look into an ELF file without reading it whole: whether one of its
 * string tables holds a name. Used to skip binaries that cannot define a
 * symbol before the full parse (which takes a second on a 100 MB binary).
 * @module
 */

const SHT_STRTAB = 3;
/** String tables larger than this are not scanned: the full parse decides. */
const MAX_TABLE = 64 << 20;

/** Up to `length` bytes of `file` at `offset` (fewer at its end). */
export function readAt(file: Deno.FsFile, offset: number, length: number): Promise<Uint8Array> {
  return readInto(file, new Uint8Array(length), offset, length);
}

/** Reads up to `length` bytes at `offset` into the start of buf; the bytes read. */
export async function readInto(
  file: Deno.FsFile,
  buf: Uint8Array,
  offset: number,
  length: number,
): Promise<Uint8Array> {
  await file.seek(offset, Deno.SeekMode.Start);
  let got = 0;
  while (got < length) {
    const n = await file.read(buf.subarray(got, length));
    if (n === null) break;
    got += n;
  }
  return buf.subarray(0, got);
}

/** Where name (NUL-terminated) starts a string of table, from index `from` on. */
function includesName(table: Uint8Array, name: Uint8Array, from = 0): boolean {
  for (let i = table.indexOf(name[0], from); i >= 0; i = table.indexOf(name[0], i + 1)) {
    if ((i === 0 || table[i - 1] === 0) && name.every((b, k) => table[i + k] === b)) return true;
  }
  return false;
}

/** String tables are read this much at a time (node's are 5 and 7.5 MB). */
const CHUNK = 1 << 20;

/**
 * Answers by file identity and symbol: every node started while capturing
 * is the same file, asked about by several library families.
 */
const answers = new Map<string, boolean>();
const MAX_ANSWERS = 512;

/**
 * False only when `path` is a 64-bit little-endian ELF file whose string
 * tables (.dynstr, .strtab) all lack `symbol` as a whole string: then it
 * cannot define it. True when it may (or when the file is something else:
 * the caller's full check decides). Throws Deno errors when it cannot be read.
 * Several symbols: true when it may define one of them.
 */
export async function mayDefineSymbol(
  path: string,
  symbol: string | readonly string[],
): Promise<boolean> {
  using file = await Deno.open(path);
  const st = await file.stat();
  const key = `${st.dev}:${st.ino}:${st.size}:${st.mtime?.getTime()}:${[symbol].flat().join(",")}`;
  let answer = answers.get(key);
  if (answer === undefined) {
    answer = await scan(file, symbol);
    if (answers.size >= MAX_ANSWERS) answers.delete(answers.keys().next().value!);
    answers.set(key, answer);
  }
  return answer;
}

async function scan(file: Deno.FsFile, symbol: string | readonly string[]): Promise<boolean> {
  const ehdr = await readAt(file, 0, 64);
  if (ehdr.length < 64 || ehdr[0] !== 0x7f || ehdr[4] !== 2 || ehdr[5] !== 1) return true;
  const v = new DataView(ehdr.buffer, ehdr.byteOffset, ehdr.byteLength);
  const shoff = Number(v.getBigUint64(0x28, true));
  const shentsize = v.getUint16(0x3a, true);
  const shnum = v.getUint16(0x3c, true);
  if (shoff === 0 || shnum === 0 || shentsize < 64) return true;
  const shdrs = await readAt(file, shoff, shnum * shentsize);
  if (shdrs.length < shnum * shentsize) return true;
  const s = new DataView(shdrs.buffer, shdrs.byteOffset, shdrs.byteLength);
  const names = [symbol].flat().map((n) => new TextEncoder().encode(`${n}\0`));
  // a chunk starts with the last bytes of the one before it, so no name is split
  const overlap = Math.max(...names.map((n) => n.length)) + 1;
  const buf = new Uint8Array(CHUNK + overlap);
  let tables = 0;
  for (let i = 0; i < shnum; i++) {
    const at = i * shentsize;
    if (s.getUint32(at + 4, true) !== SHT_STRTAB) continue;
    const offset = Number(s.getBigUint64(at + 0x18, true));
    const size = Number(s.getBigUint64(at + 0x20, true));
    if (size > MAX_TABLE) return true;
    tables++;
    for (let done = 0; done < size;) {
      // the overlap's first byte is the NUL (or table start) a name must follow
      const back = Math.min(done, overlap);
      const chunk = await readInto(
        file,
        buf,
        offset + done - back,
        Math.min(CHUNK, size - done) + back,
      );
      if (chunk.length <= back) break;
      const from = back === 0 ? 0 : 1;
      if (names.some((name) => includesName(chunk, name, from))) return true;
      done += chunk.length - back;
    }
  }
  return tables === 0;
}

/**
 * The `length` bytes that start at the first `needle` in bytes
 * [offset, offset + size) of `path` (fewer at the range's end), read a
 * chunk at a time; undefined when absent. Reading a 2 MB library whole and
 * decoding it as text to search it took 40 ms.
 */
export async function findInFile(
  path: string,
  range: { offset: number; size: number },
  needle: Uint8Array,
  length: number,
): Promise<Uint8Array | undefined> {
  using file = await Deno.open(path);
  // a chunk starts with the last bytes of the one before it: no match is split
  const overlap = Math.max(needle.length, length);
  const buf = new Uint8Array(CHUNK + overlap);
  for (let done = 0; done < range.size;) {
    const back = Math.min(done, overlap);
    const want = Math.min(CHUNK, range.size - done) + back;
    const chunk = await readInto(file, buf, range.offset + done - back, want);
    for (let i = chunk.indexOf(needle[0]); i >= 0; i = chunk.indexOf(needle[0], i + 1)) {
      if (i + needle.length > chunk.length) break;
      if (needle.every((b, k) => chunk[i + k] === b)) {
        const end = Math.min(i + length, range.size - done + back);
        // a match near the chunk's end is whole in the next one
        if (end > chunk.length && chunk.length === want) break;
        return chunk.slice(i, end);
      }
    }
    if (chunk.length < want) break;
    done += chunk.length - back;
  }
  return undefined;
}
