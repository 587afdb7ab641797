//! Unit tests of broadcast segments (one process; the cross-process stress is in
//! `ffi/tests/stress.rs`).

use super::*;
use std::os::fd::FromRawFd;

/// A reader attached to duplicates of the writer's descriptors, as a peer would get them,
/// with every bell.
pub(crate) fn test_reader(w: &BroadcastWriter) -> BroadcastReader {
    // SAFETY: `dup` of valid descriptors gives new ones that we own.
    let dup = |fd: RawFd| unsafe { OwnedFd::from_raw_fd(libc::dup(fd)) };
    let fds = w.fds();
    let bells = fds[2..]
        .iter()
        .enumerate()
        .map(|(i, &fd)| (i as u32, dup(fd)))
        .collect();
    BroadcastReader::attach(dup(fds[0]), dup(fds[1]), bells).expect("a fresh segment attaches")
}

fn writer(caps: &[u32]) -> BroadcastWriter {
    let ids: Vec<u32> = (0..caps.len() as u32).collect();
    // Channel i on bell i % 2; the ring on bell 2.
    let bells: Vec<u32> = (0..caps.len() as u32).map(|i| i % 2).collect();
    BroadcastWriter::create(caps, &ids, &bells, 3, 2, MIN_RING).unwrap()
}

/// (channel, seq, skipped, payload) of every record `read_changed` wrote.
fn changed(r: &BroadcastReader) -> Vec<(u32, u64, u64, Vec<u8>)> {
    let mut out = vec![0u8; 1 << 16];
    let n = r.read_changed(&mut out);
    let mut at = 0;
    let mut got = vec![];
    for _ in 0..n {
        let u64_at = |o: usize| u64::from_le_bytes(out[at + o..at + o + 8].try_into().unwrap());
        let len = u32::from_le_bytes(out[at + 24..at + 28].try_into().unwrap()) as usize;
        let ch = u32::from_le_bytes(out[at + 28..at + 32].try_into().unwrap());
        got.push((
            ch,
            u64_at(0),
            u64_at(16),
            out[at + 32..at + 32 + len].to_vec(),
        ));
        at += 32 + round_up(len, 8);
    }
    got
}

#[test]
fn readers_see_the_newest_value_of_what_they_follow() {
    let w = writer(&[8, 3, 100]);
    let (a, b) = (test_reader(&w), test_reader(&w));
    a.follow(&[0, 2]).unwrap();
    b.follow(&[1]).unwrap();
    assert!(changed(&a).is_empty());
    w.publish_quiet(0, &7u64.to_le_bytes(), 1, 10).unwrap();
    w.publish_quiet(1, b"abc", 1, 10).unwrap();
    w.publish_quiet(2, b"hello world", 1, 10).unwrap();
    w.flush().unwrap();
    assert_eq!(
        changed(&a),
        vec![
            (0, 1, 0, 7u64.to_le_bytes().to_vec()),
            (2, 1, 0, b"hello world".to_vec())
        ]
    );
    assert_eq!(changed(&b), vec![(1, 1, 0, b"abc".to_vec())]);
    assert!(changed(&a).is_empty(), "nothing new twice");
    // Ten more values of channel 0 while `a` reads none: it gets the newest, 9 skipped.
    for seq in 2..=11u64 {
        w.publish_quiet(0, &seq.to_le_bytes(), seq, 10 + seq)
            .unwrap();
    }
    assert_eq!(changed(&a), vec![(0, 11, 9, 11u64.to_le_bytes().to_vec())]);
    let mut value = [0u8; 8];
    let h = a.current(0, &mut value).unwrap();
    assert_eq!(
        (h.seq, h.timestamp_ns, value),
        (11, 21, 11u64.to_le_bytes())
    );
}

#[test]
fn a_late_reader_starts_from_the_current_values() {
    let w = writer(&[4]);
    w.publish_quiet(0, &[1, 2, 3, 4], 5, 0).unwrap();
    let r = test_reader(&w);
    r.follow(&[0]).unwrap();
    assert_eq!(changed(&r), vec![(0, 5, 0, vec![1, 2, 3, 4])]);
}

