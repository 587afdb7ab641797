/** The `telemetry_packets:` section: layouts, ids, sources, and the checks across packets and ports. */
import { didYouMean } from "./suggest.ts";
import type { PacketId } from "./types.ts";
import {
  type Entries,
  type Entry,
  isMap,
  isScalar,
  type Pos,
  type Reader,
  type YNode,
} from "./yaml_reader.ts";
import {
  DEFAULT_SOURCE,
  ENDIANNESS,
  FIELD_KEYS,
  type FieldDef,
  ID_KEYS,
  MAX_DATAGRAM,
  type MeasurementDef,
  PACKET_KEYS,
  type PacketDef,
  PLAIN_NAME,
  PLAIN_NAME_RULE,
  type SourceDef,
} from "./defs.ts";

export function readPackets(
  r: Reader,
  top: Entries,
  start: Pos,
  defs: Map<string, MeasurementDef>,
  sources: SourceDef[] | undefined,
): PacketDef[] {
  const e = r.require(
    top,
    "telemetry_packets",
    "the config",
    start,
    'add a "telemetry_packets:" list (each with name, port and measurements)',
  );
  const items = e && r.seq(e, "telemetry_packets");
  if (!items || !e) return [];
  if (items.length === 0) {
    r.error(e.pos, "telemetry_packets is empty; add at least one packet");
  }
  const byId = new Map<string, MeasurementDef>();
  for (const d of defs.values()) {
    byId.set(d.key, d);
    if (!byId.has(d.name)) byId.set(d.name, d);
  }
  const packets: PacketDef[] = [];
  const byName = new Map<string, PacketDef>();
  items.forEach((item, position) => {
    const pos = r.pos(item, e.pos);
    // Indexed by place among the packets kept, which is what measurements refer to.
    const p = readPacket(r, item, position, packets.length, pos, byId, sources);
    if (!p) return;
    const first = byName.get(p.name);
    if (first) {
      r.error(
        p.pos,
        `packet "${p.name}" is defined twice (first at line ${first.pos.line}); packet names ` +
          `must be unique: rename one`,
      );
    } else byName.set(p.name, p);
    packets.push(p);
  });
  return packets;
}

export function readPacket(
  r: Reader,
  item: YNode,
  position: number,
  index: number,
  pos: Pos,
  byId: Map<string, MeasurementDef>,
  sources: SourceDef[] | undefined,
): PacketDef | undefined {
  let what = `packet #${position + 1}`;
  const f = r.map(item, what, pos);
  if (!f) return undefined;
  r.allowOnly(f, PACKET_KEYS, what);
  const nameEntry = r.require(f, "name", what, pos, 'add "name: <packet name>"');
  const name = r.string(nameEntry, what);
  if (name === undefined || !nameEntry) return undefined;
  what = `packet "${name}"`;
  if (!PLAIN_NAME.test(name)) {
    r.error(
      nameEntry.pos,
      `${what}: a packet name ${PLAIN_NAME_RULE}; rename it`,
    );
  }
  const portEntry = f.get("port");
  const sizeEntry = f.get("size");
  const declared = r.integer(sizeEntry, what, 1, MAX_DATAGRAM, "bytes");
  const p: PacketDef = {
    index,
    name,
    pos: nameEntry.pos,
    port: r.integer(portEntry, what, 1, 65535),
    portPos: portEntry?.pos ?? nameEntry.pos,
    sourcePos: nameEntry.pos,
    declaredSize: declared !== undefined && sizeEntry
      ? { size: declared, pos: sizeEntry.pos }
      : undefined,
    idPos: nameEntry.pos,
    idValuePos: nameEntry.pos,
    rateHz: r.number(f.get("rate_hz"), what, { above: 0 }),
    description: r.string(f.get("description"), what),
    fields: [],
  };
  readPacketSource(r, f, p, what, sources);
  // A serial or TCP source has no ports: its packets are all on port 0, told apart by id.
  const kind = sources?.find((s) => s.name === p.source)?.kind ?? "udp";
  if (kind === "serial" || kind === "tcp") {
    if (portEntry) {
      r.error(
        portEntry.pos,
        `${what}: its source "${p.source}" is a ${kind} stream, which has no ports; remove ` +
          `port (packets of one stream are told apart by id or apid)`,
      );
    }
    p.port = 0;
  } else if (!portEntry) {
    r.error(nameEntry.pos, `${what}: missing "port"; add "port: N" (the UDP port)`);
  }
  readId(r, f, p, what);
  readApid(r, f, p, what);
  const listEntry = r.require(
    f,
    "measurements",
    what,
    nameEntry.pos,
    'add "measurements:" with the keys of the measurements it carries, in order',
  );
  if (listEntry) readFields(r, listEntry, p, what, byId);
  checkExtent(r, p, what);
  return p;
}

