//! Executors: who runs the `lemo evaluate JOB RESULT` workers of an iteration's candidates.
//!
//! [`JobRunner`] is the seam between the loop and an execution engine: submit a job, ask for
//! the state of jobs by id, cancel jobs. Two implementations:
//!
//! - [`ProcessRunner`] (`[executor] kind = "processes"`): local child processes, at most
//!   `workers` at once, each pinned to its share of the loop's CPUs with `taskset -c` (util-linux)
//!   and given that many training threads (`RAYON_NUM_THREADS`). Children run in their own
//!   process group, so a Ctrl-C in the terminal reaches the loop only, which cancels them.
//! - [`SlurmRunner`] (`kind = "slurm"`): one `sbatch` job per candidate; states from `squeue`,
//!   then `sacct` (accounting database, or `sacct -c`: the job completion log), then
//!   `scontrol show job`; `scancel` to cancel.
//!
//! The loop (in `discovery.rs`) owns the policy: what to journal, when to resubmit, when a
//! candidate has failed. A runner only reports what the engine says.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::config::{ExecutorKind, ExecutorSection, SlurmSection};

/// Errors of an executor.
#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    /// A command the executor needs is not there (e.g. `sbatch` not on the PATH).
    #[error(
        "executor `{kind}`: `{tool}` was not found {place}; install SLURM's client commands or \
         set executor.slurm.bin_dir"
    )]
    MissingTool {
        /// The executor kind.
        kind: &'static str,
        /// The command.
        tool: &'static str,
        /// Where it was looked for.
        place: String,
    },
    /// The run directory is not on a filesystem the compute nodes see.
    #[error(
        "the run directory {dir} is not visible on the compute nodes ({detail}); put \
         run.out_dir on a filesystem the nodes share (NFS, Lustre, GPFS, ...)"
    )]
    NotShared {
        /// The run directory.
        dir: PathBuf,
        /// What the probe saw.
        detail: String,
    },
    /// A command failed.
    #[error("`{command}` failed: {message}")]
    Command {
        /// The command line, shortened.
        command: String,
        /// Its error output or the reason it could not run.
        message: String,
    },
    /// A worker process could not be started.
    #[error("cannot start the worker {exe}: {source}")]
    Spawn {
        /// The worker binary.
        exe: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

impl ExecutorError {
    /// Whether the error is the user's to fix in the configuration or the environment (exit
    /// code 2) rather than a failure of the engine (exit code 8).
    pub fn is_setup(&self) -> bool {
        matches!(
            self,
            ExecutorError::MissingTool { .. } | ExecutorError::NotShared { .. }
        )
    }
}

/// One job to run: `worker evaluate job result`, its output going to `log`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSpec {
    /// The job file (absolute).
    pub job: PathBuf,
    /// The result file the worker writes (absolute).
    pub result: PathBuf,
    /// The worker's output (absolute).
    pub log: PathBuf,
    /// A short name (`i003-c1`), for the engine's listings.
    pub name: String,
}

/// What the engine says about a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobStatus {
    /// Waiting or running; the engine's state name (`PENDING`, `RUNNING`, ...).
    Active(String),
    /// Ended; the engine's state name (`COMPLETED`, `NODE_FAIL`, `EXITED 1`, ...) and whether
    /// the job may be submitted again (the node or the scheduler ended it, not the worker).
    Ended {
        /// The state.
        state: String,
        /// Whether a resubmission may succeed.
        retry: bool,
    },
    /// The engine knows nothing of the job (gone from every listing, or never seen).
    Unknown,
}

