/**
 * A private mosquitto for a test: its own generated config and directory, on free loopback
 * ports (MQTT, and WebSockets when asked), never the system service. Stop and start it again
 * on the same ports to test reconnection; dispose it to kill it and remove its files.
 */
import { eventuallyAsync, freeTcpPort, type Proc, spawn } from "./pipeline.ts";

export const MOSQUITTO = "/usr/sbin/mosquitto";

export interface MosquittoOptions {
  /** Also listen for MQTT over WebSockets (as the Go ground software's web UI connects). */
  websockets?: boolean;
  /** Require this user name and password (written with mosquitto_passwd). */
  user?: { name: string; password: string };
  /** Keep sessions and queued messages across a stop (SIGTERM) and start. */
  persistence?: boolean;
  /** Also listen for MQTT over TLS, with a certificate for 127.0.0.1 signed by `caFile`. */
  tls?: boolean;
}

export class Mosquitto implements AsyncDisposable {
  readonly port = freeTcpPort();
  readonly wsPort: number | undefined;
  readonly tlsPort: number | undefined;
  readonly dir = Deno.makeTempDirSync({ prefix: "gsw-mosquitto-" });
  #proc: Proc | undefined;

  private constructor(readonly opts: MosquittoOptions) {
    this.wsPort = opts.websockets ? freeTcpPort() : undefined;
    this.tlsPort = opts.tls ? freeTcpPort() : undefined;
    const lines = [
      // Started as root, mosquitto becomes user "mosquitto", who cannot read this test's
      // private directory: stay who we are.
      ...(Deno.uid() === 0 ? ["user root"] : []),
      `listener ${this.port} 127.0.0.1`,
      // Queue without limit for slow or absent subscribers: a test decides what is lost.
      "max_queued_messages 0",
      "max_inflight_messages 0",
    ];
    if (opts.user) {
      const file = `${this.dir}/passwords`;
      const made = new Deno.Command("mosquitto_passwd", {
        args: ["-b", "-c", file, opts.user.name, opts.user.password],
        stdout: "null",
        stderr: "piped",
      }).outputSync();
      if (!made.success) throw new Error(new TextDecoder().decode(made.stderr));
      lines.push(`password_file ${file}`, "allow_anonymous false");
    } else {
      lines.push("allow_anonymous true");
    }
    if (this.wsPort !== undefined) {
      lines.push(`listener ${this.wsPort} 127.0.0.1`, "protocol websockets");
      if (!opts.user) lines.push("allow_anonymous true");
    }
    if (this.tlsPort !== undefined) {
      this.#makeCertificates();
      lines.push(
        `listener ${this.tlsPort} 127.0.0.1`,
        `cafile ${this.caFile}`,
        `certfile ${this.dir}/server.pem`,
        `keyfile ${this.dir}/server.key`,
      );
      if (!opts.user) lines.push("allow_anonymous true");
    }
    if (opts.persistence) {
      lines.push("persistence true", `persistence_location ${this.dir}/`);
    }
    Deno.writeTextFileSync(`${this.dir}/mosquitto.conf`, lines.join("\n") + "\n");
  }

  /** The certificate authority that signed the TLS listener's certificate. */
  get caFile(): string {
    return `${this.dir}/ca.pem`;
  }

  /** A throwaway CA and a server certificate for 127.0.0.1 (openssl). */
  #makeCertificates(): void {
    const openssl = (...args: string[]) => {
      const out = new Deno.Command("openssl", {
        args,
        cwd: this.dir,
        stdout: "null",
        stderr: "piped",
      })
        .outputSync();
      if (!out.success) {
        throw new Error(`openssl ${args[0]}: ${new TextDecoder().decode(out.stderr)}`);
      }
    };
    openssl(
      "req",
      "-x509",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-keyout",
      "ca.key",
      "-out",
      "ca.pem",
      "-days",
      "2",
      "-subj",
      "/CN=gsw test CA",
    );
    openssl(
      "req",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-keyout",
      "server.key",
      "-out",
      "server.csr",
      "-subj",
      "/CN=127.0.0.1",
    );
    Deno.writeTextFileSync(`${this.dir}/ext.cnf`, "subjectAltName=IP:127.0.0.1\n");
    openssl(
      "x509",
      "-req",
      "-in",
      "server.csr",
      "-CA",
      "ca.pem",
      "-CAkey",
      "ca.key",
      "-CAcreateserial",
      "-out",
      "server.pem",
      "-days",
      "2",
      "-extfile",
      "ext.cnf",
    );
  }

  static async start(opts: MosquittoOptions = {}): Promise<Mosquitto> {
    const m = new Mosquitto(opts);
    await m.restart();
    return m;
  }

  get url(): string {
    return `mqtt://127.0.0.1:${this.port}`;
  }

  get running(): boolean {
    return this.#proc !== undefined && this.#proc.exited === null;
  }

  /** Starts it (again, on the same ports) and waits until it accepts connections. */
  async restart(): Promise<void> {
    this.#proc = spawn("mosquitto", ["-c", `${this.dir}/mosquitto.conf`], { cmd: MOSQUITTO });
    const proc = this.#proc;
    await eventuallyAsync(`mosquitto on port ${this.port}`, async () => {
      if (proc.exited) throw new Error(`mosquitto exited:\n${proc.lines.join("\n")}`);
      try {
        (await Deno.connect({ hostname: "127.0.0.1", port: this.port })).close();
        return true;
      } catch {
        return undefined;
      }
    });
  }

  /** Stops it: SIGTERM saves its sessions (with persistence), SIGKILL does not. */
  async stop(signal: Deno.Signal = "SIGTERM"): Promise<void> {
    await this.#proc?.stop(signal);
  }

  get lines(): string[] {
    return this.#proc?.lines ?? [];
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.#proc?.stop("SIGKILL");
    Deno.removeSync(this.dir, { recursive: true });
  }
}
