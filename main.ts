/**
 * gsw command-line entry: dispatches `deno task <command>` (or `deno run … main.ts <command>`)
 * to the module of that command. Each command is loaded only when asked for, so a process
 * pulls in just the code it runs.
 */

interface CommandModule {
  main(args: string[]): Promise<number>;
}

const COMMANDS: Record<string, { about: string; load: () => Promise<CommandModule> }> = {
  "start": {
    about: "run the whole pipeline on a config (simulator, logger, decom, broker, live view)",
    load: () => import("./start/main.ts"),
  },
  "decom": {
    about: "receive UDP telemetry for one data source and publish its measurements",
    load: () => import("./decom/main.ts"),
  },
  "broker": {
    about: "serve measurements to subscribers",
    load: () => import("./broker/main.ts"),
  },
  "subscribe": {
    about: "print live values of measurements",
    load: () => import("./subscribe/main.ts"),
  },
  "logger": {
    about: "record every raw packet decom receives to log files",
    load: () => import("./logger/main.ts"),
  },
  "replay": {
    about: "send logged packets back to the decom ports",
    load: () => import("./logger/replay.ts"),
  },
  "export": {
    about: "decode a log to CSV, JSON lines or InfluxDB line protocol",
    load: () => import("./logger/export.ts"),
  },
  "sim": {
    about: "send simulated telemetry for every packet type of a config",
    load: () => import("./sim/main.ts"),
  },
  "dashboard": {
    about: "serve the web dashboard: live values and plots of every sample",
    load: () => import("./dashboard/main.ts"),
  },
  "bridge": {
    about: "publish every datagram and its values to an MQTT broker",
    load: () => import("./bridge/main.ts"),
  },
  "influx": {
    about: "write every packet to InfluxDB as it arrives",
    load: () => import("./influx/main.ts"),
  },
  "check-config": {
    about: "validate a vehicle config and summarise it",
    load: () => import("./config/check.ts"),
  },
};

function usage(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((c) => c.length));
  const lines = Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(width)}  ${c.about}`);
  return `usage: gsw <command> [options]   (deno task <command> [options])

commands:
${lines.join("\n")}

Run a command with --help for its options.`;
}

export async function main(args: string[]): Promise<number> {
  const [name, ...rest] = args;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    console.log(usage());
    return name === undefined ? 2 : 0;
  }
  const command = COMMANDS[name];
  if (!command) {
    const known = Object.keys(COMMANDS).join(", ");
    console.error(`gsw: unknown command "${name}" (commands: ${known})\n(try --help)`);
    return 2;
  }
  const mod = await command.load();
  return await mod.main(rest);
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