/// An execution engine for evaluation jobs.
pub trait JobRunner: Send {
    /// `processes` or `slurm`, as the journal names it.
    fn kind(&self) -> &'static str;
    /// Most jobs in flight at once.
    fn capacity(&self) -> usize;
    /// Time between two polls.
    fn poll_interval(&self) -> Duration;
    /// Starts a job; returns its id.
    fn submit(&mut self, job: &JobSpec) -> Result<String, ExecutorError>;
    /// The state of each job id asked about (ids the engine does not know are
    /// [`JobStatus::Unknown`]).
    fn poll(&mut self, ids: &[String]) -> Result<HashMap<String, JobStatus>, ExecutorError>;
    /// Cancels jobs (best effort).
    fn cancel(&mut self, ids: &[String]);
    /// Takes over a job an earlier loop process submitted (resume): true when it still runs
    /// (or waits) and will write `job.result`.
    fn attach(&mut self, id: &str, job: &JobSpec) -> bool;
    /// A line for the journal: the worker, the capacity and how the workers are placed.
    fn describe(&self) -> String;
}

/// The `lemo` binary the workers run: `executor.worker`, else `CARGO_BIN_EXE_lemo` (set by
/// cargo for tests), else the running binary.
pub fn worker_binary(section: &ExecutorSection) -> Result<PathBuf, ExecutorError> {
    if let Some(w) = &section.worker {
        return Ok(w.clone());
    }
    if let Some(w) = std::env::var_os("CARGO_BIN_EXE_lemo") {
        return Ok(PathBuf::from(w));
    }
    std::env::current_exe().map_err(|e| ExecutorError::Command {
        command: "current_exe".into(),
        message: format!("cannot find the running lemo binary: {e}; set executor.worker"),
    })
}

/// Finds `tool` in `dir` or on the PATH.
fn find_tool(tool: &str, dir: Option<&Path>) -> Option<PathBuf> {
    match dir {
        Some(d) => Some(d.join(tool)).filter(|p| p.is_file()),
        None => std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join(tool))
                .find(|p| p.is_file())
        }),
    }
}

/// The CPUs this process may run on (`Cpus_allowed_list` of /proc/self/status), or 0..n.
pub fn allowed_cpus() -> Vec<usize> {
    let parsed = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                .map(|l| parse_cpu_list(l.trim()))
        })
        .filter(|v| !v.is_empty());
    parsed.unwrap_or_else(|| {
        (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect()
    })
}

/// Parses a CPU list such as `0-3,8,10-11`; malformed parts are skipped.
pub fn parse_cpu_list(s: &str) -> Vec<usize> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<usize>(), b.parse::<usize>())
                    && a <= b
                    && b - a < 65_536
                {
                    out.extend(a..=b);
                }
            }
            None => {
                if let Ok(c) = part.parse() {
                    out.push(c);
                }
            }
        }
    }
    out
}

/// Splits `cpus` into `workers` contiguous shares (the first ones one larger when they do
/// not divide evenly); with more workers than CPUs, CPUs are shared round-robin.
pub fn cpu_shares(cpus: &[usize], workers: usize) -> Vec<Vec<usize>> {
    let workers = workers.max(1);
    if cpus.is_empty() {
        return vec![Vec::new(); workers];
    }
    if workers >= cpus.len() {
        return (0..workers)
            .map(|i| cpus.get(i % cpus.len()).copied().into_iter().collect())
            .collect();
    }
    let (base, extra) = (cpus.len() / workers, cpus.len() % workers);
    let mut shares = Vec::with_capacity(workers);
    let mut start = 0;
    for i in 0..workers {
        let len = base + usize::from(i < extra);
        shares.push(cpus.iter().skip(start).take(len).copied().collect());
        start += len;
    }
    shares
}

fn cpu_list_text(cpus: &[usize]) -> String {
    cpus.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Local worker processes, each pinned to its share of the CPUs.
pub struct ProcessRunner {
    worker: PathBuf,
    taskset: Option<PathBuf>,
    shares: Vec<Vec<usize>>,
    /// Child processes of this loop: id -> (child, slot).
    children: HashMap<String, (Child, usize)>,
    /// Processes of an earlier loop process found running on resume: id -> slot.
    adopted: HashMap<String, usize>,
    /// How processes that ended, ended (asked about again while a result is awaited).
    ended: HashMap<String, JobStatus>,
}

impl std::fmt::Debug for ProcessRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessRunner")
            .field("worker", &self.worker)
            .field("shares", &self.shares)
            .finish_non_exhaustive()
    }
}

