//! Thin safe wrappers over the Linux calls gsw needs: memfd with seals, shared mappings,
//! eventfd, poll. File descriptors are `OwnedFd` everywhere inside Rust.

use crate::error::{Error, Result};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;

/// Turns a `-1`-on-error return into a `Result`, naming the call that failed.
pub fn check(ret: libc::c_int, what: &str) -> Result<libc::c_int> {
    if ret < 0 {
        Err(Error::last_os(what))
    } else {
        Ok(ret)
    }
}

/// Takes ownership of a freshly returned file descriptor.
pub fn own(ret: libc::c_int, what: &str) -> Result<OwnedFd> {
    let fd = check(ret, what)?;
    // SAFETY: `fd` was just returned by a successful syscall and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Takes ownership of a descriptor handed in over the C boundary (or received with
/// SCM_RIGHTS); refuses values that cannot be descriptors.
///
/// # Safety
/// `fd` must be an open descriptor that nothing else will close.
pub unsafe fn adopt(fd: RawFd) -> Result<OwnedFd> {
    if fd < 0 {
        return Err(Error::errno(libc::EBADF, "invalid file descriptor"));
    }
    // SAFETY: the caller promises `fd` is open and now ours alone.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Borrows a descriptor passed in over the C boundary for the duration of one call.
///
/// # Safety
/// `fd` must stay open for the lifetime `'a`.
pub unsafe fn borrow<'a>(fd: RawFd) -> Result<BorrowedFd<'a>> {
    if fd < 0 {
        return Err(Error::errno(libc::EBADF, "invalid file descriptor"));
    }
    // SAFETY: the caller promises `fd` stays open while borrowed.
    Ok(unsafe { BorrowedFd::borrow_raw(fd) })
}

/// A new anonymous memory file that can be sealed, close-on-exec.
pub fn memfd(name: &std::ffi::CStr, size: usize) -> Result<OwnedFd> {
    // SAFETY: `name` is a valid NUL-terminated string; flags are valid constants.
    let fd = own(
        unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) },
        "memfd_create failed",
    )?;
    // SAFETY: `fd` is a valid memfd we own.
    let ret = unsafe { libc::ftruncate(fd.as_raw_fd(), size as libc::off_t) };
    check(ret, "ftruncate of a new memfd failed")?;
    Ok(fd)
}

pub fn add_seals(fd: BorrowedFd<'_>, seals: libc::c_int) -> Result<()> {
    // SAFETY: F_ADD_SEALS takes an int argument; `fd` is valid for this call.
    let ret = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) };
    check(ret, "sealing the shared memory failed")?;
    Ok(())
}

pub fn get_seals(fd: BorrowedFd<'_>) -> Result<libc::c_int> {
    // SAFETY: F_GET_SEALS takes no argument; `fd` is valid for this call.
    let ret = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) };
    check(
        ret,
        "reading the seals of a shared-memory segment failed (is it a memfd?)",
    )
}

/// Size in bytes of the file behind `fd`.
pub fn file_size(fd: BorrowedFd<'_>) -> Result<u64> {
    // SAFETY: an all-zero `stat` is a valid value of this plain C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a valid, writable `stat`; `fd` is valid for this call.
    let ret = unsafe { libc::fstat(fd.as_raw_fd(), &mut st) };
    check(ret, "fstat failed")?;
    Ok(st.st_size as u64)
}

/// Reads 8 bytes at `offset` of a file (0 if the file is shorter).
pub fn read_u64_at(fd: BorrowedFd<'_>, offset: u64) -> Result<u64> {
    let mut value = [0u8; 8];
    // SAFETY: reads at most 8 bytes into `value`; `fd` is valid for this call.
    let n = unsafe {
        libc::pread(
            fd.as_raw_fd(),
            value.as_mut_ptr() as *mut libc::c_void,
            8,
            offset as libc::off_t,
        )
    };
    if n < 0 {
        return Err(Error::last_os(
            "reading a shared-memory segment's header failed",
        ));
    }
    Ok(u64::from_le_bytes(value))
}

/// Whether `fd` is an eventfd (as /proc/self/fd names it).
pub fn is_eventfd(fd: BorrowedFd<'_>) -> bool {
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .map(|target| target.as_os_str() == "anon_inode:[eventfd]")
        .unwrap_or(false)
}

/// A shared mapping of a file, unmapped on drop.
pub struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

