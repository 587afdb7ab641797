use super::*;

fn framing(kind: Kind, crc: Crc) -> Framing {
    Framing {
        kind,
        crc,
        crc_big: true,
        min_len: 1,
        max_len: 64,
    }
}

fn all() -> Vec<Framing> {
    let kinds = [
        Kind::Sync {
            word: vec![0xEB, 0x90],
            size: 12,
        },
        Kind::Length {
            bytes: 1,
            big: true,
        },
        Kind::Length {
            bytes: 2,
            big: false,
        },
        Kind::Cobs,
        Kind::Slip,
    ];
    let mut out = Vec::new();
    for k in kinds {
        for crc in [Crc::None, Crc::Ccitt16, Crc::Crc32c] {
            out.push(framing(k.clone(), crc));
        }
    }
    out
}

/// Packet `i` of 12 bytes, with the bytes framings have to escape in it.
fn packet(i: usize) -> Vec<u8> {
    let mut p: Vec<u8> = (0..12).map(|j| (i * 31 + j * 7) as u8).collect();
    p[0] = i as u8;
    p[3] = 0x00;
    p[5] = 0xC0;
    p[7] = 0xDB;
    p[9] = 0xEB;
    p[10] = 0x90;
    p
}

/// Runs `stream` through a deframer `chunk` bytes at a time: packets, rejected (bytes, why).
/// Packets, and rejected records (bytes, why).
type Pieces = (Vec<Vec<u8>>, Vec<(Vec<u8>, Reject)>);

fn run(f: &Framing, stream: &[u8], chunk: usize) -> Pieces {
    let mut d = Deframer::new(f.clone());
    let mut packets = Vec::new();
    let mut rejected = Vec::new();
    let mut take = |p: Piece<'_>| match p {
        Piece::Packet(b) => packets.push(b.to_vec()),
        Piece::Rejected(b, why) => rejected.push((b.to_vec(), why)),
    };
    for c in stream.chunks(chunk) {
        d.push(c, &mut take);
    }
    d.finish(&mut take);
    (packets, rejected)
}

#[test]
fn crc_check_values() {
    assert_eq!(crc16_ccitt(b"123456789"), 0x29B1);
    assert_eq!(crc32c(b"123456789"), 0xE306_9283);
}

#[test]
fn every_framing_round_trips_in_any_chunking() {
    for f in all() {
        let mut stream = Vec::new();
        for i in 0..50 {
            encode(&f, &packet(i), &mut stream).unwrap();
        }
        for chunk in [1, 3, 7, 64, stream.len()] {
            let (packets, rejected) = run(&f, &stream, chunk);
            assert_eq!(rejected, vec![], "{f:?} chunk {chunk}");
            assert_eq!(
                packets,
                (0..50).map(packet).collect::<Vec<_>>(),
                "{f:?} chunk {chunk}"
            );
        }
    }
}

#[test]
fn garbage_dropped_bytes_and_bad_crcs_cost_only_their_own_packet() {
    for f in all().into_iter().filter(|f| f.crc != Crc::None) {
        let mut stream = Vec::new();
        let mut want = Vec::new();
        let mut bad = 0;
        for i in 0..60 {
            let mut frame = Vec::new();
            encode(&f, &packet(i), &mut frame).unwrap();
            match i % 6 {
                1 => {
                    // Garbage between two packets: the delimiter before each COBS or SLIP
                    // packet keeps it apart.
                    stream.extend_from_slice(&[0x55, 0xEB, 0x13, 0x01]);
                    bad += 1;
                }
                2 => {
                    let at = frame.len() / 2;
                    frame.remove(at); // a byte the radio lost
                    bad += 1;
                    stream.extend_from_slice(&frame);
                    continue;
                }
                3 => {
                    let at = frame.len() / 2;
                    frame[at] ^= 0x10; // a bit flipped on the air
                    bad += 1;
                    stream.extend_from_slice(&frame);
                    continue;
                }
                _ => {}
            }
            want.push(packet(i));
            stream.extend_from_slice(&frame);
        }
        for chunk in [1, 5, 4096] {
            let (packets, rejected) = run(&f, &stream, chunk);
            assert_eq!(packets, want, "{f:?} chunk {chunk}");
            assert!(
                !rejected.is_empty() && rejected.len() <= bad,
                "{f:?}: {}",
                rejected.len()
            );
            // Every byte of the stream is in a packet's frame or in a rejected record.
            let held: usize = rejected.iter().map(|(b, _)| b.len()).sum();
            assert!(held > 0, "{f:?}");
        }
    }
}

