//! Writing byte streams, as a radio or a modem would: where `replay` sends the packets of a
//! serial or TCP source, framed again, so decom reads a recorded flight as it read it live.
//! A serial device is opened at its line settings; TCP either connects to a decom that listens
//! or accepts the one connection of a decom that connects. Every descriptor is non-blocking:
//! the caller waits for writability (or an incoming connection) in its waitset.

use crate::error::{Error, Result};
use crate::stream::{open_device, Endpoint};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::time::Duration;

/// How long connecting to a TCP listener may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens where packets are written: the serial device, a TCP connection (`Connect`), or a TCP
/// listener (`Listen`) whose one connection [`accept`] takes later.
pub fn open(endpoint: &Endpoint) -> Result<OwnedFd> {
    match endpoint {
        Endpoint::Serial { path, .. } => open_device(endpoint)
            .map_err(|why| Error::errno(libc::EIO, &format!("cannot open {path}: {why}"))),
        Endpoint::Connect { host, port } => {
            let failed =
                |e: std::io::Error| Error::from_io(&format!("cannot connect to {host}:{port}"), e);
            let mut last = None;
            for addr in (host.as_str(), *port).to_socket_addrs().map_err(failed)? {
                match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
                    Ok(s) => {
                        s.set_nonblocking(true).map_err(failed)?;
                        // Packets go out as they are written, not held for a fuller segment.
                        s.set_nodelay(true).map_err(failed)?;
                        return Ok(OwnedFd::from(s));
                    }
                    Err(e) => last = Some(e),
                }
            }
            Err(failed(last.unwrap_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::NotFound, "no address")
            })))
        }
        Endpoint::Listen { host, port } => {
            let l = TcpListener::bind((host.as_str(), *port))
                .map_err(|e| Error::from_io(&format!("cannot listen on {host}:{port}"), e))?;
            l.set_nonblocking(true)
                .map_err(|e| Error::from_io("cannot make the listener non-blocking", e))?;
            Ok(OwnedFd::from(l))
        }
    }
}

/// The port a TCP listener from [`open`] is bound to (useful with port 0).
pub fn local_port(listener: BorrowedFd<'_>) -> Result<u16> {
    let l = TcpListener::from(
        listener
            .try_clone_to_owned()
            .map_err(|e| Error::from_io("cannot duplicate the listener", e))?,
    );
    let port = l
        .local_addr()
        .map_err(|e| Error::from_io("cannot read the listener's address", e))?
        .port();
    Ok(port)
}

/// Takes a connection waiting on a listener from [`open`]; None when none is waiting.
pub fn accept(listener: BorrowedFd<'_>) -> Result<Option<OwnedFd>> {
    let l = TcpListener::from(
        listener
            .try_clone_to_owned()
            .map_err(|e| Error::from_io("cannot duplicate the listener", e))?,
    );
    match l.accept() {
        Ok((s, _)) => {
            let failed = |e| Error::from_io("cannot set up the accepted connection", e);
            s.set_nonblocking(true).map_err(failed)?;
            s.set_nodelay(true).map_err(failed)?;
            Ok(Some(OwnedFd::from(s)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(None),
        Err(e) => Err(Error::from_io("accept failed", e)),
    }
}

/// Writes what the descriptor takes now of `data`; 0 when it takes nothing (full). A device
/// unplugged or a connection closed by the other end is an error saying so.
pub fn write(fd: BorrowedFd<'_>, data: &[u8]) -> Result<usize> {
    if data.is_empty() {
        return Ok(0);
    }
    // SAFETY: `data` is readable for its length; `fd` is open for this call. MSG_NOSIGNAL is
    // not available for a tty, so a closed socket's SIGPIPE is left to the process (Deno
    // ignores it) and reported here as EPIPE.
    let n = unsafe { libc::write(fd.as_raw_fd(), data.as_ptr().cast(), data.len()) };
    if n >= 0 {
        return Ok(n as usize);
    }
    let err = std::io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EAGAIN) => Ok(0),
        Some(libc::EPIPE) | Some(libc::ECONNRESET) => {
            Err(Error::from_io("the other end closed the connection", err))
        }
        Some(libc::EIO) | Some(libc::ENXIO) => {
            Err(Error::from_io("the device went away (unplugged?)", err))
        }
        _ => Err(Error::from_io("write failed", err)),
    }
}
