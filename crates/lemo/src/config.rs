//! [`RunConfig`]: one TOML file for everything a discovery run needs.
//!
//! Every section is optional except what has no sensible default; a preset can stand in for the
//! user metrics (`[metrics] preset = "cifar10"`, optionally `setting = 3` for Table 4) and for
//! the training recipes (`[search] preset = "paper_search"`), with any key overriding it. Errors
//! name the section and key. See `docs/usage.md` for the full reference.

use std::path::{Path, PathBuf};

use lemo_arch::Limits;
use lemo_energy::{Accounting, MeterConfig};
use lemo_llm::ArchitectConfig;
use lemo_metrics::{NormalisationChoice, PaperDataset, UserMetrics, table4_setting};
use lemo_train::TrainConfig;
use lemo_train::data::DatasetSpec;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The quickstart configuration embedded in the binary: scikit-learn digits, the offline
/// architect, a handful of cheap iterations. `lemo discover` without arguments runs it.
pub const QUICKSTART_TOML: &str = include_str!("../../../configs/quickstart.toml");

/// A configuration error; the message names the section and key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The text is not valid TOML.
    #[error("config is not valid TOML: {0}")]
    Syntax(String),
    /// A key has a wrong type, an unknown name or an invalid value.
    #[error("config key `{key}`: {message}")]
    Key {
        /// Dotted key path, e.g. `termination.iterations`.
        key: String,
        /// What is wrong.
        message: String,
    },
}

fn key_err(key: impl Into<String>, message: impl std::fmt::Display) -> ConfigError {
    ConfigError::Key {
        key: key.into(),
        message: message.to_string(),
    }
}

/// Everything a discovery run needs, read from one TOML file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    /// `[run]`: name, seed, output folder, repair rounds.
    pub run: RunSection,
    /// `[data]`: the dataset and how it is split.
    pub data: DataSection,
    /// `[task]`: budgets on the network (parameters, MACs, activation memory).
    pub task: TaskSection,
    /// `[metrics]`: the user-defined metrics (Table 1: priorities, thresholds, CM weights).
    pub metrics: UserMetrics,
    /// `[expert]`: the rule book.
    pub expert: ExpertSection,
    /// `[architect]`: who writes the networks (offline, OpenAI-compatible, Gemini).
    pub architect: ArchitectConfig,
    /// `[search]`: where each next network starts from, and how each candidate is trained.
    pub search: SearchSection,
    /// `[final]`: how the best network is retrained at the end.
    #[serde(rename = "final")]
    pub final_training: FinalSection,
    /// `[termination]`: when the search stops.
    pub termination: Termination,
    /// `[energy]`: meters and the kWh-PUE / CO2 accounting.
    pub energy: EnergySection,
    /// `[effectiveness]`: how CM (equation 1) normalises FPS and energies.
    #[serde(default)]
    pub effectiveness: EffectivenessSection,
    /// `[executor]`: where candidates are trained (in the loop's process by default, or by
    /// `lemo evaluate` workers: local processes or SLURM jobs). Left out of the journal and
    /// `config.toml` while it is the default, so a default run's files are unchanged.
    #[serde(default, skip_serializing_if = "ExecutorSection::is_default")]
    pub executor: ExecutorSection,
}

/// `[executor] kind`: who trains and measures the candidates of an iteration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutorKind {
    /// The loop's own process, one candidate after the other (the paper; the default).
    #[default]
    InProcess,
    /// Up to `workers` local `lemo evaluate` processes at once, each pinned to its share of
    /// the cores.
    Processes,
    /// One SLURM job per candidate (`sbatch`, `squeue`/`sacct`, `scancel`).
    Slurm,
}

impl ExecutorKind {
    /// The name used in the configuration and the journal.
    pub fn name(self) -> &'static str {
        match self {
            ExecutorKind::InProcess => "in_process",
            ExecutorKind::Processes => "processes",
            ExecutorKind::Slurm => "slurm",
        }
    }
}

/// `[executor]`: where the candidates of an iteration are trained and measured.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExecutorSection {
    /// `in_process` (default), `processes` or `slurm`.
    pub kind: ExecutorKind,
    /// Most candidates trained at once: worker processes (`processes`; default one per
    /// candidate, at most one per core) or jobs in the queue (`slurm`; default all of an
    /// iteration's candidates).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workers: Option<usize>,
    /// The `lemo` binary the workers run (default: the running binary, or the
    /// `CARGO_BIN_EXE_lemo` environment variable when set). For SLURM it must be reachable
    /// from the compute nodes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker: Option<PathBuf>,
    /// `[executor.slurm]`: the `sbatch` settings and the polling.
    #[serde(skip_serializing_if = "SlurmSection::is_default")]
    pub slurm: SlurmSection,
}

impl ExecutorSection {
    /// Whether this is the default (in-process) section.
    pub fn is_default(&self) -> bool {
        *self == ExecutorSection::default()
    }
}

