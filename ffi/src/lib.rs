//! gsw's native primitives, loaded by the TypeScript side with `Deno.dlopen`: shared-memory
//! triple-buffer channels with eventfd doorbells, epoll waitsets, UNIX sockets with fd passing,
//! and batch UDP receive. The C ABI lives in `abi`; everything else is safe Rust over `libc`.

pub mod error;
pub mod protocol;
pub mod segment;
pub mod sys;
