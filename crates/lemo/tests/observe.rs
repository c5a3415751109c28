//! What the loop observes of an evaluation: with a learning-curve proxy, A1 and A2 are both the
//! curve's predictions for the final training's length (CM adds them, the rules compare them).

use lemo_arch::{Limits, Task, ValidatedGraph};
use lemo_train::{CurvePrediction, Evaluation};

fn starter_analysis() -> Result<lemo_arch::Analysis, Box<dyn std::error::Error>> {
    let task = Task {
        input: [3, 32, 32],
        classes: 10,
        limits: Limits::default(),
    };
    let network = ValidatedGraph::new(lemo_arch::starter(&task), &task)?;
    Ok(network.analysis().clone())
}

#[test]
fn a_curve_proxy_predicts_a1_and_a2_for_the_same_length() -> Result<(), Box<dyn std::error::Error>>
{
    let analysis = starter_analysis()?;
    let mut ev = Evaluation::default();
    ev.train_accuracy = 0.79;
    ev.val_accuracy = 0.78;
    let measured = lemo::observe(&ev, &analysis);
    assert_eq!((measured.a1, measured.a2), (0.79, 0.78));

    let curve = CurvePrediction {
        first_seconds: 40.0,
        first_val_accuracy: 0.69,
        second_seconds: 100.0,
        target_seconds: 863.0,
        predicted_val_accuracy: 0.90,
        first_train_accuracy: Some(0.70),
        predicted_train_accuracy: Some(0.91),
        ..CurvePrediction::default()
    };
    ev.curve = Some(curve);
    let predicted = lemo::observe(&ev, &analysis);
    assert_eq!((predicted.a1, predicted.a2), (0.91, 0.90));

    // A journal written before A1 was predicted: A1 stays the measured one.
    ev.curve = Some(CurvePrediction {
        first_train_accuracy: None,
        predicted_train_accuracy: None,
        ..curve
    });
    let old = lemo::observe(&ev, &analysis);
    assert_eq!((old.a1, old.a2), (0.79, 0.90));
    Ok(())
}
