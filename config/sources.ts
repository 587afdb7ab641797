/** The `sources:` section: where decom receives each source's packets. */
import { isIP } from "node:net";
import { dirname, isAbsolute, join } from "node:path";
import type { Entries, Entry, Reader } from "./yaml_reader.ts";
import {
  FRAMING_KEYS,
  MQTT_SOURCE_KEYS,
  PLAIN_NAME,
  PLAIN_NAME_RULE,
  SERIAL_SOURCE_KEYS,
  SOURCE_KEYS,
  SOURCE_KINDS,
  type SourceDef,
  TCP_SOURCE_KEYS,
} from "./defs.ts";

import { MQTT_DEFAULT_PORT, parseMqttUrl, topicFilterProblem } from "./mqtt.ts";
import type { FramingSettings, StreamSettings } from "./types.ts";

export function readSources(r: Reader, top: Entries): SourceDef[] | undefined {
  const e = top.get("sources");
  if (!e) return undefined;
  const items = r.seq(e, "sources");
  if (!items) return [];
  if (items.length === 0) {
    r.error(
      e.pos,
      'sources is empty; remove it (every packet then belongs to source "default") or add a ' +
        "source",
    );
  }
  const out: SourceDef[] = [];
  const byName = new Map<string, SourceDef>();
  items.forEach((item, i) => {
    const pos = r.pos(item, e.pos);
    let what = `source #${i + 1}`;
    const f = r.map(item, what, pos);
    if (!f) return;
    const kind = r.choice(f.get("type"), what, SOURCE_KINDS) ?? "udp";
    const keys = {
      udp: SOURCE_KEYS,
      mqtt: MQTT_SOURCE_KEYS,
      serial: SERIAL_SOURCE_KEYS,
      tcp: TCP_SOURCE_KEYS,
    };
    r.allowOnly(f, keys[kind], what);
    const nameEntry = r.require(f, "name", what, pos, 'add "name: <source name>"');
    const name = r.string(nameEntry, what);
    if (name === undefined || !nameEntry) return;
    what = `source "${name}"`;
    if (!PLAIN_NAME.test(name)) {
      r.error(
        nameEntry.pos,
        `${what}: a source name ${PLAIN_NAME_RULE}; rename it`,
      );
    }
    const first = byName.get(name);
    if (first) {
      r.error(
        nameEntry.pos,
        `${what} is defined twice (first at line ${first.pos.line}); rename one`,
      );
      return;
    }
    const bindEntry = f.get("bind");
    const bind = r.string(bindEntry, what) ?? "0.0.0.0";
    if (bindEntry && isIP(bind) !== 4) {
      r.error(
        bindEntry.pos,
        isIP(bind) === 6
          ? `${what}: bind ${bind} is IPv6, which decom does not receive yet; use an IPv4 ` +
            "address of this machine such as 0.0.0.0 (all) or 127.0.0.1"
          : `${what}: bind must be an IPv4 address of this machine such as 0.0.0.0 (all) or ` +
            `127.0.0.1, not "${bind}"`,
      );
    }
    const mcEntry = f.get("multicast");
    const multicast = r.string(mcEntry, what);
    if (mcEntry && multicast !== undefined && !isMulticast(multicast)) {
      r.error(
        mcEntry.pos,
        isIP(multicast) === 6
          ? `${what}: multicast group ${multicast} is IPv6, which decom does not receive yet; ` +
            "use an IPv4 group (224.0.0.0–239.255.255.255)"
          : `${what}: multicast must be an IPv4 multicast group address (224.0.0.0–` +
            `239.255.255.255), not "${multicast}"`,
      );
    }
    const def: SourceDef = { name, pos: nameEntry.pos, kind, bind, multicast };
    if (kind === "mqtt") def.mqtt = readMqtt(r, f, what, pos);
    if (kind === "serial" || kind === "tcp") def.stream = readStream(r, f, what, pos, kind);
    byName.set(name, def);
    out.push(def);
  });
  return out;
}

