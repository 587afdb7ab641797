//! UNIX-domain sockets for the control plane (SEQPACKET, with descriptors passed by
//! SCM_RIGHTS and the peer's credentials from SO_PEERCRED) and for the raw-packet queue to the
//! logger (DGRAM). Every socket is non-blocking and close-on-exec; waiting is the waitset's job.

use crate::error::{Error, Result};
use crate::sys;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Which kind of UNIX socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Connection-oriented, message boundaries kept: the control plane.
    SeqPacket,
    /// Connectionless messages: the raw-packet queue to the logger.
    Datagram,
}

impl Kind {
    fn sock_type(self) -> libc::c_int {
        match self {
            Kind::SeqPacket => libc::SOCK_SEQPACKET,
            Kind::Datagram => libc::SOCK_DGRAM,
        }
    }
}

/// The credentials of the process at the other end of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cred {
    pub pid: u32,
    pub uid: u32,
    pub gid: u32,
}

/// Most descriptors one message may carry.
pub const MAX_FDS: usize = 64;
/// u64 words of a control-message buffer with room for MAX_FDS descriptors (header included).
const CMSG_WORDS: usize = (16 + MAX_FDS * 4).div_ceil(8);

fn address(path: &Path) -> Result<(libc::sockaddr_un, libc::socklen_t)> {
    // SAFETY: an all-zero sockaddr_un is a valid value of this plain C struct.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    if bytes.is_empty() || bytes.contains(&0) {
        return Err(Error::arg(format!("{path:?} is not a usable socket path")));
    }
    if bytes.len() >= addr.sun_path.len() {
        return Err(Error::errno(
            libc::ENAMETOOLONG,
            &format!(
                "socket path {} is {} bytes, the limit is {}: use a shorter run directory (--run-dir or GSW_RUN_DIR)",
                path.display(),
                bytes.len(),
                addr.sun_path.len() - 1
            ),
        ));
    }
    for (dst, &src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = src as libc::c_char;
    }
    let len = std::mem::size_of::<libc::sa_family_t>() + bytes.len() + 1;
    Ok((addr, len as libc::socklen_t))
}

fn socket(kind: Kind) -> Result<OwnedFd> {
    // SAFETY: plain syscall with constant arguments.
    let ret = unsafe {
        libc::socket(
            libc::AF_UNIX,
            kind.sock_type() | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    sys::own(ret, "socket(AF_UNIX) failed")
}

fn bind(fd: BorrowedFd<'_>, path: &Path) -> std::io::Result<()> {
    let (addr, len) = address(path).map_err(|e| std::io::Error::from_raw_os_error(e.code))?;
    // SAFETY: `addr` is a valid sockaddr_un of `len` bytes; `fd` is valid for this call.
    let ret = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            &addr as *const libc::sockaddr_un as *const libc::sockaddr,
            len,
        )
    };
    if ret < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn connect_raw(fd: BorrowedFd<'_>, path: &Path) -> Result<()> {
    let (addr, len) = address(path)?;
    // SAFETY: `addr` is a valid sockaddr_un of `len` bytes; `fd` is valid for this call.
    let ret = unsafe {
        libc::connect(
            fd.as_raw_fd(),
            &addr as *const libc::sockaddr_un as *const libc::sockaddr,
            len,
        )
    };
    if ret < 0 {
        let err = std::io::Error::last_os_error();
        return Err(Error::from_io(
            &format!("cannot connect to {}", path.display()),
            err,
        ));
    }
    Ok(())
}

/// Binds a socket at `path` (and listens, for SEQPACKET). A socket file left behind by a
/// process that died is replaced; one that a live process still serves is refused with
/// EADDRINUSE, so two servers never silently steal each other's clients.
///
/// The socket is bound and listening under a private name first and then hard-linked to
/// `path` in one step (a UNIX socket is found by its inode, so either name reaches it): a
/// client that finds the file finds a server already accepting. Binding in place would leave
/// a moment where the file exists but connecting is refused, and a program that waits for
/// the file would take that for "no server". Replacing a stale file happens under a lock on
/// the directory, so that two servers starting together cannot both take it.
pub fn listen(path: &Path, kind: Kind) -> Result<OwnedFd> {
    let fd = socket(kind)?;
    let Some(private) = private_name(path) else {
        // The directory's name leaves no room for a second name: bind in place.
        bind_at(fd.as_fd(), path, kind)?;
        return Ok(fd);
    };
    // A name of this process's is ours to replace (left by a listen that failed midway).
    let _ = std::fs::remove_file(&private);
    bind_at(fd.as_fd(), &private, kind)?;
    let linked = link_or_replace(&private, path, kind);
    // The private name has done its job (or the link failed): the socket keeps `path` only.
    let _ = std::fs::remove_file(&private);
    linked?;
    Ok(fd)
}

/// A short name beside `path` for this process's socket until it is linked there, or None if
/// even that would not fit a socket address.
fn private_name(path: &Path) -> Option<std::path::PathBuf> {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    // Relaxed: the counter only has to hand out distinct numbers within this process.
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = format!(".gsw-{}-{n}.sock", std::process::id());
    let private = path.parent().unwrap_or(Path::new(".")).join(name);
    address(&private).ok().map(|_| private)
}

fn bind_at(fd: BorrowedFd<'_>, path: &Path, kind: Kind) -> Result<()> {
    bind(fd, path)
        .map_err(|e| Error::from_io(&format!("cannot create socket {}", path.display()), e))?;
    if kind == Kind::SeqPacket {
        // SAFETY: `fd` is a bound socket.
        let ret = unsafe { libc::listen(fd.as_raw_fd(), 128) };
        sys::check(ret, "listen failed")?;
    }
    Ok(())
}

/// Links the listening socket's private name to `path`; a file already at `path` is replaced
/// only if nobody serves it.
fn link_or_replace(private: &Path, path: &Path, kind: Kind) -> Result<()> {
    let cannot =
        |e: std::io::Error| Error::from_io(&format!("cannot create socket {}", path.display()), e);
    match std::fs::hard_link(private, path) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(cannot(e)),
    }
    let dir = std::fs::File::open(path.parent().unwrap_or(Path::new("."))).map_err(|e| {
        Error::from_io(
            &format!("cannot open the directory of {}", path.display()),
            e,
        )
    })?;
    // SAFETY: `dir` is an open descriptor for this call; the lock is released when it closes.
    let ret = unsafe { libc::flock(dir.as_raw_fd(), libc::LOCK_EX) };
    sys::check(ret, "flock failed")?;
    // Someone left a socket file here. Is anybody listening on it?
    let probe = socket(kind)?;
    match connect_raw(probe.as_fd(), path) {
        Ok(()) => Err(Error::errno(
            libc::EADDRINUSE,
            &format!(
                "another process is already serving {}; stop it first or use another run directory",
                path.display()
            ),
        )),
        Err(e) if e.code == libc::ECONNREFUSED || e.code == libc::ENOENT => {
            match std::fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(Error::from_io(
                        &format!("cannot remove stale socket {}", path.display()),
                        e,
                    ))
                }
            }
            std::fs::hard_link(private, path).map_err(cannot)
        }
        Err(e) => Err(e),
    }
}

