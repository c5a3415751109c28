//! The run directory: where a discovery run keeps its config, journal, report and best network.
//!
//! ```text
//! runs/20260129-101500/
//!   config.toml        the run's configuration, as given (no secrets: keys come from the environment)
//!   journal.jsonl      one JSON line per event (see docs/journal.md)
//!   report.md          the Markdown report (regenerate with `lemo report RUN_DIR`)
//!   plots/*.svg        metrics and CM per iteration, the Pareto front
//!   best/              the retrained best network: graph.json, network.dot, weights
//!   jobs/              with an executor: one job, result and log per candidate
//!                      (i003-c1.job.json, i003-c1.result.json, i003-c1.a1.log)
//! ```

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// File and folder names inside a run directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir {
    root: PathBuf,
}

impl RunDir {
    /// A run directory at `root` (nothing is created).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// Creates a fresh, uniquely named run directory `<parent>/<UTC timestamp>[-N]/`.
    pub fn create_timestamped(parent: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(parent)?;
        let stamp = utc_timestamp(SystemTime::now());
        for n in 1..1000 {
            let name = if n == 1 {
                stamp.clone()
            } else {
                format!("{stamp}-{n}")
            };
            let root = parent.join(name);
            match std::fs::create_dir(&root) {
                Ok(()) => return Ok(Self { root }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            format!("too many runs named {stamp} in {}", parent.display()),
        ))
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `config.toml`.
    pub fn config(&self) -> PathBuf {
        self.root.join("config.toml")
    }

    /// `journal.jsonl`.
    pub fn journal(&self) -> PathBuf {
        self.root.join("journal.jsonl")
    }

    /// `report.md`.
    pub fn report(&self) -> PathBuf {
        self.root.join("report.md")
    }

    /// `plots/`.
    pub fn plots(&self) -> PathBuf {
        self.root.join("plots")
    }

    /// `best/`: the retrained best network (graph, drawing, weights).
    pub fn best(&self) -> PathBuf {
        self.root.join("best")
    }

    /// `jobs/`: the evaluation jobs of the candidates, their results and logs.
    pub fn jobs(&self) -> PathBuf {
        self.root.join("jobs")
    }

    /// `jobs/iNNN-cK.job.json`: the job of candidate `candidate` of iteration `iteration`.
    pub fn job_file(&self, iteration: usize, candidate: usize) -> PathBuf {
        self.jobs()
            .join(format!("i{iteration:03}-c{candidate}.job.json"))
    }

    /// `jobs/iNNN-cK.result.json`: what its worker wrote.
    pub fn result_file(&self, iteration: usize, candidate: usize) -> PathBuf {
        self.jobs()
            .join(format!("i{iteration:03}-c{candidate}.result.json"))
    }

    /// `jobs/iNNN-cK.aN.log`: the worker's output, per attempt.
    pub fn job_log(&self, iteration: usize, candidate: usize, attempt: u32) -> PathBuf {
        self.jobs()
            .join(format!("i{iteration:03}-c{candidate}.a{attempt}.log"))
    }
}

/// `YYYYMMDD-HHMMSS` in UTC.
pub fn utc_timestamp(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (y, m, d) = civil_from_days(i64::try_from(secs / 86_400).unwrap_or(0));
    let rem = secs % 86_400;
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    (
        y,
        u32::try_from(m).unwrap_or(1),
        u32::try_from(d).unwrap_or(1),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_are_utc_calendar_dates() {
        assert_eq!(utc_timestamp(UNIX_EPOCH), "19700101-000000");
        // 2024-02-29 12:34:56 UTC (a leap day).
        let t = UNIX_EPOCH + Duration::from_secs(1_709_210_096);
        assert_eq!(utc_timestamp(t), "20240229-123456");
    }

    #[test]
    fn timestamped_dirs_are_unique() -> std::io::Result<()> {
        let tmp = tempfile::tempdir()?;
        let a = RunDir::create_timestamped(tmp.path())?;
        let b = RunDir::create_timestamped(tmp.path())?;
        assert_ne!(a.root(), b.root());
        assert!(a.root().is_dir() && b.root().is_dir());
        assert_eq!(
            a.journal().file_name().and_then(|s| s.to_str()),
            Some("journal.jsonl")
        );
        Ok(())
    }
}