impl ProcessRunner {
    /// `workers` processes at most (default: one per candidate, at most one per CPU), running
    /// `worker`, pinned with `taskset` when it is on the PATH.
    pub fn new(worker: PathBuf, workers: Option<usize>, candidates: usize) -> Self {
        let cpus = allowed_cpus();
        let workers = workers.unwrap_or_else(|| candidates.min(cpus.len())).max(1);
        Self {
            worker,
            taskset: find_tool("taskset", None),
            shares: cpu_shares(&cpus, workers),
            children: HashMap::new(),
            adopted: HashMap::new(),
            ended: HashMap::new(),
        }
    }

    /// How each worker slot is pinned, e.g. `["0", "1"]`, and whether `taskset` pins at all.
    pub fn pinning(&self) -> (Vec<String>, bool) {
        (
            self.shares.iter().map(|s| cpu_list_text(s)).collect(),
            self.taskset.is_some(),
        )
    }

    fn free_slot(&self) -> Option<usize> {
        (0..self.shares.len()).find(|s| {
            !self.children.values().any(|(_, used)| used == s)
                && !self.adopted.values().any(|used| used == s)
        })
    }

    /// Whether process `pid` is alive and runs this job (`/proc/PID/cmdline` names the
    /// result file); a zombie or another program is not.
    fn runs_job(pid: &str, result: Option<&Path>) -> bool {
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            return false;
        };
        let text = String::from_utf8_lossy(&cmdline);
        text.contains("evaluate") && result.is_none_or(|r| text.contains(&*r.to_string_lossy()))
    }

    /// Takes over a worker an earlier loop process started (resume): true when process `pid`
    /// still runs the job writing `result`.
    pub fn adopt(&mut self, pid: &str, result: &Path) -> bool {
        if !Self::runs_job(pid, Some(result)) {
            return false;
        }
        let slot = self.free_slot().unwrap_or(0);
        self.adopted.insert(pid.to_string(), slot);
        true
    }
}

