//! The Markdown report and its SVG plots, written from a [`RunHistory`] alone (so `lemo report
//! RUN_DIR` regenerates them from the journal).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use lemo_energy::{Accounting, EnergyReport, Provenance};
use lemo_metrics::Observed;

use crate::discovery::evaluation_kwh;
use crate::event::{Event, IterationOutcome};
use crate::history::{RunHistory, RunStart};
use crate::plot::{ScatterPoint, Series, line_chart, scatter_chart};
use crate::run_dir::RunDir;

/// Errors of writing a report.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A report file could not be written.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The journal has no `run_started` event.
    #[error("the journal has no run_started event: nothing to report")]
    NotStarted,
}

/// The paper's Table 3 figures of a run: generating + training cost and the final network.
#[derive(Debug, Clone, PartialEq)]
pub struct Table3Row {
    /// Test accuracy of the final network (fraction).
    pub test_accuracy: Option<f64>,
    /// Parameters.
    pub params: Option<u64>,
    /// Generating + training runtime, hours.
    pub runtime_hours: f64,
    /// Generating + training energy, kWh-PUE.
    pub energy_kwh_pue: f64,
    /// Generating + training CO2e, lbs.
    pub co2_lbs: f64,
    /// Inference FPS (large batch).
    pub fps: Option<f64>,
    /// Inference energy per image, kWh-PUE.
    pub inference_kwh_pue_per_image: Option<f64>,
    /// Inference CO2e per image, lbs.
    pub inference_co2_lbs_per_image: Option<f64>,
    /// Whether any energy figure is an estimate.
    pub estimated: bool,
}

/// Every energy report of a run (search iterations that trained, and the final training).
fn energy_reports(h: &RunHistory) -> Vec<&EnergyReport> {
    let mut out = Vec::new();
    for r in &h.iterations {
        if let (
            Some(ev),
            IterationOutcome::Evaluated {
                reused_from: None, ..
            },
        ) = (&r.evaluation, &r.outcome)
        {
            out.push(&ev.train_energy);
            out.push(&ev.val_energy);
            if let Some(i) = &ev.inference {
                out.push(&i.energy);
            }
        }
    }
    if let Some(f) = &h.final_result {
        out.push(&f.evaluation.train_energy);
        out.push(&f.evaluation.val_energy);
        if let Some(i) = &f.evaluation.inference {
            out.push(&i.energy);
        }
    }
    out
}

impl Table3Row {
    /// The row of a run, with the run's accounting (PUE, carbon intensity).
    pub fn of(h: &RunHistory, accounting: &Accounting) -> Self {
        let final_kwh = h
            .final_result
            .as_ref()
            .map_or(0.0, |f| evaluation_kwh(&f.evaluation));
        let final_seconds = h
            .final_result
            .as_ref()
            .map_or(0.0, |f| f.evaluation.total_seconds);
        let joules = (h.search_kwh() + final_kwh) * lemo_metrics::JOULES_PER_KWH;
        let observed: Option<&Observed> = h.final_result.as_ref().map(|f| &f.observed);
        let per_image = h
            .final_result
            .as_ref()
            .and_then(|f| f.inference_joules_per_image);
        Table3Row {
            test_accuracy: observed.and_then(|o| o.test_accuracy),
            params: observed.map(|o| o.params),
            runtime_hours: (h.search_seconds() + final_seconds) / 3600.0,
            energy_kwh_pue: accounting.kwh_pue(joules),
            co2_lbs: accounting.co2e_lbs(joules),
            fps: observed.map(|o| o.fps).filter(|f| *f > 0.0),
            inference_kwh_pue_per_image: per_image.map(|j| accounting.kwh_pue(j)),
            inference_co2_lbs_per_image: per_image.map(|j| accounting.co2e_lbs(j)),
            estimated: energy_reports(h).iter().any(|r| r.has_estimates()),
        }
    }
}

fn opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map_or_else(|| "–".to_string(), f)
}

fn pct(v: f64) -> String {
    format!("{:.2} %", v * 100.0)
}

fn sci(v: f64) -> String {
    format!("{v:.3e}")
}