#[test]
fn a_full_output_keeps_the_rest_for_the_next_read() {
    let w = writer(&[8; 10]);
    let r = test_reader(&w);
    r.follow(&(0..10).collect::<Vec<_>>()).unwrap();
    for c in 0..10 {
        w.publish_quiet(c, &[c as u8], 1, 0).unwrap();
    }
    w.flush().unwrap();
    // Room for three 40-byte records.
    let mut out = vec![0u8; 120];
    assert_eq!(r.read_changed(&mut out), 3);
    let watch = r.bell_watch(0).unwrap();
    assert!(
        watch.prepare_to_sleep(),
        "an unfinished read must not let the reader sleep"
    );
    watch.woke();
    assert_eq!(changed(&r).len(), 7);
    assert!(!watch.prepare_to_sleep(), "everything read: it may sleep");
    watch.woke();
}

#[test]
fn oversized_values_and_unknown_channels_are_refused() {
    let w = writer(&[4]);
    assert_eq!(
        w.publish_quiet(0, &[0; 5], 1, 0).unwrap_err().code,
        libc::EMSGSIZE
    );
    assert!(w.publish_quiet(1, &[0], 1, 0).is_err());
    let r = test_reader(&w);
    assert!(r.follow(&[1]).is_err());
}

#[test]
fn bells_ring_once_per_batch_and_only_for_sleepers() {
    let w = writer(&[8, 8]);
    let r = test_reader(&w);
    r.follow(&[0, 1]).unwrap();
    for c in 0..2 {
        w.publish_quiet(c, &[1], 1, 0).unwrap();
    }
    assert_eq!(w.flush().unwrap(), 0, "nobody asleep: no ring");
    let watch0 = r.bell_watch(0).unwrap();
    assert!(
        watch0.prepare_to_sleep(),
        "a change not yet read: do not sleep"
    );
    watch0.woke();
    changed(&r);
    assert!(!watch0.prepare_to_sleep());
    // Asleep on bell 0: a batch touching both bells rings only bell 0, once.
    for seq in 2..5 {
        w.publish_quiet(0, &[seq as u8], seq, 0).unwrap();
        w.publish_quiet(1, &[seq as u8], seq, 0).unwrap();
    }
    assert_eq!(w.flush().unwrap(), 1);
    assert_eq!(sys::eventfd_drain(r.bell(0).unwrap()), 1);
    assert_eq!(sys::eventfd_drain(r.bell(1).unwrap()), 0);
    watch0.woke();
    assert_eq!(w.stats().rings, 1);
}

fn meta(len: u32, ts: u64, flags: u16) -> [u8; META_LEN] {
    let mut m = [0u8; META_LEN];
    m[0..4].copy_from_slice(&len.to_le_bytes());
    m[4..8].copy_from_slice(&len.to_le_bytes());
    m[8..16].copy_from_slice(&ts.to_le_bytes());
    m[16..20].copy_from_slice(&[127, 0, 0, 1]);
    m[20..22].copy_from_slice(&4321u16.to_le_bytes());
    m[22..24].copy_from_slice(&flags.to_le_bytes());
    m
}

/// (seq, timestamp, dst port, packet, flags, payload) of a ring record.
type Rec = (u64, u64, u16, u32, u16, Vec<u8>);

/// Every ring record read, and the count lost.
fn ring(r: &BroadcastReader, out_len: usize) -> (Vec<Rec>, u64) {
    let mut out = vec![0u8; out_len];
    let got = r.read_ring(&mut out);
    let mut recs = vec![];
    let mut at = 0;
    while at < got.bytes {
        let u64_at = |o: usize| u64::from_le_bytes(out[at + o..at + o + 8].try_into().unwrap());
        let w2 = u64_at(16);
        let len = (u64_at(32) & 0xffff_ffff) as usize;
        let w5 = u64_at(40);
        assert_eq!(&out[at + 40..at + 44], &[127, 0, 0, 1]);
        assert_eq!((w5 >> 32) as u16, 4321);
        recs.push((
            u64_at(8),
            u64_at(24),
            (w5 >> 48) as u16,
            u64_at(48) as u32,
            (w2 >> 48) as u16,
            out[at + RECORD_LEN..at + RECORD_LEN + len].to_vec(),
        ));
        at += (w2 & 0xffff_ffff) as usize;
    }
    assert_eq!(recs.len(), got.records);
    (recs, got.lost)
}

