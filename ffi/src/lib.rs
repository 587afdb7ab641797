//! gsw's native primitives, loaded by the TypeScript side with `Deno.dlopen`: shared-memory
//! triple-buffer channels with eventfd doorbells, epoll waitsets, UNIX sockets with fd passing,
//! batch UDP receive, and the batch forms of decom's and the broker's hot paths. The C ABI
//! lives in `abi`; everything else is safe Rust over `libc`.

pub mod abi;
pub mod broadcast;
pub mod broadcast_protocol;
pub mod error;
pub mod extract;
pub mod fanout;
pub mod framing;
pub mod logq;
pub mod mqtt;
pub mod protocol;
pub mod segment;
pub mod signals;
pub mod sock;
pub mod stream;
pub mod stream_out;
pub mod sys;
pub mod udp;
pub mod waitset;
