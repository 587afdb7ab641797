/** The `sources:` section: where decom receives each source's packets. */
import { isIP } from "node:net";
import { dirname, isAbsolute, join } from "node:path";
import type { Entries, Entry, Reader } from "./yaml_reader.ts";
import {
  MQTT_SOURCE_KEYS,
  PLAIN_NAME,
  PLAIN_NAME_RULE,
  SOURCE_KEYS,
  SOURCE_KINDS,
  type SourceDef,
} from "./defs.ts";

import { MQTT_DEFAULT_PORT, parseMqttUrl, topicFilterProblem } from "./mqtt.ts";

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
    r.allowOnly(f, kind === "mqtt" ? MQTT_SOURCE_KEYS : SOURCE_KEYS, what);
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