export function readPacketSource(
  r: Reader,
  f: Entries,
  p: PacketDef,
  what: string,
  sources: SourceDef[] | undefined,
): void {
  const e = f.get("source");
  const name = r.string(e, what);
  if (e) p.sourcePos = e.pos;
  if (sources === undefined) {
    if (name !== undefined && name !== DEFAULT_SOURCE && e) {
      r.error(
        e.pos,
        `${what}: unknown source "${name}": this config has no sources: list, so every packet ` +
          `belongs to source "${DEFAULT_SOURCE}"; add a sources: list or remove source:`,
      );
    }
    p.source = DEFAULT_SOURCE;
    return;
  }
  const names = sources.map((s) => s.name);
  if (name === undefined) {
    if (e) return; // wrong type, already reported
    if (sources.length === 1) p.source = sources[0].name;
    else if (sources.length > 1) {
      r.error(
        p.pos,
        `${what}: missing "source:"; with several sources each packet must say which one ` +
          `receives it (${names.join(", ")})`,
      );
    }
    return;
  }
  if (!names.includes(name)) {
    r.error(
      e!.pos,
      `${what}: unknown source "${name}"${didYouMean(name, names)}; the sources are ` +
        `${names.join(", ")}`,
    );
    return;
  }
  p.source = name;
}

export function readId(r: Reader, f: Entries, p: PacketDef, what: string): void {
  const e = f.get("id");
  if (!e) return;
  p.idPos = e.pos;
  p.idValuePos = e.pos;
  const w = `${what}: id`;
  const m = r.map(e.value, w, e.pos);
  if (!m) return;
  r.allowOnly(m, ID_KEYS, w);
  const offset = m.has("offset") ? r.integer(m.get("offset"), w, 0, MAX_DATAGRAM - 1) : 0;
  const size = m.has("size") ? r.integer(m.get("size"), w, 1, 6, "bytes") : 1;
  const endianness = r.choice(m.get("endianness"), w, ENDIANNESS) ?? "big";
  const valueEntry = r.require(m, "value", w, e.pos, 'add "value: N", the id of this packet');
  if (offset === undefined || size === undefined || !valueEntry) return;
  p.idValuePos = valueEntry.pos;
  const value = r.integer(valueEntry, w, 0, 2 ** (8 * size) - 1);
  if (value === undefined) return;
  p.id = { offset, size, endianness, value };
}

/** Bytes of a CCSDS space packet's primary header (CCSDS 133.0-B-2). */
export const CCSDS_HEADER = 6;
/** The APID: the low 11 bits of the primary header's first two bytes, big-endian. */
export const APID_MASK = 0x07ff;

/** `apid: N`: the packet is a CCSDS space packet recognised by its APID. */
export function readApid(r: Reader, f: Entries, p: PacketDef, what: string): void {
  const e = f.get("apid");
  if (!e) return;
  const apid = r.integer(e, `${what}: apid`, 0, APID_MASK);
  if (apid === undefined) return;
  if (p.id) {
    r.error(
      e.pos,
      `${what}: has both apid and id; a CCSDS packet is told apart by its APID alone, so ` +
        `remove the id (or the apid, for a packet that is not a CCSDS space packet)`,
    );
    return;
  }
  p.idPos = e.pos;
  p.idValuePos = e.pos;
  p.apid = apid;
  p.id = { offset: 0, size: 2, endianness: "big", value: apid, mask: APID_MASK };
}

