/**
 * Credentials for commands that log in somewhere (an MQTT broker, InfluxDB): read from a file
 * or an environment variable named on the command line or in the config, never from argv
 * itself, where every user of the machine can see it (`ps`).
 */
import { UserError } from "./args.ts";

/** The first line of `path` (without its line ending), as bytes; `secret` says what it holds. */
export async function readPasswordFile(
  path: string,
  what: string,
  secret = "password",
): Promise<Uint8Array> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    throw new UserError(
      `${what}: cannot read the ${secret} file ${path}: ${(e as Error).message}`,
    );
  }
  const line = text.split(/\r?\n/)[0];
  if (line === "") {
    throw new UserError(`${what}: the ${secret} file ${path} starts with an empty line`);
  }
  return new TextEncoder().encode(line);
}

/** The value of environment variable `name`, as bytes; `secret` says what it holds. */
export function readPasswordEnv(name: string, what: string, secret = "password"): Uint8Array {
  let value: string | undefined;
  try {
    value = Deno.env.get(name);
  } catch (e) {
    throw new UserError(
      `${what}: cannot read environment variable ${name}: ${(e as Error).message}`,
    );
  }
  if (value === undefined || value === "") {
    throw new UserError(
      `${what}: environment variable ${name} is not set (it should hold the ${secret})`,
    );
  }
  return new TextEncoder().encode(value);
}