impl JobRunner for ProcessRunner {
    fn kind(&self) -> &'static str {
        ExecutorKind::Processes.name()
    }

    fn capacity(&self) -> usize {
        self.shares.len()
    }

    fn poll_interval(&self) -> Duration {
        Duration::from_millis(100)
    }

    fn submit(&mut self, job: &JobSpec) -> Result<String, ExecutorError> {
        let slot = self.free_slot().unwrap_or(0);
        let cpus = self.shares.get(slot).cloned().unwrap_or_default();
        let log = std::fs::File::create(&job.log).map_err(|source| ExecutorError::Spawn {
            exe: job.log.clone(),
            source,
        })?;
        let log2 = log.try_clone().map_err(|source| ExecutorError::Spawn {
            exe: job.log.clone(),
            source,
        })?;
        let mut cmd = match (&self.taskset, cpus.is_empty()) {
            (Some(taskset), false) => {
                let mut c = Command::new(taskset);
                c.arg("-c").arg(cpu_list_text(&cpus)).arg(&self.worker);
                c
            }
            _ => Command::new(&self.worker),
        };
        cmd.arg("evaluate")
            .arg(&job.job)
            .arg(&job.result)
            .env("RAYON_NUM_THREADS", cpus.len().max(1).to_string())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        #[cfg(unix)]
        {
            use std::os::unix::process::CommandExt;
            // Own process group: the terminal's Ctrl-C reaches the loop, which cancels.
            cmd.process_group(0);
        }
        let child = cmd.spawn().map_err(|source| ExecutorError::Spawn {
            exe: self.worker.clone(),
            source,
        })?;
        let id = child.id().to_string();
        self.children.insert(id.clone(), (child, slot));
        Ok(id)
    }

    fn poll(&mut self, ids: &[String]) -> Result<HashMap<String, JobStatus>, ExecutorError> {
        let mut out = HashMap::new();
        for id in ids {
            let status = if let Some((child, _)) = self.children.get_mut(id) {
                match child.try_wait() {
                    Ok(None) => JobStatus::Active("RUNNING".into()),
                    Ok(Some(st)) => {
                        self.children.remove(id);
                        JobStatus::Ended {
                            state: match st.code() {
                                Some(c) => format!("EXITED {c}"),
                                None => format!("KILLED ({st})"),
                            },
                            retry: false,
                        }
                    }
                    Err(e) => {
                        self.children.remove(id);
                        JobStatus::Ended {
                            state: format!("LOST ({e})"),
                            retry: false,
                        }
                    }
                }
            } else if self.adopted.contains_key(id) {
                if Self::runs_job(id, None) {
                    JobStatus::Active("RUNNING".into())
                } else {
                    self.adopted.remove(id);
                    JobStatus::Ended {
                        state: "EXITED".into(),
                        retry: false,
                    }
                }
            } else {
                self.ended.get(id).cloned().unwrap_or(JobStatus::Unknown)
            };
            if matches!(status, JobStatus::Ended { .. }) {
                self.ended.insert(id.clone(), status.clone());
            }
            out.insert(id.clone(), status);
        }
        Ok(out)
    }

    fn attach(&mut self, id: &str, job: &JobSpec) -> bool {
        self.adopt(id, &job.result)
    }

    fn describe(&self) -> String {
        let (shares, pinned) = self.pinning();
        format!(
            "{} local worker process(es) running {}; {}",
            self.shares.len(),
            self.worker.display(),
            if pinned {
                format!("pinned with taskset -c to CPUs [{}]", shares.join("] ["))
            } else {
                "not pinned (taskset not found)".to_string()
            }
        )
    }

    fn cancel(&mut self, ids: &[String]) {
        for id in ids {
            if let Some((mut child, _)) = self.children.remove(id) {
                let _ = child.kill();
                let _ = child.wait();
            } else if self.adopted.remove(id).is_some() && Self::runs_job(id, None) {
                // Not our child: signal it by its id with the kill command.
                let _ = Command::new("kill")
                    .arg(id)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }
}

impl Drop for ProcessRunner {
    fn drop(&mut self) {
        // Reap children that ended; running ones keep running (a resumed loop adopts them).
        for (child, _) in self.children.values_mut() {
            let _ = child.try_wait();
        }
    }
}

/// SLURM's end states after which a job is submitted again (the node, the scheduler or the
/// clock ended it, not the worker): `NODE_FAIL`, `PREEMPTED`, `TIMEOUT`, `BOOT_FAIL`,
/// `DEADLINE`, and `CANCELLED` by someone other than the loop.
pub const RESUBMITTED_STATES: [&str; 6] = [
    "NODE_FAIL",
    "PREEMPTED",
    "TIMEOUT",
    "BOOT_FAIL",
    "DEADLINE",
    "CANCELLED",
];

/// Classifies a SLURM state name (first word, `+` suffixes dropped).
pub fn slurm_status(state: &str) -> JobStatus {
    let word = state
        .split_whitespace()
        .next()
        .unwrap_or("")
        .trim_end_matches('+')
        .to_ascii_uppercase();
    match word.as_str() {
        "" => JobStatus::Unknown,
        "PENDING" | "CONFIGURING" | "RUNNING" | "COMPLETING" | "SUSPENDED" | "REQUEUED"
        | "REQUEUE_FED" | "REQUEUE_HOLD" | "RESIZING" | "RESV_DEL_HOLD" | "SIGNALING"
        | "STAGE_OUT" | "STOPPED" => JobStatus::Active(word),
        _ => JobStatus::Ended {
            retry: RESUBMITTED_STATES.contains(&word.as_str()),
            state: word,
        },
    }
}

/// Parses `sbatch --parsable` output: `JOBID` or `JOBID;CLUSTER`.
pub fn parse_sbatch_id(stdout: &str) -> Option<String> {
    let line = stdout.lines().map(str::trim).find(|l| !l.is_empty())?;
    let id = line.split(';').next()?.trim();
    (!id.is_empty() && id.chars().all(|c| c.is_ascii_digit())).then(|| id.to_string())
}

/// Parses `ID|STATE[|...]` lines (squeue `-o %i|%T`, sacct `-P -o JobID,State,...`) into
/// states of the ids asked about; job steps (`123.batch`) and other ids are skipped.
pub fn parse_state_lines(text: &str, ids: &[String]) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for line in text.lines() {
        let mut parts = line.trim().split('|');
        let (Some(id), Some(state)) = (parts.next(), parts.next()) else {
            continue;
        };
        let id = id.trim();
        if ids.iter().any(|i| i == id) && !state.trim().is_empty() {
            out.insert(id.to_string(), state.trim().to_string());
        }
    }
    out
}

