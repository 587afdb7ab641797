/**
 * The web dashboard through real processes and a real browser (Debian's Chromium): the page
 * loads from gsw's server alone and shows the values sent; every sample of a 1 kHz signal is
 * in the page's plot data; a browser opened mid-stream gets the history; a WebSocket client
 * that never reads holds up no one; without the token a field-network listen answers 401.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { plotData, shownValue, TestBrowser } from "./helpers/browser.ts";
import { eventuallyAsync, freeTcpPort, Pipeline, type Proc, sleep } from "./helpers/pipeline.ts";

/** A Nav packet of the example whose ALTITUDE is k / 2 (exact in a float32). */
function nav(k: number): Uint8Array {
  const b = new Uint8Array(24);
  const v = new DataView(b.buffer);
  v.setUint32(0, k, true); // MISSION_TIME
  v.setFloat32(4, k / 2, true); // ALTITUDE
  return b;
}

async function dashboard(p: Pipeline, args: string[]): Promise<{ proc: Proc; url: string }> {
  const proc = p.spawn("dashboard", ["--config", p.configPath, ...args], "dashboard");
  const line = await proc.stdout.waitFor(/dashboard: open (\S+)/, 30_000);
  return { proc, url: line.match(/open (\S+)/)![1] };
}

Deno.test("dashboard: values from gsw's server alone, every sample, history, a stalled client", async () => {
  await using p = Pipeline.create();
  await p.decom();
  await p.broker();
  const port = freeTcpPort();
  const { url } = await dashboard(p, ["--listen", `127.0.0.1:${port}`]);
  const navPort = p.config.packets.find((x) => x.name === "Nav")!.port;
  await using b1 = await TestBrowser.launch();
  await using b2 = await TestBrowser.launch();
  const page1 = await b1.open(url);

  // A WebSocket client that connects, asks for ALTITUDE, and never reads again.
  const stalled = await rawWebSocket(port, {
    type: "watch",
    measurements: [1],
    windowMs: 60_000,
    columns: 1000,
  });

  // 10 000 samples at 1 kHz; a second browser opens half-way.
  const N = 10_000;
  const t0 = performance.now();
  let page2: Awaited<ReturnType<TestBrowser["open"]>> | undefined;
  for (let k = 1; k <= N; k += 10) {
    await p.send(navPort, Array.from({ length: 10 }, (_, j) => nav(k + j)));
    const due = t0 + k; // 1 ms per sample
    const wait = due - performance.now();
    if (wait > 0) await sleep(wait);
    if (k === 5001) page2 = await b2.open(url);
  }
  const want = Array.from({ length: N }, (_, i) => (i + 1) / 2);
  for (const [name, page] of [["first", page1], ["second", page2!]] as const) {
    const got = await eventuallyAsync(`${name} browser to hold every sample`, async () => {
      const d = await plotData(page, "ALTITUDE");
      return d.v.length >= N ? d : undefined;
    }, 15_000);
    assertEquals(got.v.slice(-N), want, `${name} browser: every sample, in order`);
  }
  // The newest value is shown, formatted as gsw formats it.
  await eventuallyAsync(
    "the value table",
    async () => (await shownValue(page1, "ALTITUDE")) === String(N / 2) ? true : undefined,
  );
  // Nothing but gsw's own server was asked for anything.
  const origin = new URL(url).origin;
  for (const r of [...b1.requests, ...b2.requests]) {
    assert(r.startsWith(origin) || r.startsWith("data:"), `the page requested ${r}`);
  }
  assertEquals([...b1.errors, ...b2.errors], []);
  stalled.close();
});

Deno.test("dashboard: a field-network listen needs the token, compared in full", async () => {
  await using p = Pipeline.create();
  const port = freeTcpPort();
  const { url } = await dashboard(p, ["--listen", `0.0.0.0:${port}`, "--token", "launch-day-7f3a"]);
  assert(url.endsWith("?token=launch-day-7f3a"), url);
  const base = `http://127.0.0.1:${port}`;
  for (
    const [path, init] of [
      ["/", {}],
      ["/api/config", {}],
      ["/?token=launch-day-7f3b", {}],
      ["/?token=launch-day", {}],
      ["/api/config", { headers: { authorization: "Bearer nope" } }],
      ["/ws", { headers: { upgrade: "websocket", connection: "Upgrade" } }],
    ] as const
  ) {
    const r = await fetch(base + path, init);
    assertEquals(r.status, 401, path);
    assertEquals(await r.text(), "", "401 and nothing else");
  }
  const ok = await fetch(`${base}/?token=launch-day-7f3a`);
  assertEquals(ok.status, 200);
  assert(ok.headers.get("set-cookie")?.includes("gsw_token=launch-day-7f3a"));
  await ok.body?.cancel();
  const api = await fetch(`${base}/api/config`, {
    headers: { authorization: "Bearer launch-day-7f3a" },
  });
  assertEquals((await api.json()).name, p.config.name);
});

