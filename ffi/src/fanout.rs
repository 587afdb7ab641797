//! The broker's hot path in one native call per wake-up: take every channel of a source
//! segment that changed, copy each new value straight from shared memory into the channel of
//! every subscriber that follows it (honouring each subscriber's maximum rate), then ring
//! each subscriber's doorbell at most once.

use crate::error::{Error, Result};
use crate::segment::{SegmentReader, SegmentWriter};
use std::cell::Cell;
use std::rc::Rc;

struct Route {
    dst: Rc<SegmentWriter>,
    dst_channel: usize,
    /// Minimum time between two values sent on this route (0: no limit).
    min_interval_ns: u64,
    last_sent_ns: Cell<u64>,
    /// A newer value arrived too soon after the last one; send the latest when allowed.
    held: Cell<bool>,
}

impl Route {
    fn due(&self, now_ns: u64) -> bool {
        self.min_interval_ns == 0
            || self.last_sent_ns.get() == 0
            || now_ns.saturating_sub(self.last_sent_ns.get()) >= self.min_interval_ns
    }
}

pub struct Fanout {
    src: Rc<SegmentReader>,
    /// Routes of each source channel.
    routes: Vec<Vec<Route>>,
    /// Every distinct destination, to ring after a pump.
    dsts: Vec<Rc<SegmentWriter>>,
    held: Cell<usize>,
}

/// What one pump did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PumpResult {
    /// Values taken from the source.
    pub taken: usize,
    /// Values written into subscriber channels.
    pub copied: usize,
    /// When a held (rate-limited) value becomes due, in the caller's clock; 0 if none is held.
    pub next_due_ns: u64,
}

impl Fanout {
    pub fn new(src: Rc<SegmentReader>) -> Fanout {
        let n = src.channels();
        Fanout {
            src,
            routes: (0..n).map(|_| Vec::new()).collect(),
            dsts: Vec::new(),
            held: Cell::new(0),
        }
    }

    /// Routes source channel `src_channel` to `dst_channel` of `dst`, at most once per
    /// `min_interval_ns`. If the source already holds a value, it is sent right away.
    pub fn add_route(
        &mut self,
        src_channel: usize,
        dst: Rc<SegmentWriter>,
        dst_channel: usize,
        min_interval_ns: u64,
        now_ns: u64,
    ) -> Result<()> {
        let Some(src_cap) = self.src.capacity(src_channel) else {
            return Err(Error::arg(format!(
                "source channel {src_channel} does not exist ({} channels)",
                self.src.channels()
            )));
        };
        let Some(dst_cap) = dst.capacity(dst_channel) else {
            return Err(Error::arg(format!(
                "subscriber channel {dst_channel} does not exist ({} channels)",
                dst.channels()
            )));
        };
        if dst_cap < src_cap {
            return Err(Error::arg(format!(
                "subscriber channel {dst_channel} holds {dst_cap} bytes, source channel {src_channel} carries up to {src_cap}"
            )));
        }
        let route = Route {
            dst: dst.clone(),
            dst_channel,
            min_interval_ns,
            last_sent_ns: Cell::new(0),
            held: Cell::new(false),
        };
        if let Some((header, payload)) = self.src.current(src_channel) {
            if header.seq > 0 {
                dst.publish_quiet(dst_channel, payload, header.seq, header.timestamp_ns)?;
                route.last_sent_ns.set(now_ns);
                dst.ring_if_owed()?;
            }
        }
        self.routes[src_channel].push(route);
        if !self.dsts.iter().any(|d| Rc::ptr_eq(d, &dst)) {
            self.dsts.push(dst);
        }
        Ok(())
    }

    /// Removes every route to `dst`; returns how many.
    pub fn remove_dst(&mut self, dst: &SegmentWriter) -> usize {
        let mut removed = 0;
        let mut held = 0;
        for routes in &mut self.routes {
            let before = routes.len();
            routes.retain(|r| !std::ptr::eq(Rc::as_ptr(&r.dst), dst));
            removed += before - routes.len();
            held += routes.iter().filter(|r| r.held.get()).count();
        }
        self.held.set(held);
        self.dsts.retain(|d| !std::ptr::eq(Rc::as_ptr(d), dst));
        removed
    }

    pub fn routes(&self) -> usize {
        self.routes.iter().map(|r| r.len()).sum()
    }

