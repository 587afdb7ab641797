//! Thin, checked wrappers over the wake-up syscalls the benchmarks compare: process-shared
//! futexes and eventfds.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::atomic::AtomicU32;
use std::time::Duration;

/// How a [`futex_wait`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FutexWait {
    /// Woken by a `FUTEX_WAKE` (or spuriously): re-check the condition.
    Woken,
    /// The word no longer held the expected value, so the caller did not sleep.
    Mismatch,
    /// The timeout passed.
    TimedOut,
    /// A signal interrupted the wait.
    Interrupted,
}

/// `FUTEX_WAIT` on a word that may live in memory shared between processes: sleeps while
/// `*word == expected`, at most `timeout`. The comparison and the sleep are atomic with
/// respect to [`futex_wake`], which is what makes "check, then sleep" free of lost wake-ups.
///
/// Not `FUTEX_PRIVATE_FLAG`: the kernel keys the wait queue on the physical page, so a waker
/// in another process that maps the same page finds this waiter.
pub fn futex_wait(
    word: &AtomicU32,
    expected: u32,
    timeout: Option<Duration>,
) -> io::Result<FutexWait> {
    let ts = timeout.map(|t| libc::timespec {
        tv_sec: libc::time_t::try_from(t.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_nsec: t.subsec_nanos() as libc::c_long, // < 1e9, fits,
    });
    let ts_ptr = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `word` is a valid, aligned u32 for the duration of the call; `ts_ptr` is null or
    // points to a timespec that outlives the call; FUTEX_WAIT ignores the remaining arguments.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            ts_ptr,
            std::ptr::null::<u32>(),
            0u32,
        )
    };
    if rc == 0 {
        return Ok(FutexWait::Woken);
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EAGAIN) => Ok(FutexWait::Mismatch),
        Some(libc::ETIMEDOUT) => Ok(FutexWait::TimedOut),
        Some(libc::EINTR) => Ok(FutexWait::Interrupted),
        _ => Err(err),
    }
}

/// `FUTEX_WAKE` (process-shared): wakes up to `count` waiters on `word`; returns how many woke.
pub fn futex_wake(word: &AtomicU32, count: i32) -> io::Result<usize> {
    // SAFETY: `word` is a valid, aligned u32; FUTEX_WAKE only uses the address as a key and
    // ignores the timeout and second-address arguments.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE,
            count,
            std::ptr::null::<libc::timespec>(),
            std::ptr::null::<u32>(),
            0u32,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc as usize)
    }
}

/// A blocking eventfd (counter mode): `read` sleeps until the counter is non-zero.
#[derive(Debug)]
pub struct EventFd {
    fd: OwnedFd,
}

impl EventFd {
    /// A new blocking eventfd with counter 0 (close-on-exec; inherited across `fork()`).
    pub fn new() -> io::Result<Self> {
        // SAFETY: eventfd has no memory arguments.
        let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: eventfd just returned this descriptor and nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        Ok(Self { fd })
    }

    /// Adds `n` to the counter, waking a blocked reader.
    #[inline]
    pub fn write(&self, n: u64) -> io::Result<()> {
        let buf = n.to_ne_bytes();
        loop {
            // SAFETY: `buf` is 8 readable bytes, the size eventfd requires.
            let rc = unsafe { libc::write(self.fd.as_raw_fd(), buf.as_ptr().cast(), 8) };
            if rc == 8 {
                return Ok(());
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
    }

    /// Sleeps until the counter is non-zero, then returns it and resets it to 0 (restarts
    /// after a signal).
    #[inline]
    pub fn read(&self) -> io::Result<u64> {
        loop {
            match self.read_interruptible() {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => return r,
            }
        }
    }

    /// Like [`EventFd::read`], but returns an `Interrupted` error when a signal arrives
    /// (e.g. `SIGCHLD` when a peer process dies: see [`crate::proc::fork_child`]).
    #[inline]
    pub fn read_interruptible(&self) -> io::Result<u64> {
        let mut buf = [0u8; 8];
        // SAFETY: `buf` is 8 writable bytes, the size eventfd requires.
        let rc = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), 8) };
        if rc == 8 {
            Ok(u64::from_ne_bytes(buf))
        } else if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Err(io::Error::other("short eventfd read"))
        }
    }
}

impl AsFd for EventFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
