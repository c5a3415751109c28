//! Every network file under `examples/networks` is a valid network for CIFAR-10 (32x32 RGB, 10
//! classes), as `train_cifar10` and docs/results.md use them.

use lemo_arch::{Graph, Limits, Task, ValidatedGraph};

#[test]
fn every_example_network_validates_for_cifar10() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/networks");
    let task = Task {
        input: [3, 32, 32],
        classes: 10,
        limits: Limits::default(),
    };
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let text = std::fs::read_to_string(&path)?;
        let graph = Graph::from_json(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let valid =
            ValidatedGraph::new(graph, &task).map_err(|e| format!("{}: {e}", path.display()))?;
        assert!(valid.params() > 0, "{}", path.display());
        checked += 1;
    }
    assert!(
        checked >= 2,
        "only {checked} network files in {}",
        dir.display()
    );
    Ok(())
}