/// Parses `JobState=` out of `scontrol -o show job` output.
pub fn parse_scontrol_state(text: &str) -> Option<String> {
    text.split_whitespace()
        .find_map(|w| w.strip_prefix("JobState="))
        .map(str::to_string)
        .filter(|s| !s.is_empty())
}

/// One candidate per SLURM job.
#[derive(Debug)]
pub struct SlurmRunner {
    config: SlurmSection,
    worker: PathBuf,
    workdir: PathBuf,
    job_name: String,
    capacity: usize,
    sbatch: PathBuf,
    squeue: PathBuf,
    sacct: Option<PathBuf>,
    scontrol: Option<PathBuf>,
    scancel: Option<PathBuf>,
    /// Whether `sacct` against the accounting database works here (unknown until tried).
    sacct_db: Option<bool>,
}

/// Runs a command, returning its stdout, or its stderr as the error.
fn run_command(program: &Path, args: &[String]) -> Result<String, ExecutorError> {
    let shown = || {
        let mut s = program.display().to_string();
        for a in args.iter().take(6) {
            s.push(' ');
            s.push_str(a);
        }
        s
    };
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| ExecutorError::Command {
            command: shown(),
            message: e.to_string(),
        })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
        Err(ExecutorError::Command {
            command: shown(),
            message: if err.is_empty() {
                format!("exit status {}", out.status)
            } else {
                err
            },
        })
    }
}

/// Quotes a string for `sh`.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

