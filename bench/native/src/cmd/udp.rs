//! `udp-ingest`, `udp-send`, `udp-recv`: the floor for UDP ingest over loopback, and its two
//! halves as stand-alone programs so a TypeScript benchmark can feed gsw's decom with the
//! native sender and run the native receiver as the same-run reference.

use super::{Common, WAIT_TIMEOUT};
use crate::cli::Args;
use crate::clock::{now_ns, Deadline};
use crate::proc::{fork_child, CpuPair};
use crate::report::Report;
use crate::shm::SharedMem;
use crate::udp::{
    kernel_udp_counters, loopback, send, Receiver, RecvOptions, SendOptions, SeqTracker,
    MIN_DATAGRAM,
};
use std::io::{self, Write as _};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Usage text of `udp-ingest`.
pub const HELP_INGEST: &str = "\
gsw-bench-native udp-ingest [--count N] [--duration SECS] [--size BYTES] [--rate PPS] [--batch N]
                            [--rcvbuf BYTES] [--no-pin] [--timeout SECS]
  A native sendmmsg sender (child process) flat out over loopback to a native recvmmsg
  receiver: rate sent, rate received, loss, reordering, duplicates (exact, by sequence number).
  --count N        datagrams to send (default 2000000)
  --duration SECS  stop sending after this long even if --count is not reached (default 10)
  --size BYTES     datagram bytes, >= 16 (default 64)
  --rate PPS       pace the sender; 0 = flat out (default 0)
  --batch N        datagrams per sendmmsg / recvmmsg call (default 64)
  --rcvbuf BYTES   receive buffer asked for (default 4194304)
  --coalesce-us US receiver sleeps this long after a partial batch instead of blocking at once
                   (default 0: block in recvmmsg and be woken per datagram when idle)";

