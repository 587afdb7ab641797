/** The .gswlog format on its own: CRC-32C, write → read round trips, and damaged files. */
import assert from "node:assert/strict";
import { crc32c } from "../logger/crc32c.ts";
import {
  encodeFileHeader,
  encodeLog,
  encodeRecord,
  type FileHeader,
  FLAG_TRUNCATED,
  LogReader,
  type LogRecord,
  readAll,
  RECORD_HEADER_LEN,
  recordLength,
} from "../logger/format.ts";
import { numbered, strip, tempDir } from "./logger_helpers.ts";

const FIXTURES = decodeURIComponent(new URL("./fixtures/logs/", import.meta.url).pathname);

const HEADER: Omit<FileHeader, "version" | "clock"> = {
  sequence: 3,
  startNs: 1_750_000_000_123_456_789n,
  runStartNs: 1_750_000_000_000_000_001n,
  configHash: "0123456789abcdef".repeat(4),
  configName: "rocket",
  configPath: "examples/rocket.yaml",
  host: "ground-1",
  gswVersion: "0.1.0",
};

/** Records covering every field's range: empty, largest, truncated, odd lengths, any port. */
function sampleRecords(n: number): LogRecord[] {
  const out: LogRecord[] = [];
  for (let i = 0; i < n; i++) {
    const length = i === 0 ? 0 : i === 1 ? 65507 : i === 2 ? 1500 : (i * 37) % 300;
    const truncated = i === 2 || i % 17 === 5;
    out.push({
      timeNs: 1_750_000_000_000_000_000n + BigInt(i) * 1_000_003n,
      source: i % 3,
      dstPort: i === 3 ? 65535 : 45000 + (i % 5),
      srcAddress: `10.${i % 256}.${(i * 3) % 256}.${255 - (i % 256)}`,
      srcPort: (i * 997) % 65536,
      flags: truncated ? FLAG_TRUNCATED : 0,
      origLength: truncated ? length + 100 + i : length,
      payload: numbered(i, length),
    });
  }
  return out;
}

/** What `tests/fixtures/logs/golden-v1.gswlog` holds (small: no 65507-byte record). */
export function goldenRecords(): LogRecord[] {
  return sampleRecords(6).filter((_, i) => i !== 1);
}

/** Header of the golden fixture. */
export const GOLDEN_HEADER = HEADER;

async function readBytes(bytes: Uint8Array, chunkSize?: number) {
  await using dir = await tempDir("format");
  const path = `${dir.path}/test.gswlog`;
  await Deno.writeFile(path, bytes);
  const reader = new LogReader([path], chunkSize);
  const records: LogRecord[] = [];
  const offsets: number[] = [];
  for await (const r of reader.records()) {
    records.push(strip(r));
    offsets.push(r.offset);
  }
  return { records, offsets, stats: reader.stats, headers: reader.headers };
}

/** Byte offset of each record in an `encodeLog` file. */
function recordOffsets(records: LogRecord[]): number[] {
  let at = encodeFileHeader(HEADER).length;
  return records.map((r) => {
    const here = at;
    at += recordLength(r.payload.length);
    return here;
  });
}

Deno.test("crc32c: the standard check values (RFC 3720 B.4 and the catalogue's)", () => {
  const ascii = new TextEncoder().encode("123456789");
  assert.equal(crc32c(ascii), 0xe3069283);
  assert.equal(crc32c(new Uint8Array(32)), 0x8a9136aa);
  assert.equal(crc32c(new Uint8Array(32).fill(0xff)), 0x62a8ab43);
  assert.equal(crc32c(Uint8Array.from({ length: 32 }, (_, i) => i)), 0x46dd794e);
  assert.equal(crc32c(Uint8Array.from({ length: 32 }, (_, i) => 31 - i)), 0x113fdb5c);
  assert.equal(crc32c(new Uint8Array(0)), 0);
  // Piecewise equals whole, at every split point (the 8-byte loop and the tail agree).
  const data = numbered(9, 101);
  for (let split = 0; split <= data.length; split++) {
    assert.equal(crc32c(data, split, data.length, crc32c(data, 0, split)), crc32c(data));
  }
});