impl SlurmRunner {
    /// A runner for the run directory `workdir` (absolute), running `worker`; fails when
    /// `sbatch` or `squeue` cannot be found.
    pub fn new(
        config: SlurmSection,
        worker: PathBuf,
        workdir: PathBuf,
        workers: Option<usize>,
        candidates: usize,
    ) -> Result<Self, ExecutorError> {
        let dir = config.bin_dir.clone();
        let place = match &dir {
            Some(d) => format!("in {} (executor.slurm.bin_dir)", d.display()),
            None => "on the PATH".to_string(),
        };
        let need = |tool: &'static str| {
            find_tool(tool, dir.as_deref()).ok_or_else(|| ExecutorError::MissingTool {
                kind: "slurm",
                tool,
                place: place.clone(),
            })
        };
        let sbatch = need("sbatch")?;
        let squeue = need("squeue")?;
        let tag = workdir
            .file_name()
            .map_or_else(|| "run".into(), |n| n.to_string_lossy().into_owned());
        Ok(Self {
            sacct: find_tool("sacct", dir.as_deref()),
            scontrol: find_tool("scontrol", dir.as_deref()),
            scancel: find_tool("scancel", dir.as_deref()),
            job_name: format!("lemo-{tag}"),
            capacity: workers.unwrap_or(candidates).max(1),
            config,
            worker,
            workdir,
            sbatch,
            squeue,
            sacct_db: None,
        })
    }

    fn sbatch_args(&self, name: &str, log: &Path) -> Vec<String> {
        let c = &self.config;
        let mut args = vec![
            "--parsable".to_string(),
            format!("--job-name={}-{name}", self.job_name),
            format!("--output={}", log.display()),
            format!("--chdir={}", self.workdir.display()),
        ];
        let opt = |flag: &str, v: &Option<String>| v.as_ref().map(|v| format!("--{flag}={v}"));
        args.extend(opt("partition", &c.partition));
        args.extend(opt("account", &c.account));
        args.extend(opt("time", &c.time_limit));
        args.extend(opt("gres", &c.gres));
        if let Some(n) = c.cpus_per_task {
            args.push(format!("--cpus-per-task={n}"));
        }
        args.extend(c.extra_args.iter().cloned());
        args
    }

    fn sbatch(&self, name: &str, log: &Path, script: String) -> Result<String, ExecutorError> {
        let mut args = self.sbatch_args(name, log);
        args.push(format!("--wrap={script}"));
        let out = run_command(&self.sbatch, &args)?;
        parse_sbatch_id(&out).ok_or_else(|| ExecutorError::Command {
            command: "sbatch --parsable".into(),
            message: format!("no job id in its output {:?}", out.trim()),
        })
    }

    /// Checks that the nodes see the run directory: a probe job writes its host name into
    /// `jobs/probe-*.txt`. `Ok(None)`: seen. `Ok(Some(warning))`: the probe did not run within
    /// `probe_timeout` (cancelled; the run goes on). Err: the probe ran and its file never
    /// appeared, or `sbatch` refused the settings.
    pub fn probe_shared_dir(&mut self, jobs_dir: &Path) -> Result<Option<String>, ExecutorError> {
        let stamp = crate::journal::unix_ms_now();
        let file = jobs_dir.join(format!("probe-{stamp}.txt"));
        let log = jobs_dir.join(format!("probe-{stamp}.log"));
        let script = format!("hostname > {}", sh_quote(&file.display().to_string()));
        let id = self.sbatch("probe", &log, script)?;
        let limit = Duration::from_secs_f64(self.config.probe_timeout);
        let started = Instant::now();
        let step = Duration::from_secs_f64(self.config.poll_interval.min(1.0));
        let mut ended_at: Option<(Instant, String)> = None;
        // Looked for in a fresh listing of the folder: a network filesystem may cache a
        // failed lookup of the file, not a new listing.
        let name = file.file_name().map(|n| n.to_os_string());
        let listed = || {
            std::fs::read_dir(jobs_dir).is_ok_and(|d| {
                d.filter_map(Result::ok)
                    .any(|e| Some(e.file_name()) == name)
            })
        };
        loop {
            if listed() {
                let _ = std::fs::remove_file(&file);
                let _ = std::fs::remove_file(&log);
                return Ok(None);
            }
            if let Some((at, state)) = &ended_at {
                // Shared filesystems may show a new file a little later (attribute caches).
                if at.elapsed() > Duration::from_secs(10) {
                    return Err(ExecutorError::NotShared {
                        dir: self.workdir.clone(),
                        detail: format!(
                            "probe job {id} ended {state} but the file it wrote, {}, did not \
                             appear here",
                            file.display()
                        ),
                    });
                }
            } else {
                let ids = [id.clone()];
                match self.poll(&ids)?.remove(&id) {
                    Some(JobStatus::Ended { state, .. }) => {
                        ended_at = Some((Instant::now(), state))
                    }
                    Some(JobStatus::Unknown) if started.elapsed() > Duration::from_secs(30) => {
                        ended_at = Some((Instant::now(), "(gone from squeue and sacct)".into()));
                    }
                    _ => {}
                }
                if ended_at.is_none() && started.elapsed() > limit {
                    self.cancel(&ids);
                    return Ok(Some(format!(
                        "the SLURM probe job {id} did not run within executor.slurm.probe_timeout \
                         ({:.0} s); whether the nodes see the run directory is not known yet",
                        self.config.probe_timeout
                    )));
                }
            }
            std::thread::sleep(step);
        }
    }

    fn sacct_states(&mut self, ids: &[String]) -> HashMap<String, String> {
        let Some(sacct) = self.sacct.clone() else {
            return HashMap::new();
        };
        let list = ids.join(",");
        let base = |extra: &[&str]| {
            let mut a: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
            a.extend([
                "-n".into(),
                "-P".into(),
                format!("--jobs={list}"),
                "--format=JobID,State,ExitCode".into(),
            ]);
            a
        };
        if self.sacct_db != Some(false) {
            match run_command(&sacct, &base(&["-X"])) {
                Ok(text) => {
                    self.sacct_db = Some(true);
                    let found = parse_state_lines(&text, ids);
                    if !found.is_empty() {
                        return found;
                    }
                }
                Err(_) => self.sacct_db = Some(false),
            }
        }
        // Without the accounting database: the job completion log (jobcomp/filetxt).
        run_command(&sacct, &base(&["-c"]))
            .map(|text| parse_state_lines(&text, ids))
            .unwrap_or_default()
    }
}

