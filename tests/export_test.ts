/** `export` as a real process: a log of simulator packets decodes to what the packets encode. */
import assert from "node:assert/strict";
import type { RawValue } from "../config/mod.ts";
import { PHASES } from "../sim/generate.ts";
import { CONFIG, CONFIG_BYTES, CONFIG_FILE, writeLog } from "./export_helpers.ts";
import { spawn } from "./helpers/pipeline.ts";
import { runTask, tempDir } from "./logger_helpers.ts";

/** RFC 4180 fields of one CSV line. */
function csvFields(line: string): string[] {
  const out: string[] = [];
  let i = 0;
  while (i <= line.length) {
    if (line[i] === '"') {
      let s = "";
      for (i++; i < line.length; i++) {
        if (line[i] === '"' && line[i + 1] === '"') s += '"', i++;
        else if (line[i] === '"') break;
        else s += line[i];
      }
      out.push(s);
      i += 2;
    } else {
      const end = line.indexOf(",", i);
      out.push(line.slice(i, end < 0 ? line.length : end));
      i = end < 0 ? line.length + 1 : end + 1;
    }
  }
  return out;
}

function hex(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

/** The CSV cell and the JSON value export must give for a value. */
function asCsv(v: RawValue): string {
  return v instanceof Uint8Array ? hex(v) : String(v);
}
function asJson(v: RawValue): unknown {
  if (v instanceof Uint8Array) return hex(v);
  if (typeof v === "bigint") return String(v);
  if (typeof v === "number" && !Number.isFinite(v)) return String(v);
  return v;
}

Deno.test("export: CSV has one row per packet, one column per measurement, exact values", async () => {
  await using dir = await tempDir("export");
  const log = `${dir.path}/gsw-0001.gswlog`;
  const sent = await writeLog(log);
  const r = await runTask("export", ["--config", CONFIG_FILE, log]);
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout.trimEnd().split("\n");
  const header = csvFields(lines[0]);
  const carried = CONFIG.measurements.filter((m) => m.packets.length > 0).map((m) => m.name);
  assert.deepEqual(header, ["time_ns", "time_utc", "packet", ...carried]);
  assert.equal(lines.length - 1, sent.length);
  for (let i = 0; i < sent.length; i++) {
    const row = csvFields(lines[i + 1]);
    const s = sent[i];
    assert.equal(row.length, header.length, lines[i + 1]);
    assert.equal(row[0], String(s.timeNs));
    assert.equal(
      row[1],
      new Date(Number(s.timeNs / 1_000_000n)).toISOString().slice(0, 20) +
        String(s.timeNs % 1_000_000_000n).padStart(9, "0") + "Z",
    );
    assert.equal(row[2], s.packet);
    for (let c = 3; c < header.length; c++) {
      const v = s.values.get(header[c]);
      assert.equal(row[c], v === undefined ? "" : asCsv(v), `${s.packet} ${header[c]} row ${i}`);
    }
  }
  // Independent of the decoder: the status counter counts packets, the phase is a label, and
  // mission time is the simulator's time in seconds.
  const status = lines.slice(1).map(csvFields).filter((row) => row[2] === "Status");
  assert.deepEqual(status.map((row) => Number(row[header.indexOf("PACKET_SEQ")])), [
    ...Array(20).keys(),
  ]);
  assert.ok(
    status.every((row) =>
      (PHASES as readonly string[]).includes(row[header.indexOf("FLIGHT_STATE")])
    ),
  );
  const nav = lines.slice(1).map(csvFields).filter((row) => row[2] === "Nav");
  nav.forEach((row, k) => {
    const t = Number(row[header.indexOf("MISSION_TIME")]);
    assert.ok(Math.abs(t - k / 10) < 0.0011, `MISSION_TIME ${t} at ${k / 10} s`);
  });
  assert.match(
    r.stderr,
    /^export: 100 packets decoded from 1 file; records that are no known packet: 16 \(4 unknown port, 4 wrong length, 4 unknown packet id, 4 oversize \(truncated by the receive buffer\)\)\n$/,
  );
});

Deno.test("export: CSV --fill carries each measurement's latest value into every row", async () => {
  await using dir = await tempDir("export-fill");
  const log = `${dir.path}/gsw-0001.gswlog`;
  const sent = await writeLog(log);
  const r = await runTask("export", ["--config", CONFIG_FILE, "--fill", log]);
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout.trimEnd().split("\n");
  const header = csvFields(lines[0]);
  assert.equal(lines.length - 1, sent.length);
  // What a spreadsheet needs: the newest value of every column at each row's time.
  const latest = new Map<string, string>();
  for (let i = 0; i < sent.length; i++) {
    for (const [name, v] of sent[i].values) latest.set(name, asCsv(v));
    const row = csvFields(lines[i + 1]);
    assert.equal(row[0], String(sent[i].timeNs));
    assert.equal(row[2], sent[i].packet);
    for (let c = 3; c < header.length; c++) {
      assert.equal(row[c], latest.get(header[c]) ?? "", `${header[c]} row ${i}`);
    }
  }
  // Once every packet type has come, no cell is empty.
  const full = lines.slice(1 + CONFIG.packets.length).map(csvFields);
  assert.ok(full.every((row) => row.every((cell) => cell !== "")));
  // Unfilled rows of the same log differ: the fill really filled something.
  const plain = await runTask("export", ["--config", CONFIG_FILE, log]);
  assert.notEqual(plain.stdout, r.stdout);
});

Deno.test("export: JSONL has one object per packet with exact values and the time as a string", async () => {
  await using dir = await tempDir("export-jsonl");
  const log = `${dir.path}/gsw-0001.gswlog`;
  const sent = await writeLog(log);
  const r = await runTask("export", ["--config", CONFIG_FILE, "--format", "jsonl", log]);
  assert.equal(r.code, 0, r.stderr);
  const objects = r.stdout.trimEnd().split("\n").map((l) => JSON.parse(l));
  assert.equal(objects.length, sent.length);
  objects.forEach((o, i) => {
    const s = sent[i];
    assert.equal(o.time_ns, String(s.timeNs));
    assert.equal(o.packet, s.packet);
    assert.equal(o.source, "vehicle");
    assert.deepEqual(
      o.measurements,
      Object.fromEntries([...s.values].map(([k, v]) => [k, asJson(v)])),
    );
  });
  const gps = objects.find((o) => o.packet === "GPS");
  assert.equal(typeof gps.measurements.GPS_TIME, "string", "64-bit integers keep every digit");
  assert.equal(
    typeof objects.find((o) => o.packet === "Radio").measurements.LINK_STATUS,
    "string",
  );
});

Deno.test("export: without --config it uses the logger's copy; another config is warned about", async () => {
  await using dir = await tempDir("export-config");
  const log = `${dir.path}/gsw-0001.gswlog`;
  await writeLog(log);
  await Deno.writeFile(`${dir.path}/config.yaml`, CONFIG_BYTES);
  const own = await runTask("export", ["--format", "jsonl", dir.path]);
  assert.equal(own.code, 0, own.stderr);
  assert.equal(own.stdout.trimEnd().split("\n").length, 100);
  assert.doesNotMatch(own.stderr, /warning/);

  // Same layout, one more comment: another hash, so export warns (once) but still decodes.
  const edited = `${dir.path}/edited.yaml`;
  await Deno.writeTextFile(edited, new TextDecoder().decode(CONFIG_BYTES) + "# edited\n");
  const other = await runTask("export", ["--config", edited, log]);
  assert.equal(other.code, 0, other.stderr);
  const warnings = other.stderr.split("\n").filter((l) => l.includes("warning"));
  assert.equal(warnings.length, 1, other.stderr);
  assert.match(
    warnings[0],
    new RegExp(
      `was recorded with config "rocket" \\(sha256 ${
        CONFIG.hash.slice(0, 12)
      }\\), not \\S+edited\\.yaml`,
    ),
  );
  assert.match(warnings[0], /The recorded config is \S+\/config\.yaml/);
});

Deno.test("export CLI: help, usage errors (exit 2), missing log (exit 1), --output permission", async () => {
  await using dir = await tempDir("export-cli");
  const help = await runTask("export", ["--help"]);
  assert.equal(help.code, 0);
  assert.match(
    help.stdout,
    /^usage: export \[--config FILE\] LOG… \[--format csv\|jsonl\|influx\] \[--fill\]/,
  );
  for (
    const args of [
      [],
      ["--format", "xml", "a.gswlog"],
      ["--bogus", "a.gswlog"],
      ["--output"],
      ["--fill", "--format", "jsonl", "a.gswlog"],
      ["--tags", "source", "a.gswlog"],
      ["--format", "influx", "--tags", "source,bogus", "a.gswlog"],
      ["--format", "influx", "--tags", "source,source", "a.gswlog"],
      ["--format", "influx", "--tags", "flight=", "a.gswlog"],
      ["--format", "influx", "--unsigned", "x", "a.gswlog"],
      ["--format", "influx", "--measurement", "{nope}", "a.gswlog"],
    ]
  ) {
    const r = await runTask("export", args);
    assert.equal(r.code, 2, `${args}: ${r.stderr}`);
    assert.match(r.stderr, /^gsw export: .+\nusage: export /, `${args}`);
  }
  const missing = await runTask("export", ["--config", CONFIG_FILE, `${dir.path}/none.gswlog`]);
  assert.equal(missing.code, 1);
  assert.equal(
    missing.stderr,
    `gsw export: cannot open log ${dir.path}/none.gswlog: no such file or directory\n`,
  );

  // The export task may not write files: it says how to, and that line works.
  const log = `${dir.path}/gsw-0001.gswlog`;
  await writeLog(log);
  const out = `${dir.path}/flight.csv`;
  const refused = await runTask("export", ["--config", CONFIG_FILE, log, "--output", out]);
  assert.equal(refused.code, 1, refused.stderr);
  assert.match(refused.stderr, /has no write permission\. Redirect stdout instead/);
  const line = refused.stderr.split("\n").find((l) => l.startsWith("  deno run "))!;
  assert.ok(line, refused.stderr);
  const p = spawn("export", line.trim().split(" ").slice(1), { cwd: dir.path });
  assert.equal((await p.status).code, 0, p.stderr.text);
  const csv = await Deno.readTextFile(out);
  assert.equal(csv.trimEnd().split("\n").length, 101);
});