    /// Takes whatever changed in the source and copies it to every route that is due; sends
    /// held values whose interval has passed; rings every destination that owes a ring.
    pub fn pump(&self, now_ns: u64) -> Result<PumpResult> {
        let mut copied = 0;
        let taken = self.src.take_pending(
            |_| true,
            |ch, header, payload| {
                for r in &self.routes[ch] {
                    if r.due(now_ns) {
                        // Capacity was checked when the route was added.
                        let _ = r.dst.publish_quiet(
                            r.dst_channel,
                            payload,
                            header.seq,
                            header.timestamp_ns,
                        );
                        r.last_sent_ns.set(now_ns);
                        if r.held.replace(false) {
                            self.held.set(self.held.get() - 1);
                        }
                        copied += 1;
                    } else if !r.held.replace(true) {
                        self.held.set(self.held.get() + 1);
                    }
                }
            },
        );
        let mut next_due_ns = 0;
        if self.held.get() > 0 {
            for (ch, routes) in self.routes.iter().enumerate() {
                for r in routes.iter().filter(|r| r.held.get()) {
                    if r.due(now_ns) {
                        if let Some((header, payload)) = self.src.current(ch) {
                            let _ = r.dst.publish_quiet(
                                r.dst_channel,
                                payload,
                                header.seq,
                                header.timestamp_ns,
                            );
                            copied += 1;
                        }
                        r.last_sent_ns.set(now_ns);
                        r.held.set(false);
                        self.held.set(self.held.get() - 1);
                    } else {
                        let due = r.last_sent_ns.get() + r.min_interval_ns;
                        if next_due_ns == 0 || due < next_due_ns {
                            next_due_ns = due;
                        }
                    }
                }
            }
        }
        for d in &self.dsts {
            d.ring_if_owed()?;
        }
        Ok(PumpResult {
            taken,
            copied,
            next_due_ns,
        })
    }

    pub fn source(&self) -> &SegmentReader {
        &self.src
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn copies_to_every_subscriber_and_rings_each_once() {
        let decom = SegmentWriter::create(&[8, 8], &[10, 11]).unwrap();
        let mut f = Fanout::new(Rc::new(crate::segment::test_reader(&decom)));
        let subs: Vec<Rc<SegmentWriter>> = (0..3)
            .map(|_| Rc::new(SegmentWriter::create(&[8, 8], &[10, 11]).unwrap()))
            .collect();
        let readers: Vec<SegmentReader> = subs
            .iter()
            .map(|s| crate::segment::test_reader(s))
            .collect();
        for s in &subs {
            f.add_route(0, s.clone(), 0, 0, 1).unwrap();
            f.add_route(1, s.clone(), 1, 0, 1).unwrap();
        }
        decom.publish_quiet(0, b"a", 1, 7).unwrap();
        decom.publish_quiet(1, b"b", 1, 7).unwrap();
        decom.ring_if_owed().unwrap();
        let res = f.pump(2).unwrap();
        assert_eq!((res.taken, res.copied), (2, 6));
        for (s, r) in subs.iter().zip(&readers) {
            assert_eq!(s.stats().rings, 1);
            assert_eq!(r.take(0).unwrap().unwrap().1, b"a");
            assert_eq!(r.take(1).unwrap().unwrap().1, b"b");
        }
        assert_eq!(f.remove_dst(&subs[1]), 2);
        assert_eq!(f.routes(), 4);
    }

    #[test]
    fn rate_limit_holds_then_delivers_latest() {
        let decom = SegmentWriter::create(&[8], &[0]).unwrap();
        let mut f = Fanout::new(Rc::new(crate::segment::test_reader(&decom)));
        let sub = Rc::new(SegmentWriter::create(&[8], &[0]).unwrap());
        let r = crate::segment::test_reader(&sub);
        f.add_route(0, sub.clone(), 0, 1000, 0).unwrap();
        decom.publish(0, b"1", 1, 0).unwrap();
        f.pump(100).unwrap();
        assert_eq!(r.take(0).unwrap().unwrap().1, b"1");
        decom.publish(0, b"2", 2, 0).unwrap();
        decom.publish(0, b"3", 3, 0).unwrap();
        let res = f.pump(500).unwrap();
        assert_eq!(res.copied, 0);
        assert_eq!(res.next_due_ns, 1100);
        assert!(r.take(0).unwrap().is_none());
        let res = f.pump(1100).unwrap();
        assert_eq!((res.copied, res.next_due_ns), (1, 0));
        let (h, p) = r.take(0).unwrap().unwrap();
        assert_eq!((p, h.seq, h.skipped), (&b"3"[..], 3, 1));
    }

    #[test]
    fn late_subscriber_gets_current_value() {
        let decom = SegmentWriter::create(&[8], &[0]).unwrap();
        let src = Rc::new(crate::segment::test_reader(&decom));
        let mut f = Fanout::new(src);
        decom.publish(0, b"x", 5, 0).unwrap();
        f.pump(1).unwrap();
        let sub = Rc::new(SegmentWriter::create(&[8], &[0]).unwrap());
        let r = crate::segment::test_reader(&sub);
        f.add_route(0, sub, 0, 0, 2).unwrap();
        assert_eq!(r.take(0).unwrap().unwrap().1, b"x");
    }
}
