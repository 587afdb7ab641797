//! Packets out of a byte stream (a serial radio, a TCP connection) and back: the framings a
//! radio link needs — fixed-size packets after a sync word, length-prefixed, COBS, SLIP — each
//! with an optional CRC (CRC-16/CCITT-FALSE or CRC-32C) after the packet.
//!
//! [`Deframer::push`] takes bytes as they arrive and hands out every complete packet, and every
//! run of bytes that is not one (garbage, a packet whose CRC fails, a broken encoding) as a
//! rejected record holding those bytes, so nothing is dropped unseen: decom counts it and the
//! logger keeps it. After garbage or a dropped byte the deframer resynchronises on the next
//! packet that checks out, without losing it. [`encode`] frames a packet (for replay, the
//! simulator and tests); `encode` then `push` gives the packet back.

/// Longest packet (a UDP datagram's payload): nothing longer is ever framed.
pub const MAX_PACKET: usize = 65507;
/// Bytes held as one rejected record at most: longer garbage becomes several records.
const MAX_GARBAGE: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// `word`, then exactly `size` bytes of packet.
    Sync { word: Vec<u8>, size: usize },
    /// A `bytes`-byte unsigned length (of the packet alone), then the packet.
    Length { bytes: usize, big: bool },
    /// Consistent Overhead Byte Stuffing, each packet between two 0x00 delimiters (a
    /// stream with only the one after each packet decodes too).
    Cobs,
    /// RFC 1055: each packet followed by END (0xC0), END and ESC (0xDB) escaped.
    Slip,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Crc {
    None,
    /// CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, not reflected; check "123456789" = 0x29B1).
    Ccitt16,
    /// CRC-32C (Castagnoli, reflected, init and xorout 0xFFFFFFFF; check = 0xE3069283).
    Crc32c,
}

impl Crc {
    /// Bytes it takes on the wire (0 for none).
    pub fn width(self) -> usize {
        match self {
            Crc::None => 0,
            Crc::Ccitt16 => 2,
            Crc::Crc32c => 4,
        }
    }

    /// The CRC of `data`, as many bytes as [`Crc::len`], in `big`-endian or little-endian order.
    fn put(self, data: &[u8], big: bool, out: &mut Vec<u8>) {
        match self {
            Crc::None => {}
            Crc::Ccitt16 => {
                let c = crc16_ccitt(data);
                out.extend_from_slice(&if big {
                    c.to_be_bytes()
                } else {
                    c.to_le_bytes()
                });
            }
            Crc::Crc32c => {
                let c = crc32c(data);
                out.extend_from_slice(&if big {
                    c.to_be_bytes()
                } else {
                    c.to_le_bytes()
                });
            }
        }
    }

