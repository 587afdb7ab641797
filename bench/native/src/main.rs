//! `gsw-bench-native`: the native reference programs and the old-scheme baseline for gsw's
//! benchmarks. One JSON object per metric per line on stdout, a human table on stderr.

use gsw_bench_native::cli::Args;
use gsw_bench_native::cmd::{
    baseline, bfanout, cacheline, chain, channel, deno, eventfd_pingpong, pipeline, soak, udp,
};
use gsw_bench_native::machine::Machine;
use gsw_bench_native::proc::Watchdog;
use gsw_bench_native::report::Report;
use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str = "\
gsw-bench-native <subcommand> [options]   (each subcommand takes --help)

Native reference programs and the old-scheme baseline for gsw's benchmarks. Prints one JSON
object per metric per line on stdout ({\"bench\",\"metric\",\"value\",\"unit\",\"reference\",\"ratio\"})
and a human table on stderr.

Subcommands:
  machine             CPU model, cores, kernel, clocksource, rustc/deno versions, pinning (one JSON line)
  eventfd-pingpong    raw eventfd ping-pong between two processes: one-way blocking wake latency
  cacheline-pingpong  cache-line hand-off between two spinning processes: one-way latency
  baseline            the old scheme (readers/writer lock + futex): writer throughput, wake latency
  udp-ingest          native sendmmsg -> recvmmsg over loopback: rates and exact loss
  udp-send            the sender alone (--port P --count N --size S --rate PPS)
  udp-recv            the receiver alone (--port P --duration S)
  all                 machine, then every benchmark above with its defaults (takes --no-pin)
  channel             gsw's channel (gsw::segment): publish/take cost vs the protocol floor,
                      wake latency vs eventfd and the old scheme, writer throughput vs the old scheme
  deno-wake           a Deno reader (waitSync / awaited Waitset.wait) woken by a native writer, vs
                      eventfd and an awaited no-op nonblocking FFI call (needs deno)
  idle                CPU used by readers blocked on their doorbell (Deno and native; needs deno)
  chain               native UDP recv -> eventfd hop -> eventfd hop -> reader: the e2e floor
  ingest              gsw's decom (with logger, broker, subscriber) fed flat out vs a native
                      recvmmsg receiver: loss, rate, CPU per measurement, idle CPU (needs deno)
  e2e                 UDP send -> a Deno library subscriber has the value, vs the native chain
  fanout              decom's CPU per datagram with 64 subscribers vs none; broker CPU per copy
  rss                 resident memory of decom + broker + logger, 300 measurements, 64 subscribers
  broadcast-fanout    what N direct readers sleeping on a broadcast segment cost its writer
  soak                decom's RSS over minutes with no logger, then a logger, vs its backlog bound

Examples:
  gsw-bench-native all 2>/dev/null > results.jsonl
  gsw-bench-native baseline --samples 200000 --duration 10
  gsw-bench-native udp-recv --port 9000 --count 500000 &  gsw-bench-native udp-send --port 9000 --count 500000";

fn help_for(sub: &str) -> Option<&'static str> {
    Some(match sub {
        "machine" => "gsw-bench-native machine\n  Prints one JSON line describing the machine.",
        "eventfd-pingpong" => eventfd_pingpong::HELP,
        "cacheline-pingpong" => cacheline::HELP,
        "baseline" => baseline::HELP,
        "udp-ingest" => udp::HELP_INGEST,
        "udp-send" => udp::HELP_SEND,
        "udp-recv" => udp::HELP_RECV,
        "channel" => channel::HELP,
        "deno-wake" => deno::HELP_WAKE,
        "idle" => deno::HELP_IDLE,
        "chain" => chain::HELP,
        "broadcast-fanout" => bfanout::HELP,
        "soak" => return Some(leak(soak::HELP)),
        "ingest" => return Some(leak(pipeline::HELP_INGEST)),
        "e2e" => return Some(leak(pipeline::HELP_E2E)),
        "fanout" => return Some(leak(pipeline::HELP_FANOUT)),
        "rss" => return Some(leak(pipeline::HELP_RSS)),
        "all" => "gsw-bench-native all [--no-pin]\n  Runs machine, eventfd-pingpong, cacheline-pingpong, baseline and udp-ingest with defaults.",
        _ => return None,
    })
}

/// A pipeline benchmark's usage text followed by the options they all take.
fn leak(help: &str) -> &'static str {
    Box::leak(format!("{help}\n{}", pipeline::HELP_GSW).into_boxed_str())
}

/// A benchmark failed to run (exit 1) or the command line was wrong (exit 2).
enum Failure {
    Run(String),
    Usage(String),
}

fn usage<T>(r: Result<T, String>) -> Result<T, Failure> {
    r.map_err(Failure::Usage)
}

