//! Unit tests of `mqtt` (one process).

use super::*;

fn raw(seq: u64, data: &[u8]) -> Vec<u8> {
    let mut m = vec![0u8; RAW_HEADER_LEN];
    m[0..4].copy_from_slice(&RAW_MAGIC);
    m[4] = RAW_VERSION;
    m[8..16].copy_from_slice(&seq.to_le_bytes());
    m[16..24].copy_from_slice(&1234u64.to_le_bytes());
    m[24..28].copy_from_slice(&[10, 0, 0, 7]);
    m[28..30].copy_from_slice(&999u16.to_le_bytes());
    m[30..32].copy_from_slice(&45001u16.to_le_bytes());
    m[32..36].copy_from_slice(&(data.len() as u32).to_le_bytes());
    m.extend_from_slice(data);
    m
}

#[test]
fn frames_lengths_as_mqtt_does() {
    for len in [0usize, 127, 128, 16383, 16384, 2_097_151] {
        let mut out = Vec::new();
        frame(&mut out, 0x30, &vec![7u8; len]);
        let (kind, body, used) = next_packet(&out).unwrap().unwrap();
        assert_eq!((kind, body.len(), used), (0x30, len, out.len()));
        assert!(next_packet(&out[..out.len() - 1]).unwrap().is_none() || len == 0);
    }
}

#[test]
fn raw_packets_are_restored_and_gaps_counted() {
    let mut s = MqttSource::new(Options {
        host: "127.0.0.1".into(),
        port: 1,
        client_id: "t".into(),
        username: None,
        password: None,
        topic: "x/#".into(),
        qos: 1,
        keepalive_s: 10,
    })
    .unwrap();
    for seq in [1u64, 2, 5, 5, 6] {
        s.inbox
            .push_back((b"gsw/v/raw/a".to_vec(), raw(seq, &[seq as u8; 3])));
    }
    s.inbox.push_back((b"gsw/v/raw/b".to_vec(), raw(1, &[1])));
    s.inbox
        .push_back((b"gsw/v/raw/a".to_vec(), b"not a packet".to_vec()));
    let mut buf = vec![0u8; 8 * 64];
    let mut meta = vec![0u8; 8 * META_LEN];
    let n = s.recv(&mut buf, 64, &mut meta).unwrap();
    assert_eq!(n, 6, "every packet is delivered, a repeated number too");
    let m = &meta[..META_LEN];
    assert_eq!(u32::from_le_bytes(m[0..4].try_into().unwrap()), 3);
    assert_eq!(u64::from_le_bytes(m[8..16].try_into().unwrap()), 1234);
    assert_eq!(&m[16..20], &[10, 0, 0, 7]);
    assert_eq!(u16::from_le_bytes(m[28..30].try_into().unwrap()), 45001);
    let n = s.recv(&mut buf, 64, &mut meta).unwrap();
    assert_eq!(
        n, 1,
        "the malformed message (port 0) comes in a batch of its own"
    );
    let last = &meta[..META_LEN];
    assert_eq!(
        u16::from_le_bytes(last[22..24].try_into().unwrap()),
        FLAG_MALFORMED
    );
    let st = s.stats();
    assert_eq!(
        (st.messages, st.malformed, st.gaps, st.restarts),
        (6, 1, 2, 1),
        "streams a and b are numbered apart; 3 and 4 are missing from a; 5 came twice"
    );
}

#[test]
fn short_or_foreign_messages_are_not_raw_packets() {
    assert!(parse_raw(b"GSWR").is_none());
    let mut m = raw(1, &[1, 2, 3]);
    m[4] = 9;
    assert!(parse_raw(&m).is_none(), "another version");
    let mut m = raw(1, &[1, 2, 3]);
    m[32..36].copy_from_slice(&2u32.to_le_bytes());
    assert!(parse_raw(&m).is_none(), "more bytes than its length says");
}
