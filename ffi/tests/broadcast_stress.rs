//! Cross-process stress tests of broadcast segments: one writer, several reader processes it
//! never hears from, real shared memory, real eventfds watched edge-triggered through real
//! waitsets. Children are this test binary re-run in a role (see `common`).

mod common;

use common::{check_payload, fill_payload, inheritable, scale, ChildGuard, FDS, ROLE};
use gsw::broadcast::{BroadcastReader, BroadcastWriter, Datagram, MIN_RING, RECORD_LEN};
use gsw::waitset::{Ready, Waitset};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `test` in a child as `role` with the writer's descriptors (data, control, bells) and
/// any `extra` ones, inherited.
fn spawn(
    test: &str,
    role: &str,
    w: &BroadcastWriter,
    extra: &[RawFd],
    env: &[(&str, String)],
) -> ChildGuard {
    let mut fds = w.fds();
    fds.extend_from_slice(extra);
    let keep = inheritable(&fds);
    let numbers: Vec<String> = keep.iter().map(|f| f.as_raw_fd().to_string()).collect();
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(ROLE, role)
        .env(FDS, numbers.join(","))
        .stdout(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = ChildGuard::new(cmd.spawn().unwrap());
    drop(keep); // the child has its copies now
    child
}

/// In a child: the reader attached from the inherited descriptors (`bells` of them), and the
/// descriptors after those.
fn inherited(bells: usize) -> (BroadcastReader, Vec<OwnedFd>) {
    let mut fds: Vec<OwnedFd> = std::env::var(FDS)
        .unwrap()
        .split(',')
        // SAFETY: the parent passed these descriptors for us to own.
        .map(|s| unsafe { OwnedFd::from_raw_fd(s.parse().unwrap()) })
        .collect();
    let rest = fds.split_off(2 + bells);
    let mut it = fds.into_iter();
    let (data, ctrl) = (it.next().unwrap(), it.next().unwrap());
    let bells = it.enumerate().map(|(i, fd)| (i as u32, fd)).collect();
    (BroadcastReader::attach(data, ctrl, bells).unwrap(), rest)
}

/// One record `read_changed` wrote: (channel, seq, payload).
fn records(out: &[u8], n: usize) -> Vec<(u32, u64, &[u8])> {
    let mut at = 0;
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let seq = u64::from_le_bytes(out[at..at + 8].try_into().unwrap());
        let len = u32::from_le_bytes(out[at + 24..at + 28].try_into().unwrap()) as usize;
        let ch = u32::from_le_bytes(out[at + 28..at + 32].try_into().unwrap());
        v.push((ch, seq, &out[at + 32..at + 32 + len]));
        at += 32 + len.div_ceil(8) * 8;
    }
    v
}

const TORN: &str = "broadcast_no_torn_reads_across_processes";

/// A writer publishing flat out on a 64-byte and a 1 KiB channel while two reader processes
/// read both as fast as they can: every value read must be one whole publish (every word
/// equal to its sequence number), and sequence numbers never go back.
#[test]
fn broadcast_no_torn_reads_across_processes() {
    let total = scale(10_000_000);
    if std::env::var(ROLE).is_ok() {
        let (r, _) = inherited(1);
        r.follow(&[0, 1]).unwrap();
        let mut out = vec![0u8; 4096];
        let (mut last, mut reads) = ([0u64; 2], 0u64);
        while last[0] < total || last[1] < total {
            let n = r.read_changed(&mut out);
            for (ch, seq, p) in records(&out, n) {
                reads += 1;
                assert!(
                    seq > last[ch as usize],
                    "channel {ch}: seq {seq} after {}",
                    last[ch as usize]
                );
                assert!(check_payload(p, seq), "torn value: channel {ch} seq {seq}");
                last[ch as usize] = seq;
            }
        }
        println!("reads={reads}");
        return;
    }
    let w = BroadcastWriter::create(&[64, 1024], &[0, 1], &[0, 0], 1, 0, MIN_RING).unwrap();
    let children = [
        spawn(TORN, "reader", &w, &[], &[]),
        spawn(TORN, "reader", &w, &[], &[]),
    ];
    let (mut small, mut big) = ([0u8; 64], [0u8; 1024]);
    let start = Instant::now();
    for seq in 1..=total {
        fill_payload(&mut small, seq);
        w.publish_quiet(0, &small, seq, 0).unwrap();
        fill_payload(&mut big, seq);
        w.publish_quiet(1, &big, seq, 0).unwrap();
        if seq % 64 == 0 {
            w.flush().unwrap();
        }
    }
    let elapsed = start.elapsed();
    let outs: Vec<String> = children
        .into_iter()
        .map(|c| c.finish(Duration::from_secs(600)))
        .collect();
    println!(
        "{} publishes in {elapsed:?} ({:.1} ns each, fill included); readers: {}",
        2 * total,
        elapsed.as_nanos() as f64 / (2 * total) as f64,
        outs.join(" ").trim()
    );
}

