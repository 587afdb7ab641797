/**
 * What every gsw command shares around its core: loading the vehicle config with one clear
 * message when it is wrong, and running a long-lived process (decom, broker) from start-up
 * line to exit summary, turning native errors into one line for the operator.
 */
import { type Config, ConfigError, DEFAULT_CONFIG_PATH, loadConfig } from "../config/mod.ts";
import { GswError } from "../ffi/mod.ts";
import { UserError } from "./args.ts";

/**
 * Loads the config at `path` (default: the embedded example). An invalid or missing file is
 * a UserError listing every problem with file:line:col.
 */
export async function loadCommandConfig(path: string | undefined): Promise<Config> {
  const file = path ?? DEFAULT_CONFIG_PATH;
  try {
    return await loadConfig(file);
  } catch (e) {
    if (e instanceof ConfigError) throw new UserError(`invalid config:\n${e.message}`);
    if (e instanceof Deno.errors.NotFound) throw new UserError(`no config file at ${file}`);
    throw e;
  }
}

/** A long-lived process whose loop blocks until a termination signal. */
export interface Service {
  /** One line saying what it serves, printed at start-up. */
  describe(): string;
  /** Runs until SIGINT/SIGTERM/SIGHUP; returns the signals that stopped it. */
  run(): string[];
  /** One line saying what it did, printed at exit. */
  summary(): string;
  close(): void;
}

/** Creates a service, runs it and closes it; native errors become one UserError line. */
export function runService(log: (line: string) => void, create: () => Service): number {
  let service: Service;
  try {
    service = create();
  } catch (e) {
    if (e instanceof GswError) throw new UserError(e.message);
    throw e;
  }
  try {
    log(service.describe());
    const signals = service.run();
    log(`${signals.join(", ")}: stopping. ${service.summary()}`);
  } finally {
    service.close();
  }
  return 0;
}
