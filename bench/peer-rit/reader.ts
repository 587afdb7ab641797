// gsw side of the side-by-side: follows the benchmark packet's send timestamp through gsw and reports
// UDP send -> subscriber latency and values never seen (skipped), like RIT's ipc_benchmark reader.
// usage: reader.ts SECONDS GSW_MOD_URL (the gsw checkout's mod.ts as a file: URL)
const { subscribe } = await import(Deno.args[1]);
const secs = Number(Deno.args[0] ?? 10);
const lat: number[] = [];
let lost = 0, n = 0;
const nowNs = () => BigInt(Math.round((performance.timeOrigin + performance.now()) * 1e6));
using sub = subscribe(["UdpSendTimestamp"]);
let end = 0;
for await (const u of sub) {
  const t = nowNs();
  if (end === 0) {
    end = Date.now() + secs * 1000;
    continue;
  }
  lat.push(Number(t - BigInt(u.raw as bigint | number)) / 1000);
  lost += u.skipped;
  n++;
  if (Date.now() > end) break;
}
lat.sort((a, b) => a - b);
const q = (p: number) => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))]?.toFixed(1);
console.log(
  JSON.stringify({
    received: n,
    lost,
    lost_pct: (100 * lost / (n + lost)).toFixed(3),
    p50_us: q(0.5),
    p99_us: q(0.99),
    mean_us: (lat.reduce((a, b) => a + b, 0) / lat.length).toFixed(1),
  }),
);
