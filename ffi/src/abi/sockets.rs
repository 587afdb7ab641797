//! The C ABI of UNIX sockets with descriptor passing, and the run directory
//! (`crate::sock`). Conventions as in the parent module.

use super::*;

// ---------------------------------------------------------------------------------------------
// UNIX sockets and the run directory

/// Creates the run directory (mode 0700) if missing, and refuses one that another user owns
/// or that others can enter.
///
/// # Safety
/// `p` must point at `len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn gsw_prepare_run_dir(p: *const u8, len: u32) -> i32 {
    boundary(|| {
        // SAFETY: per this function's contract.
        let dir = unsafe { path(p, len as usize)? };
        prepare_run_dir(dir)?;
        Ok(0)
    }) as i32
}

pub(super) fn prepare_run_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    match std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
    {
        Ok(()) => {}
        Err(e) => {
            return Err(Error::from_io(
                &format!("cannot create run directory {}", dir.display()),
                e,
            ))
        }
    }
    let meta = std::fs::symlink_metadata(dir).map_err(|e| {
        Error::from_io(
            &format!("cannot inspect run directory {}", dir.display()),
            e,
        )
    })?;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if !meta.is_dir() {
        return Err(Error::errno(
            libc::ENOTDIR,
            &format!("run directory {} is not a directory", dir.display()),
        ));
    }
    if meta.uid() != me {
        return Err(Error::errno(
            libc::EACCES,
            &format!(
                "run directory {} belongs to uid {}, not to you (uid {me}); choose your own with --run-dir or GSW_RUN_DIR",
                dir.display(),
                meta.uid()
            ),
        ));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(Error::errno(
            libc::EACCES,
            &format!(
                "run directory {} is open to other users (mode {:o}); run `chmod 700 {}` or choose another",
                dir.display(),
                meta.mode() & 0o777,
                dir.display()
            ),
        ));
    }
    Ok(())
}

/// Removes a file (a socket of ours at shutdown). Missing is not an error.
///
/// # Safety
/// `p` must point at `len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn gsw_unlink(p: *const u8, len: u32) -> i32 {
    boundary(|| {
        // SAFETY: per this function's contract.
        let file = unsafe { path(p, len as usize)? };
        match std::fs::remove_file(file) {
            Ok(()) => Ok(1),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(Error::from_io(
                &format!("cannot remove {}", file.display()),
                e,
            )),
        }
    }) as i32
}

/// Binds (and for seqpacket, listens on) a UNIX socket at the path; `kind` 0 seqpacket,
/// 1 datagram. Returns the descriptor.
///
/// # Safety
/// `p` must point at `len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn gsw_unix_listen(p: *const u8, len: u32, kind_: u32) -> i32 {
    boundary(|| {
        // SAFETY: per this function's contract.
        let at = unsafe { path(p, len as usize)? };
        Ok(sock::listen(at, kind(kind_)?)?.into_raw_fd() as i64)
    }) as i32
}

/// Connects to the UNIX socket at the path. Returns the (non-blocking) descriptor.
///
/// # Safety
/// `p` must point at `len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn gsw_unix_connect(p: *const u8, len: u32, kind_: u32) -> i32 {
    boundary(|| {
        // SAFETY: per this function's contract.
        let at = unsafe { path(p, len as usize)? };
        Ok(sock::connect(at, kind(kind_)?)?.into_raw_fd() as i64)
    }) as i32
}

fn write_cred(out: &mut [u8], c: sock::Cred) {
    out[0..4].copy_from_slice(&c.pid.to_le_bytes());
    out[4..8].copy_from_slice(&c.uid.to_le_bytes());
    out[8..12].copy_from_slice(&c.gid.to_le_bytes());
}

/// Accepts a pending connection; writes the peer's [pid, uid, gid] into `cred`.
/// Returns the new descriptor, or -EAGAIN when none is waiting.
///
/// # Safety
/// `cred` room for 3 u32.
#[no_mangle]
pub unsafe extern "C" fn gsw_unix_accept(listener: RawFd, cred: *mut u8) -> i32 {
    boundary(|| {
        // SAFETY: per this function's contract.
        let (l, out) = unsafe { (sys::borrow(listener)?, bytes_mut(cred, 12)?) };
        match sock::accept(l)? {
            Some((fd, c)) => {
                write_cred(out, c);
                Ok(fd.into_raw_fd() as i64)
            }
            None => Ok(-(libc::EAGAIN as i64)),
        }
    }) as i32
}

