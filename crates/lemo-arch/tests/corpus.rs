//! The fixture corpus: realistic LLM answers, each with its expected outcome in
//! `fixtures/expected.json` (every fixture file must have one).

use std::collections::BTreeMap;
use std::path::PathBuf;

use lemo_arch::{ArchError, Limits, Task, parse_answer};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct Expected {
    #[serde(default)]
    task: Option<Task>,
    outcome: String,
    #[serde(default)]
    nodes: Option<usize>,
    #[serde(default)]
    params: Option<u64>,
    #[serde(default)]
    macs: Option<u64>,
    #[serde(default)]
    note: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

fn fixtures() -> PathBuf {
    std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("tests/fixtures")
}

fn run(text: &str, task: &Task) -> Result<(lemo_arch::Parsed, lemo_arch::Analysis), ArchError> {
    let parsed = parse_answer(text)?;
    let analysis = parsed.graph.validate(task)?;
    Ok((parsed, analysis))
}

#[test]
fn every_fixture_has_its_expected_outcome() -> Result<(), Box<dyn std::error::Error>> {
    let expected: BTreeMap<String, Expected> =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("expected.json"))?)?;
    let mut files = Vec::new();
    for entry in std::fs::read_dir(fixtures())? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name != "expected.json" {
            files.push(name);
        }
    }
    files.sort();
    assert!(
        files.len() >= 25,
        "the corpus shrank to {} files",
        files.len()
    );
    let mut failures = Vec::new();
    for name in &files {
        let Some(exp) = expected.get(name) else {
            failures.push(format!("{name}: no entry in expected.json"));
            continue;
        };
        let text = std::fs::read_to_string(fixtures().join(name))?;
        let task = exp.task.clone().unwrap_or(Task {
            input: [3, 32, 32],
            classes: 10,
            limits: Limits::default(),
        });
        match (run(&text, &task), exp.outcome.as_str()) {
            (Ok((parsed, analysis)), "ok") => {
                let nodes = parsed.graph.nodes.len();
                if exp.nodes.is_some_and(|n| n != nodes) {
                    failures.push(format!("{name}: {nodes} nodes, expected {:?}", exp.nodes));
                }
                if exp.params.is_some_and(|p| p != analysis.params) {
                    failures.push(format!(
                        "{name}: {} params, expected {:?}",
                        analysis.params, exp.params
                    ));
                }
                if exp.macs.is_some_and(|m| m != analysis.macs) {
                    failures.push(format!(
                        "{name}: {} MACs, expected {:?}",
                        analysis.macs, exp.macs
                    ));
                }
                if let Some(note) = &exp.note
                    && !parsed.notes.iter().any(|n| n.contains(note.as_str()))
                {
                    failures.push(format!("{name}: notes {:?} lack {note:?}", parsed.notes));
                }
                if exp.note.is_none() && !parsed.notes.is_empty() && !name.contains("comments") {
                    failures.push(format!("{name}: unexpected notes {:?}", parsed.notes));
                }
            }
            (Ok(_), want) => {
                failures.push(format!("{name}: parsed and validated, expected {want}"))
            }
            (Err(e), want) => {
                let msg = e.to_string();
                if e.kind() != want {
                    failures.push(format!("{name}: {} ({msg}), expected {want}", e.kind()));
                } else if let Some(m) = &exp.message
                    && !msg.contains(m.as_str())
                {
                    failures.push(format!("{name}: message {msg:?} lacks {m:?}"));
                }
                if msg.contains('\n') || msg.len() > 600 {
                    failures.push(format!(
                        "{name}: message is not one short paragraph: {msg:?}"
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "corpus failures:\n{}",
        failures.join("\n")
    );
    Ok(())
}

#[test]
fn a_clean_graph_round_trips_through_strict_json() -> Result<(), ArchError> {
    let text = std::fs::read_to_string(fixtures().join("separable_mobile.json"))
        .map_err(|_| ArchError::NoJson)?;
    let g = lemo_arch::Graph::from_json(&text)?;
    let again = lemo_arch::Graph::from_json(&g.to_json_pretty())?;
    assert_eq!(g, again);
    // serde's own Deserialize is strict too.
    let bad = r#"{"nodes": [{"id": "a", "op": "relu", "colour": "red"}]}"#;
    let err = serde_json::from_str::<lemo_arch::Graph>(bad)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("colour"), "{err}");
    let bad_top = r#"{"nodes": [], "optimizer": "adam"}"#;
    assert_eq!(
        lemo_arch::Graph::from_json(bad_top).err().map(|e| e.kind()),
        Some("unknown_graph_field")
    );
    Ok(())
}
