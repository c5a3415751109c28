//! LeMo-NADe user-defined metrics (priorities, thresholds), observed metrics, combined model effectiveness and Pareto front.