/// `[executor.slurm]`: how candidate jobs are submitted to SLURM and watched.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SlurmSection {
    /// `sbatch --partition` (default: the cluster's default partition).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    /// `sbatch --account`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// `sbatch --time`, in SLURM's syntax (`"30"`, `"1:00:00"`, `"1-00:00:00"`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_limit: Option<String>,
    /// `sbatch --cpus-per-task` (also the worker's training threads).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpus_per_task: Option<u32>,
    /// `sbatch --gres`, e.g. `"gpu:1"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gres: Option<String>,
    /// More `sbatch` arguments, one per element (e.g. `["--qos=short", "--mem=8G"]`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub extra_args: Vec<String>,
    /// Seconds between two `squeue` polls.
    pub poll_interval: f64,
    /// Times a job that ended in `NODE_FAIL`, `PREEMPTED`, `TIMEOUT`, `BOOT_FAIL` or
    /// `CANCELLED` (by someone else) without a result is submitted again before its candidate
    /// is recorded as failed.
    pub max_resubmits: u32,
    /// Where `sbatch`, `squeue`, `sacct`, `scontrol` and `scancel` are (default: the `PATH`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bin_dir: Option<PathBuf>,
    /// Seconds the start-up probe job (is the run directory visible on the nodes?) may wait
    /// in the queue before the run goes on without its answer (a warning says so).
    pub probe_timeout: f64,
}

impl Default for SlurmSection {
    fn default() -> Self {
        Self {
            partition: None,
            account: None,
            time_limit: None,
            cpus_per_task: None,
            gres: None,
            extra_args: Vec::new(),
            poll_interval: 5.0,
            max_resubmits: 2,
            bin_dir: None,
            probe_timeout: 300.0,
        }
    }
}

impl SlurmSection {
    /// Whether every key has its default.
    pub fn is_default(&self) -> bool {
        *self == SlurmSection::default()
    }
}

/// `[effectiveness]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EffectivenessSection {
    /// The normalisation of FPS and energies in CM (`{ kind = "saturating" }` by default).
    pub normalisation: NormalisationChoice,
}

/// `[run]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunSection {
    /// A name shown in the report.
    pub name: String,
    /// The run seed; every iteration's seeds derive from it and the iteration number.
    pub seed: u64,
    /// Where `discover` creates the run directory `<out_dir>/<UTC timestamp>/`.
    pub out_dir: PathBuf,
    /// Repair rounds per iteration for an invalid network before the iteration is given up.
    pub max_repair_rounds: usize,
}

impl Default for RunSection {
    fn default() -> Self {
        Self {
            name: "discovery".into(),
            seed: 0,
            out_dir: PathBuf::from("runs"),
            max_repair_rounds: 3,
        }
    }
}

/// `[data]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataSection {
    /// The dataset (`{ kind = "digits" }`, `{ kind = "cifar10", dir = "..." }`, ...).
    pub dataset: DatasetSpec,
    /// Share of the training data held out for validation (paper: 0.1).
    pub validation_split: f64,
    /// Share of the training data held out as a test set when the format has none (digits).
    pub test_split: f64,
    /// Seed of the train/validation(/test) split.
    pub split_seed: u64,
}

impl Default for DataSection {
    fn default() -> Self {
        Self {
            dataset: DatasetSpec::default(),
            validation_split: 0.1,
            test_split: 0.2,
            split_seed: 0,
        }
    }
}

/// `[task]`: the network budgets (input shape and classes come from the dataset).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TaskSection {
    /// Maximum parameters, MACs and activation bytes of a candidate.
    pub limits: Limits,
}

/// `[expert]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExpertSection {
    /// `"paper"` (Algorithm 2, built in) or the path of a rule book TOML file.
    pub rulebook: String,
}

impl Default for ExpertSection {
    fn default() -> Self {
        Self {
            rulebook: "paper".into(),
        }
    }
}

/// Which evaluated network the instructions of the next iteration apply to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SearchBase {
    /// The network of the previous iteration, whatever it measured (the paper's Algorithm 1).
    Previous,
    /// The best network by CM so far (elitist): an edit that made things worse is dropped and
    /// the next one starts again from the best.
    #[default]
    Best,
}

/// `[search]`: the base of each next network, and how each candidate is trained. In TOML the
/// keys of [`TrainConfig`] plus `base` and `preset` sit directly in the section.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchSection {
    /// Where the next network starts from (`base = "best"` by default; `"previous"` is the
    /// paper's).
    pub base: SearchBase,
    /// Candidates per iteration, k (default 1, the paper): the architect proposes k distinct
    /// networks from the same feedback, all are evaluated, and the best by CM is the
    /// iteration's network.
    pub candidates: usize,
    /// Candidates of the first iteration (`None`: `candidates`). `1` evaluates the architect's
    /// first network alone, the reference every later candidate is compared with: the offline
    /// architect has only one first network (the starter), so more would be exploratory edits
    /// of it, and a tight budget is better spent comparing instructions from iteration 2 on.
    pub first_candidates: Option<usize>,
    /// How each candidate is trained (preset `paper_search` by default).
    pub training: TrainConfig,
}

