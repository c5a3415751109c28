//! The energy meter conformance suite.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use lemo_core::energy::{EnergyMeter, EnergyReport};

use crate::{ConformanceError, Findings};

/// The energy meter contract:
///
/// - the name is not empty;
/// - a window opened and closed around 50 ms of work reports a wall time of at least those
///   50 ms and not far beyond what passed outside it;
/// - every component's energy is finite and non-negative and names its source;
/// - windows can overlap (the loop measures inference inside a candidate's run) and a meter
///   can be used from another thread (`Send + Sync`);
/// - nothing panics.
///
/// A meter that cannot run on this machine (no counters) should be skipped by the caller, not
/// checked: its `start` error is reported as a violation here.
pub fn check_meter(meter: &dyn EnergyMeter) -> Result<(), ConformanceError> {
    let mut f = Findings::new("energy meter", meter.name());
    f.expect(!meter.name().trim().is_empty(), || {
        "its name is empty".into()
    });
    let outer = Instant::now();
    let run = catch_unwind(AssertUnwindSafe(
        || -> Result<(EnergyReport, EnergyReport), String> {
            let a = meter.start().map_err(|e| e.to_string())?;
            let b = meter.start().map_err(|e| e.to_string())?;
            busy(Duration::from_millis(50));
            let rb = b.finish().map_err(|e| e.to_string())?;
            let ra = a.finish().map_err(|e| e.to_string())?;
            Ok((ra, rb))
        },
    ));
    let elapsed = outer.elapsed();
    match run {
        Err(_) => f.expect(false, || "panicked measuring a window".into()),
        Ok(Err(e)) => f.expect(false, || format!("failed to measure a window: {e}")),
        Ok(Ok((a, b))) => {
            for (name, r) in [("outer", &a), ("inner", &b)] {
                f.expect(r.wall >= Duration::from_millis(50), || {
                    format!("the {name} window of 50 ms of work reports {:?}", r.wall)
                });
                f.expect(r.wall <= elapsed + Duration::from_millis(50), || {
                    format!(
                        "the {name} window reports {:?}, more than the {elapsed:?} that passed",
                        r.wall
                    )
                });
                for c in &r.components {
                    f.expect(c.joules.is_finite() && c.joules >= 0.0, || {
                        format!("{:?} reports {} J", c.component, c.joules)
                    });
                    f.expect(!c.source.trim().is_empty(), || {
                        format!("{:?} does not name its source", c.component)
                    });
                }
            }
        }
    }
    let threaded = std::thread::scope(|s| {
        s.spawn(|| meter.start().and_then(|w| w.finish()).is_ok())
            .join()
            .unwrap_or(false)
    });
    f.expect(threaded, || "could not measure from another thread".into());
    f.finish()
}

/// Keeps one core busy for `d`.
fn busy(d: Duration) {
    let start = Instant::now();
    let mut x = 0u64;
    while start.elapsed() < d {
        x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lemo_core::energy::NoMeter;

    #[test]
    fn the_null_meter_conforms() {
        assert_eq!(check_meter(&NoMeter), Ok(()));
    }
}
