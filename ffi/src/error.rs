//! Errors as values: every failure carries a code (an errno, or one of gsw's own codes above
//! 1000) and a message saying what failed. At the C boundary the code becomes a negative return
//! value and the message waits in a thread-local for `gsw_last_error`.

use std::cell::RefCell;
use std::fmt;
use std::io;

/// gsw's own error codes, kept clear of errno values (which stay below 200 on Linux).
pub mod code {
    /// The segment does not start with gsw's magic number: not a gsw channel segment.
    pub const BAD_MAGIC: i32 = 1001;
    /// The segment was made by a gsw with another layout version.
    pub const BAD_VERSION: i32 = 1002;
    /// The segment's header disagrees with its size or with itself.
    pub const BAD_LAYOUT: i32 = 1003;
    /// The segment is not sealed against shrinking and growing, so it could fault under us.
    pub const NOT_SEALED: i32 = 1004;
    /// The segment's writer has not finished initialising it.
    pub const NOT_READY: i32 = 1005;
    /// A null or otherwise unusable handle was passed in.
    pub const BAD_HANDLE: i32 = 1006;
    /// An argument is out of range (channel index, sizes, table entries).
    pub const BAD_ARGUMENT: i32 = 1007;
    /// A Rust panic was caught at the boundary: a bug in gsw.
    pub const PANIC: i32 = 1008;
}

/// An error with a code and a message that says what failed.
#[derive(Debug, Clone)]
pub struct Error {
    pub code: i32,
    pub message: String,
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        Error {
            code,
            message: message.into(),
        }
    }

    /// The current `errno` with what was being attempted, e.g. `memfd_create failed`.
    pub fn last_os(what: &str) -> Self {
        Self::from_io(what, io::Error::last_os_error())
    }

    pub fn from_io(what: &str, err: io::Error) -> Self {
        let errno = err.raw_os_error().unwrap_or(libc::EIO);
        Error::new(
            errno,
            format!("{what}: {} ({})", errno_name(errno), strerror(&err)),
        )
    }

    pub fn errno(errno: i32, what: &str) -> Self {
        Self::from_io(what, io::Error::from_raw_os_error(errno))
    }

    pub fn arg(message: impl Into<String>) -> Self {
        Error::new(code::BAD_ARGUMENT, message)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

fn strerror(err: &io::Error) -> String {
    // io::Error's Display appends " (os error N)"; the name already identifies it.
    let text = err.to_string();
    match text.find(" (os error") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

/// The symbolic name of an errno value or gsw code, e.g. `EAGAIN`, `EBADMAGIC`.
pub fn errno_name(code: i32) -> &'static str {
    match code {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::ESRCH => "ESRCH",
        libc::EINTR => "EINTR",
        libc::EIO => "EIO",
        libc::EBADF => "EBADF",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::ENOTDIR => "ENOTDIR",
        libc::EISDIR => "EISDIR",
        libc::EINVAL => "EINVAL",
        libc::ENFILE => "ENFILE",
        libc::EMFILE => "EMFILE",
        libc::ENOSPC => "ENOSPC",
        libc::EPIPE => "EPIPE",
        libc::ERANGE => "ERANGE",
        libc::ENAMETOOLONG => "ENAMETOOLONG",
        libc::ENOSYS => "ENOSYS",
        libc::ENOTSOCK => "ENOTSOCK",
        libc::EMSGSIZE => "EMSGSIZE",
        libc::EBADMSG => "EBADMSG",
        libc::EPROTOTYPE => "EPROTOTYPE",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::EADDRINUSE => "EADDRINUSE",
        libc::EADDRNOTAVAIL => "EADDRNOTAVAIL",
        libc::ENETDOWN => "ENETDOWN",
        libc::ENETUNREACH => "ENETUNREACH",
        libc::ECONNABORTED => "ECONNABORTED",
        libc::ECONNRESET => "ECONNRESET",
        libc::ENOBUFS => "ENOBUFS",
        libc::EISCONN => "EISCONN",
        libc::ENOTCONN => "ENOTCONN",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::EHOSTUNREACH => "EHOSTUNREACH",
        libc::ENODEV => "ENODEV",
        libc::ENXIO => "ENXIO",
        code::BAD_MAGIC => "EBADMAGIC",
        code::BAD_VERSION => "EBADVERSION",
        code::BAD_LAYOUT => "EBADLAYOUT",
        code::NOT_SEALED => "ENOTSEALED",
        code::NOT_READY => "ENOTREADY",
        code::BAD_HANDLE => "EBADHANDLE",
        code::BAD_ARGUMENT => "EBADARG",
        code::PANIC => "EPANIC",
        _ => "EUNKNOWN",
    }
}

thread_local! {
    static LAST_ERROR: RefCell<Error> = RefCell::new(Error::new(0, ""));
}

/// Remembers `err` for `gsw_last_error` and returns its code negated, for C callers.
pub fn set_last(err: Error) -> i32 {
    let code = err.code;
    LAST_ERROR.with(|slot| *slot.borrow_mut() = err);
    -code
}

/// The last error recorded on this thread.
pub fn last() -> Error {
    LAST_ERROR.with(|slot| slot.borrow().clone())
}

/// Runs `f` at the C boundary: an `Err` becomes a negative code (message kept for
/// `gsw_last_error`), and a panic is caught rather than unwinding into the caller.
pub fn boundary<F: FnOnce() -> Result<i64>>(f: F) -> i64 {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => set_last(e) as i64,
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            set_last(Error::new(
                code::PANIC,
                format!("internal error in gsw's native library (please report): {what}"),
            )) as i64
        }
    }
}

/// Like [`boundary`] for functions that return an object: null on error.
pub fn boundary_ptr<T, F: FnOnce() -> Result<*mut T>>(f: F) -> *mut T {
    let mut out = std::ptr::null_mut();
    boundary(|| {
        out = f()?;
        Ok(0)
    });
    out
}
