//! Waitsets: one epoll set over every descriptor a process waits on (doorbells, sockets), so
//! a process makes one blocking wait at a time however many channels it serves. A waitset can
//! be woken from another thread (`cancel`), which is how a pending wait on Deno's blocking
//! pool is ended when its owner shuts down.

use crate::broadcast::BellWatch;
use crate::error::{Error, Result};
use crate::segment::ControlWords;
use crate::sys;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

/// Readiness bits reported with each token.
pub mod events {
    /// Data to read (or a doorbell rang).
    pub const READABLE: u32 = 1;
    /// Room to write.
    pub const WRITABLE: u32 = 2;
    /// The peer hung up or the descriptor failed.
    pub const HANGUP: u32 = 4;
}

/// Token reported for the internal cancel eventfd; never handed to callers.
const CANCEL_TOKEN: u64 = u64::MAX;

pub struct Waitset {
    epoll: OwnedFd,
    cancel: OwnedFd,
    /// The last failed wait's error, kept here because a wait may run on another thread than
    /// the one that reads its result.
    last_error: std::sync::Mutex<Option<Error>>,
    /// Segment readers whose doorbells are in the set: each wait clears their awake words and
    /// re-checks them before sleeping, and sets them again after (see `protocol`).
    readers: std::sync::Mutex<Vec<Sleeper>>,
    /// Broadcast bells in the set (edge-triggered, never read): each wait counts this process
    /// as a sleeper on them and re-checks their generations before sleeping (see
    /// `broadcast_protocol`).
    bells: std::sync::Mutex<Vec<BellSleeper>>,
}

#[derive(Clone)]
struct BellSleeper {
    fd: std::os::fd::RawFd,
    token: u32,
    watch: BellWatch,
}

#[derive(Clone)]
struct Sleeper {
    /// The doorbell's number as the owner knows it (to match `remove`).
    fd: std::os::fd::RawFd,
    /// Our own duplicate of it, for draining: a wait in progress on another thread keeps it
    /// open even if the owner removes and closes the reader meanwhile, so a reused number
    /// is never read by mistake.
    doorbell: std::sync::Arc<OwnedFd>,
    token: u32,
    words: ControlWords,
}

/// One ready descriptor: the caller's token and the readiness bits (`events::*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ready {
    pub token: u32,
    pub events: u32,
}

