//! Process helpers for the cross-process benchmarks: CPU pinning, a `fork()` helper whose
//! children cannot outlive the benchmark, and a watchdog that turns a hang (e.g. a lost
//! wake-up) into a loud failure instead of a stuck run.
//!
//! Children are killed and reaped when their [`Child`] handle drops (normal return, error
//! or panic in the parent), get `SIGKILL` from the kernel if the parent dies
//! (`PR_SET_PDEATHSIG`), and are killed by the [`Watchdog`] before it exits the process.

use crate::shm::SharedMem;
use std::io::{self, Write as _};
use std::sync::atomic::{AtomicI32, AtomicPtr, AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;

/// CPUs this process may run on (its affinity mask), ascending.
pub fn allowed_cpus() -> io::Result<Vec<usize>> {
    // SAFETY: cpu_set_t is a plain bit array; all-zero is a valid (empty) set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is writable and its size is passed, so the kernel writes within it.
    if unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) } != 0
    {
        return Err(io::Error::last_os_error());
    }
    Ok((0..libc::CPU_SETSIZE as usize)
        // SAFETY: `c` is below CPU_SETSIZE, so CPU_ISSET reads inside `set`.
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect())
}

/// Pins the calling process (thread) to `cpu` with `sched_setaffinity`.
pub fn pin_current(cpu: usize) -> io::Result<()> {
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(io::Error::other(format!("cpu {cpu} out of range")));
    }
    // SAFETY: all-zero is a valid empty cpu_set_t.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` < CPU_SETSIZE (checked above), so CPU_SET writes inside `set`.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a valid cpu_set_t of the size passed.
    if unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Where the two sides of a two-process benchmark run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuPair {
    /// CPU for the parent (the side that forks), if pinned.
    pub parent: Option<usize>,
    /// CPU for the child, if pinned.
    pub child: Option<usize>,
}

impl CpuPair {
    /// Two different allowed CPUs when `pin` is set and at least two are allowed; otherwise
    /// no pinning (the scheduler places both sides).
    pub fn choose(pin: bool) -> Self {
        match allowed_cpus() {
            Ok(cpus) if pin && cpus.len() >= 2 => Self {
                parent: Some(cpus[0]),
                child: Some(cpus[1]),
            },
            _ => Self {
                parent: None,
                child: None,
            },
        }
    }

    /// Pins the calling (parent) process to its CPU until the returned guard drops (which
    /// restores the previous affinity, so the next benchmark again sees every CPU).
    pub fn pin_parent(&self) -> io::Result<PinGuard> {
        let previous = current_affinity()?;
        match self.parent {
            Some(cpu) => {
                pin_current(cpu)?;
                Ok(PinGuard {
                    previous: Some(previous),
                })
            }
            None => Ok(PinGuard { previous: None }),
        }
    }
}

fn current_affinity() -> io::Result<libc::cpu_set_t> {
    // SAFETY: all-zero is a valid empty cpu_set_t.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is writable and its size is passed.
    if unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) } != 0
    {
        return Err(io::Error::last_os_error());
    }
    Ok(set)
}

/// Keeps the parent pinned; restores its previous CPU affinity on drop.
pub struct PinGuard {
    previous: Option<libc::cpu_set_t>,
}

impl PinGuard {
    /// Whether the parent is pinned.
    pub fn pinned(&self) -> bool {
        self.previous.is_some()
    }
}

impl Drop for PinGuard {
    fn drop(&mut self) {
        if let Some(set) = &self.previous {
            // SAFETY: `set` is a valid cpu_set_t of the size passed.
            unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), set) };
        }
    }
}

/// Whether this process may run on at least two CPUs; spin-waits yield the CPU otherwise,
/// because spinning for a peer that needs this very CPU only burns the time slice.
pub fn multi_cpu() -> bool {
    allowed_cpus().map(|c| c.len() >= 2).unwrap_or(false)
}

// Control page shared with each child: whether it started and whether pinning worked.
const CTL_STARTED: usize = 0;
const CTL_PINNED: usize = 4;
const PINNED_NOT_ASKED: u32 = 0;
const PINNED_OK: u32 = 1;
const PINNED_FAILED: u32 = 2;

/// A forked child process. Dropping the handle kills (`SIGKILL`) and reaps the child if it
/// has not been reaped yet, so no path out of the parent leaves it running.
#[derive(Debug)]
pub struct Child {
    pid: libc::pid_t,
    ctl: SharedMem,
    reaped: bool,
}

