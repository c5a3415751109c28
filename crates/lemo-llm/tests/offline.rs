//! The offline architect: deterministic, and every instruction visibly changes the network.

mod common;

use common::{brief, command, feedback};
use lemo_expert::Instruction;
use lemo_llm::{
    Architect, ArchitectConfig, Feedback, LlmError, OFFLINE_NAME, OfflineArchitect, OfflineConfig,
    ProposalKind, TaskBrief, block_on,
};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Five rounds following a fixed list of commands; the canonical hash of every network.
fn run(seed: u64) -> Result<Vec<String>, LlmError> {
    let architect = OfflineArchitect::new(OfflineConfig::default());
    let brief = TaskBrief { seed, ..brief() };
    let commands = [
        vec![Instruction::AddConvLayer, Instruction::AddSkipConnection],
        vec![
            Instruction::AddSkipConnection,
            Instruction::AddDenseLayer,
            Instruction::AddDropout,
        ],
        vec![
            Instruction::AddMoreKernels,
            Instruction::AddWeightInitializer,
        ],
        vec![Instruction::ReduceConvLayer, Instruction::AddRegularization],
        vec![Instruction::AddSkipConnection, Instruction::ReduceNeurons],
    ];
    let first = block_on(architect.propose_initial(&brief))?;
    let mut graph = first
        .design()
        .map(|d| d.graph().clone())
        .unwrap_or_default_graph();
    let mut hashes = vec![graph.canonical_hash()];
    for (round, c) in commands.iter().enumerate() {
        let fb = Feedback {
            round: round as u32 + 1,
            previous: graph.clone(),
            ..feedback(0, c)
        };
        let p = block_on(architect.propose_next(&brief, &fb))?;
        graph = p
            .design()
            .map(|d| d.graph().clone())
            .unwrap_or_default_graph();
        hashes.push(graph.canonical_hash());
    }
    Ok(hashes)
}

trait OrStarter {
    fn unwrap_or_default_graph(self) -> lemo_arch::Graph;
}
impl OrStarter for Option<lemo_arch::Graph> {
    fn unwrap_or_default_graph(self) -> lemo_arch::Graph {
        self.unwrap_or_else(|| lemo_arch::starter(&brief().task))
    }
}

#[test]
fn same_seed_same_sequence() -> TestResult {
    let a = run(7)?;
    assert_eq!(a, run(7)?);
    let distinct: std::collections::HashSet<&String> = a.iter().collect();
    assert_eq!(distinct.len(), a.len(), "every round changed the network");
    let others: Vec<Vec<String>> = (8..14).map(run).collect::<Result<_, _>>()?;
    assert!(
        others.iter().any(|o| *o != a),
        "seeds should matter somewhere"
    );
    Ok(())
}

/// The instructions that need something to act on first.
fn prerequisite(i: Instruction) -> Option<Instruction> {
    use Instruction::*;
    match i {
        ReduceSkipConnection => Some(AddSkipConnection),
        ReduceDenseLayer | AddMoreNeurons | ReduceNeurons => Some(AddDenseLayer),
        ReduceRegularization => Some(AddRegularization),
        ReduceDropout => Some(AddDropout),
        _ => None,
    }
}

#[test]
fn each_instruction_visibly_changes_the_next_network() -> TestResult {
    let b = brief();
    let architect = OfflineArchitect::new(OfflineConfig::default());
    for instruction in Instruction::ALL {
        let mut previous = lemo_arch::starter(&b.task);
        if let Some(first) = prerequisite(instruction) {
            previous = previous.apply(first, &b.task, 1)?.graph;
        }
        let fb = Feedback {
            round: 1,
            previous: previous.clone(),
            ..feedback(1, &[instruction])
        };
        let proposal = block_on(architect.propose_next(&b, &fb))?;
        let design = proposal.design().ok_or("offline proposals are valid")?;
        assert_ne!(
            design.graph().canonical_hash(),
            previous.canonical_hash(),
            "{instruction} left the network unchanged: {:?}",
            design.notes
        );
        assert!(
            design
                .notes
                .iter()
                .any(|n| n.starts_with(instruction.code())),
            "{:?}",
            design.notes
        );
        assert_eq!(proposal.architect, OFFLINE_NAME);
        assert_eq!(proposal.kind, ProposalKind::Next);
        assert!(proposal.prompt.is_empty() && proposal.usage.is_none());
    }
    Ok(())
}