#[test]
fn the_ring_carries_every_datagram_in_order_across_wraps() {
    let w = writer(&[8]);
    let r = test_reader(&w);
    let mut expected = 1u64;
    // ~3 laps of the ring in batches of 20, read after each batch.
    for batch in 0..200u64 {
        let metas: Vec<_> = (0..20u64)
            .map(|i| meta(100 + (i as u32 % 7) * 50, batch * 100 + i, (i % 2) as u16))
            .collect();
        let payloads: Vec<Vec<u8>> = (0..20u64)
            .map(|i| vec![(batch + i) as u8; 100 + (i as usize % 7) * 50])
            .collect();
        let dgs: Vec<_> = (0..20)
            .map(|i| Datagram {
                meta: &metas[i],
                payload: &payloads[i],
                port: 5000,
                packet: if i % 5 == 0 { NO_PACKET } else { i as u32 % 3 },
            })
            .collect();
        w.append(&dgs).unwrap();
        w.flush().unwrap();
        let (recs, lost) = ring(&r, 1 << 20);
        assert_eq!(lost, 0);
        assert_eq!(recs.len(), 20);
        for (i, rec) in recs.iter().enumerate() {
            assert_eq!(rec.0, expected);
            expected += 1;
            assert_eq!(rec.1, batch * 100 + i as u64);
            assert_eq!(rec.2, 5000);
            assert_eq!(rec.3, if i % 5 == 0 { NO_PACKET } else { i as u32 % 3 });
            assert_eq!(rec.4, (i % 2) as u16);
            assert_eq!(rec.5, payloads[i]);
        }
    }
    assert!(r.cursor() > 3 * MIN_RING as u64);
}

#[test]
fn a_reader_left_behind_counts_exactly_what_it_lost() {
    let w = writer(&[8]);
    let r = test_reader(&w);
    let m = meta(1000, 0, 0);
    let payload = vec![0xAB; 1000];
    let dg = Datagram {
        meta: &m,
        payload: &payload,
        port: 1,
        packet: 0,
    };
    // One record, read; then far more than the ring holds while the reader sleeps.
    w.append(&[dg]).unwrap();
    assert_eq!(ring(&r, 1 << 20).0.len(), 1);
    let per_lap = MIN_RING / record_len(1000);
    let written = 3 * per_lap + 17;
    for _ in 0..written {
        w.append(&[dg]).unwrap();
    }
    let (first, lost0) = ring(&r, 1 << 20);
    assert!(
        first.is_empty(),
        "a lapped reader first resumes at the oldest whole record"
    );
    assert_eq!(lost0, 0);
    let (rest, lost) = ring(&r, 1 << 20);
    assert!(!rest.is_empty());
    assert_eq!(
        rest[0].0,
        2 + lost,
        "the records before the oldest one left are lost"
    );
    assert_eq!(
        rest.last().unwrap().0,
        1 + written as u64,
        "it reads on to the newest"
    );
    assert_eq!(
        1 + lost + rest.len() as u64,
        1 + written as u64,
        "every record is read or counted lost"
    );
    assert!(
        rest.len() as u64 >= (per_lap as u64) * 3 / 4,
        "most of a lap is kept"
    );
}

#[test]
fn a_reader_partly_behind_reads_what_is_still_there() {
    let w = writer(&[8]);
    let r = test_reader(&w);
    let m = meta(1000, 0, 0);
    let payload = vec![1; 1000];
    let dg = Datagram {
        meta: &m,
        payload: &payload,
        port: 1,
        packet: 0,
    };
    for _ in 0..10 {
        w.append(&[dg]).unwrap();
    }
    // A small output: several reads, each of whole records.
    let mut total = 0;
    loop {
        let (recs, lost) = ring(&r, 3 * record_len(1000) + 8);
        assert_eq!(lost, 0);
        if recs.is_empty() {
            break;
        }
        assert!(recs.len() <= 3);
        total += recs.len();
    }
    assert_eq!(total, 10);
}

#[test]
fn attach_refuses_what_is_not_a_sealed_broadcast_segment() {
    let d = sys::memfd(c"x", 8192).unwrap();
    let c = sys::memfd(c"y", 8192).unwrap();
    let e = BroadcastReader::attach(d, c, vec![]).err().unwrap();
    assert_eq!(e.code, code::NOT_SEALED);
    let d = sys::memfd(c"x", 8192).unwrap();
    let c = sys::memfd(c"y", 8192).unwrap();
    sys::add_seals(
        d.as_fd(),
        libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_FUTURE_WRITE,
    )
    .unwrap();
    sys::add_seals(c.as_fd(), libc::F_SEAL_SHRINK | libc::F_SEAL_GROW).unwrap();
    let e = BroadcastReader::attach(d, c, vec![]).err().unwrap();
    assert_eq!(e.code, code::BAD_MAGIC);
    // A point-to-point segment's memfds are not a broadcast segment either.
    let seg = crate::segment::SegmentWriter::create(&[8], &[0]).unwrap();
    let [d, c, _] = seg.fds().unwrap();
    // SAFETY: dups of valid descriptors.
    let (d, c) = unsafe {
        (
            OwnedFd::from_raw_fd(libc::dup(d)),
            OwnedFd::from_raw_fd(libc::dup(c)),
        )
    };
    assert!(BroadcastReader::attach(d, c, vec![]).is_err());
}