impl SearchSection {
    /// Candidates of iteration `n` (1-based): `first_candidates` for the first, if set, else
    /// `candidates`.
    pub fn candidates_in(&self, n: usize) -> usize {
        match self.first_candidates {
            Some(first) if n == 1 => first,
            _ => self.candidates,
        }
    }
}

/// `[final]`: retraining the best network after the search (paper, section 4.1). In TOML the
/// keys of [`TrainConfig`] plus `enabled` and `preset` sit directly in the section.
#[derive(Debug, Clone, PartialEq)]
pub struct FinalSection {
    /// Retrain at all (false: the search's best is reported as trained during the search).
    pub enabled: bool,
    /// After the final training, also train the run's first network (the starter) with the
    /// same recipe and seed, so the report can say whether the search beat it (off by default).
    pub baseline: bool,
    /// Wall-clock seconds for the search and the final training together (off by default).
    /// When set, the final training's wall-clock budget is what the search left of it (this
    /// minus the search's seconds, summed over iterations), and never less than the recipe's
    /// own `budget.max_wall_seconds`: time a search leaves unused goes to the final training.
    /// The baseline trains for the same length.
    pub total_wall_seconds: Option<f64>,
    /// Train the final network (and the baseline) on the training and the validation images
    /// together (off by default: the paper retrains on the training split). The search still
    /// never sees the validation images' labels in training; the final's validation accuracy
    /// is then not a held-out measure, and the report says so.
    pub with_validation: bool,
    /// The training recipe (preset `paper_final` by default).
    pub training: TrainConfig,
}

impl FinalSection {
    /// The final recipe for a search that took `searched` seconds: `training`, with its
    /// wall-clock budget raised to what `total_wall_seconds` leaves, when that is set.
    pub fn recipe_after(&self, searched: f64) -> TrainConfig {
        let mut recipe = self.training.clone();
        if let Some(total) = self.total_wall_seconds {
            let left = (total - searched).max(1.0);
            recipe.budget.max_wall_seconds = Some(
                recipe
                    .budget
                    .max_wall_seconds
                    .map_or(left, |own| own.max(left)),
            );
        }
        recipe
    }
}

/// `[termination]`: the search stops at the first condition that holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Termination {
    /// Number of iterations (paper: 30).
    pub iterations: usize,
    /// Wall-clock budget of the search in seconds (summed over iterations, across resumes).
    pub max_wall_seconds: Option<f64>,
    /// With `max_wall_seconds`: an iteration starts only when it is expected to end inside the
    /// budget (its length estimated from the finished iterations' seconds per candidate: the
    /// slowest iteration's, or the last one's scaled by how much slower the next base network
    /// trained than the last iteration's base, whichever is larger; times the next iteration's
    /// candidates), so the search never overruns a budget whose candidates' cost is not known
    /// in advance (a curve proxy in epochs). Off:
    /// an iteration starts whenever the budget is not yet spent.
    pub whole_iterations: bool,
    /// With `whole_iterations`: when the next iteration's k candidates are not expected to fit
    /// in what is left of `max_wall_seconds`, it starts with as many as are (the architect's
    /// first ones, at least one) instead of the search stopping, so a slower machine still
    /// searches. Off: the search stops before an iteration that does not fit whole (and the
    /// key is left out of a written config).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub fit_candidates: bool,
    /// Energy budget of the search in kWh (measured, before PUE), summed over iterations.
    pub max_energy_kwh: Option<f64>,
    /// Stop once a candidate reaches every target given.
    pub targets: Targets,
    /// Stop once a candidate meets every threshold of `[metrics]` (no rule fires), with reason
    /// `targets_met`. Off by default: the search then keeps improving CM with exploratory
    /// edits.
    pub stop_when_thresholds_met: bool,
}

impl Default for Termination {
    fn default() -> Self {
        Self {
            iterations: 30,
            max_wall_seconds: None,
            whole_iterations: false,
            fit_candidates: false,
            max_energy_kwh: None,
            targets: Targets::default(),
            stop_when_thresholds_met: false,
        }
    }
}

/// Target metrics; the search stops once one candidate meets all the targets that are set.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Targets {
    /// Minimum validation accuracy A2 (fraction).
    pub min_validation_accuracy: Option<f64>,
    /// Minimum training accuracy A1 (fraction).
    pub min_train_accuracy: Option<f64>,
    /// Minimum FPS F (images/s).
    pub min_fps: Option<f64>,
    /// Maximum parameters P.
    pub max_params: Option<u64>,
    /// Minimum combined model effectiveness CM.
    pub min_cm: Option<f64>,
}

impl Targets {
    /// Whether any target is set.
    pub fn any(&self) -> bool {
        self.min_validation_accuracy.is_some()
            || self.min_train_accuracy.is_some()
            || self.min_fps.is_some()
            || self.max_params.is_some()
            || self.min_cm.is_some()
    }

