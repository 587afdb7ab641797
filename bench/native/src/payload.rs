//! "Touch the data": every benchmark payload is really written by the writer and checked by
//! the reader. Layout: sequence number (u64 LE), writer's timestamp (u64 LE, ns on
//! `CLOCK_MONOTONIC`), then a pattern derived from the sequence number, so a torn or stale
//! copy is caught.

/// Bytes of header (sequence number + timestamp) at the start of every payload.
pub const HEADER: usize = 16;

/// Smallest payload that carries the header.
pub const MIN_SIZE: usize = HEADER;

#[inline]
fn pattern(seq: u64, i: usize) -> u8 {
    (seq as u8).wrapping_mul(31).wrapping_add(i as u8)
}

/// Writes sequence number `seq`, a zero timestamp and `seq`'s pattern into `buf`
/// (`buf.len() >= HEADER`).
pub fn fill(buf: &mut [u8], seq: u64) {
    buf[..8].copy_from_slice(&seq.to_le_bytes());
    buf[8..16].fill(0);
    for (i, b) in buf.iter_mut().enumerate().skip(HEADER) {
        *b = pattern(seq, i);
    }
}

/// Stores the writer's timestamp in a filled payload.
#[inline]
pub fn stamp(buf: &mut [u8], t_ns: u64) {
    buf[8..16].copy_from_slice(&t_ns.to_le_bytes());
}

/// The sequence number of a payload.
#[inline]
pub fn seq(buf: &[u8]) -> u64 {
    u64::from_le_bytes(buf[..8].try_into().expect("8 bytes"))
}

/// The writer's timestamp of a payload.
#[inline]
pub fn stamp_of(buf: &[u8]) -> u64 {
    u64::from_le_bytes(buf[8..16].try_into().expect("8 bytes"))
}

/// Checks that `buf` is an intact payload; returns `(seq, stamp)` or what is wrong.
pub fn check(buf: &[u8]) -> Result<(u64, u64), String> {
    if buf.len() < HEADER {
        return Err(format!("payload of {} bytes has no header", buf.len()));
    }
    let s = seq(buf);
    if let Some((i, b)) = buf
        .iter()
        .enumerate()
        .skip(HEADER)
        .find(|&(i, &b)| b != pattern(s, i))
    {
        return Err(format!(
            "payload seq {s}: byte {i} is {b:#04x}, expected {:#04x} (torn or stale copy)",
            pattern(s, i)
        ));
    }
    Ok((s, stamp_of(buf)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_tear() {
        let mut b = vec![0u8; 64];
        fill(&mut b, 42);
        stamp(&mut b, 7);
        assert_eq!(check(&b), Ok((42, 7)));
        let mut c = vec![0u8; 64];
        fill(&mut c, 43);
        b[40..].copy_from_slice(&c[40..]);
        assert!(check(&b).is_err());
    }
}