    /// Whether `frame` ends with the CRC of what comes before it.
    fn check(self, frame: &[u8], big: bool) -> bool {
        let n = self.width();
        if frame.len() < n {
            return false;
        }
        let (data, crc) = frame.split_at(frame.len() - n);
        let mut want = Vec::with_capacity(n);
        self.put(data, big, &mut want);
        want == crc
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Framing {
    pub kind: Kind,
    pub crc: Crc,
    /// The CRC's byte order on the wire.
    pub crc_big: bool,
    /// Shortest and longest packet the source's config knows (a length outside is garbage).
    pub min_len: usize,
    pub max_len: usize,
}

/// Why bytes were not a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// Bytes between packets: garbage, a cut packet, or (sync and length framings, which
    /// resynchronise by trying each byte) a packet whose CRC failed.
    Unframed,
    /// A COBS or SLIP frame whose CRC failed.
    BadCrc,
    /// A COBS or SLIP frame that does not decode, or is longer than any packet.
    BadEncoding,
}

/// What the deframer hands out: a packet, or rejected bytes as they came.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece<'a> {
    Packet(&'a [u8]),
    Rejected(&'a [u8], Reject),
}

pub struct Deframer {
    f: Framing,
    buf: Vec<u8>,
    garbage: Vec<u8>,
    scratch: Vec<u8>,
}

impl Deframer {
    pub fn new(f: Framing) -> Deframer {
        Deframer {
            f,
            buf: Vec::new(),
            garbage: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// Bytes held: an incomplete packet, or garbage not yet handed out.
    pub fn pending(&self) -> usize {
        self.buf.len() + self.garbage.len()
    }

    /// Takes `data` and hands `out` every packet and rejected run it completes, in stream order.
    pub fn push(&mut self, data: &[u8], out: &mut dyn FnMut(Piece<'_>)) {
        self.buf.extend_from_slice(data);
        match self.f.kind.clone() {
            Kind::Sync { word, size } => self.sync(&word, size, out),
            Kind::Length { bytes, big } => self.length(bytes, big, out),
            Kind::Cobs => self.delimited(0x00, out),
            Kind::Slip => self.delimited(SLIP_END, out),
        }
        if self.garbage.len() >= MAX_GARBAGE {
            self.flush_garbage(out);
        }
    }

    /// Hands out what is held as rejected bytes (the stream ended or went quiet): garbage, and
    /// the start of a packet that never completed.
    ///
    /// A sync or length framing may be waiting for the rest of a packet whose start was really
    /// garbage, with good packets behind it: with no more bytes coming, each such start is
    /// given up in turn, so those packets still come out.
    pub fn finish(&mut self, out: &mut dyn FnMut(Piece<'_>)) {
        while !self.buf.is_empty() {
            self.skip(1);
            self.push(&[], out);
        }
        self.flush_garbage(out);
    }

    /// Hands out the garbage held (the stream went quiet): an incomplete packet stays.
    pub fn flush_garbage(&mut self, out: &mut dyn FnMut(Piece<'_>)) {
        for chunk in self.garbage.chunks(MAX_GARBAGE) {
            out(Piece::Rejected(chunk, Reject::Unframed));
        }
        self.garbage.clear();
    }

    /// Moves the first `n` bytes of the buffer to the garbage.
    fn skip(&mut self, n: usize) {
        self.garbage.extend_from_slice(&self.buf[..n]);
        self.buf.drain(..n);
    }

    fn sync(&mut self, word: &[u8], size: usize, out: &mut dyn FnMut(Piece<'_>)) {
        let crc = self.f.crc.width();
        let need = word.len() + size + crc;
        loop {
            let Some(at) = find(&self.buf, word) else {
                // Keep what could be the start of a sync word cut by the read.
                let keep = (word.len() - 1).min(self.buf.len());
                self.skip(self.buf.len() - keep);
                return;
            };
            self.skip(at);
            if self.buf.len() < need {
                return;
            }
            let frame = &self.buf[word.len()..need];
            let good = if crc > 0 {
                self.f.crc.check(frame, self.f.crc_big)
            } else {
                // No CRC: a sync word inside this frame where the next one should follow
                // means this packet was cut short (a dropped byte); the next one starts there.
                let end = self.buf.len().min(need + word.len() - 1);
                let next_ok =
                    self.buf.len() < need + word.len() || self.buf[need..].starts_with(word);
                next_ok || find(&self.buf[1..end], word).is_none()
            };
            if !good {
                self.skip(1);
                continue;
            }
            self.flush_garbage(out);
            out(Piece::Packet(&self.buf[word.len()..word.len() + size]));
            self.buf.drain(..need);
        }
    }

    fn length(&mut self, bytes: usize, big: bool, out: &mut dyn FnMut(Piece<'_>)) {
        let crc = self.f.crc.width();
        while self.buf.len() >= bytes {
            let field = &self.buf[..bytes];
            let len = if big {
                field.iter().fold(0usize, |v, &b| v << 8 | b as usize)
            } else {
                field.iter().rev().fold(0usize, |v, &b| v << 8 | b as usize)
            };
            if len < self.f.min_len || len > self.f.max_len {
                self.skip(1);
                continue;
            }
            let need = bytes + len + crc;
            if self.buf.len() < need {
                return;
            }
            // The CRC covers the length field and the packet.
            if crc > 0 && !self.f.crc.check(&self.buf[..need], self.f.crc_big) {
                self.skip(1);
                continue;
            }
            self.flush_garbage(out);
            out(Piece::Packet(&self.buf[bytes..bytes + len]));
            self.buf.drain(..need);
        }
    }

    fn delimited(&mut self, end: u8, out: &mut dyn FnMut(Piece<'_>)) {
        let crc = self.f.crc.width();
        // The longest encoded frame: COBS adds one byte per 254; SLIP at most doubles.
        let longest = 2 * (self.f.max_len + crc) + 2;
        let mut start = 0;
        while let Some(rel) = self.buf[start..].iter().position(|&b| b == end) {
            let raw = start..start + rel;
            start += rel + 1;
            if raw.is_empty() {
                continue; // back-to-back delimiters (SLIP sends one before each packet too)
            }
            self.flush_garbage(out);
            let chunk = &self.buf[raw];
            self.scratch.clear();
            let decoded = match self.f.kind {
                Kind::Cobs => cobs_decode(chunk, &mut self.scratch),
                _ => slip_decode(chunk, &mut self.scratch),
            };
            let len = self.scratch.len();
            let fits = len >= crc + self.f.min_len.max(1) && len <= self.f.max_len + crc;
            let verdict = if !decoded || !fits {
                Err(Reject::BadEncoding)
            } else if crc > 0 && !self.f.crc.check(&self.scratch, self.f.crc_big) {
                Err(Reject::BadCrc)
            } else {
                Ok(())
            };
            match verdict {
                Ok(()) => out(Piece::Packet(&self.scratch[..self.scratch.len() - crc])),
                Err(why) => out(Piece::Rejected(chunk, why)),
            }
        }
        self.buf.drain(..start);
        if self.buf.len() > longest {
            // No delimiter where one must have come: garbage, kept as such.
            let n = self.buf.len();
            self.skip(n);
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

const SLIP_END: u8 = 0xC0;
const SLIP_ESC: u8 = 0xDB;
const SLIP_ESC_END: u8 = 0xDC;
const SLIP_ESC_ESC: u8 = 0xDD;

fn slip_decode(chunk: &[u8], out: &mut Vec<u8>) -> bool {
    let mut esc = false;
    for &b in chunk {
        if esc {
            match b {
                SLIP_ESC_END => out.push(SLIP_END),
                SLIP_ESC_ESC => out.push(SLIP_ESC),
                _ => return false,
            }
            esc = false;
        } else if b == SLIP_ESC {
            esc = true;
        } else {
            out.push(b);
        }
    }
    !esc
}

fn cobs_decode(chunk: &[u8], out: &mut Vec<u8>) -> bool {
    let mut i = 0;
    while i < chunk.len() {
        let code = chunk[i] as usize;
        if code == 0 || i + code > chunk.len() {
            return false;
        }
        out.extend_from_slice(&chunk[i + 1..i + code]);
        i += code;
        if code < 0xFF && i < chunk.len() {
            out.push(0);
        }
    }
    true
}

fn cobs_encode(data: &[u8], out: &mut Vec<u8>) {
    let mut code_at = out.len();
    out.push(0);
    let mut code = 1u8;
    for &b in data {
        if b == 0 {
            out[code_at] = code;
            code_at = out.len();
            out.push(0);
            code = 1;
        } else {
            out.push(b);
            code += 1;
            if code == 0xFF {
                out[code_at] = code;
                code_at = out.len();
                out.push(0);
                code = 1;
            }
        }
    }
    out[code_at] = code;
}

/// Frames `packet` as `f` says, appending to `out`. Err when the framing cannot carry it (a
/// sync framing's size, or a length that does not fit its field).
pub fn encode(f: &Framing, packet: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    if packet.len() > MAX_PACKET {
        return Err(format!(
            "a packet of {} bytes is longer than {MAX_PACKET}",
            packet.len()
        ));
    }
    match &f.kind {
        Kind::Sync { word, size } => {
            if packet.len() != *size {
                return Err(format!(
                    "a {}-byte packet in a sync framing of size {size}",
                    packet.len()
                ));
            }
            out.extend_from_slice(word);
            out.extend_from_slice(packet);
            f.crc.put(packet, f.crc_big, out);
        }
        Kind::Length { bytes, big } => {
            if packet.len() >= 1usize << (8 * bytes) {
                return Err(format!(
                    "a {}-byte packet does not fit a {bytes}-byte length",
                    packet.len()
                ));
            }
            let start = out.len();
            let len = (packet.len() as u64).to_be_bytes();
            let field = &len[8 - bytes..];
            if *big {
                out.extend_from_slice(field);
            } else {
                out.extend(field.iter().rev());
            }
            out.extend_from_slice(packet);
            let covered = out[start..].to_vec();
            f.crc.put(&covered, f.crc_big, out);
        }
        Kind::Cobs => {
            let mut body = packet.to_vec();
            f.crc.put(packet, f.crc_big, &mut body);
            // A delimiter before the packet too (as SLIP's END): garbage on the line before
            // it then ends there, and never costs this packet.
            out.push(0);
            cobs_encode(&body, out);
            out.push(0);
        }
        Kind::Slip => {
            let mut body = packet.to_vec();
            f.crc.put(packet, f.crc_big, &mut body);
            out.push(SLIP_END);
            for b in body {
                match b {
                    SLIP_END => out.extend_from_slice(&[SLIP_ESC, SLIP_ESC_END]),
                    SLIP_ESC => out.extend_from_slice(&[SLIP_ESC, SLIP_ESC_ESC]),
                    _ => out.push(b),
                }
            }
            out.push(SLIP_END);
        }
    }
    Ok(())
}

/// CRC-16/CCITT-FALSE.
pub fn crc16_ccitt(data: &[u8]) -> u16 {
    let mut crc = 0xFFFFu16;
    for &b in data {
        crc ^= (b as u16) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                crc << 1 ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// CRC-32C (Castagnoli), as iSCSI and the log format use it.
pub fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                crc >> 1 ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[cfg(all(test, not(loom)))]
#[path = "framing_tests.rs"]
mod tests;