/// Forks a child that pins itself to `cpu` (if given), runs `body`, and exits: status 0 when
/// `body` returns `Ok`, 1 (after printing the error on stderr) on `Err`, 101 on a panic.
/// The child never returns into the caller's code and never flushes the parent's buffers.
///
/// The first call installs a no-op `SIGCHLD` handler without `SA_RESTART`, so a blocking
/// syscall in the parent (e.g. [`crate::sys::EventFd::read_interruptible`]) returns `EINTR`
/// when a child dies and the caller can notice at once instead of waiting for the watchdog.
///
/// Call only while the process is single-threaded (true of this binary): after `fork()` the
/// child has one thread, so a lock held by another thread would stay locked forever.
/// Shared state (mappings, eventfds, sockets) must be created before the call.
pub fn fork_child<F>(cpu: Option<usize>, body: F) -> io::Result<Child>
where
    F: FnOnce() -> Result<(), String>,
{
    install_sigchld_handler();
    let ctl = SharedMem::create("gsw-bench-child-ctl", 64)?;
    let _ = io::stdout().flush();
    let _ = io::stderr().flush();
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };
    // SAFETY: the process is single-threaded (documented precondition), so the child's copy
    // of every lock and allocator state is consistent.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        // SAFETY: prctl(PR_SET_PDEATHSIG) only sets a per-process flag.
        unsafe {
            libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            )
        };
        // The parent may have died before the flag was set: then nobody would kill us.
        // SAFETY: getppid has no preconditions.
        if unsafe { libc::getppid() } != parent {
            // SAFETY: _exit has no preconditions and does not return.
            unsafe { libc::_exit(1) };
        }
        let pinned = match cpu {
            None => PINNED_NOT_ASKED,
            Some(c) => match pin_current(c) {
                Ok(()) => PINNED_OK,
                Err(e) => {
                    eprintln!("gsw-bench-native: child could not pin to cpu {c}: {e}");
                    PINNED_FAILED
                }
            },
        };
        // Relaxed: published by the Release store of STARTED below.
        ctl.atomic_u32(CTL_PINNED).store(pinned, Ordering::Relaxed);
        // Release: the parent's Acquire load of STARTED then also sees PINNED.
        ctl.atomic_u32(CTL_STARTED).store(1, Ordering::Release);
        let code = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)) {
            Ok(Ok(())) => 0,
            Ok(Err(msg)) => {
                eprintln!("gsw-bench-native: child process failed: {msg}");
                1
            }
            Err(_) => 101, // the panic hook already printed the message
        };
        let _ = io::stderr().flush();
        // _exit, not exit: the parent's buffered stdout and atexit handlers are not ours.
        // SAFETY: _exit has no preconditions and does not return.
        unsafe { libc::_exit(code) };
    }
    register_child(pid);
    Ok(Child {
        pid,
        ctl,
        reaped: false,
    })
}

/// Starts `cmd` (e.g. a Deno reader) as a child that cannot outlive the run, like
/// [`fork_child`]: it gets `SIGKILL` if this process dies (`PR_SET_PDEATHSIG`, kept across
/// `exec`), is pinned to `cpu` (if given; threads it starts later inherit the mask), is killed
/// by the [`Watchdog`], and is killed and reaped when the returned handle drops. The
/// descriptors in `inherit` stay open across `exec` (their close-on-exec flag is cleared in the
/// child only), with the same numbers. [`Child::wait_started`] then reports whether the pinning
/// worked (the child has already `exec`ed when this returns).
///
/// Call only while the process is single-threaded, as [`fork_child`].
pub fn spawn_command(
    cmd: &mut std::process::Command,
    cpu: Option<usize>,
    inherit: &[std::os::fd::RawFd],
) -> io::Result<Child> {
    use std::os::unix::process::CommandExt as _;
    install_sigchld_handler();
    let ctl = SharedMem::create("gsw-bench-child-ctl", 64)?;
    let _ = io::stdout().flush();
    let _ = io::stderr().flush();
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };
    let fds = inherit.to_vec();
    // The control page is mapped at the same address in the forked child; passed as an address
    // because the closure must be 'static. `ctl` outlives the spawn (it moves into the handle).
    let started = ctl.atomic_u32(CTL_STARTED) as *const AtomicU32 as usize;
    let pinned = ctl.atomic_u32(CTL_PINNED) as *const AtomicU32 as usize;
    // SAFETY: the closure runs in the forked child between fork and exec, where only
    // async-signal-safe calls are allowed: it makes only raw syscalls (prctl, getppid,
    // sched_setaffinity, fcntl) and atomic stores into a shared mapping; `fds` was allocated
    // before the fork and is only read.
    unsafe {
        cmd.pre_exec(move || {
            libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            );
            if libc::getppid() != parent {
                return Err(io::Error::other("parent exited before the child started"));
            }
            let state = match cpu {
                None => PINNED_NOT_ASKED,
                Some(c) => match pin_current(c) {
                    Ok(()) => PINNED_OK,
                    Err(_) => PINNED_FAILED,
                },
            };
            for &fd in &fds {
                let flags = libc::fcntl(fd, libc::F_GETFD);
                if flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            // Relaxed, then Release: as in fork_child (the parent's Acquire load of STARTED).
            (*(pinned as *const AtomicU32)).store(state, Ordering::Relaxed);
            (*(started as *const AtomicU32)).store(1, Ordering::Release);
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    let pid = libc::pid_t::try_from(child.id()).map_err(|_| io::Error::other("pid overflow"))?;
    // The std handle neither kills nor reaps on drop; ours does both.
    drop(child);
    register_child(pid);
    Ok(Child {
        pid,
        ctl,
        reaped: false,
    })
}

extern "C" fn on_sigchld(_sig: libc::c_int) {}

fn install_sigchld_handler() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: all-zero is a valid sigaction; we set a handler that does nothing and leave
        // SA_RESTART out on purpose (see `fork_child`).
        let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
        sa.sa_sigaction = on_sigchld as extern "C" fn(libc::c_int) as usize;
        sa.sa_flags = libc::SA_NOCLDSTOP;
        // SAFETY: `sa` is a valid sigaction whose handler is async-signal-safe (empty).
        unsafe {
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(libc::SIGCHLD, &sa, std::ptr::null_mut());
        }
    });
}

