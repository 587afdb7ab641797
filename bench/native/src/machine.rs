//! Where a benchmark ran: CPU model, core count, kernel, clocksource, rustc and Deno versions,
//! and whether pinning to different CPUs works here.

use crate::report::json_string;
use std::process::Command;

/// Description of the machine, printed by the `machine` subcommand as one JSON line.
#[derive(Clone, Debug)]
pub struct Machine {
    /// `model name` from `/proc/cpuinfo`.
    pub cpu_model: String,
    /// Online CPUs (`sysconf(_SC_NPROCESSORS_ONLN)`).
    pub cores: usize,
    /// CPUs in this process's affinity mask.
    pub allowed_cpus: usize,
    /// `uname -r`.
    pub kernel: String,
    /// Current clocksource (`tsc` makes `clock_gettime` a vDSO call).
    pub clocksource: String,
    /// cpuidle driver (`none` = an idle vCPU halts, and waking it costs a hypervisor exit).
    pub cpuidle: String,
    /// `rustc --version` at run time, else the compiler that built this binary.
    pub rustc: String,
    /// Whether `rustc` came from run time (`"runtime"`) or build time (`"build"`).
    pub rustc_source: &'static str,
    /// `deno --version` first line, if Deno is on PATH.
    pub deno: Option<String>,
    /// Whether a child could pin itself to a second CPU and this process to the first.
    pub pinning: bool,
}

fn first_line_of(cmd: &str, arg: &str) -> Option<String> {
    let out = Command::new(cmd).arg(arg).output().ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8(out.stdout)
        .ok()?
        .lines()
        .next()
        .map(|l| l.trim().to_string())
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path).map_or_else(|_| "unknown".into(), |s| s.trim().to_string())
}

fn kernel_release() -> String {
    // SAFETY: all-zero is a valid utsname for uname to fill.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is writable; uname NUL-terminates every field.
    if unsafe { libc::uname(&mut u) } != 0 {
        return "unknown".into();
    }
    // SAFETY: `release` is NUL-terminated (uname succeeded).
    unsafe { std::ffi::CStr::from_ptr(u.release.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

/// Whether two processes can be pinned to two different CPUs (tried in a short-lived child,
/// so this process's own affinity is left alone).
pub fn pinning_works() -> bool {
    let pair = crate::proc::CpuPair::choose(true);
    let (Some(a), Some(b)) = (pair.parent, pair.child) else {
        return false;
    };
    let Ok(mut child) = crate::proc::fork_child(Some(b), || {
        crate::proc::pin_current(a).map_err(|e| e.to_string())
    }) else {
        return false;
    };
    matches!(
        child.wait_started(std::time::Duration::from_secs(5)),
        Ok(true)
    ) && child.wait(std::time::Duration::from_secs(5)).is_ok()
}

impl Machine {
    /// Gathers the description (runs `rustc --version` and `deno --version` if present).
    pub fn describe() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
            .map_or_else(|| "unknown".into(), |(_, v)| v.trim().to_string());
        // SAFETY: sysconf has no preconditions.
        let cores =
            usize::try_from(unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }).unwrap_or(0);
        let (rustc, rustc_source) = match first_line_of("rustc", "--version") {
            Some(v) => (v, "runtime"),
            None => (env!("GSW_BUILD_RUSTC_VERSION").to_string(), "build"),
        };
        Self {
            cpu_model,
            cores,
            allowed_cpus: crate::proc::allowed_cpus().map_or(0, |c| c.len()),
            kernel: kernel_release(),
            clocksource: read_trimmed(
                "/sys/devices/system/clocksource/clocksource0/current_clocksource",
            ),
            cpuidle: read_trimmed("/sys/devices/system/cpu/cpuidle/current_driver"),
            rustc,
            rustc_source,
            deno: first_line_of("deno", "--version"),
            pinning: pinning_works(),
        }
    }

    /// One JSON object (no trailing newline).
    pub fn to_json(&self) -> String {
        format!(
            "{{\"bench\":\"machine\",\"cpu_model\":{},\"cores\":{},\"allowed_cpus\":{},\"kernel\":{},\"clocksource\":{},\"cpuidle\":{},\"rustc\":{},\"rustc_source\":{},\"deno\":{},\"pinning\":{}}}",
            json_string(&self.cpu_model),
            self.cores,
            self.allowed_cpus,
            json_string(&self.kernel),
            json_string(&self.clocksource),
            json_string(&self.cpuidle),
            json_string(&self.rustc),
            json_string(self.rustc_source),
            self.deno.as_deref().map_or("null".into(), json_string),
            self.pinning,
        )
    }
}
