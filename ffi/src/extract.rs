//! Decom's hot path in one native call per receive batch: cut every measurement out of every
//! identified packet per an extraction table, publish it to each attached reader's channel,
//! and ring each reader's doorbell at most once for the whole batch.
//!
//! Which packet a datagram is (port, id field, length) is decided by the TypeScript side,
//! which passes one packet-type index per datagram; this module only copies bytes.

use crate::broadcast::BroadcastWriter;
use crate::error::{Error, Result};
use crate::segment::SegmentWriter;
use crate::udp::META_LEN;
use std::rc::Rc;

/// Marks "no channel for this measurement on this link" and "skip this datagram".
pub const NONE: u32 = u32::MAX;

/// One measurement's bytes within one packet type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    pub packet: u32,
    pub measurement: u32,
    pub offset: u32,
    pub len: u32,
}

struct Link {
    writer: Rc<SegmentWriter>,
    /// Channel of each measurement on this link, or NONE.
    channel_of: Vec<u32>,
}

/// The source's broadcast segment: every value for direct readers, every datagram in its ring.
struct Broadcast {
    writer: Rc<BroadcastWriter>,
    /// Channel of each measurement in it, or NONE.
    channel_of: Vec<u32>,
}

/// The latest value of a measurement published without a packet (decom's health values).
struct Value {
    bytes: Vec<u8>,
    timestamp_ns: u64,
}

pub struct Extractor {
    /// Fields of each packet type, in packet order.
    by_packet: Vec<Vec<Field>>,
    /// Bytes a datagram must have for each packet type's fields to be inside it.
    needs: Vec<usize>,
    /// Publishes so far of each measurement: its sequence number.
    seq: Vec<u64>,
    /// A copy of the last datagram of each packet type and its timestamp, so a reader that
    /// attaches later starts from the current values instead of waiting for the next packet.
    last_packet: Vec<Option<(Vec<u8>, u64)>>,
    last_value: Vec<Option<Value>>,
    links: Vec<Link>,
    broadcast: Option<Broadcast>,
}

impl Extractor {
    pub fn new(fields: &[Field], packets: usize, measurements: usize) -> Result<Extractor> {
        let mut by_packet = vec![Vec::new(); packets];
        let mut needs = vec![0usize; packets];
        for f in fields {
            if f.packet as usize >= packets || f.measurement as usize >= measurements {
                return Err(Error::arg(format!(
                    "extraction field {f:?} names a packet or measurement past the {packets} packets / {measurements} measurements"
                )));
            }
            let end = f.offset as usize + f.len as usize;
            needs[f.packet as usize] = needs[f.packet as usize].max(end);
            by_packet[f.packet as usize].push(*f);
        }
        Ok(Extractor {
            by_packet,
            needs,
            seq: vec![0; measurements],
            last_packet: vec![None; packets],
            last_value: (0..measurements).map(|_| None).collect(),
            links: Vec::new(),
            broadcast: None,
        })
    }

    pub fn measurements(&self) -> usize {
        self.seq.len()
    }

    /// Attaches a reader's segment: `channel_of[m]` is measurement m's channel in it (or
    /// NONE). Publishes the latest known value of each of its measurements right away.
    pub fn add_link(&mut self, writer: Rc<SegmentWriter>, channel_of: &[u32]) -> Result<()> {
        if channel_of.len() != self.seq.len() {
            return Err(Error::arg(format!(
                "link map has {} entries; the extractor has {} measurements",
                channel_of.len(),
                self.seq.len()
            )));
        }
        let largest = self.largest_field();
        for (m, &ch) in channel_of.iter().enumerate() {
            if ch == NONE {
                continue;
            }
            let Some(cap) = writer.capacity(ch as usize) else {
                return Err(Error::arg(format!(
                    "measurement {m} maps to channel {ch}, past the segment's {} channels",
                    writer.channels()
                )));
            };
            if (cap as usize) < largest[m] {
                return Err(Error::arg(format!(
                    "channel {ch} holds {cap} bytes but measurement {m} needs {}",
                    largest[m]
                )));
            }
        }
        let link = Link {
            writer,
            channel_of: channel_of.to_vec(),
        };
        self.replay_latest(&link);
        link.writer.ring_if_owed()?;
        self.links.push(link);
        Ok(())
    }