impl Child {
    /// The child's process id.
    pub fn pid(&self) -> libc::pid_t {
        self.pid
    }

    /// Waits until the child has pinned itself and is about to run its body; returns whether
    /// it pinned (`false` if pinning was not asked for or failed). Fails if the child exits
    /// first or does not start within `timeout`.
    pub fn wait_started(&mut self, timeout: Duration) -> io::Result<bool> {
        let deadline = crate::clock::Deadline::after(timeout);
        // Acquire: pairs with the child's Release store, so PINNED is visible after it.
        while self.ctl.atomic_u32(CTL_STARTED).load(Ordering::Acquire) == 0 {
            if let Some(status) = self.try_wait()? {
                return Err(io::Error::other(format!(
                    "child {} exited before starting ({})",
                    self.pid,
                    describe_status(status)
                )));
            }
            if deadline.expired() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "child did not start",
                ));
            }
            std::thread::sleep(Duration::from_micros(100));
        }
        // Relaxed: ordered by the Acquire load above.
        Ok(self.ctl.atomic_u32(CTL_PINNED).load(Ordering::Relaxed) == PINNED_OK)
    }

    /// Whether the child has exited; reaps it and returns its raw wait status if so.
    pub fn try_wait(&mut self) -> io::Result<Option<i32>> {
        if self.reaped {
            return Err(io::Error::other("child already reaped"));
        }
        let mut status = 0;
        // SAFETY: `status` is writable; `pid` is our own unreaped child.
        let rc = unsafe { libc::waitpid(self.pid, &mut status, libc::WNOHANG) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        if rc == 0 {
            return Ok(None);
        }
        self.reaped = true;
        unregister_child(self.pid);
        Ok(Some(status))
    }

    /// Waits for the child to exit; `Ok` only for exit status 0. After `timeout` the child is
    /// killed and an error of kind `TimedOut` is returned.
    pub fn wait(&mut self, timeout: Duration) -> io::Result<()> {
        let deadline = crate::clock::Deadline::after(timeout);
        loop {
            if let Some(status) = self.try_wait()? {
                return if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
                    Ok(())
                } else {
                    Err(io::Error::other(format!(
                        "child {} failed ({})",
                        self.pid,
                        describe_status(status)
                    )))
                };
            }
            if deadline.expired() {
                self.kill();
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "child {} did not finish within {timeout:?}; killed it",
                        self.pid
                    ),
                ));
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    /// Sends `sig` (e.g. `SIGTERM`, to let a gsw process shut down cleanly) without waiting.
    pub fn signal(&self, sig: libc::c_int) -> io::Result<()> {
        if self.reaped {
            return Err(io::Error::other("child already reaped"));
        }
        // SAFETY: `pid` is our own unreaped child, so the id cannot have been reused.
        if unsafe { libc::kill(self.pid, sig) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Kills (`SIGKILL`) and reaps the child if it has not been reaped yet.
    pub fn kill(&mut self) {
        if self.reaped {
            return;
        }
        // SAFETY: `pid` is our own child that has not been reaped, so the id cannot have been
        // reused by an unrelated process.
        unsafe { libc::kill(self.pid, libc::SIGKILL) };
        let mut status = 0;
        // SAFETY: as above; SIGKILL cannot be caught, so this wait returns.
        while unsafe { libc::waitpid(self.pid, &mut status, 0) } < 0 {
            if io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                break;
            }
        }
        self.reaped = true;
        unregister_child(self.pid);
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.kill();
    }
}