/// Connects to the socket at `path`. The connection is made blocking (a UNIX connect either
/// succeeds at once or fails) and the socket is then switched to non-blocking.
pub fn connect(path: &Path, kind: Kind) -> Result<OwnedFd> {
    let fd = socket(kind)?;
    sys::set_nonblocking(fd.as_fd(), false)?;
    connect_raw(fd.as_fd(), path)?;
    sys::set_nonblocking(fd.as_fd(), true)?;
    Ok(fd)
}

/// Accepts one pending connection with its peer's credentials; None when none is waiting.
pub fn accept(listener: BorrowedFd<'_>) -> Result<Option<(OwnedFd, Cred)>> {
    // SAFETY: null address pointers are allowed; `listener` is valid for this call.
    let ret = unsafe {
        libc::accept4(
            listener.as_raw_fd(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
        )
    };
    if ret < 0 {
        let err = std::io::Error::last_os_error();
        return match err.raw_os_error() {
            Some(libc::EAGAIN) | Some(libc::EINTR) | Some(libc::ECONNABORTED) => Ok(None),
            _ => Err(Error::from_io("accept failed", err)),
        };
    }
    // SAFETY: accept4 returned a new descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(ret) };
    let cred = peer_cred(fd.as_fd())?;
    Ok(Some((fd, cred)))
}

/// Reads socket option `opt` at `level` as a `T`.
///
/// # Safety
/// `T` must be the plain C type the kernel writes for this option (an int, `ucred`, …): one for
/// which every bit pattern, all-zero included, is a valid value.
pub(crate) unsafe fn getsockopt<T: Copy>(
    fd: BorrowedFd<'_>,
    level: i32,
    opt: i32,
    what: &str,
) -> Result<T> {
    // SAFETY: per this function's contract, all-zero is a valid `T`.
    let mut value: T = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: `value` is valid for writes of `len` bytes; `fd` is valid for this call.
    let ret = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            opt,
            &mut value as *mut T as *mut libc::c_void,
            &mut len,
        )
    };
    sys::check(ret, &format!("getsockopt({what}) failed"))?;
    Ok(value)
}

/// The credentials of the peer of a connected socket (as of when it connected).
pub fn peer_cred(fd: BorrowedFd<'_>) -> Result<Cred> {
    // SAFETY: SO_PEERCRED writes a `ucred`, plain integers.
    let cred: libc::ucred =
        unsafe { getsockopt(fd, libc::SOL_SOCKET, libc::SO_PEERCRED, "SO_PEERCRED")? };
    Ok(Cred {
        pid: cred.pid as u32,
        uid: cred.uid,
        gid: cred.gid,
    })
}

