// gsw dashboard page: values of every measurement grouped by packet, link health, and plots of
// every sample (history from the server on connect, then batches at most once per frame). Plain
// JavaScript, no framework; uPlot draws the plots. The binary frame layout is documented in
// dashboard/frames.ts.
"use strict";

(() => {
  const HISTORY = 1;
  const APPEND = 2;
  const REDUCED = 1;
  const COLORS = [
    "#4cc9f0",
    "#f77f00",
    "#90be6d",
    "#f94144",
    "#b5179e",
    "#f9c74f",
    "#43aa8b",
    "#9d4edd",
  ];

  const state = {
    config: null,
    byIndex: new Map(),
    byKey: new Map(),
    windowMs: 60000,
    paused: false,
    /** Measurement index -> { t: number[], v: number[], reduced: boolean } */
    data: new Map(),
    panes: [],
    ws: null,
    connected: false,
    frames: 0,
    samples: 0,
    serverSkewMs: 0,
    onAppend: [],
    readyResolve: null,
  };
  const ready = new Promise((r) => (state.readyResolve = r));

  const $ = (id) => document.getElementById(id);
  const el = (tag, attrs = {}, ...children) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k === "class") e.className = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v);
    }
    for (const c of children) e.append(c);
    return e;
  };

  // -- formatting ------------------------------------------------------------------------------

  function fmtNumber(v) {
    if (typeof v !== "number") return String(v);
    if (Number.isInteger(v) || !Number.isFinite(v)) return String(v);
    const a = Math.abs(v);
    if (a >= 1e9 || a < 1e-4) return v.toExponential(6).replace(/\.?0+e/, "e");
    return String(Number(v.toPrecision(7)));
  }

  function enumLabel(m, raw) {
    if (!m.enum || raw === null || raw === undefined) return null;
    return m.enum[String(raw)] ?? `UNKNOWN(${raw})`;
  }

  function fmtValue(m, v) {
    if (v === null || v === undefined) return "—";
    if (m.enum && typeof v === "number") return enumLabel(m, v);
    if (typeof v === "boolean" || m.type === "bool") return String(v === true || v === 1);
    if (typeof v === "number") return fmtNumber(v);
    return m.enum ? String(v) : m.type === "string" ? JSON.stringify(v) : String(v);
  }

  /** Local time with milliseconds, as the time axis shows it. */
  function fmtTime(ms) {
    if (ms === null || ms === undefined) return "—";
    const d = new Date(ms);
    const two = (n) => String(n).padStart(2, "0");
    return `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}.${
      String(d.getMilliseconds()).padStart(3, "0")
    }`;
  }

  function fmtAge(s) {
    if (s < 1) return `${Math.round(s * 1000)} ms`;
    if (s < 120) return `${s.toFixed(1)} s`;
    return `${Math.round(s / 60)} min`;
  }

  // -- values panel ----------------------------------------------------------------------------

  const rows = new Map();

  function buildValues() {
    const root = $("values");
    root.textContent = "";
    const { config } = state;
    const groups = [];
    for (const p of config.packets) {
      groups.push({
        title: p.name,
        sub: p.source,
        items: p.measurements.map((i) => state.byIndex.get(i)),
      });
    }
    const health = config.measurements.filter((m) => m.health);
    for (const s of config.sources) {
      groups.push({
        title: `link health: ${s.name}`,
        sub: "",
        items: health.filter((m) => m.health.source === s.name),
      });
    }
    for (const g of groups) {
      const table = el("table");
      for (const m of g.items) {
        const value = el("td", { class: "value" }, "—");
        const age = el("td", { class: "meta" }, "");
        const rate = el("td", { class: "meta" }, "");
        const name = el("td", {
          class: "name",
          title: `${m.key}${m.description ? ": " + m.description : ""}${
            m.plottable ? " (click to plot)" : ""
          }`,
        }, m.name);
        if (m.plottable) name.addEventListener("click", () => addToPane(m.key));
        const tr = el(
          "tr",
          { "data-key": m.key },
          name,
          value,
          el("td", { class: "meta" }, m.unit ?? ""),
          age,
          rate,
        );
        table.append(tr);
        rows.set(m.index, { tr, value, age, rate });
      }
      root.append(
        el("div", { class: "group" }, el("h2", {}, g.title, el("span", {}, g.sub)), table),
      );
    }
  }

  function onValues(msg) {
    state.serverSkewMs = Date.now() - msg.now;
    for (const [index, value, limit, t, rate, stale] of msg.items) {
      const r = rows.get(index);
      const m = state.byIndex.get(index);
      if (!r || !m) continue;
      r.value.textContent = fmtValue(m, value);
      r.tr.className = stale ? "stale" : limit;
      r.age.textContent = fmtAge(Math.max(0, (msg.now - t) / 1000));
      r.rate.textContent = rate > 0 ? `${fmtNumber(rate)}/s` : "";
      r.last = value;
    }
    const src = $("sources");
    src.textContent = "";
    for (const [name, up] of Object.entries(msg.sources)) {
      src.append(
        el("span", {
          class: up ? "source" : "source down",
          title: up ? "decom running" : "decom not running",
        }, `${name}${up ? "" : " (away)"}`),
      );
    }
  }

  // -- plots -----------------------------------------------------------------------------------

  function scaleKey(m) {
    return m.enum ? `enum:${m.key}` : m.unit ? `unit:${m.unit}` : "none";
  }

  function makePane(spec) {
    const pane = {
      keys: spec.measurements.filter((k) => state.byKey.get(k)?.plottable),
      plot: null,
      dirty: true,
    };
    const bar = el("div", { class: "bar" });
    const box = el("div", { class: "plot" });
    const note = el("span", { class: "reduced" });
    const picker = el(
      "select",
      { title: "add a measurement to this plot" },
      el("option", { value: "" }, "+ measurement"),
    );
    for (const m of state.config.measurements) {
      if (m.plottable) picker.append(el("option", { value: m.key }, m.name));
    }
    picker.addEventListener("change", () => {
      if (picker.value && !pane.keys.includes(picker.value)) {
        pane.keys.push(picker.value);
        rebuild(pane);
        sendWatch();
      }
      picker.value = "";
    });
    const remove = el(
      "button",
      { title: "remove this plot", onclick: () => removePane(pane) },
      "×",
    );
    pane.root = el("div", { class: "pane" }, bar, box);
    pane.bar = bar;
    pane.box = box;
    pane.note = note;
    pane.picker = picker;
    pane.remove = remove;
    $("panes").append(pane.root);
    state.panes.push(pane);
    rebuild(pane);
    return pane;
  }

  function removePane(pane) {
    pane.plot?.destroy();
    pane.root.remove();
    state.panes = state.panes.filter((p) => p !== pane);
    sendWatch();
  }

  function addToPane(key) {
    const pane = state.panes.at(-1) ?? makePane({ measurements: [] });
    if (!pane.keys.includes(key)) {
      pane.keys.push(key);
      rebuild(pane);
      sendWatch();
    }
  }

  function rebuild(pane) {
    pane.bar.textContent = "";
    for (const key of pane.keys) {
      const m = state.byKey.get(key);
      const x = el("button", {
        title: "remove",
        onclick: () => {
          pane.keys = pane.keys.filter((k) => k !== key);
          rebuild(pane);
          sendWatch();
        },
      }, "×");
      pane.bar.append(el("span", { class: "chip" }, `${m.name}${m.unit ? ` (${m.unit})` : ""}`, x));
    }
    pane.bar.append(pane.picker, pane.note, el("span", { class: "spacer" }), pane.remove);
    pane.plot?.destroy();
    pane.plot = null;
    pane.box.textContent = "";
    if (pane.keys.length === 0) return;
    const ms = pane.keys.map((k) => state.byKey.get(k));
    const scales = { x: { time: true } };
    const axes = [{ stroke: "#8b96a1", grid: { stroke: "#2c333b" }, ticks: { stroke: "#2c333b" } }];
    const seen = new Map();
    for (const m of ms) {
      const key = scaleKey(m);
      if (seen.has(key)) continue;
      seen.set(key, m);
      scales[key] = { auto: true };
      const side = seen.size % 2 === 1 ? 3 : 1;
      axes.push({
        scale: key,
        side,
        stroke: "#8b96a1",
        grid: { show: seen.size === 1, stroke: "#2c333b" },
        ticks: { stroke: "#2c333b" },
        label: m.enum ? m.name : m.unit ?? "",
        size: m.enum ? 90 : 60,
        values: m.enum
          ? (_u, splits) => splits.map((v) => (Number.isInteger(v) ? enumLabel(m, v) : ""))
          : undefined,
      });
    }
    const series = [{ label: "time", value: (_u, v) => fmtTime(v) }];
    ms.forEach((m, i) => {
      series.push({
        label: m.name + (m.unit ? ` [${m.unit}]` : ""),
        scale: scaleKey(m),
        stroke: COLORS[i % COLORS.length],
        width: 1.25,
        spanGaps: true,
        points: { show: false },
        value: (_u, v) => (v === null || v === undefined ? "—" : fmtValue(m, v)),
      });
    });
    const width = Math.max(300, pane.box.clientWidth || $("panes").clientWidth - 20);
    pane.plot = new uPlot(
      {
        width,
        height: 260,
        ms: 1,
        scales,
        axes,
        series,
        cursor: { drag: { x: true, y: false } },
        legend: { live: true },
        hooks: {
          setSelect: [() => setPaused(true)],
        },
      },
      [[]].concat(ms.map(() => [])),
      pane.box,
    );
    pane.dirty = true;
  }

  /** The aligned table uPlot draws for a pane: one time column, one column per measurement. */
  function paneData(pane) {
    const cols = pane.keys.map((k) => state.data.get(state.byKey.get(k).index));
    if (cols.length === 1) {
      const d = cols[0] ?? { t: [], v: [] };
      return [d.t, d.v];
    }
    const tables = cols.map((d) => [d ? d.t : [], d ? d.v : []]);
    return uPlot.join(tables);
  }

  function draw() {
    const now = Date.now() - state.serverSkewMs;
    if (!state.paused) {
      const from = now - state.windowMs - 1000;
      for (const d of state.data.values()) trim(d, from);
    }
    for (const pane of state.panes) {
      if (!pane.plot || (!pane.dirty && state.paused)) continue;
      if (!state.paused) {
        // Scrolling: nothing visible changes before the time axis has moved by one pixel.
        const msPerPixel = state.windowMs / Math.max(1, pane.plot.bbox.width / devicePixelRatio);
        if (now - (pane.drawnAt ?? 0) < msPerPixel) continue;
        pane.drawnAt = now;
      }
      if (pane.dirty) {
        pane.plot.setData(paneData(pane), false);
        pane.dirty = false;
        const reduced = pane.keys.some((k) => state.data.get(state.byKey.get(k).index)?.reduced);
        pane.note.textContent = reduced
          ? "more samples than the plot has columns: min/max per column (a shorter window shows each one)"
          : "";
      }
      if (!state.paused) pane.plot.setScale("x", { min: now - state.windowMs, max: now });
    }
    requestAnimationFrame(draw);
  }

  function trim(d, from) {
    let k = 0;
    while (k < d.t.length && d.t[k] < from) k++;
    if (k > 0) {
      d.t.splice(0, k);
      d.v.splice(0, k);
    }
  }

  function setPaused(on) {
    state.paused = on;
    $("pause").classList.toggle("on", on);
    $("pause").textContent = on ? "resume" : "pause";
    if (!on) { for (const p of state.panes) p.dirty = true; }
  }

  // -- the server ------------------------------------------------------------------------------

  function watched() {
    const set = new Set();
    for (const p of state.panes) for (const k of p.keys) set.add(state.byKey.get(k).index);
    return [...set];
  }

  function sendWatch() {
    if (!state.ws || state.ws.readyState !== WebSocket.OPEN) return;
    const columns = Math.max(300, ...state.panes.map((p) => p.box.clientWidth || 0));
    state.ws.send(
      JSON.stringify({ type: "watch", measurements: watched(), windowMs: state.windowMs, columns }),
    );
  }

  function onFrame(buf) {
    const view = new DataView(buf);
    const kind = view.getUint8(0);
    const count = view.getUint32(4, true);
    let at = 8;
    const arrived = performance.timeOrigin + performance.now();
    for (let i = 0; i < count; i++) {
      const index = view.getUint32(at, true);
      const n = view.getUint32(at + 4, true);
      const reduced = (view.getUint32(at + 8, true) & REDUCED) !== 0;
      at += 16;
      const t = new Float64Array(buf, at, n);
      at += 8 * n;
      const v = new Float64Array(buf, at, n);
      at += 8 * n;
      let d = state.data.get(index);
      if (kind === HISTORY || !d) {
        d = { t: [], v: [], reduced };
        state.data.set(index, d);
      }
      for (let j = 0; j < n; j++) {
        d.t.push(t[j]);
        d.v.push(v[j]);
      }
      state.samples += n;
      if (kind === APPEND) { for (const f of state.onAppend) f(index, t, v, arrived); }
    }
    state.frames++;
    for (const p of state.panes) p.dirty = true;
    if (kind === HISTORY) state.readyResolve?.();
  }

  function connect() {
    const token = new URLSearchParams(location.search).get("token");
    const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws${
      token ? `?token=${encodeURIComponent(token)}` : ""
    }`;
    const ws = new WebSocket(url);
    ws.binaryType = "arraybuffer";
    state.ws = ws;
    ws.onopen = () => {
      state.connected = true;
      $("link").textContent = "live";
      $("link").className = "link up";
      sendWatch();
    };
    ws.onmessage = (e) => {
      if (typeof e.data !== "string") return onFrame(e.data);
      const msg = JSON.parse(e.data);
      if (msg.type === "values") onValues(msg);
      else if (msg.type === "behind") notice(msg.message);
    };
    ws.onclose = () => {
      state.connected = false;
      $("link").textContent = "disconnected: reconnecting";
      $("link").className = "link down";
      setTimeout(connect, 1000);
    };
  }

  let noticeTimer = 0;
  function notice(text) {
    const n = $("notice");
    n.textContent = text;
    n.hidden = false;
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(() => (n.hidden = true), 8000);
  }

  // -- layouts ---------------------------------------------------------------------------------

  function layoutNow() {
    return {
      version: 1,
      config: state.config.name,
      windowMs: state.windowMs,
      panes: state.panes.map((p) => ({ measurements: [...p.keys] })),
    };
  }

  function applyLayout(layout) {
    for (const p of [...state.panes]) {
      p.plot?.destroy();
      p.root.remove();
    }
    state.panes = [];
    if (layout.windowMs) {
      state.windowMs = layout.windowMs;
      $("window").value = String(layout.windowMs);
    }
    for (const p of layout.panes ?? []) {
      makePane({ measurements: (p.measurements ?? []).map((k) => state.byKey.get(k)?.key ?? k) });
    }
    sendWatch();
  }

  function autoLayout() {
    const panes = state.config.packets.slice(0, 3).map((p) => ({
      measurements: p.measurements.map((i) => state.byIndex.get(i)).filter((m) => m.plottable)
        .slice(0, 3).map((m) => m.key),
    })).filter((p) => p.measurements.length > 0);
    return { version: 1, windowMs: 60000, panes };
  }

  async function loadLayout() {
    const wanted = new URLSearchParams(location.search).get("layout");
    const names = await (await fetch("/api/layouts")).json();
    const select = $("layouts");
    select.append(el("option", { value: "" }, "layouts…"));
    for (const n of names) select.append(el("option", { value: n }, n));
    select.addEventListener("change", () => {
      if (!select.value) return;
      const u = new URL(location.href);
      u.searchParams.set("layout", select.value);
      location.href = u.href;
    });
    const name = wanted ?? (names.includes("default") ? "default" : null);
    if (name) {
      const r = await fetch(`/api/layouts/${encodeURIComponent(name)}`);
      if (r.ok) return await r.json();
      notice(await r.text());
    }
    return autoLayout();
  }

  function saveLayout() {
    const blob = new Blob([JSON.stringify(layoutNow(), null, 2) + "\n"], {
      type: "application/json",
    });
    const a = el("a", { href: URL.createObjectURL(blob), download: `${state.config.name}.json` });
    document.body.append(a);
    a.click();
    a.remove();
    notice(
      "layout downloaded: put it in the dashboard's layouts directory and open it with ?layout=NAME",
    );
  }

  // -- start -----------------------------------------------------------------------------------

  async function main() {
    const config = await (await fetch("/api/config")).json();
    state.config = config;
    for (const m of config.measurements) {
      state.byIndex.set(m.index, m);
      state.byKey.set(m.key, m);
    }
    $("vehicle").textContent = config.name;
    document.title = `${config.name}: gsw dashboard`;
    buildValues();
    applyLayout(await loadLayout());
    $("window").addEventListener("change", () => {
      state.windowMs = Number($("window").value);
      sendWatch();
    });
    $("pause").addEventListener("click", () => setPaused(!state.paused));
    $("add-pane").addEventListener("click", () => makePane({ measurements: [] }));
    $("save").addEventListener("click", saveLayout);
    $("open").addEventListener("change", async (e) => {
      const f = e.target.files?.[0];
      if (f) applyLayout(JSON.parse(await f.text()));
    });
    globalThis.addEventListener("resize", () => {
      for (const p of state.panes) p.plot?.setSize({ width: p.box.clientWidth, height: 260 });
    });
    connect();
    requestAnimationFrame(draw);
  }

  // For tests and benchmarks: what the page holds, exactly.
  globalThis.gswDashboard = {
    ready,
    state,
    plotData(key) {
      const m = state.byKey.get(key);
      const d = m && state.data.get(m.index);
      return d
        ? { t: [...d.t], v: [...d.v], reduced: d.reduced }
        : { t: [], v: [], reduced: false };
    },
    value(key) {
      const m = state.byKey.get(key);
      return m ? rows.get(m.index)?.value.textContent : undefined;
    },
    layout: layoutNow,
  };

  main().catch((e) => notice(`the dashboard could not start: ${e.message}`));
})();
