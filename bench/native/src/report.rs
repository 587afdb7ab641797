//! Output in the project's benchmark format: one JSON object per metric per line on stdout,
//! `{"bench":…,"metric":…,"value":…,"unit":…,"reference":…,"ratio":…}`, and a short human
//! table on stderr.

use crate::stats::Summary;
use std::fmt::Write as _;
use std::io::Write as _;

/// One measured figure, optionally next to the reference it is compared with in the same run.
#[derive(Clone, Debug)]
pub struct Metric {
    /// Benchmark (subcommand) name, e.g. `eventfd-pingpong`.
    pub bench: String,
    /// Metric name, e.g. `eventfd_pingpong_p50_ns`.
    pub metric: String,
    /// The figure.
    pub value: f64,
    /// Unit: `ns`, `writes/s`, `packets/s`, `%`, `count`, `bool`, …
    pub unit: String,
    /// The same figure for the reference measured in the same run, if there is one.
    pub reference: Option<f64>,
}

impl Metric {
    /// `value / reference`, when both exist and the reference is non-zero.
    pub fn ratio(&self) -> Option<f64> {
        self.reference
            .filter(|r| *r != 0.0 && r.is_finite())
            .map(|r| self.value / r)
    }

    /// The metric as one JSON object (no trailing newline).
    pub fn to_json(&self) -> String {
        format!(
            "{{\"bench\":{},\"metric\":{},\"value\":{},\"unit\":{},\"reference\":{},\"ratio\":{}}}",
            json_string(&self.bench),
            json_string(&self.metric),
            json_number(self.value),
            json_string(&self.unit),
            self.reference.map_or("null".into(), json_number),
            self.ratio().map_or("null".into(), json_number),
        )
    }
}

/// The metrics of one benchmark run, printed together by [`Report::emit`].
#[derive(Debug)]
pub struct Report {
    bench: String,
    metrics: Vec<Metric>,
}

impl Report {
    /// An empty report for benchmark `bench`.
    pub fn new(bench: &str) -> Self {
        Self {
            bench: bench.into(),
            metrics: Vec::new(),
        }
    }

    /// Adds a figure without a reference.
    pub fn push(&mut self, metric: &str, value: f64, unit: &str) {
        self.push_ref(metric, value, unit, None);
    }

    /// Adds a figure with the reference it is compared with (ratio = value / reference).
    pub fn push_ref(&mut self, metric: &str, value: f64, unit: &str, reference: Option<f64>) {
        self.metrics.push(Metric {
            bench: self.bench.clone(),
            metric: metric.into(),
            value,
            unit: unit.into(),
            reference,
        });
    }

    /// Adds `<prefix>_p50_ns`, `_p99_ns`, `_p999_ns`, `_max_ns` and `_samples`, each compared
    /// with the same statistic of `reference` when given.
    pub fn latency(&mut self, prefix: &str, s: &Summary, reference: Option<&Summary>) {
        type Stat = fn(&Summary) -> u64;
        let rows: [(&str, Stat); 4] = [
            ("p50", |s| s.p50),
            ("p99", |s| s.p99),
            ("p999", |s| s.p999),
            ("max", |s| s.max),
        ];
        for (name, get) in rows {
            self.push_ref(
                &format!("{prefix}_{name}_ns"),
                get(s) as f64,
                "ns",
                reference.map(|r| get(r) as f64),
            );
        }
        self.push(&format!("{prefix}_samples"), s.count as f64, "count");
    }

    /// Appends every metric of `other` (keeping its benchmark name), so one run can print
    /// several benchmarks' figures together.
    pub fn absorb(&mut self, other: Report) {
        self.metrics.extend(other.metrics);
    }

    /// The metrics added so far.
    pub fn metrics(&self) -> &[Metric] {
        &self.metrics
    }

    /// Prints every metric as a JSON line on stdout and a human table on stderr.
    pub fn emit(&self) {
        let mut out = std::io::stdout().lock();
        for m in &self.metrics {
            // A closed stdout (e.g. `| head`) must not turn into a panic mid-benchmark.
            let _ = writeln!(out, "{}", m.to_json());
        }
        let _ = out.flush();
        let _ = std::io::stderr().write_all(self.table().as_bytes());
    }

    /// The human-readable table.
    pub fn table(&self) -> String {
        let width = self
            .metrics
            .iter()
            .map(|m| m.metric.len())
            .max()
            .unwrap_or(0);
        let mut t = format!("── {} ──\n", self.bench);
        let mut bench = self.bench.as_str();
        for m in &self.metrics {
            if m.bench != bench {
                bench = &m.bench;
                let _ = writeln!(t, "── {bench} ──");
            }
            let _ = write!(
                t,
                "  {:<width$}  {:>14} {:<10}",
                m.metric,
                human(m.value),
                m.unit
            );
            if let (Some(r), Some(q)) = (m.reference, m.ratio()) {
                let _ = write!(t, "  ref {:>12}  ×{q:.2}", human(r));
            }
            t.push('\n');
        }
        t
    }
}

fn human(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}

/// A JSON number; non-finite values become `null` (JSON has no NaN or infinity).
pub fn json_number(v: f64) -> String {
    if !v.is_finite() {
        "null".into()
    } else if v.fract() == 0.0 && v.abs() < 9.0e15 {
        format!("{v:.0}")
    } else {
        // Enough digits for any figure here, without float noise like 0.30000000000000004.
        let s = format!("{v:.6}");
        let s = s.trim_end_matches('0');
        s.trim_end_matches('.').to_string()
    }
}

/// A JSON string literal with the required escapes.
pub fn json_string(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            '\t' => o.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_line() {
        let mut r = Report::new("b");
        r.push_ref("m", 8.0, "ns", Some(4.0));
        r.push("n", 0.25, "%");
        r.push("q\"", f64::NAN, "ns");
        let j: Vec<String> = r.metrics().iter().map(Metric::to_json).collect();
        assert_eq!(
            j[0],
            r#"{"bench":"b","metric":"m","value":8,"unit":"ns","reference":4,"ratio":2}"#
        );
        assert_eq!(
            j[1],
            r#"{"bench":"b","metric":"n","value":0.25,"unit":"%","reference":null,"ratio":null}"#
        );
        assert!(j[2].contains(r#""metric":"q\"","value":null"#));
    }
}