const RING: &str = "broadcast_ring_every_record_delivered_or_counted";

/// The writer appends records of varied sizes, each filled from its number; a fast reader
/// and a slow one (pausing now and then, so the ring laps it) read them in other processes.
/// Every record a reader gets must be whole and in order, and what it got plus what it was
/// told it lost must be exactly what was written.
#[test]
fn broadcast_ring_every_record_delivered_or_counted() {
    let total = scale(1_000_000);
    if let Ok(role) = std::env::var(ROLE) {
        let (r, _) = inherited(1);
        let slow = role == "slow";
        let mut out = vec![0u8; 1 << 16];
        // Records written before this reader attached are neither read nor lost; it learns
        // how many when it attaches.
        let before = r.records_before();
        let (mut got, mut lost, mut last, mut reads) = (0u64, 0u64, 0u64, 0u64);
        while got + lost + before < total {
            let res = r.read_ring(&mut out);
            lost += res.lost;
            let mut at = 0;
            while at < res.bytes {
                let seq = u64::from_le_bytes(out[at + 8..at + 16].try_into().unwrap());
                let rec = u32::from_le_bytes(out[at + 16..at + 20].try_into().unwrap()) as usize;
                let len = u32::from_le_bytes(out[at + 32..at + 36].try_into().unwrap()) as usize;
                assert!(seq > last, "record {seq} after {last}");
                assert_eq!(len, size_of(seq), "record {seq} has the wrong length");
                let p = &out[at + RECORD_LEN..at + RECORD_LEN + len];
                assert!(check_payload(p, seq), "torn record {seq}");
                last = seq;
                got += 1;
                at += rec;
            }
            reads += 1;
            if slow && reads % 2000 == 0 {
                // A pause longer than the ring lasts at the writer's pace: it laps this reader.
                std::thread::sleep(Duration::from_millis(5));
            }
            if res.records == 0 && res.lost == 0 {
                std::thread::yield_now();
            }
        }
        println!("{role}: got={got} lost={lost} before={before}");
        assert_eq!(got + lost + before, total);
        return;
    }
    let w = BroadcastWriter::create(&[8], &[0], &[0], 1, 0, MIN_RING).unwrap();
    let children = [
        spawn(RING, "fast", &w, &[], &[]),
        spawn(RING, "slow", &w, &[], &[]),
    ];
    let meta = [0u8; 32];
    let mut payload = vec![0u8; 2048];
    let start = Instant::now();
    for seq in 1..=total {
        let len = size_of(seq);
        fill_payload(&mut payload[..len], seq);
        w.append(&[Datagram {
            meta: &meta,
            payload: &payload[..len],
            port: 1,
            packet: 0,
        }])
        .unwrap();
        if seq % 64 == 0 {
            w.flush().unwrap();
            // Paced (~250 k records/s) so that the fast reader keeps up most of the time and
            // the slow one is lapped now and then: both paths get exercised.
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    let elapsed = start.elapsed();
    let outs: Vec<String> = children
        .into_iter()
        .map(|c| c.finish(Duration::from_secs(600)))
        .collect();
    println!(
        "{total} records in {elapsed:?} ({:.0} ns each); {}",
        elapsed.as_nanos() as f64 / total as f64,
        outs.join(" ").trim()
    );
}

/// Payload size of record `seq`: 8 to 2048 bytes, a multiple of 8.
fn size_of(seq: u64) -> usize {
    8 * (1 + (seq.wrapping_mul(2654435761) % 256) as usize)
}

const WAKE: &str = "broadcast_no_lost_wakeups_across_processes";

/// Publish → wake → acknowledge rounds with two reader processes that sleep in a waitset on
/// the bell whenever they find nothing new; the writer waits for both acknowledgements each
/// round. A single lost wake-up stalls a reader, and the 10 s timeout fails the test.
#[test]
fn broadcast_no_lost_wakeups_across_processes() {
    let rounds = scale(100_000);
    if std::env::var(ROLE).is_ok() {
        let (r, mut rest) = inherited(1);
        let ack = rest.remove(0);
        r.follow(&[0]).unwrap();
        let ws = Waitset::new().unwrap();
        ws.add_bell(r.bell(0).unwrap(), 1, r.bell_watch(0).unwrap())
            .unwrap();
        let mut out = vec![0u8; 64];
        let mut ready = [Ready {
            token: 0,
            events: 0,
        }; 4];
        let (mut have, mut slept) = (0u64, 0u64);
        while have < rounds {
            let n = r.read_changed(&mut out);
            if let Some(&(_, seq, p)) = records(&out, n).last() {
                assert!(check_payload(p, seq));
                assert!(seq > have);
                have = seq;
                gsw::sock::send(ack.as_fd(), &seq.to_le_bytes(), &[]).unwrap();
                continue;
            }
            slept += 1;
            let t = Instant::now();
            ws.wait(&mut ready, 10_000).unwrap();
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "lost wake-up after {have}"
            );
        }
        println!("slept={slept}");
        return;
    }
    let w = BroadcastWriter::create(&[8], &[0], &[0], 1, 0, MIN_RING).unwrap();
    let mut socks = vec![];
    let mut children = vec![];
    for _ in 0..2 {
        let (mine, theirs) = gsw::sock::pair(gsw::sock::Kind::SeqPacket).unwrap();
        children.push(spawn(WAKE, "reader", &w, &[theirs.as_raw_fd()], &[]));
        socks.push(mine);
    }
    let mut buf = [0u8; 16];
    let mut latencies = Vec::with_capacity(rounds as usize);
    let start = Instant::now();
    for k in 1..=rounds {
        let sent = Instant::now();
        w.publish_quiet(0, &k.to_le_bytes(), k, 0).unwrap();
        w.flush().unwrap();
        for s in &socks {
            loop {
                assert!(
                    gsw::sys::poll_readable(s.as_fd(), 10_000).unwrap(),
                    "lost wake-up: no acknowledgement of round {k} within 10 s"
                );
                if let gsw::sock::Received::Message(n, _) =
                    gsw::sock::recv(s.as_fd(), &mut buf).unwrap()
                {
                    assert_eq!(u64::from_le_bytes(buf[..n].try_into().unwrap()), k);
                    break;
                }
            }
        }
        latencies.push(sent.elapsed().as_nanos() as u64);
    }
    let rings = w.stats().rings;
    let outs: Vec<String> = children
        .into_iter()
        .map(|c| c.finish(Duration::from_secs(60)))
        .collect();
    latencies.sort_unstable();
    println!(
        "{rounds} rounds in {:?}; {rings} rings; round trip to both p50 {} ns p99 {} ns; readers: {}",
        start.elapsed(),
        latencies[latencies.len() / 2],
        latencies[latencies.len() * 99 / 100],
        outs.join(" ").trim()
    );
    assert!(
        rings >= rounds / 2,
        "the readers should have slept in most rounds"
    );
}

const STOPPED: &str = "broadcast_stopped_reader_slows_nobody";

/// One reader process stopped with SIGSTOP while asleep on the bell (so it counts as a
/// sleeper forever), another one running: the writer publishes on at its own pace, and the
/// running reader still ends with the last value.
#[test]
fn broadcast_stopped_reader_slows_nobody() {
    let n = scale(5_000_000);
    if std::env::var(ROLE).is_ok() {
        let (r, _) = inherited(1);
        r.follow(&[0]).unwrap();
        let ws = Waitset::new().unwrap();
        ws.add_bell(r.bell(0).unwrap(), 1, r.bell_watch(0).unwrap())
            .unwrap();
        let mut out = vec![0u8; 128];
        let mut ready = [Ready {
            token: 0,
            events: 0,
        }; 4];
        loop {
            let k = r.read_changed(&mut out);
            if let Some(&(_, seq, p)) = records(&out, k).last() {
                assert!(check_payload(p, seq));
                if seq == n {
                    println!("took seq={seq}");
                    return;
                }
                continue;
            }
            ws.wait(&mut ready, 100).unwrap();
        }
    }
    let w = BroadcastWriter::create(&[64], &[0], &[0], 1, 0, MIN_RING).unwrap();
    let stopped = spawn(STOPPED, "reader", &w, &[], &[]);
    let running = spawn(STOPPED, "reader", &w, &[], &[]);
    let mut buf = [0u8; 64];
    let mut rate = |from: u64, to: u64| {
        let start = Instant::now();
        for seq in from..to {
            fill_payload(&mut buf, seq);
            w.publish_quiet(0, &buf, seq, 0).unwrap();
            w.flush().unwrap();
        }
        (to - from) as f64 / start.elapsed().as_secs_f64()
    };
    let before = rate(1, n / 2);
    std::thread::sleep(Duration::from_millis(50)); // let it go to sleep on the bell
                                                   // SAFETY: signalling our own child process.
    assert_eq!(unsafe { libc::kill(stopped.pid(), libc::SIGSTOP) }, 0);
    let during = rate(n / 2, n + 1);
    // SAFETY: signalling our own child process.
    assert_eq!(unsafe { libc::kill(stopped.pid(), libc::SIGCONT) }, 0);
    let outs = [
        running.finish(Duration::from_secs(60)),
        stopped.finish(Duration::from_secs(60)),
    ];
    println!(
        "writer {before:.0}/s before, {during:.0}/s with a reader stopped ({:.2}x); {}",
        during / before,
        outs.join(" ").trim()
    );
    for out in outs {
        assert!(
            out.contains(&format!("took seq={n}")),
            "a reader missed the last value: {out}"
        );
    }
}
