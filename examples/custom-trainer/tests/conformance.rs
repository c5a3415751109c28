//! The example trainer keeps the trainer contract.

use lemo_example_custom_trainer::CentroidTrainer;

#[test]
fn the_centroid_trainer_conforms() {
    assert_eq!(lemo_testkit::check_trainer(&mut CentroidTrainer), Ok(()));
}
