//! The whole LeMo-NADe loop through the library API, on the embedded quickstart configuration:
//! scikit-learn's digits, the offline architect (no key, no download), a handful of
//! iterations, then the report. About the same as `cargo run -p lemo-cli -- discover`.
//!
//! ```sh
//! cargo run --example quickstart            # or: cargo run --example quickstart -- my.toml
//! ```

use lemo::{Discovery, RunConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // One TOML file holds everything: data, user metrics, architect, training, termination.
    let config = match std::env::args().nth(1) {
        Some(path) => RunConfig::from_path(path.as_ref())?,
        None => RunConfig::quickstart()?,
    };
    println!(
        "{}: up to {} iterations, architect {:?}",
        config.run.name, config.termination.iterations, config.architect
    );

    // Compose the parts the config names (architect, burn trainer, energy meter, rule book)
    // and run Algorithm 1; every step lands in runs/<timestamp>/journal.jsonl as it happens.
    let summary = Discovery::from_config(config)?.discover()?;

    for r in &summary.history.iterations {
        println!("iteration {:>2}: {}", r.iteration, r.outcome_line());
    }
    if let Some(best) = &summary.history.final_result {
        println!(
            "best network (iteration {}): {} parameters, test accuracy {:.2} %",
            best.iteration,
            best.observed.params,
            best.observed.test_accuracy.unwrap_or(0.0) * 100.0
        );
    }
    println!("report: {}", summary.report_path().display());
    Ok(())
}