export function isMulticast(address: string): boolean {
  if (isIP(address) !== 4) return false;
  const first = Number(address.split(".")[0]);
  return first >= 224 && first <= 239;
}

function readMqtt(r: Reader, f: Entries, what: string, pos: Entry["pos"]): SourceDef["mqtt"] {
  const urlEntry = r.require(
    f,
    "url",
    what,
    pos,
    'add "url: mqtt://<broker host>:1883" (the broker the other machine\'s bridge publishes to)',
  );
  const url = r.string(urlEntry, what) ?? "";
  const broker = urlEntry ? parseMqttUrl(url) : undefined;
  if (urlEntry && typeof broker === "string") r.error(urlEntry.pos, `${what}: ${broker}`);
  if (urlEntry && typeof broker === "object" && broker.tls) {
    r.error(
      urlEntry.pos,
      `${what}: decom's MQTT source does not speak TLS (mqtts://) yet; use the broker's plain ` +
        "listener on a trusted network, or a TLS tunnel to it (docs/mqtt.md)",
    );
  }
  const topicEntry = f.get("topic");
  const topic = r.string(topicEntry, what);
  if (topicEntry && topic !== undefined) {
    const bad = topicFilterProblem(topic);
    if (bad) r.error(topicEntry.pos, `${what}: topic "${topic}" ${bad}`);
  }
  const qos = r.integer(f.get("qos"), what, 0, 1) ?? 0;
  const passwordEntry = f.get("password_file");
  let passwordFile = r.string(passwordEntry, what);
  if (passwordFile !== undefined && !isAbsolute(passwordFile)) {
    // Relative to the config file, like everything a config names.
    passwordFile = join(dirname(r.file), passwordFile);
  }
  const clientEntry = f.get("client_id");
  const clientId = r.string(clientEntry, what);
  if (clientEntry && clientId !== undefined && new TextEncoder().encode(clientId).length > 23) {
    r.error(
      clientEntry.pos,
      `${what}: client_id "${clientId}" is longer than 23 bytes, which MQTT 3.1.1 brokers may refuse`,
    );
  }
  return {
    url,
    host: typeof broker === "object" ? broker.host : "",
    port: typeof broker === "object" ? broker.port : MQTT_DEFAULT_PORT,
    topic,
    qos: qos as 0 | 1,
    username: r.string(f.get("username"), what),
    passwordFile,
    clientId,
  };
}

/** Standard serial rates (what termios can set). */
export const BAUD_RATES = [
  1200,
  2400,
  4800,
  9600,
  19200,
  38400,
  57600,
  115200,
  230400,
  460800,
  500000,
  576000,
  921600,
  1000000,
  1500000,
  2000000,
  3000000,
];