#[test]
fn readers_cannot_write_the_data_memfd() {
    let w = writer(&[8]);
    let fds = w.fds();
    // SAFETY: a dup of a valid descriptor.
    let d = unsafe { OwnedFd::from_raw_fd(libc::dup(fds[0])) };
    let len = sys::file_size(d.as_fd()).unwrap() as usize;
    assert!(Mapping::map(d.as_fd(), len, true).is_err());
}

#[test]
fn bad_layouts_are_refused_at_creation() {
    assert!(BroadcastWriter::create(&[8], &[0], &[1], 1, 0, MIN_RING).is_err());
    assert!(BroadcastWriter::create(&[8], &[0], &[0], 1, 0, MIN_RING + 1).is_err());
    assert!(BroadcastWriter::create(&[8], &[0], &[0], 1, 1, MIN_RING).is_err());
    assert!(BroadcastWriter::create(&[MAX_CAPACITY + 1], &[0], &[0], 1, 0, MIN_RING).is_err());
}

#[test]
fn a_reader_lapped_by_batches_of_small_records_resumes() {
    let w = writer(&[8]);
    let r = test_reader(&w);
    let m = meta(24, 0, 0);
    let payload = [7u8; 24];
    let dg = Datagram {
        meta: &m,
        payload: &payload,
        port: 1,
        packet: 0,
    };
    let batch = [dg; 64];
    for _ in 0..(20_000 / 64) {
        w.append(&batch).unwrap();
    }
    let written = 20_000 / 64 * 64;
    let mut total = 0;
    let mut lost = 0;
    for _ in 0..10 {
        let (recs, l) = ring(&r, 1 << 20);
        total += recs.len() as u64;
        lost += l;
    }
    assert_eq!(total + lost, written as u64, "read {total}, lost {lost}");
}

#[test]
fn the_rings_readers_are_woken_at_most_once_per_gap_and_never_forgotten() {
    let w = writer(&[8]);
    let r = test_reader(&w);
    let watch = r.bell_watch(2).unwrap();
    let m = meta(4, 1, 0);
    let append = || {
        w.append(&[Datagram {
            meta: &m,
            payload: &[1, 2, 3, 4],
            port: 5000,
            packet: 0,
        }])
        .unwrap();
        w.flush().unwrap()
    };
    let sleep = || {
        ring(&r, 1 << 16);
        assert!(!watch.prepare_to_sleep(), "all read: the reader sleeps");
    };
    sleep();
    assert_eq!(
        append(),
        1,
        "the first batch wakes the sleeping reader at once"
    );
    watch.woke();
    assert_eq!(sys::eventfd_drain(r.bell(2).unwrap()), 1);
    sleep();
    assert_eq!(append(), 0, "within the gap: held back");
    assert_eq!(append(), 0, "still within it: one wake-up is due, not two");
    let due = w.flush_due().unwrap();
    assert!((0..=1).contains(&due), "due within 1 ms, not {due}");
    assert_eq!(sys::eventfd_drain(r.bell(2).unwrap()), 0);
    std::thread::sleep(std::time::Duration::from_nanos(RING_WAKE_GAP_NS + 100_000));
    assert_eq!(w.flush_due().unwrap(), -1);
    assert_eq!(
        sys::eventfd_drain(r.bell(2).unwrap()),
        1,
        "the held-back wake-up came"
    );
    watch.woke();
    assert_eq!(w.stats().rings, 2);
    // A batch after the gap, with nothing held back, wakes at once again.
    sleep();
    std::thread::sleep(std::time::Duration::from_nanos(RING_WAKE_GAP_NS + 100_000));
    assert_eq!(append(), 1);
    assert_eq!(w.flush_due().unwrap(), -1);
    // Value bells are never held back.
    let watch0 = r.bell_watch(0).unwrap();
    r.follow(&[0]).unwrap();
    changed(&r);
    assert!(!watch0.prepare_to_sleep());
    for seq in 1..4 {
        w.publish_quiet(0, &[seq], seq as u64, 0).unwrap();
        assert_eq!(
            w.flush().unwrap(),
            1,
            "a subscriber's bell rings every batch"
        );
        watch0.woke();
        changed(&r);
        assert!(!watch0.prepare_to_sleep());
    }
}
