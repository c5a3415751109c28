//! Shows which energy sources this machine offers and measures a few seconds of busy work.
//!
//! `cargo run -p lemo-energy --example energy_probe [--features nvml] -- [seconds]`

use std::hint::black_box;
use std::time::{Duration, Instant};

use lemo_energy::{Accounting, CompositeMeter, EnergyMeter, MeterConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let seconds: f64 = match std::env::args().nth(1) {
        Some(arg) => arg.parse()?,
        None => 2.0,
    };
    let meter = CompositeMeter::detect(&MeterConfig::default())?;
    println!("meter: {}\n{}", meter.name(), meter.describe());

    let (_, report) = meter.measure(|| {
        let start = Instant::now();
        let mut x = 0u64;
        while start.elapsed() < Duration::from_secs_f64(seconds) {
            x = black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        x
    })?;
    println!("wall: {:.3} s", report.wall.as_secs_f64());
    for c in &report.components {
        println!(
            "  {:?}: {:.3} J ({:?}, {})",
            c.component, c.joules, c.provenance, c.source
        );
    }
    let account = Accounting::paper().account(&report);
    println!(
        "total {:.3} J = {:.3e} kWh-PUE, {:.3e} g ({:.3e} lb) CO2e{}",
        account.joules,
        account.kwh_pue,
        account.co2e_grams,
        account.co2e_lbs,
        if account.estimated {
            " (includes estimates)"
        } else {
            ""
        }
    );
    Ok(())
}
