/** Finding measurements by what users type: the map key or the name, with did-you-mean help. */
import { closest } from "./suggest.ts";
import type { Config, Measurement } from "./types.ts";

const indexes = new WeakMap<Config, Map<string, Measurement>>();

function index(config: Config): Map<string, Measurement> {
  let byId = indexes.get(config);
  if (!byId) {
    byId = new Map();
    // The loader guarantees keys and names are unique across measurements.
    for (const m of config.measurements) {
      byId.set(m.key, m);
      byId.set(m.name, m);
    }
    indexes.set(config, byId);
  }
  return byId;
}

/** The measurement whose key or name is `nameOrKey`, or undefined. */
export function findMeasurement(config: Config, nameOrKey: string): Measurement | undefined {
  return index(config).get(nameOrKey);
}

/**
 * The key or name closest to a misspelt `name`, for "unknown measurement X (did you mean Y?)"
 * messages; undefined when nothing is close.
 */
export function suggestMeasurement(config: Config, name: string): string | undefined {
  return closest(name, index(config).keys());
}