    /// Whether a candidate with these metrics meets every target set (false when none is set).
    pub fn met(&self, observed: &lemo_metrics::Observed, cm: f64) -> bool {
        self.any()
            && self
                .min_validation_accuracy
                .is_none_or(|t| observed.a2 >= t)
            && self.min_train_accuracy.is_none_or(|t| observed.a1 >= t)
            && self.min_fps.is_none_or(|t| observed.fps >= t)
            && self.max_params.is_none_or(|t| observed.params <= t)
            && self.min_cm.is_none_or(|t| cm >= t)
    }
}

/// `[energy]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EnergySection {
    /// Measure energy at all (false: zero joules, wall time only).
    pub enabled: bool,
    /// Which sources may be used (RAPL, NVML, estimate settings).
    pub sources: MeterConfig,
    /// PUE and carbon intensity (equations 2 and 3).
    pub accounting: Accounting,
}

impl Default for EnergySection {
    fn default() -> Self {
        Self {
            enabled: true,
            sources: MeterConfig::default(),
            accounting: Accounting::paper(),
        }
    }
}

impl EnergySection {
    /// The energy meter these settings ask for: the detected sources, or none when metering
    /// is off.
    pub fn build_meter(
        &self,
    ) -> Result<Box<dyn lemo_energy::EnergyMeter>, lemo_energy::EnergyError> {
        if self.enabled {
            Ok(Box::new(lemo_energy::CompositeMeter::detect(
                &self.sources,
            )?))
        } else {
            Ok(Box::new(lemo_energy::NoMeter))
        }
    }
}

/// Names of the top-level sections.
const SECTIONS: [&str; 12] = [
    "run",
    "data",
    "task",
    "metrics",
    "expert",
    "architect",
    "search",
    "final",
    "termination",
    "energy",
    "effectiveness",
    "executor",
];

impl RunConfig {
    /// The embedded quickstart configuration.
    pub fn quickstart() -> Result<Self, ConfigError> {
        Self::from_toml_str(QUICKSTART_TOML)
    }

    /// Reads and validates a TOML file.
    pub fn from_path(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml_str(&text)
    }

    /// Parses and validates TOML text.
    pub fn from_toml_str(text: &str) -> Result<Self, ConfigError> {
        let table: toml::Table =
            toml::from_str(text).map_err(|e| ConfigError::Syntax(e.to_string()))?;
        let root = serde_json::to_value(&table).map_err(|e| ConfigError::Syntax(e.to_string()))?;
        let Value::Object(mut root) = root else {
            return Err(ConfigError::Syntax("the config is not a table".into()));
        };
        if let Some(unknown) = root.keys().find(|k| !SECTIONS.contains(&k.as_str())) {
            return Err(key_err(
                unknown.clone(),
                format!("unknown section; expected one of {}", SECTIONS.join(", ")),
            ));
        }
        let mut take = |name: &str| {
            root.remove(name)
                .unwrap_or(Value::Object(Default::default()))
        };
        let run: RunSection = from_section("run", take("run"))?;
        let data: DataSection = from_section("data", take("data"))?;
        let task: TaskSection = from_section("task", take("task"))?;
        let metrics = metrics_from(take("metrics"))?;
        let expert: ExpertSection = from_section("expert", take("expert"))?;
        let architect: ArchitectConfig = match take("architect") {
            Value::Object(m) if m.is_empty() => ArchitectConfig::default(),
            v => from_section("architect", v)?,
        };
        let search = search_from(take("search"))?;
        let final_training = final_from(take("final"))?;
        let termination: Termination = from_section("termination", take("termination"))?;
        let energy: EnergySection = from_section("energy", take("energy"))?;
        let effectiveness: EffectivenessSection =
            from_section("effectiveness", take("effectiveness"))?;
        let executor = executor_from(take("executor"))?;
        let config = RunConfig {
            run,
            data,
            task,
            metrics,
            expert,
            architect,
            search,
            final_training,
            termination,
            energy,
            effectiveness,
            executor,
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks values serde cannot: ranges, budgets, the training recipes.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let t = &self.termination;
        if t.iterations == 0 {
            return Err(key_err("termination.iterations", "must be at least 1"));
        }
        if let Some(s) = t.max_wall_seconds
            && (s.is_nan() || s <= 0.0)
        {
            return Err(key_err("termination.max_wall_seconds", "must be positive"));
        }
        if t.fit_candidates && !t.whole_iterations {
            return Err(key_err(
                "termination.fit_candidates",
                "needs termination.whole_iterations = true",
            ));
        }
        if let Some(e) = t.max_energy_kwh
            && (e.is_nan() || e <= 0.0)
        {
            return Err(key_err("termination.max_energy_kwh", "must be positive"));
        }
        for (key, v) in [
            (
                "termination.targets.min_validation_accuracy",
                t.targets.min_validation_accuracy,
            ),
            (
                "termination.targets.min_train_accuracy",
                t.targets.min_train_accuracy,
            ),
        ] {
            if let Some(v) = v
                && !(0.0..=1.0).contains(&v)
            {
                return Err(key_err(key, format!("{v} is not a fraction in [0, 1]")));
            }
        }
        let d = &self.data;
        if !(d.validation_split > 0.0 && d.validation_split < 1.0) {
            return Err(key_err("data.validation_split", "must be in (0, 1)"));
        }
        if !(d.test_split > 0.0 && d.test_split < 1.0) {
            return Err(key_err("data.test_split", "must be in (0, 1)"));
        }
        self.search
            .training
            .check()
            .map_err(|e| key_err("search", e))?;
        self.final_training
            .training
            .check()
            .map_err(|e| key_err("final", e))?;
        self.energy
            .accounting
            .validate()
            .map_err(|e| key_err("energy.accounting", e))?;
        if self.search.first_candidates == Some(0) {
            return Err(key_err("search.first_candidates", "must be at least 1"));
        }
        if self.search.candidates == 0 {
            return Err(key_err("search.candidates", "must be at least 1"));
        }
        let x = &self.executor;
        if x.workers == Some(0) {
            return Err(key_err("executor.workers", "must be at least 1"));
        }
        let sl = &x.slurm;
        if !(sl.poll_interval.is_finite() && sl.poll_interval > 0.0) {
            return Err(key_err(
                "executor.slurm.poll_interval",
                "must be positive seconds",
            ));
        }
        if !(sl.probe_timeout.is_finite() && sl.probe_timeout >= 0.0) {
            return Err(key_err(
                "executor.slurm.probe_timeout",
                "must be 0 or more seconds",
            ));
        }
        if sl.cpus_per_task == Some(0) {
            return Err(key_err(
                "executor.slurm.cpus_per_task",
                "must be at least 1",
            ));
        }
        for (key, v) in [
            ("executor.slurm.partition", &sl.partition),
            ("executor.slurm.account", &sl.account),
            ("executor.slurm.time_limit", &sl.time_limit),
            ("executor.slurm.gres", &sl.gres),
        ] {
            if v.as_deref().is_some_and(|s| s.trim().is_empty()) {
                return Err(key_err(
                    key,
                    "must not be empty (leave the key out instead)",
                ));
            }
        }
        if self.expert.rulebook.trim().is_empty() {
            return Err(key_err(
                "expert.rulebook",
                "must be \"paper\" or a file path",
            ));
        }
        Ok(())
    }

    /// The config as TOML (what `config.toml` in a run directory holds).
    pub fn to_toml_string(&self) -> Result<String, ConfigError> {
        // Through JSON first: TOML cannot hold `None`, and every `None` here is the default.
        let value = serde_json::to_value(self).map_err(|e| ConfigError::Syntax(e.to_string()))?;
        let value = strip_nulls(value);
        toml::to_string_pretty(&value).map_err(|e| ConfigError::Syntax(e.to_string()))
    }
}

fn strip_nulls(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, strip_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(strip_nulls).collect()),
        other => other,
    }
}

