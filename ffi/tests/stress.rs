//! Cross-process stress tests of the channel: real processes, real shared memory, real
//! eventfds. Each test re-runs this test binary as the child process (selected by the
//! `GSW_STRESS_ROLE` environment variable) and hands it the segment's descriptors by
//! inheritance. Sizes can be scaled down with `GSW_STRESS_SCALE` (e.g. 0.1) for quick runs.

mod common;

use common::{check_payload, fill_payload, inheritable, scale, ChildGuard, FDS, ROLE};
use gsw::segment::{SegmentReader, SegmentWriter};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs this same test in a child process as `role`, inheriting `segments`' descriptors.
fn spawn(test: &str, role: &str, segments: &[&SegmentWriter]) -> ChildGuard {
    let mut keep = Vec::new();
    let mut numbers = Vec::new();
    for w in segments {
        let fds = inheritable(&w.fds().unwrap());
        numbers.extend(fds.iter().map(|f| f.as_raw_fd().to_string()));
        keep.extend(fds);
    }
    let child = Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(ROLE, role)
        .env(FDS, numbers.join(","))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    drop(keep); // the child has its copies now
    ChildGuard::new(child)
}

/// In the child: the segments whose descriptors were inherited, attached as readers.
fn inherited_readers() -> Vec<SegmentReader> {
    let fds: Vec<RawFd> = std::env::var(FDS)
        .unwrap()
        .split(',')
        .map(|s| s.parse().unwrap())
        .collect();
    fds.chunks(3)
        .map(|c| {
            // SAFETY: the parent passed these descriptors for us to own.
            let own = |fd| unsafe { OwnedFd::from_raw_fd(fd) };
            SegmentReader::attach(own(c[0]), own(c[1]), own(c[2])).unwrap()
        })
        .collect()
}

const TORN: &str = "stress_no_torn_reads_across_processes";

/// A writer publishing flat out (10^8 publishes over two channels, one of them 1 KiB so a
/// copy takes long enough to overlap a reader if the protocol allowed it) while a reader in
/// another process takes as fast as it can: every snapshot must match its sequence number,
/// and sequence numbers must never go back.
#[test]
fn stress_no_torn_reads_across_processes() {
    // 10^8 publishes in all, half on each channel.
    let total = scale(50_000_000);
    if std::env::var(ROLE).is_ok() {
        let r = inherited_readers().remove(0);
        let mut last = [0u64; 2];
        let (mut reads, mut torn) = (0u64, 0u64);
        while last[0] < total || last[1] < total {
            for (ch, last) in last.iter_mut().enumerate() {
                if let Some((h, p)) = r.take(ch).unwrap() {
                    reads += 1;
                    assert!(h.seq > *last, "channel {ch}: seq {} after {last}", h.seq);
                    if !check_payload(p, h.seq) {
                        torn += 1;
                    }
                    *last = h.seq;
                }
            }
        }
        println!("reads={reads} torn={torn}");
        assert_eq!(torn, 0, "{torn} torn reads");
        return;
    }
    let w = SegmentWriter::create(&[64, 1024], &[0, 1]).unwrap();
    let child = spawn(TORN, "reader", &[&w]);
    let mut small = [0u8; 64];
    let mut big = [0u8; 1024];
    let start = Instant::now();
    let mut seq = 0u64;
    // Half the publishes on each channel; the big one is refilled every time (that is the
    // copy a torn read would catch), the small one too.
    while seq < total {
        seq += 1;
        fill_payload(&mut small, seq);
        w.publish_quiet(0, &small, seq, 0).unwrap();
        fill_payload(&mut big, seq);
        w.publish_quiet(1, &big, seq, 0).unwrap();
    }
    let elapsed = start.elapsed();
    let out = child.finish(Duration::from_secs(600));
    println!(
        "{} publishes in {elapsed:?} ({:.1} ns each, payload fill included); child: {}",
        2 * total,
        elapsed.as_nanos() as f64 / (2 * total) as f64,
        out.trim()
    );
}

