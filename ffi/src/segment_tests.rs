//! Unit tests of `segment` (one process).

use super::*;
use std::os::fd::{FromRawFd, IntoRawFd};

/// Duplicates the writer's descriptors as a reader would receive them.
fn reader_fds(w: &SegmentWriter) -> (OwnedFd, OwnedFd, OwnedFd) {
    let [d, c, e] = w.fds().unwrap();
    // SAFETY: `dup` of valid descriptors gives new ones we own.
    unsafe {
        (
            OwnedFd::from_raw_fd(libc::dup(d)),
            OwnedFd::from_raw_fd(libc::dup(c)),
            OwnedFd::from_raw_fd(libc::dup(e)),
        )
    }
}

fn pair(caps: &[u32]) -> (SegmentWriter, SegmentReader) {
    let ids: Vec<u32> = (0..caps.len() as u32).collect();
    let w = SegmentWriter::create(caps, &ids).unwrap();
    let r = test_reader(&w);
    (w, r)
}

#[test]
fn publish_then_take() {
    let (w, r) = pair(&[8, 100]);
    assert!(r.take(0).unwrap().is_none());
    w.publish(1, b"hello", 1, 42).unwrap();
    let (h, p) = r.take(1).unwrap().unwrap();
    assert_eq!((h.seq, h.timestamp_ns, h.len, p), (1, 42, 5, &b"hello"[..]));
    assert!(r.take(1).unwrap().is_none());
    assert_eq!(r.current(1).unwrap().1, b"hello");
}

#[test]
fn skipped_counts_updates_never_seen() {
    let (w, r) = pair(&[8]);
    w.publish(0, &1u64.to_le_bytes(), 1, 0).unwrap();
    r.take(0).unwrap().unwrap();
    for seq in 2..=10u64 {
        w.publish(0, &seq.to_le_bytes(), seq, 0).unwrap();
    }
    let (h, p) = r.take(0).unwrap().unwrap();
    assert_eq!((h.seq, h.skipped), (10, 8));
    assert_eq!(p, 10u64.to_le_bytes());
}

#[test]
fn rings_only_when_reader_idle_and_once_per_batch() {
    let (w, r) = pair(&[8; 300]);
    for ch in 0..300 {
        w.publish_quiet(ch, &[1], 1, 0).unwrap();
    }
    assert!(w.ring_if_owed().unwrap());
    // Nothing taken yet: a second batch finds every FRESH bit set, so it owes no ring.
    for ch in 0..300 {
        w.publish_quiet(ch, &[2], 2, 0).unwrap();
    }
    assert!(!w.ring_if_owed().unwrap());
    assert_eq!(w.stats().rings, 1);
    let mut seen = vec![];
    let n = r.take_pending(|_| true, |ch, h, p| seen.push((ch, h.seq, p[0])));
    assert_eq!(n, 300);
    assert!(seen.iter().enumerate().all(|(i, &s)| s == (i, 2, 2)));
    assert_eq!(r.take_pending(|_| true, |_, _, _| {}), 0);
}

#[test]
fn early_stop_keeps_the_rest_pending() {
    let (w, r) = pair(&[8; 130]);
    for ch in 0..130 {
        w.publish_quiet(ch, &[ch as u8], 1, 0).unwrap();
    }
    let mut first = vec![];
    let mut admitted = 0;
    r.take_pending(
        |_| {
            admitted += 1;
            admitted <= 10
        },
        |ch, _, _| first.push(ch),
    );
    assert_eq!(first.len(), 10);
    let mut rest = vec![];
    r.take_pending(|_| true, |ch, _, _| rest.push(ch));
    assert_eq!(first.len() + rest.len(), 130);
    assert!(rest.iter().all(|c| !first.contains(c)));
}

#[test]
fn oversized_value_is_refused() {
    let (w, _r) = pair(&[4]);
    let e = w.publish(0, &[0; 5], 1, 0).unwrap_err();
    assert_eq!(e.code, libc::EMSGSIZE);
}

