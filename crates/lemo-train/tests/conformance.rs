//! The burn trainer passes the testkit's trainer conformance suite (a real, two-epoch training
//! on the testkit's small quadrant task).

use lemo_testkit::check_trainer;
use lemo_train::BurnTrainer;

#[test]
fn the_burn_trainer_conforms() {
    assert_eq!(check_trainer(&mut BurnTrainer::new()), Ok(()));
}
