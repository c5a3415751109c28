//! Integration of synthetic power traces against their exact integrals.

use std::f64::consts::PI;
use std::time::Duration;

use lemo_energy::PowerIntegrator;

fn integrate(samples: impl Iterator<Item = (f64, f64)>) -> PowerIntegrator {
    let mut p = PowerIntegrator::new();
    for (t, w) in samples {
        p.push(Duration::from_secs_f64(t), w);
    }
    p
}

#[test]
fn linear_ramp_is_exact() {
    // P(t) = 100 + 50 t W over 10 s at 100 ms: exact integral 1000 + 2500 = 3500 J; the
    // trapezoid rule is exact for linear power.
    let p = integrate((0..=100).map(|i| {
        let t = f64::from(i) * 0.1;
        (t, 100.0 + 50.0 * t)
    }));
    assert!((p.joules() - 3500.0).abs() < 1e-9, "{}", p.joules());
    assert_eq!(p.samples(), 101);
}

#[test]
fn sinusoidal_trace_matches_its_integral() {
    // A GPU-like load: P(t) = 200 + 150 sin(2 pi t / 4) W over 30 s, sampled every 100 ms.
    // Exact integral: 200 x 30 + 150 x 4 / (2 pi) x (1 - cos(2 pi x 30 / 4)) = 6000 + 190.9859 J.
    let exact = 6000.0 + 150.0 * 4.0 / (2.0 * PI) * (1.0 - (2.0 * PI * 30.0 / 4.0).cos());
    let p = integrate((0..=300).map(|i| {
        let t = f64::from(i) * 0.1;
        (t, 200.0 + 150.0 * (2.0 * PI * t / 4.0).sin())
    }));
    // Trapezoid error bound: (b - a) h^2 / 12 x max|P''| = 30 x 0.01 / 12 x 150 (pi/2)^2 = 9.25 J.
    let error = (p.joules() - exact).abs();
    assert!(error < 9.26, "{} J vs exact {exact} J", p.joules());
    assert!(error / exact < 1e-3);
    assert_eq!(p.longest_gap(), Duration::from_millis(100));
}

#[test]
fn irregular_sampling_of_a_step() {
    // 50 W for 2 s then 300 W for 1 s, sampled at irregular times that include the step edges.
    let samples = [
        (0.0, 50.0),
        (0.7, 50.0),
        (2.0, 50.0),
        (2.0, 300.0),
        (2.45, 300.0),
        (3.0, 300.0),
    ];
    let p = integrate(samples.into_iter());
    assert!((p.joules() - 400.0).abs() < 1e-9, "{}", p.joules());
}