/** Where the packet's identification ends: its id, or a CCSDS packet's whole primary header. */
function idEnd(p: PacketDef): number {
  if (p.apid !== undefined) return CCSDS_HEADER;
  return p.id ? p.id.offset + p.id.size : 0;
}

export function readFields(
  r: Reader,
  listEntry: Entry,
  p: PacketDef,
  what: string,
  byId: Map<string, MeasurementDef>,
): void {
  const items = r.seq(listEntry, `${what}: measurements`);
  if (!items) return;
  /** Where the next implicitly placed field starts; undefined after a field of unknown size. */
  let cursor: number | undefined = 0;
  const seen = new Map<MeasurementDef, Pos>();
  let measurementCount = 0;
  for (const item of items) {
    const pos = r.pos(item, listEntry.pos);
    const node = r.resolve(item);
    let ref: string | undefined;
    let offset: number | undefined;
    if (isScalar(node) && typeof node.value === "string") {
      ref = node.value;
    } else if (isMap(node)) {
      const w = `${what}: measurement entry`;
      const m = r.map(node, w, pos)!;
      r.allowOnly(m, FIELD_KEYS, w);
      const padding = m.get("padding");
      if (padding) {
        if (m.has("measurement") || m.has("offset")) {
          r.error(
            padding.pos,
            `${w}: an entry is either {padding: N} or {measurement: KEY, offset: N}, not both`,
          );
          continue;
        }
        const n = r.integer(padding, w, 1, MAX_DATAGRAM, "bytes");
        cursor = n === undefined || cursor === undefined ? undefined : cursor + n;
        if (cursor !== undefined) p.paddingEnd = { end: cursor, pos };
        continue;
      }
      ref = r.string(
        r.require(m, "measurement", w, pos, "write {measurement: KEY, offset: N} or {padding: N}"),
        w,
      );
      const offsetEntry = m.get("offset");
      if (offsetEntry) {
        offset = r.integer(offsetEntry, w, 0, MAX_DATAGRAM - 1, "(byte offset in the packet)");
        if (offset === undefined) {
          cursor = undefined;
          continue;
        }
      }
      if (ref === undefined) continue;
    } else {
      r.error(
        pos,
        `${what}: each entry of measurements must be a measurement key or name, ` +
          `{measurement: KEY, offset: N} or {padding: N}, not ${describeItem(node)}`,
      );
      cursor = undefined;
      continue;
    }
    measurementCount++;
    const def = byId.get(ref);
    if (!def) {
      r.error(
        pos,
        `${what} refers to unknown measurement "${ref}"${didYouMean(ref, byId.keys())}; define ` +
          `it under measurements: or fix the name`,
      );
      cursor = undefined;
      continue;
    }
    const first = seen.get(def);
    if (first) {
      r.error(
        pos,
        `${what}: ${def.label} is listed twice (first at line ${first.line}); a packet ` +
          `carries each measurement once`,
      );
      continue;
    }
    seen.set(def, pos);
    if (!def.packets.includes(p.index)) def.packets.push(p.index);
    const at = offset ?? cursor;
    if (def.size === undefined || def.type === undefined || at === undefined) {
      cursor = undefined; // cannot place what follows implicitly; the cause is reported already
      continue;
    }
    p.fields.push({ def, offset: at, pos });
    cursor = at + def.size;
  }
  if (measurementCount === 0) {
    r.error(
      listEntry.pos,
      `${what} has no measurements; list the measurements it carries or remove the packet`,
    );
  }
  checkOverlaps(r, p, what);
}

export function describeItem(node: YNode): string {
  if (isScalar(node)) {
    return node.value === null ? "an empty item" : `${JSON.stringify(node.value)}`;
  }
  return isMap(node) ? "a map" : "a list";
}