fn from_section<T: serde::de::DeserializeOwned>(name: &str, v: Value) -> Result<T, ConfigError> {
    serde_json::from_value(v).map_err(|e| key_err(name, e))
}

/// Overlays `over` onto `base`, table by table (non-table values replace).
fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

fn take_string(v: &mut Value, section: &str, key: &str) -> Result<Option<String>, ConfigError> {
    let Value::Object(m) = v else {
        return Err(key_err(section, "must be a table"));
    };
    match m.remove(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(key_err(
            format!("{section}.{key}"),
            format!("must be a string, got {other}"),
        )),
    }
}

/// `[metrics]`: an optional `preset` (a paper dataset's appendix configuration) and `setting`
/// (Table 4's priorities), overlaid by any explicit key.
fn metrics_from(mut v: Value) -> Result<UserMetrics, ConfigError> {
    let preset = take_string(&mut v, "metrics", "preset")?;
    let setting = match &mut v {
        Value::Object(m) => m.remove("setting"),
        _ => None,
    };
    let dataset = match preset.as_deref() {
        None => None,
        Some(name) => Some(
            PaperDataset::ALL
                .into_iter()
                .find(|d| d.name().eq_ignore_ascii_case(name))
                .ok_or_else(|| {
                    key_err(
                        "metrics.preset",
                        format!(
                            "unknown preset `{name}`; expected cifar10, cifar100 or imagenet16-120"
                        ),
                    )
                })?,
        ),
    };
    let mut base = match dataset {
        Some(d) => d.appendix_configuration(),
        None => UserMetrics::default(),
    };
    if let Some(s) = setting {
        let n = s
            .as_u64()
            .and_then(|n| u8::try_from(n).ok())
            .and_then(table4_setting)
            .ok_or_else(|| {
                key_err(
                    "metrics.setting",
                    format!("{s} is not a Table 4 setting (1 to 5)"),
                )
            })?;
        base.priorities = n;
    }
    let mut merged = serde_json::to_value(base).map_err(|e| key_err("metrics", e))?;
    merge(&mut merged, v);
    serde_json::from_value(merged).map_err(|e| key_err("metrics", e))
}