/// 10^6 publish → wake → acknowledge rounds between two processes, each side sleeping on its
/// doorbell whenever it has nothing: a single lost wake-up stalls a side, and the 10 s
/// timeout fails the test.
#[test]
fn stress_no_lost_wakeups_across_processes() {
    let rounds = scale(1_000_000);
    let ping = SegmentWriter::create(&[8], &[0]).unwrap();
    // The pong channel is written by the child, and a segment is made by its writer, so the
    // child creates it and sends its descriptors back over this socket pair.
    let (mine, theirs) = gsw::sock::pair(gsw::sock::Kind::SeqPacket).unwrap();
    let mut keep = inheritable(&ping.fds().unwrap());
    keep.extend(inheritable(&[theirs.as_raw_fd()]));
    drop(theirs);
    let numbers: Vec<String> = keep.iter().map(|f| f.as_raw_fd().to_string()).collect();
    let child = Command::new(std::env::current_exe().unwrap())
        .args([WAKE_CHILD, "--exact", "--nocapture", "--test-threads=1"])
        .env(ROLE, "ponger")
        .env(FDS, numbers.join(","))
        .env("GSW_STRESS_ROUNDS", rounds.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let child = ChildGuard::new(child);
    drop(keep);
    let pong = receive_segment(&mine);
    let (mut blocked, start) = (0u64, Instant::now());
    let mut latencies = Vec::with_capacity(rounds as usize);
    for k in 1..=rounds {
        let sent = Instant::now();
        ping.publish(0, &k.to_le_bytes(), k, 0).unwrap();
        loop {
            if let Some((h, _)) = pong.take(0).unwrap() {
                assert_eq!(h.seq, k, "pong out of step");
                break;
            }
            blocked += 1;
            assert!(
                pong.wait(10_000).unwrap(),
                "lost wake-up: no pong for round {k} within 10 s"
            );
            pong.drain_doorbell();
        }
        latencies.push(sent.elapsed().as_nanos() as u64);
    }
    let out = child.finish(Duration::from_secs(60));
    latencies.sort_unstable();
    println!(
        "{rounds} rounds in {:?}; parent blocked {blocked} times; round trip p50 {} ns p99 {} ns; child: {}",
        start.elapsed(),
        latencies[latencies.len() / 2],
        latencies[latencies.len() * 99 / 100],
        out.trim()
    );
    assert!(
        blocked >= rounds / 2,
        "the parent should have slept in most rounds"
    );
}

const WAKE_CHILD: &str = "ping_child";

/// The child of `stress_no_lost_wakeups_across_processes` (does nothing when run directly).
#[test]
fn ping_child() {
    if std::env::var(ROLE).ok().as_deref() != Some("ponger") {
        return;
    }
    let rounds: u64 = std::env::var("GSW_STRESS_ROUNDS").unwrap().parse().unwrap();
    let fds: Vec<RawFd> = std::env::var(FDS)
        .unwrap()
        .split(',')
        .map(|s| s.parse().unwrap())
        .collect();
    // SAFETY: the parent passed these descriptors for us to own.
    let own = |fd| unsafe { OwnedFd::from_raw_fd(fd) };
    let ping = SegmentReader::attach(own(fds[0]), own(fds[1]), own(fds[2])).unwrap();
    let sock = own(fds[3]);
    let pong = SegmentWriter::create(&[8], &[0]).unwrap();
    let pfds = pong.fds().unwrap();
    // SAFETY: valid descriptors for the duration of the call.
    let borrowed: Vec<_> = pfds
        .iter()
        .map(|&f| unsafe { std::os::fd::BorrowedFd::borrow_raw(f) })
        .collect();
    use std::os::fd::AsFd;
    gsw::sock::send(sock.as_fd(), b"pong", &borrowed).unwrap();
    let mut blocked = 0u64;
    for k in 1..=rounds {
        loop {
            // Drain first, then check: a ring after the drain keeps the doorbell readable.
            ping.drain_doorbell();
            if let Some((h, p)) = ping.take(0).unwrap() {
                assert_eq!(h.seq, k);
                assert_eq!(p, k.to_le_bytes());
                break;
            }
            blocked += 1;
            assert!(
                ping.wait(10_000).unwrap(),
                "lost wake-up: no ping for round {k} within 10 s"
            );
        }
        pong.publish(0, &k.to_le_bytes(), k, 0).unwrap();
    }
    println!("child blocked {blocked} times in {rounds} rounds");
    assert!(
        blocked >= rounds / 2,
        "the child should have slept in most rounds"
    );
}

fn receive_segment(sock: &OwnedFd) -> SegmentReader {
    use std::os::fd::AsFd;
    let mut buf = [0u8; 16];
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match gsw::sock::recv(sock.as_fd(), &mut buf).unwrap() {
            gsw::sock::Received::Message(_, mut fds) => {
                assert_eq!(fds.len(), 3);
                let e = fds.pop().unwrap();
                let c = fds.pop().unwrap();
                let d = fds.pop().unwrap();
                return SegmentReader::attach(d, c, e).unwrap();
            }
            _ => {
                assert!(Instant::now() < deadline, "child never sent its segment");
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}

const STOPPED: &str = "stress_stopped_reader_does_not_slow_writer";

/// A reader stopped with SIGSTOP must not slow its writer: the writer publishes on while it
/// is stopped (no ring is even needed: the reader has not taken the last value), and once
/// continued the reader finds the newest value with the right skipped count.
#[test]
fn stress_stopped_reader_does_not_slow_writer() {
    let n = scale(20_000_000);
    if std::env::var(ROLE).is_ok() {
        let r = inherited_readers().remove(0);
        // Take everything until told (by seq == u64::MAX/2 marker) the stop phase is over.
        let mut last = 0;
        loop {
            if let Some((h, p)) = r.take(0).unwrap() {
                assert!(h.seq > last);
                assert!(check_payload(p, h.seq));
                last = h.seq;
                if h.seq == n + 1 {
                    println!("took seq={} skipped={}", h.seq, h.skipped);
                    return;
                }
            } else {
                r.drain_doorbell();
                if r.take(0).unwrap().is_none() {
                    r.wait(100).unwrap();
                }
            }
        }
    }
    let w = SegmentWriter::create(&[64], &[0]).unwrap();
    let child = spawn(STOPPED, "reader", &[&w]);
    let mut buf = [0u8; 64];
    let mut rate = |from: u64, to: u64| {
        let start = Instant::now();
        for seq in from..to {
            fill_payload(&mut buf, seq);
            w.publish(0, &buf, seq, 0).unwrap();
        }
        (to - from) as f64 / start.elapsed().as_secs_f64()
    };
    // Warm up with the reader running, then measure with it running and with it stopped.
    let running = rate(1, 1 + n / 2);
    // SAFETY: signalling our own child process.
    assert_eq!(unsafe { libc::kill(child.pid(), libc::SIGSTOP) }, 0);
    std::thread::sleep(Duration::from_millis(50));
    let rings_before = w.stats().rings;
    let stopped = rate(1 + n / 2, n + 1);
    let rings_during = w.stats().rings - rings_before;
    // SAFETY: signalling our own child process.
    assert_eq!(unsafe { libc::kill(child.pid(), libc::SIGCONT) }, 0);
    fill_payload(&mut buf, n + 1);
    w.publish(0, &buf, n + 1, 0).unwrap();
    let out = child.finish(Duration::from_secs(60));
    println!(
        "writer rate with reader running {running:.0}/s, stopped {stopped:.0}/s ({:.2}x); rings while stopped: {rings_during}",
        stopped / running
    );
    assert!(
        rings_during <= 1,
        "a stopped reader that has not taken the last value needs no rings"
    );
    assert!(
        out.contains(&format!("took seq={} skipped=", n + 1)),
        "the reader must end on the newest value; child output: {out}"
    );
}

const DOORBELL: &str = "stress_300_channels_one_doorbell";

/// 300 channels behind one doorbell, 1000 batches, the reader acknowledging each batch: the
/// reader must see every update of every channel, and the writer must ring at most once per
/// batch (exactly once when the reader is asleep by then, not at all when it is still awake).
#[test]
fn stress_300_channels_one_doorbell() {
    const CHANNELS: usize = 300;
    let batches = scale(1000);
    if std::env::var(ROLE).is_ok() {
        let mut segs = inherited_readers();
        let r = segs.remove(0);
        let ack_fds: Vec<RawFd> = std::env::var("GSW_ACK_FD")
            .unwrap()
            .split(',')
            .map(|s| s.parse().unwrap())
            .collect();
        // SAFETY: inherited descriptor, ours to own.
        let ack_sock = unsafe { OwnedFd::from_raw_fd(ack_fds[0]) };
        let mut seen = vec![0u64; CHANNELS];
        let mut updates = 0u64;
        for b in 1..=batches {
            let mut got = 0;
            while got < CHANNELS {
                let n = r.take_pending(
                    |_| true,
                    |ch, h, p| {
                        assert_eq!(h.seq, b, "channel {ch}: expected batch {b}");
                        assert_eq!(h.skipped, 0);
                        assert_eq!(p, &[(ch % 251) as u8, b as u8][..]);
                        assert_eq!(seen[ch], b - 1);
                        seen[ch] = b;
                    },
                );
                got += n;
                updates += n as u64;
                if n == 0 {
                    assert!(r.wait(10_000).unwrap(), "lost wake-up in batch {b}");
                }
            }
            use std::os::fd::AsFd;
            gsw::sock::send(ack_sock.as_fd(), &b.to_le_bytes(), &[]).unwrap();
        }
        println!("updates={updates}");
        return;
    }
    let w = SegmentWriter::create(&[2; CHANNELS], &[0; CHANNELS]).unwrap();
    let (mine, theirs) = gsw::sock::pair(gsw::sock::Kind::SeqPacket).unwrap();
    let theirs = inheritable(&[theirs.as_raw_fd()]);
    let mut keep = inheritable(&w.fds().unwrap());
    let fds: Vec<String> = keep.iter().map(|f| f.as_raw_fd().to_string()).collect();
    let child = Command::new(std::env::current_exe().unwrap())
        .args([DOORBELL, "--exact", "--nocapture", "--test-threads=1"])
        .env(ROLE, "reader")
        .env(FDS, fds.join(","))
        .env("GSW_ACK_FD", theirs[0].as_raw_fd().to_string())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let child = ChildGuard::new(child);
    keep.clear();
    drop(theirs);
    for b in 1..=batches {
        for ch in 0..CHANNELS {
            w.publish_quiet(ch, &[(ch % 251) as u8, b as u8], b, 0)
                .unwrap();
        }
        // The reader may still be awake (between its ack and its next sleep): then the ring
        // is skipped, and its pre-sleep re-check finds the batch instead.
        w.ring_if_owed().unwrap();
        // Wait for the acknowledgement (a blocking poll on the socket).
        use std::os::fd::AsFd;
        assert!(
            gsw::sys::poll_readable(mine.as_fd(), 10_000).unwrap(),
            "no ack for batch {b}"
        );
        let mut buf = [0u8; 8];
        match gsw::sock::recv(mine.as_fd(), &mut buf).unwrap() {
            gsw::sock::Received::Message(8, _) => assert_eq!(u64::from_le_bytes(buf), b),
            other => panic!("bad ack {other:?}"),
        }
    }
    let out = child.finish(Duration::from_secs(60));
    let stats = w.stats();
    assert!(
        stats.rings >= 1 && stats.rings <= batches,
        "at most one ring per batch: {} rings for {batches} batches",
        stats.rings
    );
    assert_eq!(stats.publishes, batches * CHANNELS as u64);
    assert!(
        out.contains(&format!("updates={}", batches * CHANNELS as u64)),
        "{out}"
    );
    println!(
        "{batches} batches x {CHANNELS} channels: {} rings; child: {}",
        stats.rings,
        out.trim()
    );
}

/// The same link with the writer free-running: rings stay at most one per batch, and for
/// every channel the reader's takes plus the updates it was told it skipped add up to every
/// publish.
#[test]
fn stress_300_channels_free_running() {
    const CHANNELS: usize = 300;
    let batches = scale(20_000);
    if std::env::var(ROLE).is_ok() {
        let r = inherited_readers().remove(0);
        let mut accounted = vec![0u64; CHANNELS];
        let mut last = vec![0u64; CHANNELS];
        while last.iter().any(|&s| s < batches) {
            let n = r.take_pending(
                |_| true,
                |ch, h, _| {
                    assert!(h.seq > last[ch]);
                    // The first value a reader takes reports nothing skipped (it was not there
                    // before); after that, skipped counts the publishes it never saw.
                    accounted[ch] += if last[ch] == 0 { h.seq } else { 1 + h.skipped };
                    last[ch] = h.seq;
                },
            );
            if n == 0 {
                assert!(r.wait(10_000).unwrap(), "lost wake-up");
            }
        }
        assert!(
            accounted.iter().all(|&a| a == batches),
            "seen + skipped != published"
        );
        println!("ok");
        return;
    }
    let w = SegmentWriter::create(&[8; CHANNELS], &[0; CHANNELS]).unwrap();
    let child = spawn("stress_300_channels_free_running", "reader", &[&w]);
    for b in 1..=batches {
        for ch in 0..CHANNELS {
            w.publish_quiet(ch, &b.to_le_bytes(), b, 0).unwrap();
        }
        w.ring_if_owed().unwrap();
    }
    child.finish(Duration::from_secs(60));
    let s = w.stats();
    assert!(s.rings <= batches);
    println!(
        "{batches} batches: {} rings ({:.1}% of batches)",
        s.rings,
        100.0 * s.rings as f64 / batches as f64
    );
}