/** Bytes and bits a field occupies: [byte index, bit mask] pairs. */
export function fieldBits(f: FieldDef): [number, number][] {
  const { def, offset } = f;
  const size = def.size!;
  const out: [number, number][] = [];
  if (!def.bits) {
    for (let i = 0; i < size; i++) out.push([offset + i, 0xff]);
    return out;
  }
  const masks = new Map<number, number>();
  for (let b = def.bits.offset; b < def.bits.offset + def.bits.width && b < size * 8; b++) {
    // Bit b counts from the least significant bit of the container integer: in a big-endian
    // container that bit lives in the last byte, in a little-endian one in the first.
    const byte = def.endianness === "little"
      ? offset + Math.floor(b / 8)
      : offset + size - 1 - Math.floor(b / 8);
    masks.set(byte, (masks.get(byte) ?? 0) | (1 << (b % 8)));
  }
  return [...masks];
}

export function describeField(f: FieldDef): string {
  const end = f.offset + f.def.size! - 1;
  const bytes = end === f.offset ? `byte ${f.offset}` : `bytes ${f.offset}–${end}`;
  if (!f.def.bits) return `${f.def.label} (${bytes})`;
  const { offset, width } = f.def.bits;
  const bits = width === 1 ? `bit ${offset}` : `bits ${offset}–${offset + width - 1}`;
  return `${f.def.label} (${bits} of ${bytes})`;
}

/** Fields may share bytes only as bit fields, and never share a bit. */
export function checkOverlaps(r: Reader, p: PacketDef, what: string): void {
  const used = new Map<number, { mask: number; field: FieldDef }[]>();
  for (const f of p.fields) {
    let clash: FieldDef | undefined;
    const bits = fieldBits(f);
    for (const [byte, mask] of bits) {
      clash ??= used.get(byte)?.find((u) => (u.mask & mask) !== 0)?.field;
    }
    if (clash) {
      r.error(
        f.pos,
        `${what}: ${describeField(f)} overlaps ${describeField(clash)}; fix the offset, add ` +
          `padding, or if they share a status word give them disjoint bits`,
      );
      continue;
    }
    for (const [byte, mask] of bits) {
      const list = used.get(byte) ?? [];
      list.push({ mask, field: f });
      used.set(byte, list);
    }
    const id = p.id;
    const end = f.offset + f.def.size!;
    const exactlyId = id && f.offset === id.offset && f.def.size === id.size;
    if (id && !exactlyId && f.offset < id.offset + id.size && id.offset < end) {
      // Implicit offsets start at 0, so forgetting to skip a leading id is an easy slip.
      if (p.apid !== undefined) {
        r.error(
          f.pos,
          `${what}: ${describeField(f)} overlaps the APID (bytes 0–1 of the CCSDS primary ` +
            `header); skip the header with {padding: ${CCSDS_HEADER}} before the first ` +
            `measurement, or give it an explicit offset`,
        );
        continue;
      }
      r.error(
        f.pos,
        `${what}: ${describeField(f)} overlaps the packet's id (bytes ${id.offset}–` +
          `${id.offset + id.size - 1}); skip the id with {padding: ${id.size}} or an explicit ` +
          `offset (a measurement may cover exactly the id's bytes to publish it)`,
      );
    }
  }
}

/** The packet's size: as declared (and then nothing may stick out), else its furthest byte. */
export function checkExtent(r: Reader, p: PacketDef, what: string): void {
  const end = idEnd(p);
  const ends = p.fields.map((f) => f.offset + f.def.size!);
  if (p.declaredSize) {
    const size = p.declaredSize.size;
    const where = `the packet's size: ${size} (line ${p.declaredSize.pos.line})`;
    for (const f of p.fields) {
      const end = f.offset + f.def.size!;
      if (end > size) {
        r.error(
          f.pos,
          `${what}: ${describeField(f)} ends past ${where}; make the packet larger or move ` +
            `the field`,
        );
      }
    }
    if (end > size) {
      const idWhat = p.apid !== undefined ? "CCSDS primary header" : "id";
      r.error(
        p.idPos,
        `${what}: the ${idWhat} (bytes ${p.id!.offset}–${end - 1}) ends past ${where}`,
      );
    }
    if (p.paddingEnd && p.paddingEnd.end > size) {
      r.error(
        p.paddingEnd.pos,
        `${what}: padding up to byte ${p.paddingEnd.end - 1} ends past ${where}; remove ` +
          `padding or make the packet larger`,
      );
    }
    return;
  }
  const extent = Math.max(end, p.paddingEnd?.end ?? 0, ...ends);
  if (extent > MAX_DATAGRAM) {
    r.error(
      p.pos,
      `${what} is ${extent} bytes, more than a UDP datagram can carry (${MAX_DATAGRAM}); ` +
        `split it into several packets`,
    );
  }
}