fn describe_status(status: i32) -> String {
    if libc::WIFEXITED(status) {
        format!("exit status {}", libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        format!("killed by signal {}", libc::WTERMSIG(status))
    } else {
        format!("wait status {status:#x}")
    }
}

// Live children, for the watchdog's signal handler (which may only use atomics and
// async-signal-safe calls). 0 = free slot.
static CHILDREN: [AtomicI32; 128] = [const { AtomicI32::new(0) }; 128];

fn register_child(pid: libc::pid_t) {
    // Relaxed everywhere here: the handler runs on this same thread, so program order is enough.
    for slot in &CHILDREN {
        if slot
            .compare_exchange(0, pid, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            return;
        }
    }
    // Registry full: the child still dies via PR_SET_PDEATHSIG when the watchdog exits us.
}

fn unregister_child(pid: libc::pid_t) {
    for slot in &CHILDREN {
        // Relaxed: see register_child.
        let _ = slot.compare_exchange(pid, 0, Ordering::Relaxed, Ordering::Relaxed);
    }
}

static WHAT_PTR: AtomicPtr<u8> = AtomicPtr::new(std::ptr::null_mut());
static WHAT_LEN: AtomicUsize = AtomicUsize::new(0);

extern "C" fn on_alarm(_sig: libc::c_int) {
    fn say(b: &[u8]) {
        // SAFETY: write(2) is async-signal-safe; `b` is a valid slice.
        unsafe { libc::write(2, b.as_ptr().cast(), b.len()) };
    }
    say(b"\ngsw-bench-native: watchdog: ");
    // Relaxed: set on this thread before the alarm was armed.
    let (p, n) = (
        WHAT_PTR.load(Ordering::Relaxed),
        WHAT_LEN.load(Ordering::Relaxed),
    );
    if !p.is_null() {
        // SAFETY: `p`/`n` come from a `&'static str` stored by `Watchdog::arm`.
        say(unsafe { std::slice::from_raw_parts(p, n) });
    }
    say(b" did not finish in time (a lost wake-up or a stuck peer?); killing its processes\n");
    for slot in &CHILDREN {
        let pid = slot.load(Ordering::Relaxed);
        if pid > 0 {
            // SAFETY: kill is async-signal-safe; `pid` is an unreaped child of ours.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    // SAFETY: _exit is async-signal-safe and does not return.
    unsafe { libc::_exit(124) };
}

/// A process-wide deadline (`alarm(2)`): if it is still armed when `timeout` passes, every
/// registered child is killed and the process exits with status 124 and a message naming
/// `what`. Disarmed on drop. This is the backstop for waits that have no timeout of their
/// own (a blocking eventfd `read` is the thing being measured, so it carries none).
#[derive(Debug)]
pub struct Watchdog {
    _private: (),
}

impl Watchdog {
    /// Arms the watchdog (replacing any armed one) for `timeout`, rounded up to whole seconds.
    pub fn arm(what: &'static str, timeout: Duration) -> Self {
        // Relaxed: read only by the handler on this thread.
        WHAT_PTR.store(what.as_ptr().cast_mut(), Ordering::Relaxed);
        WHAT_LEN.store(what.len(), Ordering::Relaxed);
        // SAFETY: all-zero is a valid sigaction; we fill in the handler and an empty mask.
        let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
        sa.sa_sigaction = on_alarm as extern "C" fn(libc::c_int) as usize;
        // SAFETY: `sa` is a valid sigaction whose handler only makes async-signal-safe calls.
        unsafe {
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(libc::SIGALRM, &sa, std::ptr::null_mut());
        }
        let secs = timeout.as_secs() + u64::from(timeout.subsec_nanos() > 0);
        // SAFETY: alarm has no preconditions.
        unsafe { libc::alarm(u32::try_from(secs.max(1)).unwrap_or(u32::MAX)) };
        Self { _private: () }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        // SAFETY: alarm(0) only cancels the pending alarm.
        unsafe { libc::alarm(0) };
    }
}
