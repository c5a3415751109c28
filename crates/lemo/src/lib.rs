//! LeMo-NADe orchestrator: the discovery loop (Algorithm 1), run journal and resume, reports.
