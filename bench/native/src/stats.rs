//! Latency distributions: nearest-rank percentiles over raw samples (no histogram
//! buckets, so p99.9 and max are exact).

/// Summary of a latency distribution, all values in the samples' unit (nanoseconds here).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Summary {
    /// Number of samples.
    pub count: usize,
    /// Smallest sample.
    pub min: u64,
    /// Median (nearest rank).
    pub p50: u64,
    /// 99th percentile (nearest rank).
    pub p99: u64,
    /// 99.9th percentile (nearest rank).
    pub p999: u64,
    /// Largest sample.
    pub max: u64,
    /// Arithmetic mean.
    pub mean: f64,
}

/// Nearest-rank percentile `q` (0.0..=1.0) of an ascending-sorted, non-empty slice.
pub fn percentile(sorted: &[u64], q: f64) -> u64 {
    assert!(!sorted.is_empty(), "percentile of no samples");
    let rank = (q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Sorts `samples` in place and summarises them; `None` when there are no samples.
pub fn summarize(samples: &mut [u64]) -> Option<Summary> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_unstable();
    let sum: u128 = samples.iter().map(|&s| u128::from(s)).sum();
    Some(Summary {
        count: samples.len(),
        min: samples[0],
        p50: percentile(samples, 0.50),
        p99: percentile(samples, 0.99),
        p999: percentile(samples, 0.999),
        max: samples[samples.len() - 1],
        mean: sum as f64 / samples.len() as f64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let mut v: Vec<u64> = (1..=1000).rev().collect();
        let s = summarize(&mut v).unwrap();
        assert_eq!(
            (s.min, s.p50, s.p99, s.p999, s.max),
            (1, 500, 990, 999, 1000)
        );
        assert_eq!(percentile(&[7], 0.999), 7);
        assert!(summarize(&mut []).is_none());
    }
}