impl Waitset {
    pub fn new() -> Result<Waitset> {
        // SAFETY: plain syscall with a constant flag.
        let epoll = sys::own(
            unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) },
            "epoll_create1 failed",
        )?;
        let cancel = sys::eventfd()?;
        let ws = Waitset {
            epoll,
            cancel,
            last_error: std::sync::Mutex::new(None),
            readers: std::sync::Mutex::new(Vec::new()),
            bells: std::sync::Mutex::new(Vec::new()),
        };
        ws.ctl(
            libc::EPOLL_CTL_ADD,
            ws.cancel.as_fd(),
            CANCEL_TOKEN,
            libc::EPOLLIN as u32,
        )?;
        Ok(ws)
    }

    fn ctl(&self, op: libc::c_int, fd: BorrowedFd<'_>, data: u64, events: u32) -> Result<()> {
        let mut ev = libc::epoll_event { events, u64: data };
        // SAFETY: `ev` is a valid epoll_event; both descriptors are valid for this call.
        let ret = unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), op, fd.as_raw_fd(), &mut ev) };
        sys::check(ret, "epoll_ctl failed")?;
        Ok(())
    }

    fn interest(interest: u32) -> u32 {
        let mut ev = libc::EPOLLRDHUP as u32;
        if interest & events::READABLE != 0 {
            ev |= libc::EPOLLIN as u32;
        }
        if interest & events::WRITABLE != 0 {
            ev |= libc::EPOLLOUT as u32;
        }
        ev
    }

    /// Watches `fd` for `interest` (`events::READABLE` and/or `WRITABLE`; hang-ups are always
    /// reported), reporting it as `token`. Level-triggered: a descriptor stays ready until
    /// drained.
    pub fn add(&self, fd: BorrowedFd<'_>, token: u32, interest: u32) -> Result<()> {
        self.ctl(
            libc::EPOLL_CTL_ADD,
            fd,
            token as u64,
            Self::interest(interest),
        )
    }

    /// Changes what `fd` is watched for.
    pub fn modify(&self, fd: BorrowedFd<'_>, token: u32, interest: u32) -> Result<()> {
        self.ctl(
            libc::EPOLL_CTL_MOD,
            fd,
            token as u64,
            Self::interest(interest),
        )
    }

    /// Watches a segment reader's doorbell as `token`, and lets the writer skip its signals
    /// while this process is awake: every wait tells the segment when it sleeps.
    pub fn add_reader(
        &self,
        doorbell: BorrowedFd<'_>,
        token: u32,
        words: ControlWords,
    ) -> Result<()> {
        self.add(doorbell, token, events::READABLE)?;
        let mut readers = self.readers.lock().unwrap_or_else(|e| e.into_inner());
        let own = doorbell
            .try_clone_to_owned()
            .map_err(|e| Error::from_io("duplicating a doorbell descriptor failed", e))?;
        readers.retain(|r| r.fd != doorbell.as_raw_fd());
        words.set_drained_by_waitset(true);
        readers.push(Sleeper {
            fd: doorbell.as_raw_fd(),
            doorbell: std::sync::Arc::new(own),
            token,
            words,
        });
        Ok(())
    }

    /// Watches a broadcast bell as `token`, edge-triggered: every ring of the writer reports
    /// it once to every waitset that watches it, and nothing ever reads the eventfd (a read
    /// would take the wake-up from the other readers). Each wait counts this process as asleep
    /// on the bell and re-checks before sleeping, so the writer rings only when needed.
    pub fn add_bell(&self, bell: BorrowedFd<'_>, token: u32, watch: BellWatch) -> Result<()> {
        self.ctl(
            libc::EPOLL_CTL_ADD,
            bell,
            token as u64,
            (libc::EPOLLIN | libc::EPOLLET) as u32,
        )?;
        let mut bells = self.bells.lock().unwrap_or_else(|e| e.into_inner());
        bells.retain(|b| b.fd != bell.as_raw_fd());
        bells.push(BellSleeper {
            fd: bell.as_raw_fd(),
            token,
            watch,
        });
        Ok(())
    }

    /// Stops watching `fd` (and forgets it as a reader's doorbell). Closing a descriptor also
    /// removes it from the set, but not from the readers: remove before closing.
    pub fn remove(&self, fd: BorrowedFd<'_>) -> Result<()> {
        self.readers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|r| {
                let keep = r.fd != fd.as_raw_fd();
                if !keep {
                    r.words.set_drained_by_waitset(false);
                }
                keep
            });
        self.bells
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|b| b.fd != fd.as_raw_fd());
        self.ctl(libc::EPOLL_CTL_DEL, fd, 0, 0)
    }

    /// Blocks until something is ready, `timeout_ms` passes (negative: forever), or another
    /// thread calls [`Waitset::cancel`]. Fills `out` and returns how many are ready; zero on
    /// timeout, cancel or signal interruption (callers loop).
    pub fn wait(&self, out: &mut [Ready], timeout_ms: i32) -> Result<usize> {
        if out.is_empty() {
            return Err(Error::arg("waitset wait needs room for at least one event"));
        }
        const MAX: usize = 256;
        let cap = out.len().min(MAX);
        let mut evs = [libc::epoll_event { events: 0, u64: 0 }; MAX];
        // Copied out so add/remove on another thread never wait for this wait.
        let readers = self
            .readers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        // Drain each reader's doorbell, then let its writer know it may sleep, then re-check
        // (see `protocol`); readers with work already waiting are reported without sleeping.
        let bells = self.bells.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut busy: Vec<u32> = readers
            .iter()
            .filter(|r| {
                sys::eventfd_drain(r.doorbell.as_fd());
                r.words.prepare_to_sleep()
            })
            .map(|r| r.token)
            .collect();
        // Every bell's sleeper count goes up (and back down after), whether or not another
        // source has work already: the count must match the `woke` below.
        for b in &bells {
            if b.watch.prepare_to_sleep() && !busy.contains(&b.token) {
                busy.push(b.token);
            }
        }
        let timeout = if busy.is_empty() { timeout_ms } else { 0 };
        // SAFETY: `evs` has room for `cap` events; the epoll descriptor is valid.
        let n = unsafe {
            libc::epoll_wait(
                self.epoll.as_raw_fd(),
                evs.as_mut_ptr(),
                cap as libc::c_int,
                timeout,
            )
        };
        for r in &readers {
            r.words.woke();
        }
        for b in &bells {
            b.watch.woke();
        }
        if n < 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EINTR) {
                return Ok(0);
            }
            return Err(Error::from_io("epoll_wait failed", err));
        }
        let mut count = 0;
        for &token in &busy {
            if count < cap && !evs[..n as usize].iter().any(|e| e.u64 == token as u64) {
                out[count] = Ready {
                    token,
                    events: events::READABLE,
                };
                count += 1;
            }
        }
        for ev in &evs[..n as usize] {
            if count >= cap {
                break;
            }
            let (data, bits) = (ev.u64, ev.events);
            if data == CANCEL_TOKEN {
                sys::eventfd_drain(self.cancel.as_fd());
                continue;
            }
            let mut ready = 0;
            if bits & libc::EPOLLIN as u32 != 0 {
                ready |= events::READABLE;
            }
            if bits & libc::EPOLLOUT as u32 != 0 {
                ready |= events::WRITABLE;
            }
            if bits & (libc::EPOLLHUP | libc::EPOLLRDHUP | libc::EPOLLERR) as u32 != 0 {
                ready |= events::HANGUP;
            }
            out[count] = Ready {
                token: data as u32,
                events: ready,
            };
            count += 1;
        }
        Ok(count)
    }

    pub fn set_last_error(&self, e: Error) {
        if let Ok(mut slot) = self.last_error.lock() {
            *slot = Some(e);
        }
    }

    /// The last failed wait's error (an empty one if none failed).
    pub fn last_error(&self) -> Error {
        self.last_error
            .lock()
            .ok()
            .and_then(|e| e.clone())
            .unwrap_or_else(|| Error::new(0, ""))
    }

    /// Makes a wait in progress (or the next one) return at once. Safe from any thread.
    pub fn cancel(&self) -> Result<()> {
        sys::eventfd_signal(self.cancel.as_fd())
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn reports_ready_tokens_and_times_out() {
        let ws = Waitset::new().unwrap();
        let a = sys::eventfd().unwrap();
        let b = sys::eventfd().unwrap();
        ws.add(a.as_fd(), 7, events::READABLE).unwrap();
        ws.add(b.as_fd(), 9, events::READABLE).unwrap();
        let mut out = [Ready {
            token: 0,
            events: 0,
        }; 8];
        assert_eq!(ws.wait(&mut out, 0).unwrap(), 0);
        sys::eventfd_signal(b.as_fd()).unwrap();
        assert_eq!(ws.wait(&mut out, 1000).unwrap(), 1);
        assert_eq!(
            out[0],
            Ready {
                token: 9,
                events: events::READABLE
            }
        );
        ws.remove(b.as_fd()).unwrap();
        assert_eq!(ws.wait(&mut out, 0).unwrap(), 0);
    }

    #[test]
    fn cancel_wakes_a_waiter_in_another_thread() {
        let ws = std::sync::Arc::new(Waitset::new().unwrap());
        let w2 = ws.clone();
        let t = std::thread::spawn(move || {
            let mut out = [Ready {
                token: 0,
                events: 0,
            }; 4];
            w2.wait(&mut out, 10_000).unwrap()
        });
        std::thread::sleep(std::time::Duration::from_millis(50));
        let start = std::time::Instant::now();
        ws.cancel().unwrap();
        assert_eq!(t.join().unwrap(), 0);
        assert!(start.elapsed().as_secs() < 5);
    }
}
