/** The `sources:` section: where decom receives each source's packets. */
import { isIP } from "node:net";
import type { Entries, Reader } from "./yaml_reader.ts";
import { PLAIN_NAME, SOURCE_KEYS, type SourceDef } from "./defs.ts";

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
    r.allowOnly(f, SOURCE_KEYS, what);
    const nameEntry = r.require(f, "name", what, pos, 'add "name: <source name>"');
    const name = r.string(nameEntry, what);
    if (name === undefined || !nameEntry) return;
    what = `source "${name}"`;
    if (!PLAIN_NAME.test(name)) {
      r.error(
        nameEntry.pos,
        `${what}: a source name may hold only letters, digits, _ and - (no dots: health ` +
          `measurements are named source.packets); rename it`,
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
    const def: SourceDef = { name, pos: nameEntry.pos, bind, multicast };
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