    /// Sets the broadcast segment every value and every datagram also go to (replacing any
    /// earlier one): `channel_of[m]` is measurement m's channel in it (or NONE). Values
    /// already known are published to it at once.
    pub fn set_broadcast(&mut self, writer: Rc<BroadcastWriter>, channel_of: &[u32]) -> Result<()> {
        if channel_of.len() != self.seq.len() {
            return Err(Error::arg(format!(
                "broadcast map has {} entries; the extractor has {} measurements",
                channel_of.len(),
                self.seq.len()
            )));
        }
        let largest = self.largest_field();
        for (m, &ch) in channel_of.iter().enumerate() {
            if ch == NONE {
                continue;
            }
            match writer.capacity(ch as usize) {
                Some(cap) if cap as usize >= largest[m] => {}
                _ => {
                    return Err(Error::arg(format!(
                        "broadcast channel {ch} cannot hold measurement {m} ({} bytes)",
                        largest[m]
                    )))
                }
            }
        }
        self.broadcast = Some(Broadcast {
            writer,
            channel_of: channel_of.to_vec(),
        });
        for (m, v) in self.last_value.iter().enumerate() {
            if let Some(v) = v {
                self.publish_broadcast(m, &v.bytes, self.seq[m], v.timestamp_ns);
            }
        }
        Ok(())
    }

    #[inline]
    fn publish_broadcast(&self, m: usize, bytes: &[u8], seq: u64, timestamp_ns: u64) {
        if let Some(b) = &self.broadcast {
            let ch = b.channel_of[m];
            if ch != NONE {
                // Capacity was checked in set_broadcast, so this cannot fail.
                let _ = b
                    .writer
                    .publish_quiet(ch as usize, bytes, seq, timestamp_ns);
            }
        }
    }

    fn largest_field(&self) -> Vec<usize> {
        let mut largest = vec![0usize; self.seq.len()];
        for f in self.by_packet.iter().flatten() {
            let m = f.measurement as usize;
            largest[m] = largest[m].max(f.len as usize);
        }
        largest
    }

    /// Publishes the last value of every measurement `link` carries, oldest packet first so
    /// a measurement carried by several packet types ends with its newest value.
    fn replay_latest(&self, link: &Link) {
        let mut order: Vec<usize> = (0..self.last_packet.len())
            .filter(|&p| self.last_packet[p].is_some())
            .collect();
        order.sort_by_key(|&p| self.last_packet[p].as_ref().map(|(_, ts)| *ts));
        for p in order {
            let (data, ts) = self.last_packet[p].as_ref().expect("filtered above");
            for f in &self.by_packet[p] {
                let ch = link.channel_of[f.measurement as usize];
                if ch != NONE {
                    let bytes = &data[f.offset as usize..(f.offset + f.len) as usize];
                    // Capacity was checked in add_link.
                    let _ = link.writer.publish_quiet(
                        ch as usize,
                        bytes,
                        self.seq[f.measurement as usize],
                        *ts,
                    );
                }
            }
        }
        for (m, v) in self.last_value.iter().enumerate() {
            if let (Some(v), ch) = (v, link.channel_of[m]) {
                if ch != NONE {
                    let _ = link.writer.publish_quiet(
                        ch as usize,
                        &v.bytes,
                        self.seq[m],
                        v.timestamp_ns,
                    );
                }
            }
        }
    }

    /// Detaches every link writing to `writer`; returns how many.
    pub fn remove_link(&mut self, writer: &SegmentWriter) -> usize {
        let before = self.links.len();
        self.links
            .retain(|l| !std::ptr::eq(Rc::as_ptr(&l.writer), writer));
        before - self.links.len()
    }

    /// Publishes every field of one datagram of packet type `packet` to every link, without
    /// ringing. The datagram must be at least as long as the packet type's fields need.
    #[inline]
    pub fn publish_packet(
        &mut self,
        packet: usize,
        data: &[u8],
        timestamp_ns: u64,
    ) -> Result<usize> {
        self.publish_newest(packet, data, timestamp_ns, 1)
    }

    /// Publishes the newest of `count` datagrams of packet type `packet` received together:
    /// sequence numbers advance by `count`, so readers count the others as skipped.
    fn publish_newest(
        &mut self,
        packet: usize,
        data: &[u8],
        timestamp_ns: u64,
        count: u64,
    ) -> Result<usize> {
        let Some(fields) = self.by_packet.get(packet) else {
            return Err(Error::arg(format!("packet type {packet} does not exist")));
        };
        if data.len() < self.needs[packet] {
            return Err(Error::arg(format!(
                "a {}-byte datagram is too short for packet type {packet} ({} bytes)",
                data.len(),
                self.needs[packet]
            )));
        }
        for f in fields {
            let m = f.measurement as usize;
            self.seq[m] += count;
            let bytes = &data[f.offset as usize..(f.offset + f.len) as usize];
            for link in &self.links {
                let ch = link.channel_of[m];
                if ch != NONE {
                    // Capacity was checked in add_link, so this cannot fail.
                    let _ =
                        link.writer
                            .publish_quiet(ch as usize, bytes, self.seq[m], timestamp_ns);
                }
            }
            self.publish_broadcast(m, bytes, self.seq[m], timestamp_ns);
        }
        match &mut self.last_packet[packet] {
            Some((copy, ts)) => {
                copy.clear();
                copy.extend_from_slice(data);
                *ts = timestamp_ns;
            }
            slot => *slot = Some((data.to_vec(), timestamp_ns)),
        }
        Ok(fields.len())
    }