impl JobRunner for SlurmRunner {
    fn kind(&self) -> &'static str {
        ExecutorKind::Slurm.name()
    }

    fn capacity(&self) -> usize {
        self.capacity
    }

    fn poll_interval(&self) -> Duration {
        Duration::from_secs_f64(self.config.poll_interval)
    }

    fn submit(&mut self, job: &JobSpec) -> Result<String, ExecutorError> {
        let threads = self.config.cpus_per_task.unwrap_or(1);
        let script = format!(
            "export RAYON_NUM_THREADS={threads}; exec {} evaluate {} {}",
            sh_quote(&self.worker.display().to_string()),
            sh_quote(&job.job.display().to_string()),
            sh_quote(&job.result.display().to_string()),
        );
        self.sbatch(&job.name, &job.log, script)
    }

    fn poll(&mut self, ids: &[String]) -> Result<HashMap<String, JobStatus>, ExecutorError> {
        let mut states: HashMap<String, String> = HashMap::new();
        if !ids.is_empty() {
            let args = vec![
                "--noheader".to_string(),
                "--format=%i|%T".to_string(),
                format!("--jobs={}", ids.join(",")),
            ];
            // squeue fails ("Invalid job id") when none of the ids is known any more.
            if let Ok(text) = run_command(&self.squeue, &args) {
                states = parse_state_lines(&text, ids);
            }
        }
        let missing: Vec<String> = ids
            .iter()
            .filter(|i| !states.contains_key(*i))
            .cloned()
            .collect();
        if !missing.is_empty() {
            states.extend(self.sacct_states(&missing));
        }
        if let Some(scontrol) = self.scontrol.clone() {
            let unknown: Vec<&String> = ids.iter().filter(|i| !states.contains_key(*i)).collect();
            for id in unknown {
                let args = vec!["-o".to_string(), "show".into(), "job".into(), id.clone()];
                if let Some(s) = run_command(&scontrol, &args)
                    .ok()
                    .and_then(|t| parse_scontrol_state(&t))
                {
                    states.insert(id.clone(), s);
                }
            }
        }
        Ok(ids
            .iter()
            .map(|id| {
                let st = states
                    .get(id)
                    .map_or(JobStatus::Unknown, |s| slurm_status(s));
                (id.clone(), st)
            })
            .collect())
    }

    fn attach(&mut self, id: &str, _job: &JobSpec) -> bool {
        let ids = [id.to_string()];
        matches!(
            self.poll(&ids).ok().and_then(|mut m| m.remove(id)),
            Some(JobStatus::Active(_))
        )
    }

    fn describe(&self) -> String {
        let c = &self.config;
        format!(
            "SLURM: up to {} job(s) at once running {}; sbatch {}; polled every {} s; up to {} \
             resubmission(s)",
            self.capacity,
            self.worker.display(),
            self.sbatch_args("JOB", Path::new("LOG"))
                .into_iter()
                .skip(4)
                .collect::<Vec<_>>()
                .join(" "),
            c.poll_interval,
            c.max_resubmits
        )
    }

    fn cancel(&mut self, ids: &[String]) {
        if ids.is_empty() {
            return;
        }
        if let Some(scancel) = &self.scancel {
            let _ = run_command(scancel, ids);
        }
    }
}