#[test]
fn attach_refuses_garbage() {
    let d = sys::memfd(c"x", 4096).unwrap();
    let c = sys::memfd(c"y", 4096).unwrap();
    sys::add_seals(d.as_fd(), libc::F_SEAL_SHRINK | libc::F_SEAL_GROW).unwrap();
    sys::add_seals(c.as_fd(), libc::F_SEAL_SHRINK | libc::F_SEAL_GROW).unwrap();
    let e = SegmentReader::attach(d, c, sys::eventfd().unwrap())
        .err()
        .unwrap();
    assert_eq!(e.code, code::BAD_MAGIC);
}

#[test]
fn attach_refuses_unsealed() {
    let d = sys::memfd(c"x", 4096).unwrap();
    let c = sys::memfd(c"y", 4096).unwrap();
    let e = SegmentReader::attach(d, c, sys::eventfd().unwrap())
        .err()
        .unwrap();
    assert_eq!(e.code, code::NOT_SEALED);
}

/// Copies a real writer's two memfds into new sealed memfds after `mutate` edits the
/// copies, so attach can be shown a segment that is wrong in exactly one way.
fn forge(
    data_len_change: isize,
    mutate: impl FnOnce(&mut [u8], &mut [u8]),
) -> Result<SegmentReader> {
    let w = SegmentWriter::create(&[8, 24], &[1, 2]).unwrap();
    // SAFETY: both mappings are live for `w`'s lifetime and we only read them here.
    let (mut data, mut ctrl) = unsafe {
        (
            std::slice::from_raw_parts(w.data.as_ptr(), w.data.len()).to_vec(),
            std::slice::from_raw_parts(w.ctrl.map.as_ptr(), w.ctrl.map.len()).to_vec(),
        )
    };
    mutate(&mut data, &mut ctrl);
    let new_len = (data.len() as isize + data_len_change) as usize;
    data.resize(new_len, 0);
    let fd_of = |bytes: &[u8]| {
        let fd = sys::memfd(c"forged", bytes.len()).unwrap();
        let m = Mapping::map(fd.as_fd(), bytes.len(), true).unwrap();
        // SAFETY: the new mapping is `bytes.len()` long and only we use it.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), m.as_ptr(), bytes.len()) };
        sys::add_seals(fd.as_fd(), libc::F_SEAL_SHRINK | libc::F_SEAL_GROW).unwrap();
        fd
    };
    SegmentReader::attach(fd_of(&data), fd_of(&ctrl), sys::eventfd().unwrap())
}

#[test]
fn forge_unmodified_is_accepted() {
    assert!(forge(0, |_, _| {}).is_ok());
}

#[test]
fn attach_refuses_wrong_version() {
    let e = forge(0, |d, _| d[D_VERSION] = 99).err().unwrap();
    assert_eq!(e.code, code::BAD_VERSION);
    assert!(e.message.contains("layout version 99"), "{}", e.message);
}

#[test]
fn attach_refuses_wrong_magic() {
    let e = forge(0, |_, c| c[C_MAGIC] = b'X').err().unwrap();
    assert_eq!(e.code, code::BAD_MAGIC);
}

#[test]
fn attach_refuses_wrong_size() {
    let e = forge(4096, |_, _| {}).err().unwrap();
    assert_eq!(e.code, code::BAD_LAYOUT);
    let e = forge(0, |d, _| d[HEADER_LEN + 8] = 200).err().unwrap();
    assert_eq!(
        e.code,
        code::BAD_LAYOUT,
        "a channel capacity that disagrees with the size"
    );
}

#[test]
fn attach_refuses_unready() {
    let e = forge(0, |d, _| d[D_READY] = 0).err().unwrap();
    assert_eq!(e.code, code::NOT_READY);
}

#[test]
fn reader_cannot_write_or_resize_data() {
    let (w, _r) = pair(&[8]);
    let (d, _c, _e) = reader_fds(&w);
    let raw = d.into_raw_fd();
    // SAFETY: plain syscalls on a descriptor we own; failures are what we test.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            raw,
            0,
        );
        assert_eq!(
            p,
            libc::MAP_FAILED,
            "writable mapping of sealed data must fail"
        );
        assert!(libc::ftruncate(raw, 0) < 0, "shrink must fail");
        assert!(libc::ftruncate(raw, 1 << 20) < 0, "grow must fail");
        let byte = 1u8;
        assert!(libc::pwrite(raw, &byte as *const u8 as *const libc::c_void, 1, 0) < 0);
        libc::close(raw);
    }
}