    /// Publishes one value of a measurement that no packet carries (decom's health), to
    /// every link that has it, without ringing.
    pub fn publish_value(
        &mut self,
        measurement: usize,
        bytes: &[u8],
        timestamp_ns: u64,
    ) -> Result<()> {
        if measurement >= self.seq.len() {
            return Err(Error::arg(format!(
                "measurement {measurement} does not exist"
            )));
        }
        self.seq[measurement] += 1;
        for link in &self.links {
            let ch = link.channel_of[measurement];
            if ch != NONE {
                link.writer.publish_quiet(
                    ch as usize,
                    bytes,
                    self.seq[measurement],
                    timestamp_ns,
                )?;
            }
        }
        self.publish_broadcast(measurement, bytes, self.seq[measurement], timestamp_ns);
        self.last_value[measurement] = Some(Value {
            bytes: bytes.to_vec(),
            timestamp_ns,
        });
        Ok(())
    }

    /// Rings the doorbell of every link that owes one, and the broadcast bells some reader may
    /// sleep on. Returns how many rang.
    pub fn flush(&self) -> Result<usize> {
        let mut rang = match &self.broadcast {
            Some(b) => b.writer.flush()?,
            None => 0,
        };
        for link in &self.links {
            if link.writer.ring_if_owed()? {
                rang += 1;
            }
        }
        Ok(rang)
    }

