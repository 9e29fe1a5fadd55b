//! What a run measures besides messages: a process's resident memory and CPU time (Linux
//! `/proc`), and latency histograms.

use hdrhistogram::Histogram;
use serde_json::{Value, json};

/// A process's memory and CPU at one instant.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcSample {
    pub rss_kb: u64,
    /// User + system CPU time, in clock ticks.
    pub cpu_ticks: u64,
}

/// Clock ticks per second of `/proc/<pid>/stat` (USER_HZ; 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

impl ProcSample {
    /// Reads `/proc/<pid>`; `None` when the process is not there (or not Linux).
    pub fn read(pid: u32) -> Option<Self> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let rss_kb = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the command name (which may hold spaces) start after ')'.
        let rest = stat.rsplit_once(')')?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let utime: u64 = fields.get(11)?.parse().ok()?;
        let stime: u64 = fields.get(12)?.parse().ok()?;
        Some(Self {
            rss_kb,
            cpu_ticks: utime + stime,
        })
    }

    /// The sum over every process whose command name is `name` (a database server runs as
    /// several processes: PostgreSQL backends, for one).
    pub fn read_all(name: &str) -> Option<Self> {
        let mut total = ProcSample::default();
        let mut found = false;
        for entry in std::fs::read_dir("/proc").ok()?.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if comm.trim() == name
                && let Some(s) = Self::read(pid)
            {
                total.rss_kb += s.rss_kb;
                total.cpu_ticks += s.cpu_ticks;
                found = true;
            }
        }
        found.then_some(total)
    }

    /// Cores used between two samples `seconds` apart.
    pub fn cores_since(&self, earlier: &ProcSample, seconds: f64) -> f64 {
        (self.cpu_ticks.saturating_sub(earlier.cpu_ticks)) as f64
            / TICKS_PER_SECOND
            / seconds.max(1e-9)
    }
}

/// A latency histogram in microseconds.
pub struct Latency(Histogram<u64>);

impl Default for Latency {
    fn default() -> Self {
        Self(Histogram::new_with_bounds(1, 120_000_000, 3).expect("histogram bounds"))
    }
}

impl Latency {
    pub fn record(&mut self, micros: u64) {
        let _ = self.0.record(micros.clamp(1, 120_000_000));
    }

    pub fn merge(&mut self, other: &Latency) {
        let _ = self.0.add(&other.0);
    }

    pub fn count(&self) -> u64 {
        self.0.len()
    }

    /// p50, p99, p99.9 and max in milliseconds.
    pub fn summary(&self) -> Value {
        let ms = |q: f64| (self.0.value_at_quantile(q) as f64) / 1000.0;
        json!({
            "p50_ms": ms(0.5),
            "p99_ms": ms(0.99),
            "p999_ms": ms(0.999),
            "max_ms": self.0.max() as f64 / 1000.0,
            "samples": self.0.len(),
        })
    }
}