/// A training section: an optional `preset` (one of [`TrainConfig::PRESETS`]) overlaid by any
/// explicit key of [`TrainConfig`].
fn train_from(
    section: &str,
    mut v: Value,
    default: TrainConfig,
) -> Result<TrainConfig, ConfigError> {
    let preset = take_string(&mut v, section, "preset")?;
    let base = match preset.as_deref() {
        None => default,
        Some(name) => TrainConfig::preset(name).ok_or_else(|| {
            key_err(
                format!("{section}.preset"),
                format!(
                    "unknown preset `{name}`; expected one of {}",
                    TrainConfig::PRESETS.join(", ")
                ),
            )
        })?,
    };
    let mut merged = serde_json::to_value(base).map_err(|e| key_err(section, e))?;
    merge(&mut merged, v);
    serde_json::from_value(merged).map_err(|e| key_err(section, e))
}

fn search_from(mut v: Value) -> Result<SearchSection, ConfigError> {
    let base = match take_string(&mut v, "search", "base")?.as_deref() {
        None => SearchBase::default(),
        Some("best") => SearchBase::Best,
        Some("previous") => SearchBase::Previous,
        Some(other) => {
            return Err(key_err(
                "search.base",
                format!("unknown base `{other}`; expected \"previous\" or \"best\""),
            ));
        }
    };
    let mut count = |key: &str| match &mut v {
        Value::Object(m) => match m.remove(key) {
            None => Ok(None),
            Some(c) => c
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| {
                    key_err(
                        format!("search.{key}"),
                        format!("must be a whole number, got {c}"),
                    )
                }),
        },
        _ => Err(key_err("search", "must be a table")),
    };
    let candidates = count("candidates")?.unwrap_or(1);
    let first_candidates = count("first_candidates")?;
    let training = train_from("search", v, TrainConfig::paper_search())?;
    Ok(SearchSection {
        base,
        candidates,
        first_candidates,
        training,
    })
}

/// `[executor]`: the kind is read by name so that an unknown one is an error naming the key.
fn executor_from(mut v: Value) -> Result<ExecutorSection, ConfigError> {
    let kind = match take_string(&mut v, "executor", "kind")?.as_deref() {
        None | Some("in_process") => ExecutorKind::InProcess,
        Some("processes") => ExecutorKind::Processes,
        Some("slurm") => ExecutorKind::Slurm,
        Some(other) => {
            return Err(key_err(
                "executor.kind",
                format!(
                    "unknown executor `{other}`; expected \"in_process\", \"processes\" or \"slurm\""
                ),
            ));
        }
    };
    if let Value::Object(m) = &mut v
        && let Some(slurm) = m.remove("slurm")
    {
        let slurm: SlurmSection = from_section("executor.slurm", slurm)?;
        let rest: ExecutorSection = from_section("executor", v)?;
        return Ok(ExecutorSection {
            kind,
            slurm,
            ..rest
        });
    }
    let rest: ExecutorSection = from_section("executor", v)?;
    Ok(ExecutorSection { kind, ..rest })
}

impl<'de> Deserialize<'de> for SearchSection {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        search_from(v).map_err(serde::de::Error::custom)
    }
}

impl Serialize for SearchSection {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut v = serde_json::to_value(&self.training).map_err(serde::ser::Error::custom)?;
        let base = serde_json::to_value(self.base).map_err(serde::ser::Error::custom)?;
        if let Value::Object(m) = &mut v {
            m.insert("base".into(), base);
            // Written only when it is not the default, so a k = 1 run's journal is unchanged.
            if self.candidates != 1 {
                m.insert("candidates".into(), Value::from(self.candidates));
            }
            if let Some(first) = self.first_candidates {
                m.insert("first_candidates".into(), Value::from(first));
            }
        }
        v.serialize(s)
    }
}

fn final_from(mut v: Value) -> Result<FinalSection, ConfigError> {
    let mut flag = |key: &str, default: bool| match &mut v {
        Value::Object(m) => match m.remove(key) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(b),
            Some(other) => Err(key_err(
                format!("final.{key}"),
                format!("must be true or false, got {other}"),
            )),
        },
        _ => Err(key_err("final", "must be a table")),
    };
    let enabled = flag("enabled", true)?;
    let baseline = flag("baseline", false)?;
    let with_validation = flag("with_validation", false)?;
    let total_wall_seconds = match &mut v {
        Value::Object(m) => match m.remove("total_wall_seconds") {
            None => None,
            Some(t) => match t.as_f64() {
                Some(s) if s.is_finite() && s > 0.0 => Some(s),
                _ => {
                    return Err(key_err(
                        "final.total_wall_seconds",
                        format!("must be a positive number of seconds, got {t}"),
                    ));
                }
            },
        },
        _ => return Err(key_err("final", "must be a table")),
    };
    let training = train_from("final", v, TrainConfig::paper_final())?;
    Ok(FinalSection {
        enabled,
        baseline,
        total_wall_seconds,
        with_validation,
        training,
    })
}

impl<'de> Deserialize<'de> for FinalSection {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        final_from(v).map_err(serde::de::Error::custom)
    }
}