/// The runner an `[executor]` section asks for (`None` for `in_process`).
pub fn build_runner(
    section: &ExecutorSection,
    candidates: usize,
    run_dir: &Path,
) -> Result<Option<Box<dyn JobRunner>>, ExecutorError> {
    match section.kind {
        ExecutorKind::InProcess => Ok(None),
        ExecutorKind::Processes => Ok(Some(Box::new(ProcessRunner::new(
            worker_binary(section)?,
            section.workers,
            candidates,
        )))),
        ExecutorKind::Slurm => Ok(Some(Box::new(SlurmRunner::new(
            section.slurm.clone(),
            worker_binary(section)?,
            run_dir.to_path_buf(),
            section.workers,
            candidates,
        )?))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_and_shares() {
        assert_eq!(parse_cpu_list("0-3,8,10-11"), vec![0, 1, 2, 3, 8, 10, 11]);
        assert_eq!(parse_cpu_list("x,2,5-3"), vec![2]);
        assert_eq!(cpu_shares(&[0, 1], 2), vec![vec![0], vec![1]]);
        assert_eq!(cpu_shares(&[0, 1, 2], 2), vec![vec![0, 1], vec![2]]);
        assert_eq!(cpu_shares(&[4, 5], 3), vec![vec![4], vec![5], vec![4]]);
        assert_eq!(cpu_shares(&[0, 1, 2, 3], 1), vec![vec![0, 1, 2, 3]]);
    }

    #[test]
    fn slurm_outputs_are_parsed_without_trusting_them() {
        assert_eq!(parse_sbatch_id("1234\n").as_deref(), Some("1234"));
        assert_eq!(parse_sbatch_id("77;cluster2").as_deref(), Some("77"));
        assert_eq!(parse_sbatch_id("Submitted batch job 5"), None);
        assert_eq!(parse_sbatch_id(""), None);
        let ids = vec!["12".to_string(), "13".to_string()];
        let s = parse_state_lines(
            "12|RUNNING\n12.batch|RUNNING|0:0\n99|PENDING\ngarbage\n13|CANCELLED by 0|0:0\n",
            &ids,
        );
        assert_eq!(s.get("12").map(String::as_str), Some("RUNNING"));
        assert_eq!(s.get("13").map(String::as_str), Some("CANCELLED by 0"));
        assert_eq!(s.len(), 2);
        assert_eq!(
            parse_scontrol_state("JobId=3 JobName=x JobState=TIMEOUT Reason=TimeLimit").as_deref(),
            Some("TIMEOUT")
        );
        assert_eq!(parse_scontrol_state("nothing here"), None);
        assert_eq!(slurm_status("RUNNING"), JobStatus::Active("RUNNING".into()));
        assert_eq!(
            slurm_status("CANCELLED by 0"),
            JobStatus::Ended {
                state: "CANCELLED".into(),
                retry: true
            }
        );
        assert_eq!(
            slurm_status("NODE_FAIL"),
            JobStatus::Ended {
                state: "NODE_FAIL".into(),
                retry: true
            }
        );
        assert_eq!(
            slurm_status("FAILED"),
            JobStatus::Ended {
                state: "FAILED".into(),
                retry: false
            }
        );
        assert_eq!(slurm_status(""), JobStatus::Unknown);
    }

    #[test]
    fn missing_sbatch_is_a_setup_error_naming_it() {
        let dir = std::env::temp_dir().join("lemo-no-slurm-here");
        let cfg = SlurmSection {
            bin_dir: Some(dir.clone()),
            ..SlurmSection::default()
        };
        let e = SlurmRunner::new(cfg, "lemo".into(), dir, None, 2).err();
        let text = e.as_ref().map(ToString::to_string).unwrap_or_default();
        assert!(
            text.contains("sbatch") && text.contains("bin_dir"),
            "{text}"
        );
        assert!(e.is_some_and(|e| e.is_setup()));
    }
}
