/**
 * MQTT names shared by the bridge (which publishes) and `type: mqtt` sources (which subscribe):
 * broker URLs, topic filters, and the topics of a vehicle's raw packets (docs/mqtt.md).
 */

/** The MQTT port when a URL names none. */
export const MQTT_DEFAULT_PORT = 1883;
/** The first level of every gsw topic unless the bridge is told otherwise. */
export const DEFAULT_PREFIX = "gsw";

/** `mqtt://host[:port]` → host and port; a sentence saying what is wrong otherwise. */
export function parseMqttUrl(url: string): { host: string; port: number; tls: boolean } | string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return `url "${url}" is not a URL; write mqtt://<host>:<port>, e.g. mqtt://192.168.1.10:1883`;
  }
  if (u.protocol !== "mqtt:" && u.protocol !== "mqtts:") {
    return `url "${url}" must start with mqtt:// (or mqtts:// for TLS), not ${u.protocol}//`;
  }
  if (u.username || u.password) {
    return `url "${url}" holds credentials; give username and password_file instead, so the ` +
      "password is not in the config";
  }
  if ((u.pathname !== "" && u.pathname !== "/") || u.search || u.hash) {
    return `url "${url}" has a path; write only mqtt://<host>:<port> (the topic is its own key)`;
  }
  const host = u.hostname.replace(/^\[|\]$/g, "");
  if (host === "") return `url "${url}" names no host`;
  const tls = u.protocol === "mqtts:";
  return { host, port: u.port === "" ? (tls ? 8883 : MQTT_DEFAULT_PORT) : Number(u.port), tls };
}

/** Why an MQTT topic filter is invalid, or undefined if it is valid. */
export function topicFilterProblem(topic: string): string | undefined {
  const levels = topic.split("/");
  for (const [i, level] of levels.entries()) {
    if (level.includes("#") && (level !== "#" || i !== levels.length - 1)) {
      return 'is not a valid topic filter: "#" must be a whole level, and the last';
    }
    if (level.includes("+") && level !== "+") {
      return 'is not a valid topic filter: "+" must be a whole level';
    }
  }
  if (topic.includes("\0")) return "holds a NUL character";
  return undefined;
}

/** Why a name cannot be one level of a topic gsw publishes, or undefined if it can. */
export function topicLevelProblem(name: string): string | undefined {
  if (name === "") return "is empty";
  if (/[/+#\0]/.test(name)) return 'holds "/", "+", "#" or NUL, which MQTT topic levels cannot';
  return undefined;
}

/** The topic of one raw packet: `<prefix>/<vehicle>/raw/<source>/<packet or _unknown>`. */
export function rawTopic(prefix: string, vehicle: string, source: string, packet: string): string {
  return `${prefix}/${vehicle}/raw/${source}/${packet}`;
}

/** The filter a source on another machine subscribes to by default: every packet of a source. */
export function rawTopicFilter(prefix: string, vehicle: string, source: string): string {
  return `${prefix}/${vehicle}/raw/${source}/#`;
}