/// Writes the connected peer's [pid, uid, gid] into `cred`.
///
/// # Safety
/// `cred` room for 3 u32; `fd` open.
#[no_mangle]
pub unsafe extern "C" fn gsw_peer_cred(fd: RawFd, cred: *mut u8) -> i32 {
    boundary(|| {
        // SAFETY: per this function's contract.
        let (fd, out) = unsafe { (sys::borrow(fd)?, bytes_mut(cred, 12)?) };
        write_cred(out, sock::peer_cred(fd)?);
        Ok(0)
    }) as i32
}

/// Sends one message with `nfds` descriptors from `fds`. Returns bytes sent, or -EAGAIN if
/// the peer's queue is full.
///
/// # Safety
/// `buf` `len` readable bytes; `fds` `nfds` i32; every descriptor open.
#[no_mangle]
pub unsafe extern "C" fn gsw_unix_send(
    fd: RawFd,
    buf: *const u8,
    len: u32,
    fds: *const i32,
    nfds: u32,
) -> i32 {
    boundary(|| {
        // SAFETY: per this function's contract.
        let (fd, buf, raw) = unsafe {
            (
                sys::borrow(fd)?,
                bytes(buf, len as usize)?,
                items(fds, nfds as usize)?,
            )
        };
        let mut borrowed: Vec<BorrowedFd<'_>> = Vec::with_capacity(raw.len());
        for &f in raw {
            // SAFETY: the caller keeps each descriptor open for the call.
            borrowed.push(unsafe { sys::borrow(f)? });
        }
        match sock::send(fd, buf, &borrowed)? {
            Some(n) => Ok(n as i64),
            None => Ok(-(libc::EAGAIN as i64)),
        }
    }) as i32
}

/// Receives one message into `buf`; received descriptors go into `fds` (at most `max_fds`,
/// their count into `nfds`, the caller owns them). Returns the message length, 0 when the
/// peer closed, -EAGAIN when nothing is waiting, -EMSGSIZE for a message that did not fit
/// (it is discarded whole, its descriptors closed).
///
/// # Safety
/// `buf` `cap` writable bytes; `fds` room for `max_fds` i32; `nfds` room for one u32.
#[no_mangle]
pub unsafe extern "C" fn gsw_unix_recv(
    fd: RawFd,
    buf: *mut u8,
    cap: u32,
    fds: *mut i32,
    max_fds: u32,
    nfds: *mut u32,
) -> i32 {
    boundary(|| {
        // SAFETY: per this function's contract.
        let (fd, buf, fds_out, nfds_out) = unsafe {
            (
                sys::borrow(fd)?,
                bytes_mut(buf, cap as usize)?,
                bytes_mut(fds as *mut u8, max_fds as usize * 4)?,
                bytes_mut(nfds as *mut u8, 4)?,
            )
        };
        nfds_out.copy_from_slice(&0u32.to_le_bytes());
        match sock::recv(fd, buf)? {
            Received::Empty => Ok(-(libc::EAGAIN as i64)),
            Received::Closed => Ok(0),
            Received::Message(n, received) => {
                if n == 0 {
                    // gsw never sends empty messages (they read as a hang-up); dropping
                    // `received` closes the descriptors that came with this one.
                    return Err(Error::errno(
                        libc::EBADMSG,
                        "an empty message carrying descriptors was refused",
                    ));
                }
                if received.len() > max_fds as usize {
                    return Err(Error::errno(
                        libc::EMSGSIZE,
                        &format!(
                            "a message carried {} descriptors, {max_fds} expected at most",
                            received.len()
                        ),
                    ));
                }
                for (i, f) in received.into_iter().enumerate() {
                    fds_out[i * 4..i * 4 + 4].copy_from_slice(&f.into_raw_fd().to_le_bytes());
                    nfds_out.copy_from_slice(&(i as u32 + 1).to_le_bytes());
                }
                Ok(n as i64)
            }
        }
    }) as i32
}
