//! Evaluation jobs: everything a worker (`lemo evaluate JOB.json RESULT.json`) needs to train
//! and measure one candidate on its own, and the result it writes back. The loop, the workers
//! and resume share these types; both files are plain JSON in the run directory's `jobs/`.
//!
//! A job is self-contained: the network and its task, the training recipe with the seed
//! already derived, the dataset spec and its split settings (with the sizes the loop saw, so a
//! node with other data is refused), and the energy settings. Results are written atomically
//! (temporary file, `fsync`, rename, `fsync` of the folder), so a reader sees a whole result
//! or none. Both carry [`JOB_FORMAT`]; another version is refused with a clear error.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use lemo_arch::{Graph, Task, ValidatedGraph};
use lemo_train::{Evaluation, TrainConfig, TrainObserver, Trainer};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::config::{DataSection, EnergySection};
use crate::event::DataSummary;

/// Version of the job and result files written by this crate.
pub const JOB_FORMAT: u32 = 1;

/// One candidate to train and measure, as a worker reads it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvaluationJob {
    /// [`JOB_FORMAT`] of the writer.
    pub format: u32,
    /// The iteration the candidate belongs to.
    pub iteration: usize,
    /// 0-based candidate index.
    pub candidate: usize,
    /// Canonical hash of the network (checked by the worker).
    pub hash: String,
    /// The network.
    pub graph: Graph,
    /// Input shape, classes and budgets it was validated for.
    pub task: Task,
    /// The dataset and its split settings.
    pub data: DataSection,
    /// The sizes the loop's data had; a worker whose data differ refuses the job.
    pub data_summary: DataSummary,
    /// The training recipe, seed included (no test split: `evaluate_test` is false).
    pub training: TrainConfig,
    /// Energy metering and accounting.
    pub energy: EnergySection,
    /// Training threads the worker was given (informational; the executor sets them).
    pub threads: Option<usize>,
}

/// What a worker made of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
#[allow(clippy::large_enum_variant)]
pub enum JobOutcome {
    /// Trained and measured.
    Evaluated {
        /// The trainer's evaluation.
        evaluation: Box<Evaluation>,
    },
    /// The candidate could not be trained (or its data not loaded): a failed candidate.
    Failed {
        /// Why.
        error: String,
    },
}

/// The result file of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvaluationResult {
    /// [`JOB_FORMAT`] of the writer.
    pub format: u32,
    /// The job's iteration.
    pub iteration: usize,
    /// The job's candidate.
    pub candidate: usize,
    /// The job's network hash (a result for another network is ignored).
    pub hash: String,
    /// The evaluation or the error.
    pub outcome: JobOutcome,
    /// The machine that ran it.
    pub host: String,
    /// Threads available to the worker (`std::thread::available_parallelism`, which follows
    /// its CPU affinity).
    pub threads: usize,
    /// Wall-clock seconds the worker spent (data loading included).
    pub seconds: f64,
}

/// Errors of reading or writing job and result files.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a valid job or result.
    #[error("{path} is not a valid {what} file: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// `job` or `result`.
        what: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The file was written by another version of the format.
    #[error(
        "{path} is a {what} file of format {found}; this lemo reads format {expected} \
         (run the same lemo version on the loop and the workers)"
    )]
    Version {
        /// The file.
        path: PathBuf,
        /// `job` or `result`.
        what: &'static str,
        /// The version found.
        found: u64,
        /// The version this build reads.
        expected: u32,
    },
}

impl JobError {
    /// Exit code of `lemo evaluate` for this error: 2 (bad input) or 6 (I/O).
    pub fn exit_code(&self) -> i32 {
        match self {
            JobError::Io { .. } => 6,
            JobError::Corrupt { .. } | JobError::Version { .. } => 2,
        }
    }
}

/// Writes `bytes` to `path` atomically: a temporary file in the same folder, synced, renamed
/// over `path`, and the folder synced, so a reader (or a crash) sees the whole file or none.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), JobError> {
    let io = |source| JobError::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(io)?;
    // The rename is durable once the folder is synced (not possible on every platform).
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Writes a job or result as pretty JSON, atomically.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), JobError> {
    let text = serde_json::to_vec_pretty(value).map_err(|e| JobError::Corrupt {
        path: path.to_path_buf(),
        what: "job or result",
        reason: e.to_string(),
    })?;
    write_atomic(path, &text)
}

