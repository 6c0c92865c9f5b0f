import assert from "node:assert/strict";
import {
  type HeaderField,
  HpackDecoder,
  HpackEncoder,
  HpackError,
  huffmanDecode,
  huffmanEncode,
  STATIC_TABLE,
} from "../../lib/http/hpack.ts";
import { mulberry32 } from "../_random.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

/** Bytes from the RFC's hex dumps ("8286 8441 …"). */
function hex(s: string): Uint8Array {
  const clean = s.replace(/\s+/g, "");
  const out = new Uint8Array(clean.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(clean.slice(2 * i, 2 * i + 2), 16);
  return out;
}

interface Step {
  block: string;
  headers: HeaderField[];
  table: HeaderField[];
  size: number;
}

function runSteps(decoder: HpackDecoder, steps: Step[]): void {
  for (const [i, step] of steps.entries()) {
    assert.deepStrictEqual(decoder.decode(hex(step.block)), step.headers, `step ${i} headers`);
    assert.deepStrictEqual(decoder.tableEntries(), step.table, `step ${i} table`);
    assert.equal(decoder.tableSize, step.size, `step ${i} size`);
  }
}

const REQUEST_1: HeaderField[] = [
  [":method", "GET"],
  [":scheme", "http"],
  [":path", "/"],
  [":authority", "www.example.com"],
];
const REQUEST_2: HeaderField[] = [...REQUEST_1, ["cache-control", "no-cache"]];
const REQUEST_3: HeaderField[] = [
  [":method", "GET"],
  [":scheme", "https"],
  [":path", "/index.html"],
  [":authority", "www.example.com"],
  ["custom-key", "custom-value"],
];
const TABLE_1: HeaderField[] = [[":authority", "www.example.com"]];
const TABLE_2: HeaderField[] = [["cache-control", "no-cache"], ...TABLE_1];
const TABLE_3: HeaderField[] = [["custom-key", "custom-value"], ...TABLE_2];

const RESPONSE_1: HeaderField[] = [
  [":status", "302"],
  ["cache-control", "private"],
  ["date", "Mon, 21 Oct 2013 20:13:21 GMT"],
  ["location", "https://www.example.com"],
];
const RESPONSE_2: HeaderField[] = [[":status", "307"], ...RESPONSE_1.slice(1)];
const COOKIE = "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1";
const RESPONSE_3: HeaderField[] = [
  [":status", "200"],
  ["cache-control", "private"],
  ["date", "Mon, 21 Oct 2013 20:13:22 GMT"],
  ["location", "https://www.example.com"],
  ["content-encoding", "gzip"],
  ["set-cookie", COOKIE],
];
const RTABLE_1: HeaderField[] = [...RESPONSE_1].reverse();
const RTABLE_2: HeaderField[] = [[":status", "307"], ...RTABLE_1.slice(0, 3)];
const RTABLE_3: HeaderField[] = [
  ["set-cookie", COOKIE],
  ["content-encoding", "gzip"],
  ["date", "Mon, 21 Oct 2013 20:13:22 GMT"],
];

Deno.test("HpackDecoder.decode() matches RFC 7541 C.2.1-C.2.4 single representations", () => {
  const d1 = new HpackDecoder();
  assert.deepStrictEqual(
    d1.decode(hex("400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572")),
    [["custom-key", "custom-header"]],
  );
  assert.deepStrictEqual(d1.tableEntries(), [["custom-key", "custom-header"]]);
  assert.equal(d1.tableSize, 55);

  const d2 = new HpackDecoder();
  assert.deepStrictEqual(d2.decode(hex("040c 2f73 616d 706c 652f 7061 7468")), [
    [":path", "/sample/path"],
  ]);
  assert.equal(d2.tableSize, 0);

  const d3 = new HpackDecoder();
  assert.deepStrictEqual(d3.decode(hex("1008 7061 7373 776f 7264 0673 6563 7265 74")), [
    ["password", "secret"],
  ]);
  assert.equal(d3.tableSize, 0);

  const d4 = new HpackDecoder();
  assert.deepStrictEqual(d4.decode(hex("82")), [[":method", "GET"]]);
  assert.equal(d4.tableSize, 0);
});

Deno.test("HpackDecoder.decode() matches RFC 7541 C.3 requests without Huffman", () => {
  runSteps(new HpackDecoder(), [
    {
      block: "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
      headers: REQUEST_1,
      table: TABLE_1,
      size: 57,
    },
    { block: "8286 84be 5808 6e6f 2d63 6163 6865", headers: REQUEST_2, table: TABLE_2, size: 110 },
    {
      block: "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
      headers: REQUEST_3,
      table: TABLE_3,
      size: 164,
    },
  ]);
});

Deno.test("HpackDecoder.decode() matches RFC 7541 C.4 requests with Huffman", () => {
  runSteps(new HpackDecoder(), [
    {
      block: "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
      headers: REQUEST_1,
      table: TABLE_1,
      size: 57,
    },
    { block: "8286 84be 5886 a8eb 1064 9cbf", headers: REQUEST_2, table: TABLE_2, size: 110 },
    {
      block: "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
      headers: REQUEST_3,
      table: TABLE_3,
      size: 164,
    },
  ]);
});

Deno.test("HpackDecoder.decode() matches RFC 7541 C.5 responses with evictions", () => {
  runSteps(new HpackDecoder({ maxTableSize: 256 }), [
    {
      block: `4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133
              2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70
              6c65 2e63 6f6d`,
      headers: RESPONSE_1,
      table: RTABLE_1,
      size: 222,
    },
    { block: "4803 3330 37c1 c0bf", headers: RESPONSE_2, table: RTABLE_2, size: 222 },
    {
      block: `88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d
              54c0 5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049
              5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e
              3d31`,
      headers: RESPONSE_3,
      table: RTABLE_3,
      size: 215,
    },
  ]);
});

Deno.test("HpackDecoder.decode() matches RFC 7541 C.6 responses with Huffman", () => {
  runSteps(new HpackDecoder({ maxTableSize: 256 }), [
    {
      block: `4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6
              2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3`,
      headers: RESPONSE_1,
      table: RTABLE_1,
      size: 222,
    },
    { block: "4883 640e ffc1 c0bf", headers: RESPONSE_2, table: RTABLE_2, size: 222 },
    {
      block: `88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab
              77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f
              9587 3160 65c0 03ed 4ee5 b106 3d50 07`,
      headers: RESPONSE_3,
      table: RTABLE_3,
      size: 215,
    },
  ]);
});

Deno.test("huffmanDecode() decodes the RFC 7541 C.4/C.6 literals", () => {
  const cases: [string, string][] = [
    ["f1e3 c2e5 f23a 6ba0 ab90 f4ff", "www.example.com"],
    ["a8eb 1064 9cbf", "no-cache"],
    ["25a8 49e9 5ba9 7d7f", "custom-key"],
    ["6402", "302"],
    ["aec3 771a 4b", "private"],
    ["9bd9 ab", "gzip"],
  ];
  for (const [h, text] of cases) {
    assert.equal(dec.decode(huffmanDecode(hex(h))), text);
    assert.deepStrictEqual(huffmanEncode(enc.encode(text)), hex(h));
  }
});

Deno.test("huffmanEncode() and huffmanDecode() round-trip every octet", () => {
  const all = new Uint8Array(256).map((_, i) => i);
  assert.deepStrictEqual(huffmanDecode(huffmanEncode(all)), all);
  const rand = mulberry32(7);
  for (let i = 0; i < 200; i++) {
    const s = new Uint8Array(Math.floor(rand() * 40)).map(() => Math.floor(rand() * 256));
    assert.deepStrictEqual(huffmanDecode(huffmanEncode(s)), s);
  }
});

Deno.test("huffmanDecode() rejects EOS, long padding and non-EOS padding", () => {
  // EOS is 30 one-bits.
  assert.throws(() => huffmanDecode(hex("ffff ffff")), HpackError);
  // '0' (00000) then 11 one-bits of padding: longer than 7 bits.
  assert.throws(() => huffmanDecode(hex("07ff")), HpackError);
  // '0' (00000) then padding 000.
  assert.throws(() => huffmanDecode(hex("00")), HpackError);
  assert.deepStrictEqual(huffmanDecode(hex("07")), enc.encode("0"));
});

Deno.test("HpackDecoder.decode() applies size updates within the SETTINGS limit", () => {
  const d = new HpackDecoder();
  d.decode(hex("400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572"));
  assert.equal(d.tableSize, 55);
  // Size update to 0 evicts everything, then back to 4096 (3f e1 1f).
  assert.deepStrictEqual(d.decode(hex("20 3fe1 1f 82")), [[":method", "GET"]]);
  assert.equal(d.tableSize, 0);
  // Above the limit, and after a field: both errors.
  assert.throws(() => d.decode(hex("3fe2 1f")), /exceeds limit/);
  assert.throws(() => d.decode(hex("82 20")), /after a header field/);
  d.maxTableSize = 8192;
  d.decode(hex("3fe1 3f"));
  assert.throws(() => (d.maxTableSize = -1), RangeError);
});

Deno.test("HpackDecoder.decode() rejects bad indexes, truncation and integer overflow", () => {
  const d = new HpackDecoder();
  assert.throws(() => d.decode(hex("80")), /index 0/);
  assert.throws(() => d.decode(hex("be")), /not in table/);
  assert.throws(() => d.decode(hex("400a 6375")), /past end/);
  assert.throws(() => d.decode(hex("ff")), /truncated integer/);
  assert.throws(() => d.decode(hex("ff ff ff ff ff ff 0f")), /overflow/);
  assert.throws(() => d.decode(hex("40")), /truncated string/);
  assert.throws(() => d.decode(hex(`ff ${"80 ".repeat(200)} 00`)), /overflow/);
});

Deno.test("HpackDecoder lenient mode shows unknown dynamic entries as placeholders", () => {
  const d = new HpackDecoder({ lenient: true });
  assert.deepStrictEqual(d.decode(hex("82 be 7f 03 01 78")), [
    [":method", "GET"],
    ["<unknown index 62>", ""],
    ["<unknown index 66>", "x"],
  ]);
});

Deno.test("HpackDecoder.decode() caps the decoded header list but keeps the table in step", () => {
  const e = new HpackEncoder({ indexing: true });
  const d = new HpackDecoder({ maxHeaderListSize: 1000 });
  d.decode(e.encode([["big", "v".repeat(400)]]));
  // Each indexed reference costs 435 octets: three exceed the cap.
  assert.throws(
    () =>
      d.decode(
        e.encode([["big", "v".repeat(400)], ["big", "v".repeat(400)], ["big", "v".repeat(400)], [
          "n",
          "1",
        ]]),
      ),
    /exceeds 1000/,
  );
  assert.deepStrictEqual(d.decode(e.encode([["n", "1"]])), [["n", "1"]]);
});

Deno.test("HpackEncoder.encode() round-trips through HpackDecoder", () => {
  const lists: HeaderField[][] = [
    REQUEST_3,
    [[":status", "200"], ["content-type", "text/html; charset=utf-8"], ["x-ünïcode", "värde"]],
    [[":status", "200"], ["content-type", "text/html; charset=utf-8"], ["set-cookie", "a=b"]],
  ];
  for (const huffman of [false, true]) {
    for (const indexing of [false, true]) {
      const e = new HpackEncoder({ huffman, indexing });
      const d = new HpackDecoder();
      for (const list of lists) assert.deepStrictEqual(d.decode(e.encode(list)), list);
      e.setTableSize(0);
      assert.deepStrictEqual(d.decode(e.encode(lists[0])), lists[0]);
      assert.equal(d.tableSize, 0);
    }
  }
  assert.equal(STATIC_TABLE.length, 61);
});

Deno.test("HpackDecoder.decode() throws only HpackError under seeded fuzzing", () => {
  const rand = mulberry32(99);
  const seeds = [
    hex("8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf"),
    hex("4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6"),
    new HpackEncoder({ indexing: true, huffman: true }).encode(RESPONSE_3),
  ];
  let errors = 0;
  for (let iter = 0; iter < 3000; iter++) {
    const input = seeds[iter % seeds.length].slice();
    const mutations = 1 + Math.floor(rand() * 4);
    for (let k = 0; k < mutations; k++) {
      input[Math.floor(rand() * input.length)] = Math.floor(rand() * 256);
    }
    const block = rand() < 0.2 ? input.subarray(0, Math.floor(rand() * input.length)) : input;
    try {
      new HpackDecoder({ lenient: rand() < 0.5 }).decode(block);
    } catch (e) {
      if (!(e instanceof HpackError)) throw e;
      errors++;
    }
  }
  assert.ok(errors > 0);
});
