//! Command-line helpers shared by the examples (`mod common;` in each): one parser per kind of
//! flag value, and the reader of network files. Each example uses some of them.
#![allow(dead_code)]

use std::path::Path;
use std::str::FromStr;

use lemo_arch::Graph;

/// A network file (the IR's JSON, e.g. `examples/networks/*.json`); the error names the file.
pub fn read_network(path: &Path) -> Result<Graph, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Graph::from_json(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// The value after `flag`, parsed; the error names the flag and says what to give.
pub fn value<T: FromStr>(
    args: &mut impl Iterator<Item = String>,
    flag: &str,
    what: &str,
) -> Result<T, String> {
    let v = args.next().ok_or(format!("{flag} needs {what}"))?;
    v.parse().map_err(|_| format!("{flag} {v}: give {what}"))
}

/// `A,B` with `0 < A < B` (`T::default()` is zero), or `None`.
pub fn increasing_pair<T: FromStr + PartialOrd + Default>(v: &str) -> Option<(T, T)> {
    let (a, b) = v.split_once(',')?;
    let (a, b): (T, T) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
    (a > T::default() && b > a).then_some((a, b))
}

/// The `A,B` after `flag`, with `0 < A < B`; the error names the flag and says what to give.
pub fn pair_value<T: FromStr + PartialOrd + Default>(
    args: &mut impl Iterator<Item = String>,
    flag: &str,
    what: &str,
) -> Result<(T, T), String> {
    let v = args.next().ok_or(format!("{flag} needs {what}"))?;
    increasing_pair(&v).ok_or(format!("{flag} {v}: give {what}"))
}