fn read_versioned<T: DeserializeOwned>(path: &Path, what: &'static str) -> Result<T, JobError> {
    let bytes = std::fs::read(path).map_err(|source| JobError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let corrupt = |reason: String| JobError::Corrupt {
        path: path.to_path_buf(),
        what,
        reason,
    };
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
    let format = value
        .get("format")
        .ok_or_else(|| corrupt("no `format` field".into()))?;
    let found = format
        .as_u64()
        .ok_or_else(|| corrupt(format!("`format` is {format}, not a number")))?;
    if found != u64::from(JOB_FORMAT) {
        return Err(JobError::Version {
            path: path.to_path_buf(),
            what,
            found,
            expected: JOB_FORMAT,
        });
    }
    serde_json::from_value(value).map_err(|e| corrupt(e.to_string()))
}

/// Reads a job file (any problem is a clear error naming the file).
pub fn read_job(path: &Path) -> Result<EvaluationJob, JobError> {
    read_versioned(path, "job")
}

/// Reads a result file.
pub fn read_result(path: &Path) -> Result<EvaluationResult, JobError> {
    read_versioned(path, "result")
}

/// The short host name of this machine (`HOSTNAME`, `/etc/hostname`, or `unknown`).
pub fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

impl EvaluationJob {
    /// Trains and measures the job's network with `trainer`, as the loop would in process:
    /// the network is validated again and its hash checked, the data loaded and split as the
    /// run splits it (and compared with the loop's sizes), the test split left out. Every
    /// failure after the job was read is a [`JobOutcome::Failed`] result, never a panic.
    pub fn run(
        &self,
        trainer: &mut dyn Trainer,
        observer: &mut dyn TrainObserver,
    ) -> EvaluationResult {
        let started = Instant::now();
        let outcome = match self.evaluate(trainer, observer) {
            Ok(ev) => JobOutcome::Evaluated {
                evaluation: Box::new(ev),
            },
            Err(error) => JobOutcome::Failed { error },
        };
        EvaluationResult {
            format: JOB_FORMAT,
            iteration: self.iteration,
            candidate: self.candidate,
            hash: self.hash.clone(),
            outcome,
            host: host_name(),
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            seconds: started.elapsed().as_secs_f64(),
        }
    }

    fn evaluate(
        &self,
        trainer: &mut dyn Trainer,
        observer: &mut dyn TrainObserver,
    ) -> Result<Evaluation, String> {
        let network = ValidatedGraph::new(self.graph.clone(), &self.task)
            .map_err(|e| format!("the job's network does not validate: {e}"))?;
        if network.canonical_hash() != self.hash {
            return Err(format!(
                "the job's network has hash {}, not {} as the job says",
                network.canonical_hash(),
                self.hash
            ));
        }
        let data = crate::discovery::load_split_data(&self.data).map_err(|e| e.to_string())?;
        if data.summary != self.data_summary {
            return Err(format!(
                "the data on {} differ from the loop's ({:?} here, {:?} there)",
                host_name(),
                data.summary,
                self.data_summary
            ));
        }
        let mut splits = data.splits;
        splits.test = None;
        let meter = self.energy.build_meter().map_err(|e| e.to_string())?;
        let mut cfg = self.training.clone();
        cfg.evaluate_test = false;
        trainer
            .train(&network, &splits, &cfg, meter.as_ref(), observer)
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_whole_files() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let p = dir.path().join("r.json");
        write_atomic(&p, b"first")?;
        write_atomic(&p, b"second")?;
        assert_eq!(std::fs::read(&p)?, b"second");
        let left: Vec<_> = std::fs::read_dir(dir.path())?.collect();
        assert_eq!(left.len(), 1, "no temporary file left behind");
        Ok(())
    }

    #[test]
    fn corrupt_and_foreign_files_are_clear_errors() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let p = dir.path().join("job.json");
        std::fs::write(&p, "{not json")?;
        let e = read_job(&p)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("not a valid job file"), "{e}");
        std::fs::write(&p, r#"{"format": 99, "iteration": 1}"#)?;
        let e = read_job(&p).err();
        assert!(
            matches!(e, Some(JobError::Version { found: 99, .. })),
            "{e:?}"
        );
        std::fs::write(&p, r#"{"iteration": 1}"#)?;
        let e = read_job(&p)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("no `format` field"), "{e}");
        std::fs::write(&p, r#"{"format": 1, "iteration": "one"}"#)?;
        let e = read_result(&p)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("not a valid result file"), "{e}");
        let e = read_job(&dir.path().join("missing.json")).err();
        assert!(matches!(e, Some(JobError::Io { .. })), "{e:?}");
        Ok(())
    }
}