#[test]
fn sync_without_crc_resyncs_after_a_dropped_byte_without_losing_the_next_packet() {
    let f = framing(
        Kind::Sync {
            word: vec![0xEB, 0x90],
            size: 12,
        },
        Crc::None,
    );
    let mut stream = Vec::new();
    for i in 0..10 {
        let mut frame = Vec::new();
        // Packets without the sync pattern inside, as a no-CRC link needs.
        let p: Vec<u8> = (0..12).map(|j| (i * 12 + j) as u8).collect();
        encode(&f, &p, &mut frame).unwrap();
        if i == 4 {
            frame.remove(6);
        }
        stream.extend_from_slice(&frame);
    }
    let (packets, rejected) = run(&f, &stream, 4096);
    let firsts: Vec<u8> = packets.iter().map(|p| p[0]).collect();
    assert_eq!(firsts, vec![0, 12, 24, 36, 60, 72, 84, 96, 108]);
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].0.len(), 2 + 11);
}

#[test]
fn a_length_no_packet_has_is_garbage_and_a_cut_stream_ends_rejected() {
    let mut f = framing(
        Kind::Length {
            bytes: 1,
            big: true,
        },
        Crc::Ccitt16,
    );
    f.min_len = 12;
    f.max_len = 12;
    let mut stream = vec![200, 3, 250];
    encode(&f, &packet(1), &mut stream).unwrap();
    let mut cut = Vec::new();
    encode(&f, &packet(2), &mut cut).unwrap();
    stream.extend_from_slice(&cut[..8]);
    let (packets, rejected) = run(&f, &stream, 2);
    assert_eq!(packets, vec![packet(1)]);
    assert_eq!(
        rejected,
        vec![
            (vec![200, 3, 250], Reject::Unframed),
            (cut[..8].to_vec(), Reject::Unframed)
        ]
    );
}

#[test]
fn cobs_and_slip_say_why_a_frame_is_refused() {
    let f = framing(Kind::Slip, Crc::Ccitt16);
    let (_, rejected) = run(&f, &[SLIP_END, 1, SLIP_ESC, 7, 2, 3, SLIP_END], 64);
    assert_eq!(
        rejected,
        vec![(vec![1, SLIP_ESC, 7, 2, 3], Reject::BadEncoding)]
    );
    let f = framing(Kind::Cobs, Crc::Ccitt16);
    let mut frame = Vec::new();
    encode(&f, &packet(3), &mut frame).unwrap();
    frame[4] ^= 0x01;
    let (packets, rejected) = run(&f, &frame, 64);
    assert!(packets.is_empty());
    assert_eq!(rejected.len(), 1);
    assert!(matches!(
        rejected[0].1,
        Reject::BadCrc | Reject::BadEncoding
    ));
}

#[test]
fn encode_refuses_what_the_framing_cannot_carry() {
    let f = framing(
        Kind::Sync {
            word: vec![0xEB],
            size: 4,
        },
        Crc::None,
    );
    assert!(encode(&f, &[1, 2, 3], &mut Vec::new()).is_err());
    let f = framing(
        Kind::Length {
            bytes: 1,
            big: true,
        },
        Crc::None,
    );
    assert!(encode(&f, &[0; 300], &mut Vec::new()).is_err());
}