/// Sets a socket's send buffer, beyond the system maximum where the process may
/// (SO_SNDBUFFORCE needs CAP_NET_ADMIN), else as large as allowed.
pub fn set_buffer(fd: BorrowedFd<'_>, bytes: u32, send: bool) -> Result<()> {
    let (force, plain) = if send {
        (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF)
    } else {
        (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF)
    };
    let value = bytes.min(i32::MAX as u32 / 2) as libc::c_int;
    for opt in [force, plain] {
        // SAFETY: passes a valid int of the declared size; `fd` is valid for this call.
        let ret = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                &value as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if ret == 0 {
            return Ok(());
        }
    }
    Err(Error::last_os("setting the socket buffer size failed"))
}

/// Sends one message with up to [`MAX_FDS`] descriptors attached. Returns None when the
/// socket's queue is full (the message was not sent).
pub fn send(fd: BorrowedFd<'_>, buf: &[u8], fds: &[BorrowedFd<'_>]) -> Result<Option<usize>> {
    if buf.is_empty() {
        // On a SEQPACKET socket an empty message reads as the end of the connection.
        return Err(Error::arg(
            "cannot send an empty message (the peer would read it as a hang-up)",
        ));
    }
    if fds.len() > MAX_FDS {
        return Err(Error::arg(format!(
            "at most {MAX_FDS} descriptors per message, not {}",
            fds.len()
        )));
    }
    let mut iov = libc::iovec {
        iov_base: buf.as_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // Room for one SCM_RIGHTS message of MAX_FDS ints, u64-aligned as cmsghdr wants.
    let mut cmsg_buf = [0u64; CMSG_WORDS];
    // SAFETY: an all-zero msghdr is a valid value of this plain C struct.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        let payload = std::mem::size_of_val(fds) as u32;
        // SAFETY: CMSG_SPACE is a pure size computation.
        let space = unsafe { libc::CMSG_SPACE(payload) } as usize;
        debug_assert!(space <= std::mem::size_of_val(&cmsg_buf));
        msg.msg_control = cmsg_buf.as_mut_ptr() as *mut libc::c_void;
        msg.msg_controllen = space as _;
        // SAFETY: msg_control points at `space` zeroed, aligned bytes, enough for one header
        // with `payload` bytes of data, so CMSG_FIRSTHDR is non-null and CMSG_DATA has room
        // for every descriptor.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(payload) as _;
            let data = libc::CMSG_DATA(cmsg) as *mut libc::c_int;
            for (i, fd) in fds.iter().enumerate() {
                data.add(i).write_unaligned(fd.as_raw_fd());
            }
        }
    }
    // SAFETY: `msg` describes valid buffers that outlive the call; `fd` is valid.
    let n = unsafe {
        libc::sendmsg(
            fd.as_raw_fd(),
            &msg,
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
    if n < 0 {
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EAGAIN) {
            return Ok(None);
        }
        return Err(Error::from_io("sending on a UNIX socket failed", err));
    }
    Ok(Some(n as usize))
}

/// What one `recv` got.
#[derive(Debug)]
pub enum Received {
    /// Nothing waiting.
    Empty,
    /// The peer closed the connection (SEQPACKET).
    Closed,
    /// A message of this many bytes, with these descriptors.
    Message(usize, Vec<OwnedFd>),
}

