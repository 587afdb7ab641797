//! `chain`: the native floor under gsw's end-to-end latency. Processes in a row, as decom →
//! subscriber (one-hop reads, two processes) or decom → broker → subscriber (three): a UDP
//! receiver blocked in `recv(2)` copies the datagram into shared memory and writes an eventfd;
//! with three processes a hop blocked in `read(2)` on it copies the value on and writes a
//! second eventfd; a reader blocked on the last one copies the value out, checks every byte,
//! and stamps the time it has it. One sample = that stamp − the sender's stamp taken just
//! before `send(2)`, one datagram at a time.
//!
//! [`NativeChain`] is also the same-run reference of `e2e` (gsw's pipeline with a Deno
//! subscriber), interleaved with it block by block. [`round_trip`] is the sender's side of
//! both: stamp, send, then sleep (`FUTEX_WAIT`, no spinning: the chain needs the CPUs) until
//! the far end announces it has the value.

use super::{fail, WAIT_TIMEOUT};
use crate::cli::Args;
use crate::clock::{now_ns, Deadline};
use crate::pipeline::{send_one, udp_sender};
use crate::proc::{fork_child, Child};
use crate::report::Report;
use crate::shm::SharedMem;
use crate::stats::summarize;
use crate::sys::{futex_wait, futex_wake, EventFd};
use crate::udp::{fill_datagram, set_header, MIN_DATAGRAM};
use std::io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// Usage text.
pub const HELP: &str = "\
gsw-bench-native chain [--processes 2|3] [--samples N] [--warmup N] [--gap-us US] [--size BYTES]
                       [--timeout SECS]
  The native floor of an end-to-end path like gsw's: with 2 processes (default; gsw's one-hop
  reads, decom -> subscriber) UDP recv -> eventfd -> reader has the value (copied and
  checked); with 3 (through the broker) UDP recv -> eventfd hop -> eventfd -> reader. One
  datagram at a time; latency = reader's stamp - sender's stamp before send(2). Processes
  are not pinned (a pipeline's processes are not either).
    chain_e2e_p50_ns, _p99_ns, _p999_ns, _max_ns
  --samples N    recorded samples (default 100000)
  --warmup N     unrecorded samples first (default 5000)
  --gap-us US    pause after the reader announced, before the next send (default 50)
  --size BYTES   datagram bytes, 16..=1024 (default 64)";

// The chain's shared page.
const DONE: usize = 0; // u32 futex word: low 32 bits of the last sequence number the reader has
const T1: usize = 64; // u64: when the reader had it
const SEQ1: usize = 128; // u64: value in slot 1 (receiver -> hop)
const SEQ2: usize = 192; // u64: value in slot 2 (hop -> reader)
const SLOT1: usize = 256;
const SLOT2: usize = 1280;
/// Largest datagram the chain carries.
pub const MAX_SIZE: usize = 1024;

/// The processes of a native chain and their shared page.
pub struct NativeChain {
    page: SharedMem,
    port: u16,
    children: Vec<Child>,
}

impl NativeChain {
    /// Starts the receiver (bound to a free port on 127.0.0.1), with 3 `processes` the hop,
    /// and the reader.
    pub fn start(size: usize, processes: usize) -> io::Result<Self> {
        if !(MIN_DATAGRAM..=MAX_SIZE).contains(&size) {
            return Err(io::Error::other(format!(
                "chain datagrams are {MIN_DATAGRAM}..={MAX_SIZE} bytes"
            )));
        }
        if !(2..=3).contains(&processes) {
            return Err(io::Error::other("a chain has 2 or 3 processes"));
        }
        let hop = processes == 3;
        let page = SharedMem::create("gsw-bench-chain", SLOT2 + MAX_SIZE)?;
        let sock = std::net::UdpSocket::bind("127.0.0.1:0")?;
        let port = sock.local_addr()?.port();
        let (e1, e2) = (EventFd::new()?, EventFd::new()?);
        let mut children = Vec::new();
        // Receiver: blocked in recv(2), like decom in epoll_wait on its UDP socket.
        children.push(fork_child(None, || {
            let mut buf = vec![0u8; MAX_SIZE + 1];
            loop {
                let n = sock.recv(&mut buf).map_err(|e| e.to_string())?;
                if n != size {
                    return Err(format!(
                        "chain receiver: {n}-byte datagram, expected {size}"
                    ));
                }
                let seq = u64::from_le_bytes(buf[..8].try_into().expect("8 bytes"));
                // Without a hop, straight into the reader's slot 2.
                let (slot, word, bell) = if hop {
                    (SLOT1, SEQ1, &e1)
                } else {
                    (SLOT2, SEQ2, &e2)
                };
                // SAFETY: the next process reads the slot only after the Release store below,
                // and the sender sends the next datagram only after the reader finished.
                unsafe { page.write_bytes(slot, &buf[..n]) };
                // Release: publishes the slot to the next process's Acquire load.
                page.atomic_u64(word).store(seq, Ordering::Release);
                bell.write(1).map_err(|e| e.to_string())?;
            }
        })?);
        // Hop: blocked in read(2) on an eventfd, like the broker on decom's doorbell.
        if hop {
            children.push(fork_child(None, || {
                let mut buf = vec![0u8; size];
                loop {
                    e1.read().map_err(|e| e.to_string())?;
                    // Acquire: pairs with the receiver's Release store.
                    let seq = page.atomic_u64(SEQ1).load(Ordering::Acquire);
                    // SAFETY: the receiver wrote slot 1 before its Release store and writes it
                    // again only for the next datagram (after the reader is done); slot 2 is read
                    // by the reader only after our Release store below.
                    unsafe {
                        page.read_bytes(SLOT1, &mut buf);
                        page.write_bytes(SLOT2, &buf);
                    }
                    // Release: publishes slot 2 to the reader's Acquire load.
                    page.atomic_u64(SEQ2).store(seq, Ordering::Release);
                    e2.write(1).map_err(|e| e.to_string())?;
                }
            })?);
        }
        // Reader: blocked in read(2), like a subscriber on its doorbell.
        children.push(fork_child(None, || {
            let mut buf = vec![0u8; size];
            loop {
                e2.read().map_err(|e| e.to_string())?;
                // Acquire: pairs with the hop's Release store.
                let seq = page.atomic_u64(SEQ2).load(Ordering::Acquire);
                // SAFETY: the hop wrote slot 2 before its Release store and writes it again only
                // after the next datagram, which is sent after our announcement below.
                unsafe { page.read_bytes(SLOT2, &mut buf) };
                let t1 = now_ns();
                check_datagram(&buf, seq)?;
                // Relaxed: published by the Release store of DONE.
                page.atomic_u64(T1).store(t1, Ordering::Relaxed);
                // Release: the sender's Acquire load of DONE sees T1.
                page.atomic_u32(DONE).store(seq as u32, Ordering::Release);
                futex_wake(page.atomic_u32(DONE), 1).map_err(|e| e.to_string())?;
            }
        })?);
        for c in &mut children {
            c.wait_started(WAIT_TIMEOUT)?;
        }
        Ok(Self {
            page,
            port,
            children,
        })
    }

    /// The receiver's UDP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// When the reader had the last value (ns, `CLOCK_MONOTONIC`).
    pub fn t1(&self) -> u64 {
        // Relaxed: read after an Acquire load of DONE that saw the value it belongs to.
        self.page.atomic_u64(T1).load(Ordering::Relaxed)
    }

    /// One sample's sender side through the chain ([`round_trip`]); returns the send stamp.
    pub fn round_trip(
        &mut self,
        sock: &std::net::UdpSocket,
        datagram: &mut [u8],
        seq: u64,
    ) -> io::Result<u64> {
        let Self { page, children, .. } = self;
        round_trip(sock, datagram, seq, page.atomic_u32(DONE), &mut || {
            for c in children.iter_mut() {
                if c.try_wait()?.is_some() {
                    return Err(io::Error::other(
                        "a native chain process died (see its message above)",
                    ));
                }
            }
            Ok(())
        })
    }
}

/// Checks a datagram of [`fill_datagram`]'s layout carries `seq` and its filler intact.
fn check_datagram(d: &[u8], seq: u64) -> Result<(), String> {
    let got = u64::from_le_bytes(d[..8].try_into().expect("8 bytes"));
    if got != seq {
        return Err(format!("chain: datagram {got}, expected {seq}"));
    }
    for (i, &b) in d.iter().enumerate().skip(MIN_DATAGRAM) {
        if b != (i as u8 ^ 0x5a) {
            return Err(format!("chain: datagram {seq} byte {i} is {b:#x}"));
        }
    }
    Ok(())
}

/// The sender's half of one sample: writes `seq` into `datagram`, stamps, sends it, then sleeps
/// until `done` holds `seq`'s low 32 bits. Returns the stamp. `alive` is called while waiting
/// longer than usual, to fail at once if the far end died; the wait fails after 5 s.
pub fn round_trip(
    sock: &std::net::UdpSocket,
    datagram: &mut [u8],
    seq: u64,
    done: &AtomicU32,
    alive: &mut dyn FnMut() -> io::Result<()>,
) -> io::Result<u64> {
    set_header(datagram, seq, 0);
    let want = seq as u32;
    let t0 = now_ns();
    send_one(sock, datagram)?;
    let deadline = Deadline::after(WAIT_TIMEOUT);
    loop {
        // Acquire: pairs with the far end's Release store (its stamp is visible after this).
        let d = done.load(Ordering::Acquire);
        if d == want {
            return Ok(t0);
        }
        futex_wait(done, d, Some(Duration::from_millis(100)))?;
        if deadline.expired() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("value {seq} never arrived (lost datagram or wake-up?)"),
            ));
        }
        if done.load(Ordering::Acquire) != want {
            alive()?;
        }
    }
}