#[test]
fn at_most_max_edits_strongest_first() -> TestResult {
    let b = brief();
    let architect = OfflineArchitect::new(OfflineConfig { max_edits: 2 });
    let fb = feedback(
        1,
        &[
            Instruction::AddWeightInitializer,
            Instruction::AddDropout,
            Instruction::AddRegularization,
        ],
    );
    let (_, notes) = architect.next_graph(&b, &fb);
    let codes: Vec<&str> = notes.iter().filter_map(|n| n.split(':').next()).collect();
    assert_eq!(codes, ["AWI", "AD"]);
    let empty = Feedback {
        command: command(&[]),
        ..feedback(1, &[])
    };
    // No rule fired: the search keeps going with a seeded exploratory edit, not the same network.
    let (explored, notes) = architect.next_graph(&b, &empty);
    assert_ne!(explored.canonical_hash(), empty.previous.canonical_hash());
    assert_eq!(notes.len(), 1);
    assert!(
        notes[0].starts_with("no instruction fired: exploratory edit"),
        "{notes:?}"
    );
    assert_eq!(
        architect.next_graph(&b, &empty).0,
        explored,
        "reproducible for the seed"
    );
    Ok(())
}

#[test]
fn candidate_c_starts_at_the_c_th_strongest_instruction() -> TestResult {
    let architect = OfflineArchitect::new(OfflineConfig { max_edits: 1 });
    let order = [
        Instruction::AddWeightInitializer,
        Instruction::AddDropout,
        Instruction::AddRegularization,
    ];
    let fb = feedback(1, &order);
    let mut hashes = std::collections::HashSet::new();
    // Candidates 0..3 follow one instruction each, in order; candidate 3 wraps to the first.
    for (c, expected) in ["AWI", "AD", "AR", "AWI"].iter().enumerate() {
        let b = lemo_llm::TaskBrief {
            candidate: c,
            ..brief()
        };
        let (graph, notes) = architect.next_graph(&b, &fb);
        let codes: Vec<&str> = notes.iter().filter_map(|n| n.split(':').next()).collect();
        assert_eq!(codes, [*expected], "candidate {c}: {notes:?}");
        hashes.insert(graph.canonical_hash());
    }
    assert_eq!(hashes.len(), 3, "three instructions, three networks");
    // With max_edits 2, candidate 2 takes the third and (wrapping) the first.
    let two = OfflineArchitect::new(OfflineConfig { max_edits: 2 });
    let b = lemo_llm::TaskBrief {
        candidate: 2,
        ..brief()
    };
    let (_, notes) = two.next_graph(&b, &fb);
    let codes: Vec<&str> = notes.iter().filter_map(|n| n.split(':').next()).collect();
    assert_eq!(codes, ["AR", "AWI"]);
    Ok(())
}

#[test]
fn default_configuration_is_offline_and_named_as_such() -> TestResult {
    let architect = ArchitectConfig::default().build()?;
    assert_eq!(architect.name(), "offline (rule-following, no LLM)");
    let p = block_on(architect.propose_initial(&brief()))?;
    assert_eq!(p.kind, ProposalKind::Initial);
    assert_eq!(
        p.design().map(|d| d.graph()),
        Some(&lemo_arch::starter(&brief().task))
    );
    let repaired = block_on(architect.repair(&brief(), &p, "some error"))?;
    assert_eq!(repaired.kind, ProposalKind::Repair);
    assert!(repaired.design().is_some());
    Ok(())
}