/// Usage text of `udp-send`.
pub const HELP_SEND: &str = "\
gsw-bench-native udp-send --port P [--host ADDR] [--count N] [--size BYTES] [--rate PPS] [--batch N]
                          [--duration SECS] [--timeout SECS]
  Sends N sequence-numbered datagrams with sendmmsg (layout: seq u64 LE | \"GSWU\" | tag u32 | filler),
  then prints JSON lines: sent_packets, send_rate_pps, send_errors, elapsed_s, sender_tag.
  --host ADDR      IPv4 destination (default 127.0.0.1)
  --count N        datagrams (default 1000000)
  --size BYTES     datagram bytes, >= 16 (default 64)
  --rate PPS       datagrams per second; 0 = flat out (default 0)
  --batch N        datagrams per sendmmsg call (default 64)
  --duration SECS  stop after this long even if --count is not reached (default: no limit)
  Example: gsw-bench-native udp-send --port 9000 --count 500000 --rate 100000";

/// Usage text of `udp-recv`.
pub const HELP_RECV: &str = "\
gsw-bench-native udp-recv --port P [--bind ADDR] [--duration SECS] [--count N] [--idle SECS]
                          [--batch N] [--rcvbuf BYTES] [--timeout SECS]
  Receives with recvmmsg; prints {\"metric\":\"listening_port\",…} as soon as it is bound, then at the
  end: received_packets, recv_rate_pps, lost_packets, loss_pct, reordered, duplicates, corrupt, foreign.
  --port P         port to bind; 0 = any free port (see listening_port)
  --bind ADDR      IPv4 address to bind (default 127.0.0.1)
  --duration SECS  stop after this long (default 10)
  --count N        datagrams expected: stop when all arrived, and count loss against N
                   (without it, loss = gaps below the highest sequence number seen)
  --idle SECS      stop once this long passes without a datagram after the first (default 1; 0 = never)
  --batch N        datagrams per recvmmsg call (default 64)
  --rcvbuf BYTES   receive buffer asked for (default 4194304)
  --coalesce-us US sleep this long after a partial batch instead of blocking at once (default 0)
  Example: gsw-bench-native udp-recv --port 9000 --count 500000";

/// Options of `udp-ingest`.
#[derive(Clone, Debug)]
pub struct IngestOptions {
    /// Datagrams to send.
    pub count: u64,
    /// Longest sending time.
    pub duration: Duration,
    /// Datagram bytes.
    pub size: usize,
    /// Datagrams per second; 0 = flat out.
    pub rate: u64,
    /// Datagrams per call.
    pub batch: usize,
    /// Receive buffer asked for.
    pub rcvbuf: usize,
    /// Receiver's sleep after a partial batch (0 = always block in recvmmsg).
    pub coalesce: Duration,
    /// Pinning and watchdog.
    pub common: Common,
}

fn check_size(size: usize) -> Result<(), String> {
    if (MIN_DATAGRAM..=65507).contains(&size) {
        Ok(())
    } else {
        Err(format!("--size must be {MIN_DATAGRAM}..=65507"))
    }
}

impl IngestOptions {
    /// Reads the options from the command line.
    pub fn from_args(a: &mut Args) -> Result<Self, String> {
        let o = Self {
            count: a.get("--count", 2_000_000)?,
            duration: a.secs("--duration", 10.0)?,
            size: a.get("--size", 64)?,
            rate: a.get("--rate", 0)?,
            batch: a.get("--batch", 64)?,
            rcvbuf: a.get("--rcvbuf", 4 << 20)?,
            coalesce: Duration::from_micros(a.get("--coalesce-us", 0)?),
            common: Common::from_args(a, 120.0)?,
        };
        check_size(o.size)?;
        Ok(o)
    }
}

const C_SENT: usize = 0;
const C_ERRORS: usize = 8;
const C_START: usize = 16;
const C_END: usize = 24;
const C_GO: usize = 64;
const C_DONE: usize = 128;

fn counter_delta(before: &[(String, u64)], after: &[(String, u64)], name: &str) -> Option<f64> {
    let get = |v: &[(String, u64)]| v.iter().find(|(n, _)| n == name).map(|(_, x)| *x);
    Some(get(after)?.saturating_sub(get(before)?) as f64)
}

/// Runs `udp-ingest`: sender in a child, receiver here.
pub fn ingest(o: &IngestOptions) -> io::Result<Report> {
    let mut rx = Receiver::bind(&RecvOptions {
        bind: loopback(0),
        batch: o.batch,
        rcvbuf: o.rcvbuf,
        max_size: o.size.max(2048),
        coalesce: o.coalesce,
    })?;
    let ctl = SharedMem::create("gsw-bench-udp-ctl", 4096)?;
    let cpus = CpuPair::choose(o.common.pin);
    let so = SendOptions {
        addr: loopback(rx.port()),
        count: o.count,
        size: o.size,
        rate: o.rate,
        batch: o.batch,
        max_duration: Some(o.duration),
    };
    let mut child = fork_child(cpus.child, || {
        let deadline = Deadline::after(WAIT_TIMEOUT);
        // Acquire: the receiver is in place once GO is set (nothing else rides on it).
        while ctl.atomic_u64(C_GO).load(Ordering::Acquire) == 0 {
            if deadline.expired() {
                return Err("receiver never said go".into());
            }
            std::thread::sleep(Duration::from_micros(100));
        }
        let st = send(&so).map_err(|e| e.to_string())?;
        // Relaxed stores published by the Release store of DONE.
        ctl.atomic_u64(C_SENT).store(st.sent, Ordering::Relaxed);
        ctl.atomic_u64(C_ERRORS).store(st.errors, Ordering::Relaxed);
        ctl.atomic_u64(C_START)
            .store(st.start_ns, Ordering::Relaxed);
        ctl.atomic_u64(C_END).store(st.end_ns, Ordering::Relaxed);
        ctl.atomic_u64(C_DONE).store(1, Ordering::Release);
        Ok(())
    })?;
    let child_pinned = child.wait_started(WAIT_TIMEOUT)?;
    let parent_pin = cpus.pin_parent()?;
    let before = kernel_udp_counters();
    // Release: pairs with the sender's Acquire load of GO.
    ctl.atomic_u64(C_GO).store(1, Ordering::Release);

    let hard_stop = now_ns() + (o.duration + WAIT_TIMEOUT).as_nanos() as u64;
    let mut sender_failed = false;
    let t = rx.run(|t, idle_ns| {
        // Acquire: pairs with the sender's Release store of DONE (makes SENT visible).
        if ctl.atomic_u64(C_DONE).load(Ordering::Acquire) == 1 {
            // Relaxed: ordered by the Acquire above.
            let sent = ctl.atomic_u64(C_SENT).load(Ordering::Relaxed);
            // All arrived, or the queue has stayed empty long enough to be drained.
            return t.distinct >= sent || idle_ns > 200_000_000;
        }
        if matches!(child.try_wait(), Ok(Some(_)) | Err(_)) {
            sender_failed = true;
            return true;
        }
        now_ns() > hard_stop
    })?;
    let after = kernel_udp_counters();
    if sender_failed {
        return Err(io::Error::other(
            "sender process failed (see its message above)",
        ));
    }
    child.wait(WAIT_TIMEOUT)?;
    // Acquire: pairs with the sender's Release store of DONE.
    if ctl.atomic_u64(C_DONE).load(Ordering::Acquire) != 1 {
        return Err(io::Error::other("sender did not finish in time"));
    }
    // Relaxed: ordered by the Acquire above.
    let sent = ctl.atomic_u64(C_SENT).load(Ordering::Relaxed);
    let errors = ctl.atomic_u64(C_ERRORS).load(Ordering::Relaxed);
    let (start, end) = (
        ctl.atomic_u64(C_START).load(Ordering::Relaxed),
        ctl.atomic_u64(C_END).load(Ordering::Relaxed),
    );
    let send_rate = sent as f64 * 1e9 / end.saturating_sub(start).max(1) as f64;
    // Received rate over the same origin as the sender's: its first send to our last batch.
    let recv_rate = t.distinct as f64 * 1e9 / t.last_ns.saturating_sub(start).max(1) as f64;
    let lost = t.lost_of(sent);

    let mut r = Report::new("udp-ingest");
    r.push("udp_send_rate_pps", send_rate, "packets/s");
    r.push_ref("udp_recv_rate_pps", recv_rate, "packets/s", Some(send_rate));
    r.push("udp_sent_packets", sent as f64, "count");
    r.push_ref(
        "udp_received_packets",
        t.distinct as f64,
        "count",
        Some(sent as f64),
    );
    r.push("udp_lost_packets", lost as f64, "count");
    r.push(
        "udp_loss_pct",
        100.0 * lost as f64 / sent.max(1) as f64,
        "%",
    );
    push_quality(&mut r, &t);
    r.push("udp_send_errors", errors as f64, "count");
    r.push("udp_rcvbuf_bytes", rx.rcvbuf() as f64, "bytes");
    for (name, metric) in [
        ("RcvbufErrors", "udp_kernel_rcvbuf_errors"),
        ("InErrors", "udp_kernel_in_errors"),
    ] {
        if let Some(d) = counter_delta(&before, &after, name) {
            r.push(metric, d, "count");
        }
    }
    r.push(
        "pinned",
        f64::from(u8::from(child_pinned && parent_pin.pinned())),
        "bool",
    );
    r.push("datagram_bytes", o.size as f64, "bytes");
    r.push("batch", o.batch as f64, "count");
    r.push("coalesce_us", o.coalesce.as_secs_f64() * 1e6, "us");
    Ok(r)
}

fn push_quality(r: &mut Report, t: &SeqTracker) {
    r.push("udp_reordered_packets", t.reordered as f64, "count");
    r.push("udp_duplicate_packets", t.duplicates as f64, "count");
    r.push("udp_corrupt_packets", t.corrupt as f64, "count");
    r.push("udp_foreign_packets", t.foreign as f64, "count");
    r.push(
        "udp_recv_mean_batch",
        (t.received + t.corrupt + t.foreign) as f64 / t.batches.max(1) as f64,
        "packets/call",
    );
}

/// Options of `udp-send`.
#[derive(Clone, Debug)]
pub struct SendCmd {
    /// What to send.
    pub send: SendOptions,
    /// Watchdog.
    pub timeout: Duration,
}

impl SendCmd {
    /// Reads the options from the command line.
    pub fn from_args(a: &mut Args) -> Result<Self, String> {
        let port: u16 = a.opt("--port")?.ok_or("udp-send needs --port P")?;
        let host: Ipv4Addr = a.get("--host", Ipv4Addr::LOCALHOST)?;
        let o = SendOptions {
            addr: SocketAddrV4::new(host, port),
            count: a.get("--count", 1_000_000)?,
            size: a.get("--size", 64)?,
            rate: a.get("--rate", 0)?,
            batch: a.get("--batch", 64)?,
            max_duration: a.opt::<f64>("--duration")?.map(Duration::from_secs_f64),
        };
        check_size(o.size)?;
        if port == 0 {
            return Err("--port must not be 0".into());
        }
        let timeout = a.secs(
            "--timeout",
            o.max_duration.map_or(3600.0, |d| d.as_secs_f64() + 30.0),
        )?;
        Ok(Self { send: o, timeout })
    }
}

/// Runs `udp-send`.
pub fn send_cmd(o: &SendCmd) -> io::Result<Report> {
    let st = send(&o.send)?;
    let mut r = Report::new("udp-send");
    r.push("sent_packets", st.sent as f64, "count");
    r.push("send_rate_pps", st.rate(), "packets/s");
    r.push("send_errors", st.errors as f64, "count");
    r.push(
        "elapsed_s",
        st.end_ns.saturating_sub(st.start_ns) as f64 / 1e9,
        "s",
    );
    r.push("sender_tag", f64::from(st.tag), "id");
    r.push("datagram_bytes", o.send.size as f64, "bytes");
    Ok(r)
}

/// Options of `udp-recv`.
#[derive(Clone, Debug)]
pub struct RecvCmd {
    /// Socket options.
    pub recv: RecvOptions,
    /// Longest run.
    pub duration: Duration,
    /// Datagrams expected, if known.
    pub count: Option<u64>,
    /// Stop after this long without data (after the first datagram); zero = never.
    pub idle: Duration,
    /// Watchdog.
    pub timeout: Duration,
}

impl RecvCmd {
    /// Reads the options from the command line.
    pub fn from_args(a: &mut Args) -> Result<Self, String> {
        let port: u16 = a
            .opt("--port")?
            .ok_or("udp-recv needs --port P (0 = any free port)")?;
        let bind: Ipv4Addr = a.get("--bind", Ipv4Addr::LOCALHOST)?;
        let duration = a.secs("--duration", 10.0)?;
        Ok(Self {
            recv: RecvOptions {
                bind: SocketAddrV4::new(bind, port),
                batch: a.get("--batch", 64)?,
                rcvbuf: a.get("--rcvbuf", 4 << 20)?,
                max_size: 65536,
                coalesce: Duration::from_micros(a.get("--coalesce-us", 0)?),
            },
            duration,
            count: a.opt("--count")?,
            idle: a.secs("--idle", 1.0)?,
            timeout: a.secs("--timeout", duration.as_secs_f64() + 30.0)?,
        })
    }
}

/// Runs `udp-recv`: prints `listening_port` at once, the totals at the end.
pub fn recv_cmd(o: &RecvCmd) -> io::Result<Report> {
    let mut rx = Receiver::bind(&o.recv)?;
    let mut hello = Report::new("udp-recv");
    hello.push("listening_port", f64::from(rx.port()), "port");
    // Printed on its own and flushed so that a harness can start its sender now.
    hello.emit();
    let _ = io::stdout().flush();
    let stop_at = Deadline::after(o.duration);
    let idle_ns = o.idle.as_nanos() as u64;
    let t = rx.run(|t, idle| {
        stop_at.expired()
            || o.count.is_some_and(|c| t.distinct >= c)
            || (idle_ns > 0 && t.received > 0 && idle >= idle_ns)
    })?;
    let lost = o.count.map_or_else(|| t.lost_inferred(), |c| t.lost_of(c));
    let expected = o.count.unwrap_or_else(|| t.distinct + lost);
    let mut r = Report::new("udp-recv");
    r.push("received_packets", t.distinct as f64, "count");
    r.push("recv_rate_pps", t.rate(), "packets/s");
    r.push("lost_packets", lost as f64, "count");
    r.push(
        "loss_pct",
        100.0 * lost as f64 / expected.max(1) as f64,
        "%",
    );
    push_quality(&mut r, &t);
    r.push("received_bytes", t.bytes as f64, "bytes");
    r.push(
        "elapsed_s",
        t.last_ns.saturating_sub(t.first_ns) as f64 / 1e9,
        "s",
    );
    r.push("rcvbuf_bytes", rx.rcvbuf() as f64, "bytes");
    Ok(r)
}