Deno.test("format: many records, including empty, 65507-byte and truncated ones, round trip", async () => {
  const records = sampleRecords(500);
  const bytes = encodeLog(HEADER, records);
  assert.equal(bytes.length % 8, 0, "records keep 8-byte alignment");
  const got = await readBytes(bytes);
  assert.equal(got.records.length, records.length);
  assert.deepEqual(got.records, records);
  assert.deepEqual(got.offsets, recordOffsets(records));
  assert.equal(got.records[0].payload.length, 0);
  assert.equal(got.records[1].payload.length, 65507);
  assert.equal(got.records[2].flags & FLAG_TRUNCATED, FLAG_TRUNCATED);
  assert.deepEqual(got.stats, {
    files: 1,
    records: 500,
    payloadBytes: records.reduce((n, r) => n + r.payload.length, 0),
    corrupt: 0,
    corruptBytes: 0,
    truncated: 0,
    badFiles: 0,
    badHeaders: 0,
    problems: [],
  });
  assert.deepEqual(got.headers[0].header, { ...HEADER, version: 1, clock: 0 });
});

Deno.test("format: a small read buffer gives the same records (records span chunks)", async () => {
  const records = sampleRecords(60);
  const bytes = encodeLog(HEADER, records);
  const small = await readBytes(bytes, 64);
  assert.deepEqual(small.records, records);
  assert.equal(small.stats.corrupt + small.stats.truncated, 0);
});

Deno.test("format: a file cut inside its last record reads every complete record", async () => {
  const records = sampleRecords(40);
  const bytes = encodeLog(HEADER, records);
  const last = recordOffsets(records)[39];
  const lastLen = recordLength(records[39].payload.length);
  assert.ok(lastLen > RECORD_HEADER_LEN + 8, "the last record has a payload to cut into");
  // Cut after the sync word only, inside the header, right after it, inside the payload, and
  // one byte short of the end.
  for (const cut of [2, 4, 20, RECORD_HEADER_LEN, RECORD_HEADER_LEN + 3, lastLen - 1]) {
    const got = await readBytes(bytes.subarray(0, last + cut));
    assert.deepEqual(got.records, records.slice(0, 39), `cut ${cut} bytes into the last record`);
    assert.equal(got.stats.truncated, 1, `cut at ${cut}`);
    assert.equal(got.stats.corrupt, 0, `cut at ${cut}`);
    assert.match(got.stats.problems[0], new RegExp(`offset ${last}: truncated final record`));
  }
  // Cut exactly between records: nothing is wrong.
  const clean = await readBytes(bytes.subarray(0, last));
  assert.equal(clean.records.length, 39);
  assert.equal(clean.stats.truncated + clean.stats.corrupt, 0);
});

Deno.test("format: one damaged byte skips exactly that record, reported, and resyncs", async () => {
  const records = sampleRecords(50);
  const clean = encodeLog(HEADER, records);
  const offsets = recordOffsets(records);
  const k = 20;
  assert.ok(records[k].payload.length > 10);
  // A byte of the payload, of each header field (sync, CRC, time, lengths, ports, source) and
  // of the reserved word: any of them must cost record k and nothing else.
  for (const delta of [0, 3, 4, 9, 17, 21, 26, 30, 33, 35, 38, RECORD_HEADER_LEN + 5]) {
    const bytes = clean.slice();
    bytes[offsets[k] + delta] ^= 0x5a;
    const got = await readBytes(bytes);
    const expected = records.filter((_, i) => i !== k);
    assert.deepEqual(got.records, expected, `byte ${delta} of record ${k} damaged`);
    assert.equal(got.stats.corrupt, 1, `byte ${delta}`);
    assert.equal(got.stats.corruptBytes, recordLength(records[k].payload.length), `byte ${delta}`);
    assert.equal(got.stats.truncated, 0);
    assert.match(got.stats.problems[0], new RegExp(`offset ${offsets[k]}: skipped`));
  }
});

Deno.test("format: a stored length damaged to run past the end is damage, not a truncation", async () => {
  const records = sampleRecords(10);
  const bytes = encodeLog(HEADER, records);
  const at = recordOffsets(records)[5];
  new DataView(bytes.buffer).setUint32(at + 20, 60000, true); // claims 60000 payload bytes
  const got = await readBytes(bytes);
  assert.deepEqual(got.records, records.filter((_, i) => i !== 5));
  assert.equal(got.stats.corrupt, 1);
  assert.equal(got.stats.truncated, 0);
});