impl Mapping {
    /// Maps `len` bytes of `fd` shared, read-write or read-only.
    pub fn map(fd: BorrowedFd<'_>, len: usize, writable: bool) -> Result<Mapping> {
        if len == 0 {
            return Err(Error::arg("cannot map an empty segment"));
        }
        let prot = if writable {
            libc::PROT_READ | libc::PROT_WRITE
        } else {
            libc::PROT_READ
        };
        // SAFETY: a fresh mapping chosen by the kernel (addr null) aliases no Rust object;
        // `fd` is valid for the call and the mapping keeps its own reference to the file.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(Error::last_os("mmap of shared memory failed"));
        }
        Ok(Mapping {
            // SAFETY: mmap succeeded, so `ptr` is not null.
            ptr: unsafe { NonNull::new_unchecked(ptr as *mut u8) },
            len,
        })
    }

    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

// SAFETY: a Mapping is a pointer to memory mapped for the life of the value; it has no
// thread affinity, and all access from several threads (control words) goes through atomics.
unsafe impl Send for Mapping {}
// SAFETY: as above; `&Mapping` only hands out the base pointer.
unsafe impl Sync for Mapping {}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` describe a mapping we created and nothing borrows past drop.
        unsafe {
            libc::munmap(self.ptr.as_ptr() as *mut libc::c_void, self.len);
        }
    }
}

/// A non-blocking, close-on-exec eventfd (counter mode).
pub fn eventfd() -> Result<OwnedFd> {
    // SAFETY: plain syscall with constant flags.
    own(
        unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) },
        "eventfd failed",
    )
}

/// Adds one to an eventfd. A full counter (EAGAIN) already means "wake up", so it is fine.
pub fn eventfd_signal(fd: BorrowedFd<'_>) -> Result<()> {
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from a valid u64; `fd` is valid for this call.
    let n = unsafe { libc::write(fd.as_raw_fd(), &one as *const u64 as *const libc::c_void, 8) };
    if n < 0 {
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EAGAIN) {
            return Err(Error::from_io("eventfd write failed", err));
        }
    }
    Ok(())
}

/// Resets an eventfd to zero without blocking; returns the count it held.
pub fn eventfd_drain(fd: BorrowedFd<'_>) -> u64 {
    let mut value: u64 = 0;
    // SAFETY: reads 8 bytes into a valid u64; `fd` is valid for this call. A non-blocking
    // eventfd at zero fails with EAGAIN, which simply means there was nothing to drain.
    let n = unsafe {
        libc::read(
            fd.as_raw_fd(),
            &mut value as *mut u64 as *mut libc::c_void,
            8,
        )
    };
    if n == 8 {
        value
    } else {
        0
    }
}

/// Waits until `fd` is readable or `timeout_ms` passes (negative: forever).
/// Returns true when readable (or hung up); false on timeout or signal interruption.
pub fn poll_readable(fd: BorrowedFd<'_>, timeout_ms: i32) -> Result<bool> {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: `pfd` is one valid pollfd.
    let n = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
    if n < 0 {
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EINTR) {
            return Ok(false);
        }
        return Err(Error::from_io("poll failed", err));
    }
    Ok(n > 0)
}

/// Sets or clears O_NONBLOCK.
pub fn set_nonblocking(fd: BorrowedFd<'_>, on: bool) -> Result<()> {
    // SAFETY: F_GETFL takes no argument; `fd` is valid for this call.
    let ret = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    let flags = check(ret, "fcntl(F_GETFL) failed")?;
    let flags = if on {
        flags | libc::O_NONBLOCK
    } else {
        flags & !libc::O_NONBLOCK
    };
    // SAFETY: F_SETFL takes an int argument; `fd` is valid for this call.
    let ret = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags) };
    check(ret, "fcntl(F_SETFL) failed")?;
    Ok(())
}

/// A pidfd for process `pid`: readable once the process exits (Linux 5.3+), close-on-exec
/// (pidfds always are).
pub fn pidfd_open(pid: i32) -> Result<OwnedFd> {
    // SAFETY: plain syscall with integer arguments.
    let ret = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    own(ret as libc::c_int, "pidfd_open failed")
}

/// CLOCK_REALTIME in nanoseconds since the Unix epoch.
pub fn realtime_ns() -> u64 {
    clock_ns(libc::CLOCK_REALTIME)
}

/// CLOCK_MONOTONIC in nanoseconds.
pub fn monotonic_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec; both clocks always exist on Linux.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
