//! Termination signals as a readable descriptor, for processes whose event loop is one
//! synchronous waitset wait (decom, broker): SIGINT/SIGTERM/SIGHUP set a bit and signal an
//! eventfd from an async-signal-safe handler, so the waitset wakes at once and the process
//! shuts down cleanly (removing its sockets) without ever returning to Deno's event loop.

use crate::error::{Error, Result};
use crate::sys;
use std::os::fd::{IntoRawFd, RawFd};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};

/// The eventfd the handler signals (-1: not installed yet).
static FD: AtomicI32 = AtomicI32::new(-1);
/// Bit n set: signal n arrived and was not taken yet.
static PENDING: AtomicU64 = AtomicU64::new(0);

extern "C" fn on_signal(signo: libc::c_int) {
    // Only async-signal-safe operations here: atomics and write(2).
    if (0..64).contains(&signo) {
        // Relaxed: the eventfd write below is what wakes the reader; the bit only needs to be
        // visible by the time the reader swaps it, which the syscall ordering guarantees.
        PENDING.fetch_or(1 << signo, Ordering::Relaxed);
    }
    let fd = FD.load(Ordering::Relaxed);
    if fd >= 0 {
        let one: u64 = 1;
        // SAFETY: write(2) is async-signal-safe; 8 bytes from a valid u64 to an eventfd.
        unsafe { libc::write(fd, &one as *const u64 as *const libc::c_void, 8) };
    }
}

/// Installs the handler for `signals` (once per process; later calls add signals) and
/// returns the eventfd to watch. The descriptor lives for the rest of the process.
pub fn watch(signals: &[i32]) -> Result<RawFd> {
    let mut fd = FD.load(Ordering::Acquire);
    if fd < 0 {
        let new = sys::eventfd()?.into_raw_fd();
        // AcqRel/Acquire: the first installer publishes its eventfd; a racing one closes its own.
        match FD.compare_exchange(-1, new, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => fd = new,
            Err(existing) => {
                // SAFETY: `new` is ours and unused.
                unsafe { libc::close(new) };
                fd = existing;
            }
        }
    }
    for &sig in signals {
        if !(1..64).contains(&sig) || sig == libc::SIGKILL || sig == libc::SIGSTOP {
            return Err(Error::arg(format!("signal {sig} cannot be watched")));
        }
        // SAFETY: an all-zero sigaction is valid; we set the handler and an empty mask.
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
        action.sa_flags = libc::SA_RESTART;
        // SAFETY: `action.sa_mask` is a valid sigset to initialise.
        unsafe { libc::sigemptyset(&mut action.sa_mask) };
        // SAFETY: installs a handler that only performs async-signal-safe operations.
        let ret = unsafe { libc::sigaction(sig, &action, std::ptr::null_mut()) };
        sys::check(ret, "sigaction failed")?;
    }
    Ok(fd)
}

/// Takes the signals that arrived since the last call (bit n: signal n), and drains the
/// eventfd so the waitset stops reporting it.
pub fn take() -> u64 {
    let fd = FD.load(Ordering::Acquire);
    if fd >= 0 {
        // SAFETY: the eventfd stays open for the life of the process once installed.
        let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        sys::eventfd_drain(borrowed);
    }
    PENDING.swap(0, Ordering::AcqRel)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_signal_makes_the_fd_readable_and_is_reported_once() {
        let fd = watch(&[libc::SIGUSR1]).unwrap();
        take();
        // SAFETY: sending a watched signal to ourselves.
        unsafe { libc::raise(libc::SIGUSR1) };
        // SAFETY: the watch eventfd is open for the process's life.
        let b = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        assert!(sys::poll_readable(b, 1000).unwrap());
        assert_eq!(take(), 1 << libc::SIGUSR1);
        assert_eq!(take(), 0);
        assert!(!sys::poll_readable(b, 0).unwrap());
    }
}