Deno.test("format: garbage spliced between records (misaligned) is skipped as one region", async () => {
  const records = sampleRecords(12);
  const clean = encodeLog(HEADER, records);
  const at = recordOffsets(records)[6];
  // Includes a fake sync word "GSWR" that must not be taken for a record.
  const junk = Uint8Array.of(1, 2, 3, 0x47, 0x53, 0x57, 0x52, 9, 9, 9, 9, 9, 0x47);
  const bytes = new Uint8Array(clean.length + junk.length);
  bytes.set(clean.subarray(0, at));
  bytes.set(junk, at);
  bytes.set(clean.subarray(at), at + junk.length);
  const got = await readBytes(bytes);
  assert.deepEqual(got.records, records);
  assert.equal(got.stats.corrupt, 1);
  assert.equal(got.stats.corruptBytes, junk.length);
  // Records after the splice sit at unaligned offsets and are still found.
  assert.equal(got.offsets[6], at + junk.length);
});

Deno.test("format: several files read in order; empty, foreign and newer files are reported", async () => {
  await using dir = await tempDir("format-files");
  const a = sampleRecords(5);
  const b = sampleRecords(7).map((r) => ({ ...r, source: 9 }));
  await Deno.writeFile(`${dir.path}/a.gswlog`, encodeLog(HEADER, a));
  await Deno.writeFile(`${dir.path}/b.gswlog`, encodeLog({ ...HEADER, sequence: 4 }, b));
  await Deno.writeFile(`${dir.path}/empty.gswlog`, new Uint8Array(0));
  await Deno.writeTextFile(`${dir.path}/text.gswlog`, "time,value\n1,2\n3,4\n5,6\n");
  // Format version 2, written as such (its header's checksum holds): refused, whatever
  // follows, since this gsw cannot know how to read it.
  const newer = encodeLog(HEADER, a);
  const h = new DataView(newer.buffer).getUint32(12, true);
  newer[8] = 2;
  new DataView(newer.buffer).setUint32(h - 4, crc32c(newer, 0, h - 4), true);
  await Deno.writeFile(`${dir.path}/newer.gswlog`, newer);
  const names = ["a", "empty", "text", "missing", "newer", "b"].map((n) =>
    `${dir.path}/${n}.gswlog`
  );
  const got = await readAll(names);
  assert.deepEqual(got.records.map(strip), [...a, ...b]);
  assert.deepEqual(got.headers.map((h) => h.header.sequence), [3, 4]);
  assert.equal(got.stats.files, 2);
  assert.equal(got.stats.badFiles, 4);
  const problems = got.stats.problems.join("\n");
  assert.match(problems, /empty\.gswlog: empty file/);
  assert.match(problems, /text\.gswlog: not a gsw log/);
  assert.match(problems, /missing\.gswlog: cannot open/);
  assert.match(
    problems,
    /newer\.gswlog: log format version 2; this gsw reads version 1 \(update gsw\)/,
  );
});

Deno.test("format: a damaged file header is reported, and its records still read", async () => {
  const records = sampleRecords(8);
  const clean = encodeLog(HEADER, records);
  const len = encodeFileHeader(HEADER).length;
  // Any one byte of the header damaged, magic, version and length included: every record is
  // read, from where it is, and the header is reported (not the file refused).
  for (let at = 0; at < len; at++) {
    for (const value of [clean[at] ^ 1, 0xff]) {
      if (value === clean[at]) continue;
      const bytes = clean.slice();
      bytes[at] = value;
      const got = await readBytes(bytes, at % 2 ? 64 : undefined); // small reads: spans chunks
      const what = `header byte ${at} set to ${value}: ${got.stats.problems.join("; ")}`;
      // The count first: a failing deepEqual over a 65507-byte payload takes minutes to print.
      assert.equal(got.records.length, records.length, what);
      assert.deepEqual(got.records, records, what);
      assert.deepEqual(got.offsets, recordOffsets(records), what);
      assert.equal(got.stats.badHeaders, 1, what);
      assert.equal(got.stats.badFiles + got.stats.corrupt + got.stats.truncated, 0, what);
      assert.equal(got.stats.problems.length, 1, what);
      // Magic, version and length are named; the other bytes fail the checksum only.
      assert.match(
        got.stats.problems[0],
        at < 10 || (at >= 12 && at < 16)
          ? new RegExp(
            `offset 0: damaged file header \\(.+\\): its metadata may be wrong; records ` +
              `recovered by their sync words from offset ${len}$`,
          )
          : /offset 0: header checksum mismatch: its metadata may be wrong$/,
        what,
      );
    }
  }
  // What the header still says is kept.
  const bytes = clean.slice();
  bytes[12] = 0xff;
  const got = await readBytes(bytes);
  assert.match(got.stats.problems[0], /damaged file header \(header length 255\)/);
  assert.deepEqual(got.headers[0].header, { ...HEADER, version: 1, clock: 0 });
});