export function packetSize(p: PacketDef): number {
  if (p.declaredSize) return p.declaredSize.size;
  return Math.max(idEnd(p), p.paddingEnd?.end ?? 0, ...p.fields.map((f) => f.offset + f.def.size!));
}

/** Packets sharing a port must be told apart by id fields at the same place, in one source. */
export function checkPorts(r: Reader, packets: PacketDef[]): void {
  // Port 0 is each serial or TCP stream's own: its packets are grouped by source.
  const byPort = new Map<string, PacketDef[]>();
  for (const p of packets) {
    if (p.port === undefined) continue;
    const key = p.port === 0 ? `0 ${p.source}` : String(p.port);
    const list = byPort.get(key) ?? [];
    list.push(p);
    byPort.set(key, list);
  }
  for (const list of byPort.values()) {
    const port = list[0].port!;
    if (list.length < 2) continue;
    const first = list[0];
    const values = new Map<number, PacketDef>();
    for (const p of list) {
      const others = list.filter((o) => o !== p).map((o) => `"${o.name}" (line ${o.pos.line})`);
      if (!p.id && port === 0) {
        r.error(
          p.pos,
          `packet "${p.name}": source "${p.source}" carries other packets too (${
            others.join(", ")
          }); packets of one stream need an id: {offset, size, value} (or a CCSDS apid) each ` +
            `so decom can tell them apart`,
        );
        continue;
      }
      if (!p.id) {
        r.error(
          p.portPos,
          `packet "${p.name}": port ${port} is also used by ${others.join(", ")}; packets ` +
            `sharing a port need an id: {offset, size, value} (or a CCSDS apid) each so decom ` +
            `can tell them apart, or use another port`,
        );
        continue;
      }
      if (p.source !== undefined && first.source !== undefined && p.source !== first.source) {
        r.error(
          p.sourcePos,
          `packet "${p.name}": port ${port} is also used by packet "${first.name}" of source ` +
            `"${first.source}"; a port belongs to one source, so use the same source or another port`,
        );
      }
      const ref = list.find((o) => o.id);
      if (ref && ref !== p && !sameIdLayout(ref.id!, p.id)) {
        r.error(
          p.idPos,
          `packet "${p.name}": its id (${idLayout(p.id)}) is not where packet "${ref.name}" on ` +
            `port ${port} has its id (${idLayout(ref.id!)}); packets on one port must put ` +
            `their id in the same bytes`,
        );
        continue;
      }
      const clash = values.get(p.id.value);
      if (clash) {
        r.error(
          p.idValuePos,
          `packet "${p.name}": id value ${p.id.value} is already used by packet "${clash.name}" ` +
            `on port ${port}; give each packet on a port its own id value`,
        );
      } else values.set(p.id.value, p);
    }
  }
}

export function sameIdLayout(a: PacketId, b: PacketId): boolean {
  return a.offset === b.offset && a.size === b.size && a.endianness === b.endianness &&
    a.mask === b.mask;
}

export function idLayout(id: PacketId): string {
  if (id.mask === APID_MASK && id.offset === 0 && id.size === 2) return "a CCSDS APID";
  return `offset ${id.offset}, ${id.size} byte${id.size > 1 ? "s" : ""}, ${id.endianness}-endian`;
}
