//! The offline architect and the LLM architect (over a scripted chat model) pass the testkit's
//! architect conformance suite.

use lemo_llm::{LlmArchitect, OfflineArchitect, OfflineConfig};
use lemo_testkit::{ScriptedChat, check_architect};

const NET: &str = r#"Here is the network:
```json
{"nodes":[{"id":"c","op":"conv2d","filters":16,"kernel":3,"padding":"same"},
  {"id":"r","op":"relu"},{"id":"g","op":"global_avg_pool"},{"id":"fc","op":"dense","units":10}]}
```"#;

#[test]
fn the_offline_architect_conforms() {
    assert_eq!(
        check_architect(&OfflineArchitect::new(OfflineConfig::default())),
        Ok(())
    );
}

#[test]
fn the_llm_architect_conforms() {
    let architect = LlmArchitect::new(ScriptedChat::new([NET]));
    assert_eq!(check_architect(&architect), Ok(()));
}

#[test]
fn the_llm_architect_conforms_when_the_model_writes_nonsense() {
    let architect = LlmArchitect::new(ScriptedChat::new(["I cannot help with that."]));
    assert_eq!(check_architect(&architect), Ok(()));
}