Deno.test("format: a header length damaged to land on a later record loses no record before it", async () => {
  const records = sampleRecords(8);
  const bytes = encodeLog(HEADER, records);
  const offsets = recordOffsets(records);
  // Record 0 is empty (40 bytes): record 1 starts at a length that passes every check but
  // the header's checksum.
  new DataView(bytes.buffer).setUint32(12, offsets[1], true);
  const got = await readBytes(bytes);
  assert.equal(got.records.length, records.length, got.stats.problems.join("\n"));
  assert.deepEqual(got.records, records);
  assert.equal(got.stats.badHeaders, 1);
  assert.match(
    got.stats.problems[0],
    new RegExp(`damaged file header \\(header length ${offsets[1]}\\).+from offset ${offsets[0]}$`),
  );
});

Deno.test("format: a header that fails its checksum and has no record after it is refused", async () => {
  await using dir = await tempDir("format-header");
  const header = encodeFileHeader(HEADER);
  const garbage = Uint8Array.from({ length: 3000 }, (_, i) => (i * 151 + 7) & 0xff);
  const files: Record<string, Uint8Array> = {
    // A version this gsw does not know, in a header that fails its checksum, over data that
    // holds no version-1 record: a newer format or damage, and nothing to guess from.
    unknown: new Uint8Array([...header, ...garbage]),
    // Version 1, its length damaged, and nothing but garbage after it.
    length: new Uint8Array([...header, ...garbage]),
    // Its metadata damaged, then a final record cut short: the header and a truncation.
    cut: new Uint8Array([...header, ...encodeRecord(sampleRecords(8)[7]).subarray(0, 50)]),
  };
  files.unknown[8] = 2;
  files.length[12] = 0xff;
  files.cut[80] ^= 1;
  for (const [name, bytes] of Object.entries(files)) {
    await Deno.writeFile(`${dir.path}/${name}.gswlog`, bytes);
  }
  const got = await readAll(Object.keys(files).map((n) => `${dir.path}/${n}.gswlog`));
  assert.equal(got.records.length, 0);
  assert.equal(got.stats.badFiles, 2);
  assert.equal(got.stats.files, 1);
  assert.equal(got.stats.badHeaders, 1);
  assert.equal(got.stats.truncated, 1);
  const problems = got.stats.problems.join("\n");
  assert.match(
    problems,
    /unknown\.gswlog: log format version 2, which this gsw does not read .+ no version-1 record follows: a newer format \(update gsw\) or a damaged file/,
  );
  assert.match(problems, /length\.gswlog: damaged file header \(header length 255\) and no record/);
  assert.match(problems, /cut\.gswlog: offset 0: header checksum mismatch/);
  assert.match(
    problems,
    new RegExp(`cut\\.gswlog: offset ${header.length}: truncated final record`),
  );
});

Deno.test("format: the committed version-1 fixture still encodes and decodes byte for byte", async () => {
  // If this fails, the format changed: bump FORMAT_VERSION and keep reading version 1.
  const fixture = await Deno.readFile(`${FIXTURES}golden-v1.gswlog`);
  const records = goldenRecords();
  assert.deepEqual(encodeLog(HEADER, records), fixture);
  const got = await readAll([`${FIXTURES}golden-v1.gswlog`]);
  assert.deepEqual(got.records.map(strip), records);
  assert.deepEqual(got.headers[0].header, { ...HEADER, version: 1, clock: 0 });
  // Spot checks against the layout in docs/log-format.md, independent of the encoder.
  const v = new DataView(fixture.buffer);
  assert.deepEqual([...fixture.subarray(0, 8)], [0x89, 0x47, 0x53, 0x57, 0x4c, 0x4f, 0x47, 0x0a]);
  const h = v.getUint32(12, true);
  assert.equal(v.getUint32(h - 4, true), crc32c(fixture, 0, h - 4));
  assert.equal(new TextDecoder().decode(fixture.subarray(h, h + 4)), "GSWR");
  assert.equal(v.getUint32(h + 4, true), crc32c(fixture, h + 8, h + 40)); // empty payload
  assert.equal(v.getBigUint64(h + 8, true), records[0].timeNs);
  assert.equal(v.getUint16(h + 30, true), records[0].dstPort);
});