function readStream(
  r: Reader,
  f: Entries,
  what: string,
  pos: Entry["pos"],
  kind: "serial" | "tcp",
): StreamSettings {
  const out: StreamSettings = {
    baud: 115200,
    dataBits: 8,
    parity: "none",
    stopBits: 1,
    flowControl: "none",
    framing: readFraming(r, f, what, pos),
  };
  if (kind === "serial") {
    const dev = r.require(f, "device", what, pos, 'add "device: /dev/ttyUSB0" (the radio\'s port)');
    out.device = r.string(dev, what);
    const baudEntry = f.get("baud");
    const baud = r.integer(baudEntry, what, 1, 4_000_000, "baud");
    if (baudEntry && baud !== undefined && !BAUD_RATES.includes(baud)) {
      r.error(
        baudEntry.pos,
        `${what}: baud ${baud} is not a standard rate (${BAUD_RATES.join(", ")})`,
      );
    }
    out.baud = baud ?? 115200;
    out.dataBits = r.integer(f.get("data_bits"), what, 5, 8) ?? 8;
    out.parity = r.choice(f.get("parity"), what, ["none", "even", "odd"] as const) ?? "none";
    out.stopBits = r.integer(f.get("stop_bits"), what, 1, 2) ?? 1;
    out.flowControl =
      r.choice(f.get("flow_control"), what, ["none", "rtscts", "xonxoff"] as const) ??
        "none";
    return out;
  }
  const c = f.get("connect");
  const l = f.get("listen");
  if ((c === undefined) === (l === undefined)) {
    r.error(
      (c ?? l)?.pos ?? pos,
      `${what}: a tcp source needs exactly one of "connect: HOST:PORT" (decom connects to a ` +
        `radio modem or simulator) and "listen: HOST:PORT" (senders connect to decom)`,
    );
    return out;
  }
  const e = (c ?? l)!;
  const text = r.string(e, what);
  const m = text?.match(/^(.+):(\d{1,5})$/);
  const port = m ? Number(m[2]) : 0;
  if (text !== undefined && (!m || port < 1 || port > 65535)) {
    r.error(e.pos, `${what}: ${e.key} must be HOST:PORT (e.g. 127.0.0.1:5000), not "${text}"`);
    return out;
  }
  if (m) {
    const addr = { host: m[1], port };
    if (c) out.connect = addr;
    else out.listen = addr;
  }
  return out;
}

function readFraming(r: Reader, f: Entries, what: string, pos: Entry["pos"]): FramingSettings {
  const framing: FramingSettings = {
    kind: "cobs",
    lengthBytes: 2,
    lengthBig: true,
    crc: "none",
    crcBig: true,
    minLength: 1,
    maxLength: 65507,
  };
  const e = r.require(
    f,
    "framing",
    what,
    pos,
    'add "framing: { type: cobs, crc: crc16-ccitt }" (or sync, length, slip): how its bytes are cut into packets',
  );
  if (!e) return framing;
  const w = `${what}: framing`;
  const m = r.map(e.value, w, e.pos);
  if (!m) return framing;
  r.allowOnly(m, FRAMING_KEYS, w);
  const kindEntry = r.require(m, "type", w, e.pos, 'add "type: cobs" (or sync, length, slip)');
  framing.kind = r.choice(kindEntry, w, ["sync", "length", "cobs", "slip"] as const) ?? "cobs";
  framing.crc = r.choice(m.get("crc"), w, ["none", "crc16-ccitt", "crc32c"] as const) ?? "none";
  framing.crcBig = (r.choice(m.get("crc_endianness"), w, ["big", "little"] as const) ?? "big") ===
    "big";
  if (framing.kind === "sync") {
    const syncEntry = r.require(m, "sync", w, e.pos, 'add "sync: EB90", the sync word in hex');
    if (syncEntry) {
      const text = r.string(syncEntry, w);
      const hex = text?.replace(/^0x/i, "").replace(/\s+/g, "");
      if (text !== undefined && (!hex || !/^([0-9a-fA-F]{2}){1,8}$/.test(hex))) {
        r.error(
          syncEntry.pos,
          `${w}: sync must be 1 to 8 bytes of hex, quoted (e.g. sync: "EB90"), not "${text}"`,
        );
      } else if (hex) {
        framing.sync = hex.match(/../g)!.map((b) => parseInt(b, 16));
      }
    }
    framing.size = r.integer(m.get("size"), w, 1, 65507, "bytes");
  } else if (m.has("sync") || m.has("size")) {
    r.error((m.get("sync") ?? m.get("size"))!.pos, `${w}: sync and size belong to type: sync`);
  }
  if (framing.kind === "length") {
    const b = r.integer(m.get("length_bytes"), w, 1, 4, "bytes") ?? 2;
    if (b === 3) r.error(m.get("length_bytes")!.pos, `${w}: length_bytes must be 1, 2 or 4`);
    framing.lengthBytes = b;
    framing.lengthBig =
      (r.choice(m.get("length_endianness"), w, ["big", "little"] as const) ?? "big") === "big";
  }
  return framing;
}