impl Serialize for FinalSection {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut v = serde_json::to_value(&self.training).map_err(serde::ser::Error::custom)?;
        if let Value::Object(m) = &mut v {
            m.insert("enabled".into(), Value::Bool(self.enabled));
            m.insert("baseline".into(), Value::Bool(self.baseline));
            if self.with_validation {
                m.insert("with_validation".into(), Value::Bool(true));
            }
            if let Some(t) = self.total_wall_seconds {
                m.insert("total_wall_seconds".into(), Value::from(t));
            }
        }
        v.serialize(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_of(text: &str) -> String {
        match RunConfig::from_toml_str(text) {
            Err(ConfigError::Key { key, message }) => format!("{key}: {message}"),
            other => panic!("expected a key error for {text:?}, got {other:?}"),
        }
    }

    #[test]
    fn quickstart_parses_and_round_trips() -> Result<(), ConfigError> {
        let c = RunConfig::quickstart()?;
        assert_eq!(c.data.dataset, DatasetSpec::Digits { path: None });
        assert_eq!(c.architect, ArchitectConfig::default());
        assert_eq!(c.metrics.priorities, table4_setting(5).unwrap_or_default());
        assert!(!c.search.training.augmentation.hflip);
        let again = RunConfig::from_toml_str(&c.to_toml_string()?)?;
        assert_eq!(again, c);
        Ok(())
    }

    #[test]
    fn empty_config_is_the_paper_defaults() -> Result<(), ConfigError> {
        let c = RunConfig::from_toml_str("")?;
        assert_eq!(c.termination.iterations, 30);
        assert_eq!(c.search.training, TrainConfig::paper_search());
        assert_eq!(c.search.base, SearchBase::Best);
        assert_eq!(c.final_training.training, TrainConfig::paper_final());
        assert!(c.final_training.enabled);
        assert_eq!(c.expert.rulebook, "paper");
        Ok(())
    }

    #[test]
    fn fast_presets_switch_settings_off_and_round_trip() -> Result<(), ConfigError> {
        let c = RunConfig::from_toml_str(
            "[search]\npreset = \"fast_search\"\nbase = \"previous\"\n\
             [final]\npreset = \"fast_final\"\nbaseline = true\ninference = false\n\
             with_validation = true\n",
        )?;
        assert!(c.final_training.with_validation);
        assert_eq!(c.search.base, SearchBase::Previous);
        assert_eq!(c.search.training, TrainConfig::fast_search());
        assert!(c.final_training.baseline);
        assert_eq!(c.final_training.training.plateau, None);
        assert_eq!(c.final_training.training.inference, None);
        // `None` survives a trip through the run directory's config.toml (as `false`).
        let text = c.to_toml_string()?;
        assert!(text.contains("plateau = false"), "{text}");
        assert_eq!(RunConfig::from_toml_str(&text)?, c);
        assert!(key_of("[search]\nbase = \"worst\"").starts_with("search.base"));
        assert!(key_of("[final]\nbaseline = 1").starts_with("final.baseline"));
        assert!(key_of("[final]\nwith_validation = \"yes\"").starts_with("final.with_validation"));
        assert!(key_of("[search]\nweight_decay = -0.1").contains("weight_decay"));
        assert!(key_of("[search]\nplateau = true").starts_with("search"));
        Ok(())
    }

    #[test]
    fn presets_are_overlaid_key_by_key() -> Result<(), ConfigError> {
        let c = RunConfig::from_toml_str(
            "[metrics]\npreset = \"cifar100\"\nsetting = 3\n[metrics.thresholds]\nta2 = 0.5\n\
             [search]\npreset = \"quick\"\nepochs = 4\n[search.budget]\ndata_fraction = 0.25\n\
             [final]\nenabled = false\nepochs = 7\n",
        )?;
        let mut expected = PaperDataset::Cifar100.thresholds();
        expected.ta2 = 0.5;
        assert_eq!(c.metrics.thresholds, expected);
        assert_eq!(c.metrics.priorities, table4_setting(3).unwrap_or_default());
        assert_eq!(c.search.training.epochs, 4);
        assert_eq!(c.search.training.budget.data_fraction, 0.25);
        assert_eq!(
            c.search.training.inference,
            TrainConfig::quick(1, 1.0).inference
        );
        assert!(!c.final_training.enabled);
        assert_eq!(c.final_training.training.epochs, 7);
        assert_eq!(c.final_training.training.batch_size, 1024);
        Ok(())
    }

    #[test]
    fn errors_name_the_key() {
        assert!(key_of("[termination]\niterations = 0").starts_with("termination.iterations"));
        let e = key_of("[search]\nepoch = 3");
        assert!(e.starts_with("search") && e.contains("epoch"), "{e}");
        assert!(key_of("[serch]\nepochs = 3").starts_with("serch"));
        assert!(key_of("[metrics]\npreset = \"mnist\"").starts_with("metrics.preset"));
        assert!(key_of("[metrics]\nsetting = 9").starts_with("metrics.setting"));
        let e = key_of("[metrics.priorities]\npa1 = 2.0");
        assert!(e.contains("pa1"), "{e}");
        assert!(key_of("[data]\nvalidation_split = 1.5").starts_with("data.validation_split"));
        assert!(key_of("[search]\nlearning_rate = -1.0").starts_with("search"));
        assert!(key_of("[architect]\nkind = \"skynet\"").starts_with("architect"));
        assert!(matches!(
            RunConfig::from_toml_str("[run"),
            Err(ConfigError::Syntax(_))
        ));
    }

    #[test]
    fn total_wall_seconds_gives_the_final_training_what_the_search_left() -> Result<(), ConfigError>
    {
        let c = RunConfig::from_toml_str(
            "[final]\npreset = \"fast_final\"\ntotal_wall_seconds = 1000.0\n\
             budget = { max_wall_seconds = 400.0 }\n",
        )?;
        assert_eq!(c.final_training.total_wall_seconds, Some(1000.0));
        let wall = |searched: f64| {
            c.final_training
                .recipe_after(searched)
                .budget
                .max_wall_seconds
        };
        assert_eq!(wall(450.0), Some(550.0), "the search left 550 s");
        assert_eq!(wall(800.0), Some(400.0), "never less than the recipe's own");
        assert_eq!(RunConfig::from_toml_str(&c.to_toml_string()?)?, c);
        let plain = RunConfig::from_toml_str("[final]\npreset = \"fast_final\"\n")?;
        assert_eq!(
            plain.final_training.recipe_after(450.0),
            plain.final_training.training
        );
        assert!(!plain.to_toml_string()?.contains("total_wall_seconds"));
        Ok(())
    }

    #[test]
    fn candidates_and_executor_parse_round_trip_and_name_their_keys() -> Result<(), ConfigError> {
        let c = RunConfig::from_toml_str(
            "[search]\ncandidates = 3\nfirst_candidates = 1\n[executor]\nkind = \"slurm\"\nworkers = 2\n\
             [executor.slurm]\npartition = \"gpu\"\ntime_limit = \"0:30:00\"\n\
             cpus_per_task = 4\ngres = \"gpu:1\"\nextra_args = [\"--qos=short\"]\n\
             poll_interval = 0.5\nmax_resubmits = 1\n",
        )?;
        assert_eq!(c.search.candidates, 3);
        assert_eq!(c.search.first_candidates, Some(1));
        assert_eq!(
            (c.search.candidates_in(1), c.search.candidates_in(2)),
            (1, 3)
        );
        assert_eq!(c.executor.kind, ExecutorKind::Slurm);
        assert_eq!(c.executor.workers, Some(2));
        assert_eq!(c.executor.slurm.partition.as_deref(), Some("gpu"));
        assert_eq!(c.executor.slurm.extra_args, vec!["--qos=short".to_string()]);
        assert_eq!(RunConfig::from_toml_str(&c.to_toml_string()?)?, c);
        // The defaults leave no trace in the run's config.toml (and so in the journal).
        let d = RunConfig::from_toml_str("")?;
        assert_eq!(d.search.candidates, 1);
        assert_eq!(d.executor.kind, ExecutorKind::InProcess);
        let text = d.to_toml_string()?;
        assert!(
            !text.contains("executor") && !text.contains("candidates"),
            "{text}"
        );

        assert!(key_of("[executor]\nkind = \"ray\"").starts_with("executor.kind"));
        assert!(key_of("[executor]\nworkers = 0").starts_with("executor.workers"));
        assert!(key_of("[executor]\nthreads = 2").starts_with("executor"));
        assert!(key_of("[search]\ncandidates = 0").starts_with("search.candidates"));
        assert!(key_of("[search]\ncandidates = -2").starts_with("search.candidates"));
        assert!(key_of("[search]\nfirst_candidates = 0").starts_with("search.first_candidates"));
        for bad in ["0", "-5.0", "\"long\""] {
            let text = format!("[final]\ntotal_wall_seconds = {bad}");
            assert!(
                key_of(&text).starts_with("final.total_wall_seconds"),
                "{bad}"
            );
        }
        assert!(
            key_of("[search]\nfirst_candidates = \"x\"").starts_with("search.first_candidates")
        );
        let e = key_of("[executor.slurm]\npoll_interval = 0.0");
        assert!(e.starts_with("executor.slurm.poll_interval"), "{e}");
        let e = key_of("[executor.slurm]\nqueue = \"x\"");
        assert!(
            e.starts_with("executor.slurm") && e.contains("queue"),
            "{e}"
        );
        assert!(
            key_of("[executor.slurm]\npartition = \"\"").starts_with("executor.slurm.partition")
        );
        Ok(())
    }

    #[test]
    fn targets_need_every_set_value() {
        let o = lemo_metrics::Observed::new(0.9, 0.8, 0.0, 0.0, 100.0, 1000);
        let none = Targets::default();
        assert!(!none.met(&o, 1.0));
        let t = Targets {
            min_validation_accuracy: Some(0.8),
            max_params: Some(1000),
            ..Targets::default()
        };
        assert!(t.met(&o, 0.0));
        let t = Targets {
            min_fps: Some(101.0),
            ..t
        };
        assert!(!t.met(&o, 0.0));
    }
}
