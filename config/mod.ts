/** The vehicle config: loading and validating YAML, the compiled model, and value codecs. */
export * from "./types.ts";
export { DEFAULT_CONFIG_PATH, loadConfig, parseConfig } from "./load.ts";
export { DEFAULT_SOURCE, MAX_DATAGRAM } from "./defs.ts";
export { findMeasurement, suggestMeasurement } from "./find.ts";
export {
  convert,
  type DecodedField,
  decodePacket,
  decodeRaw,
  decodeValue,
  formatNumber,
  formatValue,
  jsonValue,
  type LimitState,
  limitState,
  type RawValue,
  toEngineering,
} from "./decode.ts";
export { encodeEngineering, encodeRaw, integerBounds } from "./encode.ts";