/// Parses a subcommand's options and returns how to run it (with its watchdog timeout).
fn bench(sub: &str, a: &mut Args) -> Result<Box<dyn FnOnce() -> std::io::Result<Report>>, Failure> {
    Ok(match sub {
        "eventfd-pingpong" => {
            let o = usage(eventfd_pingpong::Options::from_args(a))?;
            Box::new(move || {
                guarded("eventfd-pingpong", o.common.timeout, || {
                    eventfd_pingpong::run(&o)
                })
            })
        }
        "cacheline-pingpong" => {
            let o = usage(cacheline::Options::from_args(a))?;
            Box::new(move || {
                guarded("cacheline-pingpong", o.common.timeout, || {
                    cacheline::run(&o)
                })
            })
        }
        "baseline" => {
            let o = usage(baseline::Options::from_args(a))?;
            Box::new(move || guarded("baseline", o.common.timeout, || baseline::run(&o)))
        }
        "channel" => {
            let o = usage(channel::Options::from_args(a))?;
            Box::new(move || guarded("channel", o.common.timeout, || channel::run(&o)))
        }
        "deno-wake" => {
            let o = usage(deno::WakeCmd::from_args(a))?;
            Box::new(move || guarded("deno-wake", o.common.timeout, || deno::run_wake(&o)))
        }
        "idle" => {
            let o = usage(deno::IdleCmd::from_args(a))?;
            Box::new(move || guarded("idle", o.common.timeout, || deno::run_idle(&o)))
        }
        "soak" => {
            let o = usage(soak::Options::from_args(a))?;
            Box::new(move || guarded("soak", o.watchdog(), || soak::run(&o)))
        }
        "broadcast-fanout" => {
            let o = usage(bfanout::Options::from_args(a))?;
            Box::new(move || guarded("broadcast-fanout", o.timeout, || bfanout::run(&o)))
        }
        "chain" => {
            let o = usage(chain::Options::from_args(a))?;
            Box::new(move || guarded("chain", o.timeout, || chain::run(&o)))
        }
        "ingest" => {
            let o = usage(pipeline::IngestOptions::from_args(a))?;
            Box::new(move || guarded("ingest", o.timeout, || pipeline::run_ingest(&o)))
        }
        "e2e" => {
            let o = usage(pipeline::E2eOptions::from_args(a))?;
            Box::new(move || guarded("e2e", o.timeout, || pipeline::run_e2e(&o)))
        }
        "fanout" => {
            let o = usage(pipeline::FanoutOptions::from_args(a, false))?;
            Box::new(move || guarded("fanout", o.timeout, || pipeline::run_fanout(&o)))
        }
        "rss" => {
            let o = usage(pipeline::FanoutOptions::from_args(a, true))?;
            Box::new(move || guarded("rss", o.timeout, || pipeline::run_rss(&o)))
        }
        "udp-ingest" => {
            let o = usage(udp::IngestOptions::from_args(a))?;
            Box::new(move || guarded("udp-ingest", o.common.timeout, || udp::ingest(&o)))
        }
        "udp-send" => {
            let o = usage(udp::SendCmd::from_args(a))?;
            Box::new(move || guarded("udp-send", o.timeout, || udp::send_cmd(&o)))
        }
        "udp-recv" => {
            let o = usage(udp::RecvCmd::from_args(a))?;
            Box::new(move || guarded("udp-recv", o.timeout, || udp::recv_cmd(&o)))
        }
        other => {
            return Err(Failure::Usage(format!(
                "unknown subcommand '{other}' (see --help)"
            )))
        }
    })
}

/// Runs `f` under a watchdog: if it has not returned after `timeout`, its child processes are
/// killed and the process exits with status 124.
fn guarded(
    what: &'static str,
    timeout: Duration,
    f: impl FnOnce() -> std::io::Result<Report>,
) -> std::io::Result<Report> {
    let _dog = Watchdog::arm(what, timeout);
    f()
}

fn print_machine() {
    let m = Machine::describe();
    println!("{}", m.to_json());
    let _ = std::io::stdout().flush();
    eprintln!(
        "── machine ──\n  {} · {} cores ({} allowed) · Linux {} · clocksource {} · cpuidle {} · {} · {} · pinning {}",
        m.cpu_model,
        m.cores,
        m.allowed_cpus,
        m.kernel,
        m.clocksource,
        m.cpuidle,
        m.rustc,
        m.deno.as_deref().unwrap_or("no deno"),
        if m.pinning { "works" } else { "unavailable" }
    );
}

fn run(argv: &[String]) -> Result<(), Failure> {
    let Some(sub) = argv.first().map(String::as_str) else {
        return Err(Failure::Usage("missing subcommand".into()));
    };
    if matches!(sub, "--help" | "-h" | "help") {
        println!("{USAGE}");
        return Ok(());
    }
    let mut a = usage(Args::parse(&argv[1..]))?;
    if a.flag("--help") || a.flag("-h") {
        match help_for(sub) {
            Some(h) => println!("{h}"),
            None => {
                return Err(Failure::Usage(format!(
                    "unknown subcommand '{sub}' (see --help)"
                )))
            }
        }
        return Ok(());
    }
    match sub {
        "machine" => {
            usage(a.finish())?;
            print_machine();
            Ok(())
        }
        "all" => {
            let no_pin = a.flag("--no-pin");
            usage(a.finish())?;
            print_machine();
            let mut failed = Vec::new();
            for name in [
                "eventfd-pingpong",
                "cacheline-pingpong",
                "baseline",
                "udp-ingest",
            ] {
                let args: Vec<String> = if no_pin {
                    vec!["--no-pin".into()]
                } else {
                    Vec::new()
                };
                let mut sa = usage(Args::parse(&args))?;
                let job = bench(name, &mut sa)?;
                usage(sa.finish())?;
                match job() {
                    Ok(r) => r.emit(),
                    Err(e) => {
                        eprintln!("gsw-bench-native: {name} failed: {e}");
                        failed.push(name);
                    }
                }
            }
            if failed.is_empty() {
                Ok(())
            } else {
                Err(Failure::Run(format!("failed: {}", failed.join(", "))))
            }
        }
        _ => {
            let job = bench(sub, &mut a)?;
            usage(a.finish())?;
            let r = job().map_err(|e| Failure::Run(format!("{sub} failed: {e}")))?;
            r.emit();
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    match run(&argv) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Run(m)) => {
            eprintln!("gsw-bench-native: {m}");
            ExitCode::from(1)
        }
        Err(Failure::Usage(m)) => {
            eprintln!("gsw-bench-native: {m}\nusage: gsw-bench-native <subcommand> [options]  (try --help)");
            ExitCode::from(2)
        }
    }
}
