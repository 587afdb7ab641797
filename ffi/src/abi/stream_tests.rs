use super::*;
use crate::udp::META_LEN;
use std::io::Write;

fn spec(kind: u8, port: u16, framing: u8, crc: u8) -> Vec<u8> {
    let mut s = vec![0u8; SPEC_LEN];
    s[0] = kind;
    s[1] = 8;
    s[3] = 1;
    s[5] = framing;
    s[6] = crc;
    s[7] = 1;
    s[8..12].copy_from_slice(&115200u32.to_le_bytes());
    s[12..14].copy_from_slice(&port.to_le_bytes());
    s[14..16].copy_from_slice(&7u16.to_le_bytes());
    s[20] = 2;
    s[21] = 1;
    s[32..36].copy_from_slice(&1u32.to_le_bytes());
    s[36..40].copy_from_slice(&64u32.to_le_bytes());
    s
}

/// A TCP listening source takes a sender's framed packets, says who connected and left.
#[test]
fn a_listening_source_delivers_framed_packets_and_says_who_came_and_went() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    let (endpoint, framing, dst) = parse(&spec(2, port, 2, 1), "127.0.0.1".into()).unwrap();
    let mut s = StreamSource::new(endpoint, framing.clone(), dst).unwrap();
    let mut w = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut bytes = Vec::new();
    for i in 0..20u8 {
        crate::framing::encode(&framing, &[i, 0, 1, 2], &mut bytes).unwrap();
    }
    bytes.extend_from_slice(&[9, 9, 9, 0]); // a broken COBS frame
    w.write_all(&bytes).unwrap();
    drop(w);
    let mut buf = vec![0u8; 64 * 64];
    let mut meta = vec![0u8; 64 * META_LEN];
    let mut got = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while got.len() < 21 && std::time::Instant::now() < deadline {
        s.service(crate::sys::monotonic_ns() / 1_000_000);
        let n = s.recv(&mut buf, 64, &mut meta).unwrap();
        for i in 0..n {
            let m = &meta[i * META_LEN..];
            let len = u32::from_le_bytes(m[0..4].try_into().unwrap()) as usize;
            let flags = u16::from_le_bytes([m[22], m[23]]);
            assert_eq!(u16::from_le_bytes([m[28], m[29]]), 7);
            got.push((buf[i * 64..i * 64 + len].to_vec(), flags));
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(got.len(), 21);
    for (i, (b, flags)) in got.iter().take(20).enumerate() {
        assert_eq!((b.as_slice(), *flags), (&[i as u8, 0, 1, 2][..], 0));
    }
    assert_eq!(got[20].1, crate::stream::FLAG_UNFRAMED);
    let st = s.stats();
    assert_eq!((st.packets, st.rejected, st.opens), (20, 1, 1));
    let mut lines = Vec::new();
    while let Some(l) = s.next_event() {
        lines.push(l);
    }
    assert!(lines[0].contains("connected (sender 1 now)"), "{lines:?}");
    assert!(lines.iter().any(|l| l.contains("left")), "{lines:?}");
}

#[test]
fn a_device_that_is_not_there_is_said_once_and_tried_again() {
    let (endpoint, framing, dst) =
        parse(&spec(0, 0, 3, 0), "/dev/gsw-no-such-radio".into()).unwrap();
    let mut s = StreamSource::new(endpoint, framing, dst).unwrap();
    let wait = s.service(1_000);
    assert!((1..=5_000).contains(&wait), "{wait}");
    s.service(2_000);
    s.service(10_000);
    let line = s.next_event().unwrap();
    assert!(
        line.contains("cannot open /dev/gsw-no-such-radio: No such file"),
        "{line}"
    );
    assert_eq!(s.next_event(), None, "said once");
}

#[test]
fn settings_that_cannot_work_are_refused() {
    let mut bad = spec(0, 0, 0, 0); // sync framing with no sync word
    assert!(parse(&bad, String::new()).is_err());
    bad[5] = 9;
    assert!(parse(&bad, String::new()).is_err());
    assert!(parse(&bad[..10], String::new()).is_err());
}
