/**
 * Command-line parsing shared by every gsw command: one usage line and exit code 2 on bad
 * input, full help on `--help`, and a single clear line for expected failures.
 */
import { parseArgs, type ParseArgsConfig } from "node:util";

/** An error the user caused with their arguments: printed with the usage line, exit 2. */
export class UsageError extends Error {
  override name = "UsageError";
}

/**
 * An expected failure with a message that already says what went wrong and what to do
 * (broker not running, bad config, …): printed as is, without a stack trace, exit 1.
 */
export class UserError extends Error {
  override name = "UserError";
  constructor(message: string, readonly exitCode = 1) {
    super(message);
  }
}

export interface CommandSpec {
  /** Command name as typed after `deno task` (e.g. "decom"). */
  name: string;
  /** One line: `decom --config FILE [--source NAME]`. */
  usage: string;
  /** The rest of `--help`: what it does, options, examples. */
  help: string;
  options: NonNullable<ParseArgsConfig["options"]>;
  /** Whether positional arguments are allowed. */
  positionals?: boolean;
}

export interface Parsed {
  // deno-lint-ignore no-explicit-any
  values: Record<string, any>;
  positionals: string[];
  /** True when `--help` was given and printed; the caller should exit 0. */
  help: boolean;
}

/** Parses `args` strictly. Throws UsageError for unknown options or missing values. */
export function parseCommand(spec: CommandSpec, args: string[]): Parsed {
  if (args.includes("--help") || args.includes("-h")) {
    console.log(`usage: ${spec.usage}\n\n${spec.help.trim()}`);
    return { values: {}, positionals: [], help: true };
  }
  try {
    const { values, positionals } = parseArgs({
      args,
      options: spec.options,
      allowPositionals: spec.positionals ?? false,
      strict: true,
    });
    return { values, positionals, help: false };
  } catch (e) {
    // node:util messages are long and mention internals; keep the first sentence.
    const msg = (e as Error).message.split(". ")[0].replace(/^TypeError \[\w+\]: /, "");
    throw new UsageError(msg);
  }
}

/** Parses a number option; throws UsageError naming the option when it is not one. */
export function numberOption(
  value: string | undefined,
  option: string,
  opts: { min?: number; max?: number; integer?: boolean } = {},
): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  const bad = value.trim() === "" || !Number.isFinite(n) ||
    (opts.integer && !Number.isInteger(n)) ||
    (opts.min !== undefined && n < opts.min) || (opts.max !== undefined && n > opts.max);
  if (bad) {
    const range = opts.min !== undefined || opts.max !== undefined
      ? ` between ${opts.min ?? "-∞"} and ${opts.max ?? "∞"}`
      : "";
    throw new UsageError(
      `--${option} takes ${opts.integer ? "a whole number" : "a number"}${range}, not "${value}"`,
    );
  }
  return n;
}

/**
 * Runs a command's main function and turns its outcome into an exit code: UsageError prints
 * the usage line (exit 2), UserError prints its message (its exit code), anything else is a
 * bug and prints the stack (exit 70).
 */
export async function runCommand(
  spec: CommandSpec,
  main: () => Promise<number | void>,
): Promise<number> {
  try {
    return (await main()) ?? 0;
  } catch (e) {
    if (e instanceof UsageError) {
      console.error(`gsw ${spec.name}: ${e.message}\nusage: ${spec.usage}\n(try --help)`);
      return 2;
    }
    if (e instanceof UserError) {
      console.error(`gsw ${spec.name}: ${e.message}`);
      return e.exitCode;
    }
    console.error(`gsw ${spec.name}: internal error (please report):`, e);
    return 70;
  }
}