/// Receives one message and any descriptors attached to it (received close-on-exec).
/// A message longer than `buf` is an EMSGSIZE error, never silently cut; descriptors beyond
/// [`MAX_FDS`] are refused the same way (the kernel closes them).
pub fn recv(fd: BorrowedFd<'_>, buf: &mut [u8]) -> Result<Received> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    let mut cmsg_buf = [0u64; CMSG_WORDS];
    // SAFETY: an all-zero msghdr is a valid value of this plain C struct.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cmsg_buf.as_mut_ptr() as *mut libc::c_void;
    // SAFETY: CMSG_SPACE is a pure size computation.
    msg.msg_controllen =
        unsafe { libc::CMSG_SPACE((MAX_FDS * std::mem::size_of::<libc::c_int>()) as u32) } as _;
    // SAFETY: `msg` describes valid, writable buffers that outlive the call; `fd` is valid.
    let n = unsafe {
        libc::recvmsg(
            fd.as_raw_fd(),
            &mut msg,
            libc::MSG_DONTWAIT | libc::MSG_CMSG_CLOEXEC,
        )
    };
    if n < 0 {
        let err = std::io::Error::last_os_error();
        return match err.raw_os_error() {
            Some(libc::EAGAIN) | Some(libc::EINTR) => Ok(Received::Empty),
            Some(libc::ECONNRESET) => Ok(Received::Closed),
            _ => Err(Error::from_io("receiving on a UNIX socket failed", err)),
        };
    }
    // Take ownership of every descriptor first, so each one is closed on every path below.
    let mut fds = Vec::new();
    // SAFETY: the kernel filled msg_control with well-formed headers up to msg_controllen;
    // CMSG_FIRSTHDR/NXTHDR stay within it, and each SCM_RIGHTS payload holds
    // (cmsg_len - CMSG_LEN(0)) / 4 descriptors that are now ours.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let bytes = (*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                let data = libc::CMSG_DATA(cmsg) as *const libc::c_int;
                for i in 0..bytes / std::mem::size_of::<libc::c_int>() {
                    fds.push(OwnedFd::from_raw_fd(data.add(i).read_unaligned()));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        return Err(Error::errno(
            libc::EMSGSIZE,
            &format!("a message carried more than {MAX_FDS} descriptors; refused"),
        ));
    }
    if msg.msg_flags & libc::MSG_TRUNC != 0 {
        return Err(Error::errno(
            libc::EMSGSIZE,
            &format!(
                "a message was longer than the {}-byte buffer; refused",
                buf.len()
            ),
        ));
    }
    if n == 0 && fds.is_empty() {
        return Ok(Received::Closed);
    }
    Ok(Received::Message(n as usize, fds))
}

/// Creates a connected pair (for tests and in-process links).
pub fn pair(kind: Kind) -> Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` has room for the two descriptors socketpair returns.
    let ret = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            kind.sock_type() | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    sys::check(ret, "socketpair failed")?;
    // SAFETY: socketpair succeeded; both descriptors are new and ours.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn passes_descriptors_and_reports_close() {
        let (a, b) = pair(Kind::SeqPacket).unwrap();
        let ev = sys::eventfd().unwrap();
        assert_eq!(send(a.as_fd(), b"hi", &[ev.as_fd()]).unwrap(), Some(2));
        let mut buf = [0u8; 16];
        match recv(b.as_fd(), &mut buf).unwrap() {
            Received::Message(2, fds) => {
                assert_eq!(fds.len(), 1);
                // The received descriptor is the same eventfd: a signal on one is seen on the other.
                sys::eventfd_signal(ev.as_fd()).unwrap();
                assert_eq!(sys::eventfd_drain(fds[0].as_fd()), 1);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(
            recv(b.as_fd(), &mut buf).unwrap(),
            Received::Empty
        ));
        drop(a);
        assert!(matches!(
            recv(b.as_fd(), &mut buf).unwrap(),
            Received::Closed
        ));
    }

    #[test]
    fn oversize_message_is_an_error_not_a_cut() {
        let (a, b) = pair(Kind::SeqPacket).unwrap();
        send(a.as_fd(), &[7u8; 100], &[]).unwrap();
        let mut small = [0u8; 10];
        let e = recv(b.as_fd(), &mut small).unwrap_err();
        assert_eq!(e.code, libc::EMSGSIZE);
    }

    #[test]
    fn listen_replaces_stale_and_refuses_live() {
        let dir = std::env::temp_dir().join(format!("gsw-sock-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sock");
        let l1 = listen(&path, Kind::SeqPacket).unwrap();
        let e = listen(&path, Kind::SeqPacket).unwrap_err();
        assert_eq!(e.code, libc::EADDRINUSE);
        let c = connect(&path, Kind::SeqPacket).unwrap();
        let (_s, cred) = accept(l1.as_fd()).unwrap().unwrap();
        assert_eq!(cred.pid, std::process::id());
        drop((c, l1));
        // The file is still there, but nobody listens: a new server takes it over.
        let _l2 = listen(&path, Kind::SeqPacket).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn listen_is_one_step_and_one_server_wins_a_stale_file() {
        let dir = std::env::temp_dir().join(format!("gsw-sock-race-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sock");
        for _ in 0..20 {
            // A stale file (its server gone), then 8 servers starting at once.
            drop(listen(&path, Kind::SeqPacket).unwrap());
            let winners: Vec<_> = (0..8)
                .map(|_| {
                    let path = path.clone();
                    std::thread::spawn(move || listen(&path, Kind::SeqPacket).ok())
                })
                .collect::<Vec<_>>()
                .into_iter()
                .filter_map(|t| t.join().unwrap())
                .collect();
            assert_eq!(winners.len(), 1, "exactly one server takes a stale file");
            // The file is the winner's: connecting reaches it, and no private name is left.
            let _c = connect(&path, Kind::SeqPacket).unwrap();
            assert!(accept(winners[0].as_fd()).unwrap().is_some());
            let names: Vec<_> = std::fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(names, vec![std::ffi::OsString::from("s.sock")]);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
