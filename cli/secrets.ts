/**
 * Credentials for commands that log in somewhere (an MQTT broker): read from a file or an
 * environment variable named on the command line or in the config, never from argv itself,
 * where every user of the machine can see it (`ps`).
 */
import { UserError } from "./args.ts";

/** The first line of `path` (without its line ending), as bytes. */
export async function readPasswordFile(path: string, what: string): Promise<Uint8Array> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    throw new UserError(
      `${what}: cannot read the password file ${path}: ${(e as Error).message}`,
    );
  }
  const line = text.split(/\r?\n/)[0];
  if (line === "") {
    throw new UserError(`${what}: the password file ${path} starts with an empty line`);
  }
  return new TextEncoder().encode(line);
}

/** The value of environment variable `name`, as bytes. */
export function readPasswordEnv(name: string, what: string): Uint8Array {
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
      `${what}: environment variable ${name} is not set (it should hold the password)`,
    );
  }
  return new TextEncoder().encode(value);
}
