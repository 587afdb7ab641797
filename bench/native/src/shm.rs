//! Shared memory between a benchmark's processes: an anonymous `memfd_create` file, sealed
//! against resizing, mapped `MAP_SHARED` and inherited by children across `fork()`.
//! Nothing named is left in `/dev/shm`.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64};

/// A zero-initialised shared mapping, unmapped on drop.
///
/// Created before `fork()`, it is at the same address in parent and child, so references
/// into it (atomics) mean the same memory on both sides.
#[derive(Debug)]
pub struct SharedMem {
    ptr: NonNull<u8>,
    len: usize,
    fd: OwnedFd,
}

// SAFETY: the mapping is plain memory owned by this handle. The safe accessors only hand out
// atomics; the byte copies are `unsafe` and make the caller order them against every other
// thread and process. So sharing or sending the handle between threads adds no new hazard.
unsafe impl Send for SharedMem {}
// SAFETY: see `Send` above.
unsafe impl Sync for SharedMem {}

impl SharedMem {
    /// Creates a zeroed region of at least `len` bytes (rounded up to whole pages), named
    /// `name` only for `/proc/<pid>/maps`.
    pub fn create(name: &str, len: usize) -> io::Result<Self> {
        // SAFETY: sysconf has no preconditions.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
        let len = len.max(1).div_ceil(page) * page;
        let cname = CString::new(name).map_err(|_| io::Error::other("shm name contains NUL"))?;
        // SAFETY: `cname` is a valid NUL-terminated string; the flags are valid.
        let raw = unsafe {
            libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING)
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: memfd_create just returned this descriptor and nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let size = libc::off_t::try_from(len).map_err(|_| io::Error::other("shm too large"))?;
        // SAFETY: `fd` is an open memfd; ftruncate only changes its size.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), size) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // Sealed against shrinking so no process can make the other fault on its mapping.
        let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
        // SAFETY: `fd` is an open memfd created with MFD_ALLOW_SEALING.
        if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: mapping a fresh `len`-byte file at an address the kernel chooses cannot
        // alias any existing Rust object.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr =
            NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned NULL"))?;
        Ok(Self { ptr, len, fd })
    }

    /// Start of the mapping (page-aligned).
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Length in bytes (a whole number of pages).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: a mapping has at least one page.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The memfd, e.g. to pass to another process.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    fn check(&self, offset: usize, size: usize, align: usize) {
        assert!(
            offset.checked_add(size).is_some_and(|end| end <= self.len) && offset % align == 0,
            "shared-memory access at {offset}+{size} (align {align}) outside a {}-byte mapping",
            self.len
        );
    }

    /// The `AtomicU32` at byte `offset` (must be 4-aligned and inside the mapping; panics otherwise).
    pub fn atomic_u32(&self, offset: usize) -> &AtomicU32 {
        self.check(offset, 4, 4);
        // SAFETY: in bounds and aligned (checked); the mapping lives as long as `self`; any bit
        // pattern is a valid AtomicU32, and every access to it, here or in another process, is atomic.
        unsafe { AtomicU32::from_ptr(self.as_ptr().add(offset).cast()) }
    }

    /// The `AtomicU64` at byte `offset` (must be 8-aligned and inside the mapping; panics otherwise).
    pub fn atomic_u64(&self, offset: usize) -> &AtomicU64 {
        self.check(offset, 8, 8);
        // SAFETY: as in `atomic_u32`.
        unsafe { AtomicU64::from_ptr(self.as_ptr().add(offset).cast()) }
    }

    /// `n` consecutive `AtomicU64`s from byte `offset` (8-aligned, inside the mapping).
    pub fn atomic_u64_slice(&self, offset: usize, n: usize) -> &[AtomicU64] {
        self.check(offset, n.checked_mul(8).expect("slice size overflows"), 8);
        // SAFETY: in bounds and aligned (checked); AtomicU64 has the layout of u64 and any bit
        // pattern is valid; all accesses to these words are atomic.
        unsafe { std::slice::from_raw_parts(self.as_ptr().add(offset).cast::<AtomicU64>(), n) }
    }

    /// Copies `src` into the mapping at `offset` (bounds are checked; panics outside).
    ///
    /// # Safety
    /// No other thread or process may access these bytes concurrently: the caller orders this
    /// copy against the peer's accesses with an atomic (Release here, Acquire there) or a lock.
    pub unsafe fn write_bytes(&self, offset: usize, src: &[u8]) {
        self.check(offset, src.len(), 1);
        // SAFETY: in bounds (checked); `src` is a local buffer, so the ranges cannot overlap;
        // exclusive access to the destination is the caller's contract.
        unsafe {
            std::ptr::copy_nonoverlapping(src.as_ptr(), self.as_ptr().add(offset), src.len())
        };
    }

    /// Copies bytes at `offset` out of the mapping into `dst` (bounds are checked).
    ///
    /// # Safety
    /// No other thread or process may write these bytes concurrently (see [`Self::write_bytes`]).
    pub unsafe fn read_bytes(&self, offset: usize, dst: &mut [u8]) {
        self.check(offset, dst.len(), 1);
        // SAFETY: in bounds (checked); `dst` is a local buffer distinct from the mapping; the
        // absence of concurrent writers is the caller's contract.
        unsafe {
            std::ptr::copy_nonoverlapping(self.as_ptr().add(offset), dst.as_mut_ptr(), dst.len())
        };
    }
}

impl Drop for SharedMem {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly the mapping made in `create`, and no reference into
        // it can outlive `self` (all accessors borrow `self`).
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}