    /// Publishes a whole receive batch: datagram `i` (in `buf` at `i * slot`, metadata in
    /// `meta` as written by `udp::Batch::recv`) is of packet type `types[i]`, or NONE to skip.
    /// Every datagram, identified or not, also goes to the broadcast ring (received on
    /// `port`). Rings each link and bell at most once. Returns the values decoded.
    ///
    /// Each packet type is published once per batch, with its newest datagram: a channel holds
    /// the latest value, and values overwritten within one call could never be seen by a
    /// reader that wakes after the call. Sequence numbers still count every datagram, so
    /// readers see the others as skipped (every datagram is in the raw log). Under load this
    /// saves most of the publishes and the cache-line traffic with an awake reader.
    pub fn publish_batch(
        &mut self,
        buf: &[u8],
        slot: usize,
        meta: &[u8],
        types: &[u32],
        port: u16,
    ) -> Result<usize> {
        let n = types.len();
        if slot == 0 || n * slot > buf.len() || n * META_LEN > meta.len() {
            return Err(Error::arg(
                "publish_batch: more datagrams than the buffers hold",
            ));
        }
        if let Some(b) = &self.broadcast {
            b.writer.append_batch(buf, slot, meta, types, port)?;
        }
        // The newest datagram of each packet type in the batch, and how many there were.
        let mut seen: Vec<(usize, usize, u64)> = Vec::new(); // (packet, newest index, count)
        for (i, &t) in types.iter().enumerate() {
            if t == NONE {
                continue;
            }
            match seen.iter_mut().find(|(p, _, _)| *p == t as usize) {
                Some(entry) => {
                    entry.1 = i;
                    entry.2 += 1;
                }
                None => seen.push((t as usize, i, 1)),
            }
        }
        // Oldest newest-datagram first, so a measurement several packet types carry ends with
        // the value that arrived last.
        seen.sort_unstable_by_key(|&(_, i, _)| i);
        let mut decoded = 0;
        for (packet, i, count) in seen {
            let m = &meta[i * META_LEN..(i + 1) * META_LEN];
            let len = (u32::from_le_bytes(m[0..4].try_into().unwrap()) as usize).min(slot);
            let ts = u64::from_le_bytes(m[8..16].try_into().unwrap());
            let fields = self.publish_newest(packet, &buf[i * slot..i * slot + len], ts, count)?;
            decoded += fields * count as usize;
        }
        self.flush()?;
        Ok(decoded)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn batch_publishes_fields_and_rings_once() {
        // Packet 0: m0 at 0..2, m1 at 2..6. Packet 1: m2 at 1..2.
        let fields = [
            Field {
                packet: 0,
                measurement: 0,
                offset: 0,
                len: 2,
            },
            Field {
                packet: 0,
                measurement: 1,
                offset: 2,
                len: 4,
            },
            Field {
                packet: 1,
                measurement: 2,
                offset: 1,
                len: 1,
            },
        ];
        let mut ex = Extractor::new(&fields, 2, 3).unwrap();
        let w = Rc::new(SegmentWriter::create(&[2, 4, 1], &[0, 1, 2]).unwrap());
        let r = crate::segment::test_reader(&w);
        ex.add_link(w.clone(), &[0, 1, 2]).unwrap();
        let slot = 16;
        let mut buf = vec![0u8; 3 * slot];
        buf[..6].copy_from_slice(&[1, 2, 3, 4, 5, 6]);
        buf[slot..slot + 6].copy_from_slice(&[9, 9, 9, 9, 9, 9]);
        buf[2 * slot..2 * slot + 2].copy_from_slice(&[0, 7]);
        let mut meta = vec![0u8; 3 * META_LEN];
        for (i, len) in [6u32, 6, 2].iter().enumerate() {
            meta[i * META_LEN..i * META_LEN + 4].copy_from_slice(&len.to_le_bytes());
            meta[i * META_LEN + 8..i * META_LEN + 16]
                .copy_from_slice(&(100 + i as u64).to_le_bytes());
        }
        let n = ex
            .publish_batch(&buf, slot, &meta, &[0, NONE, 1], 0)
            .unwrap();
        assert_eq!(n, 3);
        assert_eq!(w.stats().rings, 1);
        let (h, p) = r.take(1).unwrap().unwrap();
        assert_eq!((p, h.seq, h.timestamp_ns), (&[3u8, 4, 5, 6][..], 1, 100));
        assert_eq!(r.take(2).unwrap().unwrap().1, &[7]);
    }

    #[test]
    fn a_batch_publishes_each_packet_type_once_with_its_newest_datagram() {
        let fields = [
            Field {
                packet: 0,
                measurement: 0,
                offset: 0,
                len: 1,
            },
            Field {
                packet: 1,
                measurement: 0,
                offset: 0,
                len: 1,
            },
        ];
        let mut ex = Extractor::new(&fields, 2, 1).unwrap();
        let w = Rc::new(SegmentWriter::create(&[1], &[0]).unwrap());
        let r = crate::segment::test_reader(&w);
        ex.add_link(w.clone(), &[0]).unwrap();
        let slot = 8;
        let buf: Vec<u8> = (0..5u8)
            .flat_map(|k| [10 + k, 0, 0, 0, 0, 0, 0, 0])
            .collect();
        let mut meta = vec![0u8; 5 * META_LEN];
        for i in 0..5 {
            meta[i * META_LEN..i * META_LEN + 4].copy_from_slice(&1u32.to_le_bytes());
        }
        // Packet 0, 0, 1, 0, 1: measurement 0 is published twice (once per type); the newest
        // datagram overall (index 4, packet 1) wins, and seq counts all five.
        let n = ex
            .publish_batch(&buf, slot, &meta, &[0, 0, 1, 0, 1], 0)
            .unwrap();
        assert_eq!(n, 5);
        assert_eq!(w.stats().publishes, 2);
        let (h, p) = r.take(0).unwrap().unwrap();
        assert_eq!((p, h.seq), (&[14u8][..], 5));
    }

    #[test]
    fn late_link_starts_from_latest_values() {
        let fields = [Field {
            packet: 0,
            measurement: 0,
            offset: 0,
            len: 1,
        }];
        let mut ex = Extractor::new(&fields, 1, 2).unwrap();
        ex.publish_packet(0, &[42], 5).unwrap();
        ex.publish_value(1, &[1, 2, 3], 6).unwrap();
        let w = Rc::new(SegmentWriter::create(&[1, 8], &[0, 1]).unwrap());
        let r = crate::segment::test_reader(&w);
        ex.add_link(w, &[0, 1]).unwrap();
        assert_eq!(r.take(0).unwrap().unwrap().1, &[42]);
        assert_eq!(r.take(1).unwrap().unwrap().1, &[1, 2, 3]);
    }

    #[test]
    fn short_datagram_is_refused_not_read_past() {
        let fields = [Field {
            packet: 0,
            measurement: 0,
            offset: 4,
            len: 4,
        }];
        let mut ex = Extractor::new(&fields, 1, 1).unwrap();
        assert!(ex.publish_packet(0, &[0; 7], 0).is_err());
    }
}
