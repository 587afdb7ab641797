//! A native gsw subscriber on the `gsw` rlib, doing what `lib/subscription.ts` does: send a
//! `subscribe` request to the broker over its SEQPACKET socket, attach the segment whose three
//! descriptors come back with the reply, register its reader with a `Waitset` (so the broker
//! skips the doorbell while this process is awake), and drain it with `take_pending`.
//!
//! Used where Deno processes would be too many for the machine (64 subscribers on 2 vCPUs)
//! and as the ingest benchmark's reader; the e2e benchmark's subscriber is a Deno process
//! using the library (`bench/deno/subscriber.ts`).

use crate::clock::Deadline;
use crate::gsw_channel::io_err;
use crate::report::json_string;
use gsw::segment::{SampleHeader, SegmentReader};
use gsw::sock::{self, Kind, Received};
use gsw::waitset::{Ready, Waitset};
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

/// Largest reply accepted: a subscription reply describes each measurement in ~150 bytes.
const REPLY_MAX: usize = 256 * 1024;

/// One subscription: the connection to the broker (closing it ends the subscription), the
/// attached segment (channel `i` carries the `i`-th measurement asked for) and a waitset.
pub struct Subscription {
    _conn: OwnedFd,
    reader: SegmentReader,
    ws: Waitset,
}

impl Subscription {
    /// Subscribes to `names` (measurement keys, no duplicates) at the broker socket `socket`.
    pub fn open(
        socket: &Path,
        names: &[String],
        client: &str,
        timeout: Duration,
    ) -> io::Result<Self> {
        let conn = sock::connect(socket, Kind::SeqPacket).map_err(io_err)?;
        let list: Vec<String> = names.iter().map(|n| json_string(n)).collect();
        let request = format!(
            "{{\"v\":1,\"op\":\"subscribe\",\"measurements\":[{}],\"client\":{}}}",
            list.join(","),
            json_string(client)
        );
        if sock::send(conn.as_fd(), request.as_bytes(), &[])
            .map_err(io_err)?
            .is_none()
        {
            return Err(io::Error::other("the broker is not reading its socket"));
        }
        let deadline = Deadline::after(timeout);
        let mut buf = vec![0u8; REPLY_MAX];
        let (n, fds) = loop {
            match sock::recv(conn.as_fd(), &mut buf).map_err(io_err)? {
                Received::Message(n, fds) => break (n, fds),
                Received::Closed => {
                    return Err(io::Error::other("the broker hung up before answering"))
                }
                Received::Empty => {}
            }
            let Some(left) = deadline.remaining() else {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no answer from the broker within {timeout:?}"),
                ));
            };
            let mut pfd = libc::pollfd {
                fd: conn.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = i32::try_from(left.as_millis().max(1)).unwrap_or(i32::MAX);
            // SAFETY: one valid pollfd.
            unsafe { libc::poll(&mut pfd, 1, ms) };
        };
        let text = String::from_utf8_lossy(&buf[..n]);
        if !text.contains("\"ok\":true") {
            return Err(io::Error::other(format!(
                "the broker refused: {}",
                text.chars().take(300).collect::<String>()
            )));
        }
        let Ok([d, c, e]) = <[OwnedFd; 3]>::try_from(fds) else {
            return Err(io::Error::other(
                "the broker's reply carries no segment (3 descriptors)",
            ));
        };
        let reader = SegmentReader::attach(d, c, e).map_err(io_err)?;
        if reader.channels() != names.len() {
            return Err(io::Error::other(format!(
                "the broker handed over {} channels for {} measurements",
                reader.channels(),
                names.len()
            )));
        }
        let ws = Waitset::new().map_err(io_err)?;
        ws.add_reader(reader.doorbell(), 1, reader.control_words())
            .map_err(io_err)?;
        Ok(Self {
            _conn: conn,
            reader,
            ws,
        })
    }

    /// Takes every new value (`visit(channel, header, payload)` for each); returns how many.
    pub fn drain(&self, visit: impl FnMut(usize, SampleHeader, &[u8])) -> usize {
        self.reader.take_pending(|_| true, visit)
    }

    /// Sleeps until the broker rings (or `timeout_ms`); returns whether it woke for data.
    pub fn wait(&self, timeout_ms: i32) -> io::Result<bool> {
        let mut out = [Ready {
            token: 0,
            events: 0,
        }; 4];
        Ok(self.ws.wait(&mut out, timeout_ms).map_err(io_err)? > 0)
    }
}

/// "Touch the data": checks one value of packet 0 of a generated config against the
/// benchmark datagram layout (`crate::udp::fill_datagram`): channel `c` carries bytes
/// `4c..4c+4` of the datagram. Returns the datagram's sequence number's low 32 bits for
/// channel 0, else 0; an error when a byte is wrong.
pub fn check_packet_value(channel: usize, payload: &[u8]) -> Result<u32, String> {
    let v: [u8; 4] = payload
        .try_into()
        .map_err(|_| format!("channel {channel}: value of {} bytes", payload.len()))?;
    match channel {
        0 => Ok(u32::from_le_bytes(v)),
        2 if u32::from_le_bytes(v) != crate::udp::MAGIC => {
            Err(format!("channel 2: magic {v:?} is wrong"))
        }
        4..=15 => {
            for (j, &b) in v.iter().enumerate() {
                let i = 4 * channel + j;
                if b != (i as u8 ^ 0x5a) {
                    return Err(format!("channel {channel}: byte {i} is {b:#x}"));
                }
            }
            Ok(0)
        }
        _ => Ok(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packet_values_are_checked() {
        let mut d = vec![0u8; 64];
        crate::udp::fill_datagram(&mut d, 7, 1);
        for c in 0..16 {
            let want = if c == 0 { 7 } else { 0 };
            assert_eq!(check_packet_value(c, &d[4 * c..4 * c + 4]), Ok(want));
        }
        d[40] ^= 1;
        assert!(check_packet_value(10, &d[40..44]).is_err());
        assert!(check_packet_value(3, &d[..3]).is_err());
    }
}