/// Options of `chain`.
#[derive(Clone, Debug)]
pub struct Options {
    /// Recorded samples.
    pub samples: usize,
    /// Unrecorded samples first.
    pub warmup: usize,
    /// Pause before each send.
    pub gap: Duration,
    /// Datagram bytes.
    pub size: usize,
    /// Processes in the chain (2 or 3).
    pub processes: usize,
    /// Watchdog.
    pub timeout: Duration,
}

impl Options {
    /// Reads the options from the command line.
    pub fn from_args(a: &mut Args) -> Result<Self, String> {
        let o = Self {
            samples: a.get("--samples", 100_000)?,
            warmup: a.get("--warmup", 5_000)?,
            gap: Duration::from_micros(a.get("--gap-us", 50)?),
            size: a.get("--size", 64)?,
            processes: a.get("--processes", 2)?,
            timeout: a.secs("--timeout", 170.0)?,
        };
        if !(2..=3).contains(&o.processes) {
            return Err("--processes must be 2 or 3".into());
        }
        if !(MIN_DATAGRAM..=MAX_SIZE).contains(&o.size) {
            return Err(format!("--size must be {MIN_DATAGRAM}..={MAX_SIZE}"));
        }
        if o.samples == 0 {
            return Err("--samples must be at least 1".into());
        }
        Ok(o)
    }
}

/// Runs `chain`.
pub fn run(o: &Options) -> io::Result<Report> {
    let mut chain =
        NativeChain::start(o.size, o.processes).map_err(|e| fail("starting the chain", e))?;
    let sock = udp_sender(chain.port())?;
    let mut d = vec![0u8; o.size];
    fill_datagram(&mut d, 0, 0);
    let mut samples = Vec::with_capacity(o.samples);
    for k in 1..=(o.warmup + o.samples) as u64 {
        std::thread::sleep(o.gap);
        let t0 = chain
            .round_trip(&sock, &mut d, k)
            .map_err(|e| fail("chain", e))?;
        if k > o.warmup as u64 {
            samples.push(chain.t1().saturating_sub(t0));
        }
    }
    let s = summarize(&mut samples).ok_or_else(|| io::Error::other("no samples"))?;
    let mut r = Report::new("chain");
    r.latency("chain_e2e", &s, None);
    r.push("chain_gap_us", o.gap.as_secs_f64() * 1e6, "us");
    r.push("payload_bytes", o.size as f64, "bytes");
    r.push("pinned", 0.0, "bool");
    Ok(r)
}