Deno.test("dashboard: a generated token; a taken port is a clear error; layouts by URL", async () => {
  await using p = Pipeline.create();
  const port = freeTcpPort();
  const { url } = await dashboard(p, ["--listen", `0.0.0.0:${port}`]);
  assert(/\?token=[0-9a-f]{32}$/.test(url), `a generated token in ${url}`);
  // The same port again, asked for explicitly: one line saying so, exit 1.
  const again = p.spawn("dashboard", ["--config", p.configPath, "--listen", `0.0.0.0:${port}`]);
  const status = await again.status;
  assertEquals(status.code, 1);
  assert(again.lines.some((l) => /is in use/.test(l)), again.lines.join("\n"));

  // A layout prepared in advance, opened by name.
  const layouts = `${p.dir}/layouts`;
  Deno.mkdirSync(layouts);
  const layout = {
    version: 1,
    config: p.config.name,
    windowMs: 300000,
    panes: [{ measurements: ["BATT_VOLTAGE", "BUS_5V"] }, { measurements: ["FLIGHT_STATE"] }],
  };
  Deno.writeTextFileSync(`${layouts}/pad.json`, JSON.stringify(layout));
  const port2 = freeTcpPort();
  const { url: url2 } = await dashboard(p, [
    "--listen",
    `127.0.0.1:${port2}`,
    "--layouts",
    layouts,
  ]);
  await using b = await TestBrowser.launch();
  const page = await b.open(`${url2}?layout=pad`);
  // deno-lint-ignore no-explicit-any
  const shown = await page.evaluate(() => (globalThis as any).gswDashboard.layout());
  assertEquals(shown.panes, layout.panes);
  assertEquals(shown.windowMs, 300000);
  const names = await (await fetch(`${url2}api/layouts`)).json();
  assertEquals(names, ["pad"]);
});

/** A WebSocket client on a raw TCP connection, so that it can stop reading entirely. */
async function rawWebSocket(port: number, watch: unknown): Promise<Deno.TcpConn> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const key = btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(16))));
  await conn.write(new TextEncoder().encode(
    `GET /ws HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
  ));
  const head = new Uint8Array(1024);
  const n = await conn.read(head);
  assert(new TextDecoder().decode(head.subarray(0, n ?? 0)).startsWith("HTTP/1.1 101"));
  const text = new TextEncoder().encode(JSON.stringify(watch));
  const frame = new Uint8Array(8 + text.length);
  frame[0] = 0x81; // one text frame
  frame[1] = 0x80 | 126; // masked (a zero mask: the payload as is), 16-bit length
  new DataView(frame.buffer).setUint16(2, text.length);
  frame.set(text, 8);
  await conn.write(frame);
  return conn;
}

/** Reads server frames from a raw WebSocket until a text frame matches `re`; returns it. */
async function readUntil(conn: Deno.TcpConn, re: RegExp, timeoutMs: number): Promise<string> {
  let buf = new Uint8Array(0);
  const deadline = Date.now() + timeoutMs;
  const chunk = new Uint8Array(1 << 20);
  for (;;) {
    while (buf.length >= 2) {
      let len = buf[1] & 0x7f;
      let at = 2;
      if (len === 126) [len, at] = [(buf[2] << 8) | buf[3], 4];
      else if (len === 127) {
        [len, at] = [Number(new DataView(buf.buffer, buf.byteOffset).getBigUint64(2)), 10];
      }
      if (buf.length < at + len) break;
      if ((buf[0] & 0x0f) === 1) {
        const text = new TextDecoder().decode(buf.subarray(at, at + len));
        if (re.test(text)) return text;
      }
      buf = buf.slice(at + len);
    }
    if (Date.now() > deadline) throw new Error(`no frame matching ${re} within ${timeoutMs} ms`);
    const n = await conn.read(chunk);
    if (n === null) throw new Error("the server closed the connection");
    const next = new Uint8Array(buf.length + n);
    next.set(buf);
    next.set(chunk.subarray(0, n), buf.length);
    buf = next;
  }
}

Deno.test("dashboard: a client that stops reading is told it is behind; the others miss nothing", async () => {
  await using p = Pipeline.create();
  await p.decom(["--packet-ring", "65536"]);
  await p.broker();
  const port = freeTcpPort();
  const { proc, url } = await dashboard(p, ["--listen", `127.0.0.1:${port}`]);
  const navPort = p.config.packets.find((x) => x.name === "Nav")!.port;
  await using b = await TestBrowser.launch();
  const page = await b.open(url);
  const all = p.config.measurements.map((m) => m.index);
  const stalled = await rawWebSocket(port, {
    type: "watch",
    measurements: all,
    windowMs: 60_000,
    columns: 1000,
  });
  // 150 000 Nav packets as fast as they go: 1.5 M samples, far more than one stalled client
  // may have pending, and megabytes more than its socket holds.
  const N = 150_000;
  for (let k = 1; k <= N; k += 1000) {
    await p.send(navPort, Array.from({ length: 1000 }, (_, j) => nav(k + j)));
    await sleep(20);
  }
  // When the stalled client reads again it is told it fell behind, then gets the window.
  const behind = JSON.parse(
    await readUntil(stalled, /"type":"behind"/, 30_000).catch((e) => {
      throw new Error(`${e.message}; the dashboard said:\n${proc.lines.join("\n")}`);
    }),
  );
  assert(behind.dropped > 0, JSON.stringify(behind));
  const got = await eventuallyAsync("the reading browser to hold every sample", async () => {
    const d = await plotData(page, "ALTITUDE");
    return d.v.length >= N ? d : undefined;
  }, 60_000);
  assertEquals(got.v.slice(-N), Array.from({ length: N }, (_, i) => (i + 1) / 2));
  // The server held its memory in check meanwhile.
  const serverPid = Number(
    new TextDecoder().decode(
      (await new Deno.Command("pgrep", { args: ["-n", "-f", `127.0.0.1:${port} --parent`] })
        .output()).stdout,
    ).trim(),
  );
  const rss = Number(
    Deno.readTextFileSync(`/proc/${serverPid}/status`).match(/VmRSS:\s+(\d+)/)![1],
  );
  assert(rss < 400 * 1024, `the dashboard holds ${rss} KiB`);
  stalled.close();
  assert(proc.exited === null, "the server is still running");
});
