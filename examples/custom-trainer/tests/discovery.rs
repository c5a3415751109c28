//! A whole discovery (embedded digits, offline architect) with the example trainer in place of
//! the burn one: the loop composes any `Trainer`.

use lemo::{Discovery, RunConfig, RunDir, build_meter, build_rulebook};
use lemo_example_custom_trainer::CentroidTrainer;

#[test]
fn a_discovery_runs_on_the_third_party_trainer() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let mut config = RunConfig::quickstart()?;
    config.termination.iterations = 3;
    config.termination.max_wall_seconds = None;
    let architect = config.architect.build()?;
    let meter = build_meter(&config)?;
    let rulebook = build_rulebook(&config)?;
    let summary = Discovery::new(
        config,
        architect,
        Box::new(CentroidTrainer),
        meter,
        rulebook,
    )
    .discover_in(RunDir::new(dir.path().join("run")))?;
    assert!(summary.finished);
    assert_eq!(summary.history.iterations.len(), 3);
    let start = summary.history.start.as_ref().ok_or("no start")?;
    assert!(start.trainer.contains("nearest-centroid"));
    // Digits are easy for a nearest-centroid classifier: well above chance (0.1).
    let best = summary
        .history
        .final_result
        .as_ref()
        .ok_or("no final result")?;
    assert!(best.observed.a2 > 0.6, "A2 {}", best.observed.a2);
    Ok(())
}
