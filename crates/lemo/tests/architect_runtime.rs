//! One tokio runtime per run: what an architect's client spawns on its first request (an HTTP
//! connection pool's tasks) is still alive at the next request.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Mutex;
use std::time::Duration;

use common::{discovery, quick_config, widening_answer};
use lemo::RunDir;
use lemo_llm::{BoxFuture, ChatModel, ChatRequest, ChatResponse, LlmArchitect, LlmError};

/// Spawns a long-lived task on its first request, as a connection pool does, and records at
/// every later request whether that task still runs.
#[derive(Default)]
struct Pooled {
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    alive: Mutex<Vec<bool>>,
    calls: Mutex<usize>,
}

impl ChatModel for Pooled {
    fn chat<'a>(
        &'a self,
        _request: &'a ChatRequest,
    ) -> BoxFuture<'a, Result<ChatResponse, LlmError>> {
        Box::pin(async move {
            {
                let mut task = self.task.lock().unwrap();
                match task.as_ref() {
                    None => {
                        *task = Some(tokio::spawn(async {
                            tokio::time::sleep(Duration::from_secs(3600)).await;
                        }));
                    }
                    Some(t) => self.alive.lock().unwrap().push(!t.is_finished()),
                }
            }
            let mut calls = self.calls.lock().unwrap();
            *calls += 1;
            Ok(ChatResponse {
                text: widening_answer(*calls),
                model: "pooled".into(),
                ..ChatResponse::default()
            })
        })
    }
    fn describe(&self) -> String {
        "pooled (test)".into()
    }
}

#[test]
fn the_architect_keeps_one_runtime_for_the_whole_run() -> Result<(), Box<dyn std::error::Error>> {
    let tmp = tempfile::tempdir()?;
    let mut config = quick_config(3, tmp.path());
    config.final_training.enabled = false;
    let chat = std::sync::Arc::new(Pooled::default());
    discovery(config, Box::new(LlmArchitect::new(chat.clone())))
        .discover_in(RunDir::new(tmp.path().join("run")))?;
    let alive = chat.alive.lock().unwrap().clone();
    assert!(alive.len() >= 2, "{alive:?}");
    assert!(
        alive.iter().all(|a| *a),
        "a task spawned on the first request died: {alive:?}"
    );
    Ok(())
}