/// Writes `report.md` and `plots/*.svg` into the run directory; returns the report's path.
pub fn write_report(dir: &RunDir, h: &RunHistory) -> Result<PathBuf, ReportError> {
    let plots = dir.plots();
    std::fs::create_dir_all(&plots).map_err(|source| ReportError::Io {
        path: plots.clone(),
        source,
    })?;
    for (name, svg) in plot_files(h) {
        let path = plots.join(name);
        std::fs::write(&path, svg).map_err(|source| ReportError::Io { path, source })?;
    }
    let text = render_report(h)?;
    let path = dir.report();
    std::fs::write(&path, text).map_err(|source| ReportError::Io {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

/// The SVG plots of a run: `(file name, SVG text)`.
pub fn plot_files(h: &RunHistory) -> Vec<(&'static str, String)> {
    let mut a1 = Vec::new();
    let mut a2 = Vec::new();
    let mut cm = Vec::new();
    let mut nf = Vec::new();
    let mut fps = Vec::new();
    let mut e1 = Vec::new();
    let mut e2 = Vec::new();
    let mut best = Vec::new();
    let mut points = Vec::new();
    let front: Vec<usize> = h
        .iterations
        .last()
        .map(|r| r.pareto_front.clone())
        .unwrap_or_default();
    let mut best_cm = f64::NEG_INFINITY;
    for r in &h.iterations {
        if let IterationOutcome::Evaluated {
            observed,
            effectiveness,
            ..
        } = &r.outcome
        {
            let x = r.iteration as f64;
            a1.push((x, observed.a1));
            a2.push((x, observed.a2));
            cm.push((x, effectiveness.cm));
            nf.push((x, effectiveness.nf));
            fps.push((x, observed.fps));
            e1.push((x, observed.e1_kwh));
            e2.push((x, observed.e2_kwh));
            best_cm = best_cm.max(effectiveness.cm);
            best.push((x, best_cm));
            points.push(ScatterPoint {
                x: observed.params as f64,
                y: observed.a2,
                label: format!("#{}", r.iteration),
                highlight: front.contains(&r.iteration),
            });
        }
    }
    let s = |name: &str, points: Vec<(f64, f64)>| Series {
        name: name.to_string(),
        points,
    };
    vec![
        (
            "accuracy.svg",
            line_chart(
                "Accuracy per iteration",
                "iteration",
                "accuracy",
                &[s("A1 train", a1), s("A2 validation", a2)],
            ),
        ),
        (
            "cm.svg",
            line_chart(
                "Combined model effectiveness (equation 1)",
                "iteration",
                "CM",
                &[s("CM", cm), s("best CM so far", best), s("NF", nf)],
            ),
        ),
        (
            "fps.svg",
            line_chart(
                "Inference FPS per iteration",
                "iteration",
                "images/s",
                &[s("F", fps)],
            ),
        ),
        (
            "energy.svg",
            line_chart(
                "Energy per iteration",
                "iteration",
                "kWh",
                &[s("E1 training", e1), s("E2 validation", e2)],
            ),
        ),
        (
            "pareto.svg",
            scatter_chart(
                "Candidates: validation accuracy vs parameters (Pareto front over A2, F, E, P)",
                "parameters",
                "validation accuracy A2",
                &points,
            ),
        ),
    ]
}

/// The Markdown report text: one section after another, each written by its own function.
pub fn render_report(h: &RunHistory) -> Result<String, ReportError> {
    let start = h.start.as_ref().ok_or(ReportError::NotStarted)?;
    let mut md = String::new();
    let w = &mut md;
    overview_section(w, h, start);
    table3_section(w, h, start);
    if let Some(verdict) = search_verdict(h) {
        let _ = writeln!(w, "\n{verdict}");
    }
    if let Some(verdict) = baseline_verdict(h) {
        let _ = writeln!(w, "\n{verdict}");
    }
    iterations_section(w, h);
    candidates_section(w, h);
    let _ = writeln!(w, "\n## Plots\n");
    for (name, _) in plot_files(h) {
        let _ = writeln!(w, "![{name}](plots/{name})");
    }
    best_network_section(w, h, start);
    energy_section(w, h);
    closing_section(w, h);
    Ok(md)
}

/// The title and the run's settings.
fn overview_section(w: &mut String, h: &RunHistory, start: &RunStart) {
    let c = &start.config;
    let acc = &c.energy.accounting;
    let _ = writeln!(w, "# LeMo-NADe run report: {}\n", c.run.name);
    let status = if h.finished {
        "finished"
    } else if h.search_finished.is_some() {
        "search finished, final training not finished"
    } else {
        "in progress or interrupted (resume with `lemo resume RUN_DIR`)"
    };
    let _ = writeln!(w, "| | |\n|---|---|");
    let _ = writeln!(w, "| status | {status} |");
    if let Some((reason, _)) = &h.search_finished {
        let _ = writeln!(w, "| search stopped | {reason} |");
    }
    let _ = writeln!(w, "| architect | {} |", start.architect);
    let _ = writeln!(w, "| trainer | {} |", start.trainer);
    let _ = writeln!(w, "| energy meter | {} |", start.meter.replace('|', "/"));
    let _ = writeln!(w, "| rule book | {} |", start.rulebook);
    let d = &start.data;
    let _ = writeln!(
        w,
        "| data | {} {:?}, {} classes: {} train / {} validation / {} test ({}) |",
        d.name, d.shape, d.classes, d.train, d.val, d.test, d.test_source
    );
    let p = &c.metrics.priorities;
    let t = &c.metrics.thresholds;
    let _ = writeln!(
        w,
        "| priorities | PA1 {} · PA2 {} · PE1 {} · PE2 {} · PF {} |",
        p.pa1, p.pa2, p.pe1, p.pe2, p.pf
    );
    let _ = writeln!(
        w,
        "| thresholds | TA1 {} · TA2 {} · TE1 {} kWh · TE2 {} kWh · TF {} img/s · OT {} · UT {} |",
        t.ta1, t.ta2, t.te1_kwh, t.te2_kwh, t.tf_fps, t.ot, t.ut
    );
    let wts = c.metrics.effectiveness_weights();
    let _ = writeln!(
        w,
        "| CM weights | AW {} · FW {} · EW {} |",
        wts.aw, wts.fw, wts.ew
    );
    let _ = writeln!(
        w,
        "| seed · iterations | {} · {} finished of {} |",
        c.run.seed,
        h.iterations.len(),
        c.termination.iterations
    );
    let _ = writeln!(
        w,
        "| accounting | PUE {} · {} g CO2e/kWh ({:.3} lb/kWh) |",
        acc.pue,
        acc.carbon_g_per_kwh,
        acc.carbon_lb_per_kwh()
    );
    if h.resumes > 0 {
        let _ = writeln!(w, "| resumed | {} time(s) |", h.resumes);
    }
}

/// The paper's Table 3 row and the final network.
fn table3_section(w: &mut String, h: &RunHistory, start: &RunStart) {
    let acc = &start.config.energy.accounting;
    let row = Table3Row::of(h, acc);
    let est = if row.estimated { " (estimated)" } else { "" };
    let _ = writeln!(w, "\n## Result (the paper's Table 3 columns)\n");
    let _ = writeln!(
        w,
        "| Architect | Test accuracy | Number of params | Generating + training runtime (hours) \
         | Generating + training energy (kWh-PUE){est} | Generating + training CO2 emission (lbs){est} \
         | Inferencing FPS | Inferencing energy per image (kWh-PUE){est} | Inferencing CO2 emission per image (lbs){est} |"
    );
    let _ = writeln!(w, "|---|---|---|---|---|---|---|---|---|");
    let _ = writeln!(
        w,
        "| {} | {} | {} | {:.4} | {} | {} | {} | {} | {} |",
        start.architect,
        opt(row.test_accuracy, pct),
        row.params.map_or("–".into(), lemo_arch::thousands),
        row.runtime_hours,
        sci(row.energy_kwh_pue),
        sci(row.co2_lbs),
        opt(row.fps, |v| format!("{v:.2}")),
        opt(row.inference_kwh_pue_per_image, sci),
        opt(row.inference_co2_lbs_per_image, sci),
    );
    let _ = writeln!(
        w,
        "\nRuntime and energy cover the search and the final training. FPS is the large-batch \
         throughput of the deployment form (batch norm folded); inference energy per image is \
         the inference window's mean power divided by that throughput."
    );
    if let Some(f) = &h.final_result {
        let o = &f.observed;
        let _ = writeln!(
            w,
            "\nFinal network (from iteration {}): test accuracy {}, validation {}, training {}; \
             FPS batch 1 {}, latency p50 {} ms / p95 {} ms; {} epochs ({:?}).",
            f.iteration,
            opt(o.test_accuracy, pct),
            if f.trained_on_validation {
                format!("{} (trained on: not held out)", pct(o.a2))
            } else {
                pct(o.a2)
            },
            pct(o.a1),
            opt(
                f.evaluation.inference.as_ref().map(|i| i.fps_batch1),
                |v| format!("{v:.1}")
            ),
            opt(o.latency_p50_ms, |v| format!("{v:.3}")),
            opt(o.latency_p95_ms, |v| format!("{v:.3}")),
            f.evaluation.epochs(),
            f.evaluation.status,
        );
        if let Some(dirname) = &f.weights_dir {
            let _ = writeln!(w, "Weights and graph saved in `{dirname}/`.");
        }
    }
}

/// "Did the search help?": the best network against the first one (the starter or the
/// architect's first design), both as measured by the search, or why the first one won.
pub fn search_verdict(h: &RunHistory) -> Option<String> {
    let evaluated: Vec<(usize, &Observed, f64)> = h
        .iterations
        .iter()
        .filter_map(|r| match &r.outcome {
            IterationOutcome::Evaluated {
                observed,
                effectiveness,
                ..
            } => Some((r.iteration, observed, effectiveness.cm)),
            _ => None,
        })
        .collect();
    let (first, rest) = evaluated.split_first()?;
    let best = h.best_iteration()?;
    let (_, bo, bcm) = evaluated.iter().find(|e| e.0 == best)?;
    if best == first.0 {
        let runner_up = rest.iter().max_by(|a, b| a.2.total_cmp(&b.2));
        return Some(match runner_up {
            None => "Did the search help? Only the first network was evaluated.".into(),
            Some((it, o, cm)) => format!(
                "Did the search help? No: the first network (iteration {}, CM {:.4}, A2 {}, \
                 F {:.0} img/s, {} params) stayed the best. The strongest later candidate, \
                 iteration {it}, scored CM {cm:.4} (A2 {}, F {:.0} img/s, {} params): under \
                 these priorities and weights its changes cost more than they gained.",
                first.0,
                first.2,
                pct(first.1.a2),
                first.1.fps,
                lemo_arch::thousands(first.1.params),
                pct(o.a2),
                o.fps,
                lemo_arch::thousands(o.params),
            ),
        });
    }
    Some(format!(
        "Did the search help? Yes: the best network (iteration {best}) scores CM {bcm:.4} against \
         {:.4} for the first (iteration {}); A2 {} vs {}, F {:.0} vs {:.0} img/s, {} vs {} \
         params (search-time measurements, validation split).",
        first.2,
        first.0,
        pct(bo.a2),
        pct(first.1.a2),
        bo.fps,
        first.1.fps,
        lemo_arch::thousands(bo.params),
        lemo_arch::thousands(first.1.params),
    ))
}

/// Test-accuracy differences smaller than this are reported as no clear difference: the spread
/// of one network's test accuracy over repeated trainings of the same length (docs/results.md:
/// the CIFAR-10 starter, 0.8647 to 0.8702 in three trainings of 1,035 s).
pub const SAME_RECIPE_SPREAD: f64 = 0.005;

/// The best network against the baseline (the first network trained with the same final
/// recipe and seed), on the test split; `None` without a baseline. A difference inside
/// [`SAME_RECIPE_SPREAD`] is "not clearly".
pub fn baseline_verdict(h: &RunHistory) -> Option<String> {
    let (fin, base) = (h.final_result.as_ref()?, h.baseline.as_ref()?);
    if fin.iteration == base.iteration {
        return Some(format!(
            "Under the final recipe: the best network is the first one (iteration {}), so it is \
             its own baseline: test accuracy {}.",
            fin.iteration,
            fin.observed
                .test_accuracy
                .map_or("not measured".into(), pct)
        ));
    }
    let (Some(t), Some(b)) = (fin.observed.test_accuracy, base.observed.test_accuracy) else {
        return Some("Under the final recipe: no test accuracy to compare.".into());
    };
    let (answer, caveat) = compare_test_accuracies(t, b);
    Some(format!(
        "{answer}, under the same final recipe: the best network (iteration {}) reaches test \
         accuracy {} against {} for the first network (iteration {}), each trained for {:.0} s \
         ({} vs {} params).{caveat}",
        fin.iteration,
        pct(t),
        pct(b),
        base.iteration,
        fin.evaluation.train_seconds,
        lemo_arch::thousands(fin.observed.params),
        lemo_arch::thousands(base.observed.params),
    ))
}

/// The answer to "did the search help?" for test accuracies `t` (best) and `b` (baseline), and
/// a sentence to add when the difference is inside [`SAME_RECIPE_SPREAD`].
fn compare_test_accuracies(t: f64, b: f64) -> (&'static str, String) {
    if (t - b).abs() < SAME_RECIPE_SPREAD {
        (
            "Not clearly",
            format!(
                " The difference, {:.2} points, is inside the {:.1}-point spread of repeated \
                 trainings of one network.",
                (t - b) * 100.0,
                SAME_RECIPE_SPREAD * 100.0
            ),
        )
    } else if t > b {
        ("Yes", String::new())
    } else {
        ("No", String::new())
    }
}

/// One row per iteration, the best marked.
fn iterations_section(w: &mut String, h: &RunHistory) {
    let best = h.best_iteration();
    let _ = writeln!(w, "\n## Search, iteration by iteration\n");
    let _ = writeln!(
        w,
        "| # | network | params | A1 | A2 | E1 (kWh) | E2 (kWh) | F (img/s) | CM | repairs | note | next instructions |"
    );
    let _ = writeln!(w, "|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in &h.iterations {
        let next = r
            .next_command
            .as_ref()
            .map(|c| {
                c.entries()
                    .iter()
                    .map(|e| format!("{} {:.2}", e.instruction.code(), e.weight))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        let mark = if Some(r.iteration) == best {
            " ★"
        } else {
            ""
        };
        match &r.outcome {
            IterationOutcome::Evaluated {
                hash,
                reused_from,
                observed: o,
                effectiveness,
                diverged,
                ..
            } => {
                let mut note = String::new();
                if let Some(it) = reused_from {
                    let _ = write!(note, "duplicate of #{it}, reused");
                }
                if *diverged {
                    note.push_str("diverged");
                }
                let _ = writeln!(
                    w,
                    "| {}{mark} | `{}` | {} | {:.4} | {:.4} | {} | {} | {:.1} | {:.4} | {} | {} | {} |",
                    r.iteration,
                    hash.get(..10).unwrap_or(hash),
                    lemo_arch::thousands(o.params),
                    o.a1,
                    o.a2,
                    sci(o.e1_kwh),
                    sci(o.e2_kwh),
                    o.fps,
                    effectiveness.cm,
                    r.repair_rounds(),
                    note,
                    next
                );
            }
            IterationOutcome::Invalid { error, .. } => {
                let _ = writeln!(
                    w,
                    "| {} | invalid | | | | | | | | {} | {} | {} |",
                    r.iteration,
                    r.repair_rounds(),
                    one_line(error, 80),
                    next
                );
            }
            IterationOutcome::Failed { error, .. } => {
                let _ = writeln!(
                    w,
                    "| {} | failed to train | | | | | | | | {} | {} | {} |",
                    r.iteration,
                    r.repair_rounds(),
                    one_line(error, 80),
                    next
                );
            }
        }
    }
    let recipe = h.start.as_ref().map(|s| &s.config.search.training);
    if let Some((c, epochs)) = recipe.and_then(|r| Some((r.budget.curve?, r.epochs)))
        && let Some(first) = c.first_epochs
    {
        // Journals written before the curve was drawn through epochs hold no target epochs.
        let through_epochs = h.iterations.iter().any(|r| {
            r.evaluation
                .as_ref()
                .and_then(|e| e.curve)
                .is_some_and(|c| c.target_epochs.is_some())
        });
        let drawn = if through_epochs {
            "at their epochs, read at the epochs the final training's time holds at the \
             candidate's measured pace"
        } else {
            "at their measured training times"
        };
        let _ = writeln!(
            w,
            "\nA1 and A2 here are predicted, not measured: each candidate was trained for {first} \
             and for {epochs} epochs, and the learning curve through the two training \
             (validation) accuracies {drawn} (exponent {}) gives its A1 (A2) after the final \
             training's {:.0} s (the journal's `evaluated` events hold both measurements).",
            c.exponent, c.target_seconds
        );
    } else if let Some((c, second)) =
        recipe.and_then(|r| Some((r.budget.curve?, r.budget.max_wall_seconds?)))
    {
        let _ = writeln!(
            w,
            "\nA1 and A2 here are predicted, not measured: each candidate was trained for {:.0} s \
             and for {second:.0} s, and the learning curve through the two training (validation) \
             accuracies (exponent {}) gives its A1 (A2) after the final training's {:.0} s (the \
             journal's `evaluated` events hold both measurements).",
            c.first_seconds, c.exponent, c.target_seconds
        );
    }
    let _ = writeln!(
        w,
        "\n★ best by CM. Pareto front (A2, F up; E1+E2, P down): {:?}.",
        h.iterations
            .last()
            .map(|r| r.pareto_front.clone())
            .unwrap_or_default()
    );
}

/// Every candidate of iterations with several (or evaluated by an executor), the chosen one
/// marked, with the jobs that evaluated it.
fn candidates_section(w: &mut String, h: &RunHistory) {
    if h.iterations.iter().all(|r| r.candidates.is_empty()) {
        return;
    }
    let _ = writeln!(w, "\n## Candidates\n");
    if let Some(x) = &h.executor {
        let _ = writeln!(w, "Executor: {}.\n", one_line(x, 300));
    }
    let _ = writeln!(
        w,
        "| # | candidate | network | params | A1 | A2 | F (img/s) | CM | note | jobs |"
    );
    let _ = writeln!(w, "|---|---|---|---|---|---|---|---|---|---|");
    for r in &h.iterations {
        for c in &r.candidates {
            let mark = if c.candidate == r.chosen { " ◆" } else { "" };
            let jobs = c
                .jobs
                .iter()
                .map(|j| format!("{} {} (attempt {})", j.job_id, j.state, j.attempt))
                .collect::<Vec<_>>()
                .join(", ");
            let head = format!("| {} | {}{mark} |", r.iteration, c.candidate);
            let _ = match &c.outcome {
                IterationOutcome::Evaluated {
                    hash,
                    reused_from,
                    observed: o,
                    effectiveness,
                    diverged,
                    ..
                } => {
                    let mut note = one_line(&c.notes.join("; "), 160);
                    if let Some(it) = reused_from {
                        let _ = write!(note, " (duplicate of #{it}, reused)");
                    }
                    if *diverged {
                        note.push_str(" (diverged)");
                    }
                    writeln!(
                        w,
                        "{head} `{}` | {} | {:.4} | {:.4} | {:.1} | {:.4} | {} | {jobs} |",
                        hash.get(..10).unwrap_or(hash),
                        lemo_arch::thousands(o.params),
                        o.a1,
                        o.a2,
                        o.fps,
                        effectiveness.cm,
                        note.trim(),
                    )
                }
                IterationOutcome::Invalid { error, .. } => writeln!(
                    w,
                    "{head} invalid | | | | | | {} | {jobs} |",
                    one_line(error, 80)
                ),
                IterationOutcome::Failed { error, .. } => writeln!(
                    w,
                    "{head} failed | | | | | | {} | {jobs} |",
                    one_line(error, 120)
                ),
            };
        }
    }
    let _ = writeln!(
        w,
        "\n◆ the iteration's network (best by CM among its candidates); the search table above \
         shows it."
    );
}

/// The best network: summary, drawing and IR.
fn best_network_section(w: &mut String, h: &RunHistory, start: &RunStart) {
    let best = h.best_iteration();
    let best_graph = h
        .final_result
        .as_ref()
        .map(|f| f.graph.clone())
        .or_else(|| {
            best.and_then(|b| h.iteration(b))
                .and_then(|r| match &r.outcome {
                    IterationOutcome::Evaluated { graph, .. } => Some(graph.clone()),
                    _ => None,
                })
        });
    if let Some(g) = best_graph {
        let _ = writeln!(w, "\n## The best network\n");
        match g.validate(&start.task) {
            Ok(analysis) => {
                let _ = writeln!(w, "```text\n{}\n```", g.summary(&analysis).trim_end());
                let _ = writeln!(
                    w,
                    "\nGraphviz drawing (`dot -Tsvg best/network.dot > network.svg`):\n\n```dot\n{}\n```",
                    g.to_dot(Some(&analysis)).trim_end()
                );
            }
            Err(e) => {
                let _ = writeln!(w, "(does not validate any more: {e})");
            }
        }
        let _ = writeln!(
            w,
            "\n<details><summary>IR (JSON)</summary>\n\n```json\n{}\n```\n</details>",
            g.to_json_pretty()
        );
    }
}

/// Where every energy figure came from.
fn energy_section(w: &mut String, h: &RunHistory) {
    let _ = writeln!(w, "\n## Energy sources\n");
    let mut sources: BTreeMap<String, (String, bool)> = BTreeMap::new();
    for rep in energy_reports(h) {
        for comp in &rep.components {
            let estimated = comp.provenance == Provenance::Estimated;
            sources
                .entry(format!("{:?}", comp.component))
                .or_insert_with(|| (comp.source.clone(), estimated));
        }
    }
    if sources.is_empty() {
        let _ = writeln!(
            w,
            "No energy was measured (energy metering off, or nothing trained)."
        );
    } else {
        let _ = writeln!(
            w,
            "| component | source | measured or estimated |\n|---|---|---|"
        );
        for (comp, (source, estimated)) in sources {
            let _ = writeln!(
                w,
                "| {comp} | {} | {} |",
                source.replace('|', "/"),
                if estimated { "estimated" } else { "measured" }
            );
        }
    }
}

/// Warnings and the answer count.
fn closing_section(w: &mut String, h: &RunHistory) {
    if !h.warnings.is_empty() {
        let _ = writeln!(w, "\n## Warnings\n");
        for m in &h.warnings {
            let _ = writeln!(w, "- {m}");
        }
    }
    let repairs: usize = h.iterations.iter().map(|r| r.repair_rounds()).sum();
    let answers = h
        .iterations
        .iter()
        .flat_map(|r| &r.answers)
        .filter(|e| matches!(e, Event::Answer { .. }))
        .count();
    let _ = writeln!(
        w,
        "\n---\n{} architect answers, {} repair rounds. Regenerate with `lemo report <run dir>` \
         (from `journal.jsonl` alone).",
        answers, repairs
    );
}

fn one_line(s: &str, max: usize) -> String {
    let flat: String = s
        .chars()
        .map(|c| if c == '\n' || c == '|' { ' ' } else { c })
        .collect();
    if flat.chars().count() > max {
        format!("{}…", flat.chars().take(max).collect::<String>())
    } else {
        flat
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_difference_inside_the_spread_of_repeated_trainings_is_not_a_win() {
        let (answer, caveat) = compare_test_accuracies(0.8704, 0.8702);
        assert_eq!(answer, "Not clearly");
        assert!(caveat.contains("0.02 points"), "{caveat}");
        assert_eq!(compare_test_accuracies(0.8800, 0.8702).0, "Yes");
        assert_eq!(compare_test_accuracies(0.8600, 0.8702).0, "No");
        assert!(compare_test_accuracies(0.8800, 0.8702).1.is_empty());
    }
}
