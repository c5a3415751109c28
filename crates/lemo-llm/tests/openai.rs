//! The OpenAI backend against a local HTTP server speaking the chat-completions protocol.

mod common;

use common::{brief, fast_policy, feedback, network_json};
use lemo_expert::Instruction;
use lemo_llm::{
    Architect, ChatModel, ChatRequest, LlmArchitect, LlmError, Message, OpenAiChat, OpenAiConfig,
    Secret,
};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn completion(content: &str) -> Value {
    json!({
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1_700_000_000u32,
        "model": "gpt-4-turbo-2024-04-09",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content},
            "finish_reason": "stop"
        }],
        "usage": {"prompt_tokens": 1234, "completion_tokens": 321, "total_tokens": 1555}
    })
}

fn config(server: &MockServer, max_attempts: u32) -> OpenAiConfig {
    OpenAiConfig {
        model: "gpt-4-turbo".into(),
        base_url: Some(format!("{}/v1", server.uri())),
        temperature: 0.6,
        retry: fast_policy(max_attempts),
        ..OpenAiConfig::default()
    }
}

async fn bodies(server: &MockServer) -> Vec<Value> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter_map(|r| serde_json::from_slice(&r.body).ok())
        .collect()
}

fn ask(text: &str) -> ChatRequest {
    ChatRequest {
        messages: vec![Message::user(text)],
        ..ChatRequest::default()
    }
}

#[tokio::test]
async fn happy_path_sends_model_temperature_instructions_and_schema() -> TestResult {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion(&network_json())))
        .expect(1)
        .mount(&server)
        .await;
    let key = Secret::new("sk-test-0123456789");
    let chat = OpenAiChat::with_key(config(&server, 3), Some(key))?;
    let architect = LlmArchitect::new(chat);
    let fb = feedback(3, &[Instruction::AddConvLayer, Instruction::AddDropout]);
    let proposal = architect.propose_next(&brief(), &fb).await?;

    let design = proposal
        .design()
        .ok_or("the answer should be a valid network")?;
    assert_eq!(*design.graph(), lemo_arch::starter(&brief().task));
    assert_eq!(proposal.usage.map(|u| u.total()), Some(1555));
    assert_eq!(proposal.model.as_deref(), Some("gpt-4-turbo-2024-04-09"));
    assert!(proposal.architect.contains("gpt-4-turbo"));

    let received = server.received_requests().await.unwrap_or_default();
    assert_eq!(received.len(), 1);
    let auth = received[0]
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    assert_eq!(auth, Some("Bearer sk-test-0123456789"));
    let body: Value = serde_json::from_slice(&received[0].body)?;
    assert_eq!(body["model"], "gpt-4-turbo");
    assert!((body["temperature"].as_f64().unwrap_or(-1.0) - 0.6).abs() < 1e-6);
    assert_eq!(body["seed"], 42);
    assert_eq!(body["messages"][0]["role"], "system");
    assert_eq!(body["messages"][1]["role"], "user");
    let user = body["messages"][1]["content"].as_str().unwrap_or_default();
    assert!(
        user.contains(&fb.command.render()),
        "instructions missing from: {user}"
    );
    assert!(user.contains("Round 3."));
    assert!(user.contains("validation accuracy (A2): 55.00%"));
    assert_eq!(body["response_format"]["type"], "json_schema");
    assert_eq!(
        body["response_format"]["json_schema"]["name"],
        "lemo_network"
    );
    assert_eq!(
        body["response_format"]["json_schema"]["schema"],
        lemo_arch::json_schema()
    );
    // The prompt the journal keeps is the one that was sent.
    assert_eq!(proposal.prompt.len(), 2);
    assert_eq!(proposal.prompt[1].content, user);
    Ok(())
}

#[tokio::test]
async fn rate_limit_then_success_honours_retry_after() -> TestResult {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "1")
                .set_body_json(
                    json!({"error": {"message": "Rate limit reached", "type": "requests"}}),
                ),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion("hello")))
        .with_priority(2)
        .mount(&server)
        .await;
    let chat = OpenAiChat::with_key(config(&server, 3), None)?;
    let started = Instant::now();
    let answer = chat.chat(&ask("hi")).await?;
    let waited = started.elapsed();
    assert_eq!(answer.text, "hello");
    assert_eq!(bodies(&server).await.len(), 2);
    // The backoff alone would be 1 ms: the second of Retry-After was honoured.
    assert!(
        waited >= Duration::from_millis(950),
        "waited only {waited:?}"
    );
    assert!(answer.latency_ms >= 950);
    Ok(())
}

#[tokio::test]
async fn repeated_server_errors_give_a_typed_error_after_the_attempts() -> TestResult {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500).set_body_string("upstream exploded"))
        .mount(&server)
        .await;
    let chat = OpenAiChat::with_key(config(&server, 3), None)?;
    let err = chat
        .chat(&ask("hi"))
        .await
        .err()
        .ok_or("expected an error")?;
    assert!(
        matches!(
            err,
            LlmError::Http {
                status: 500,
                attempts: 3,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.is_transient());
    assert_eq!(bodies(&server).await.len(), 3);
    Ok(())
}

#[tokio::test]
async fn client_errors_are_not_retried() -> TestResult {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(404).set_body_json(
            json!({"error": {"message": "The model `gpt-9` does not exist", "type": "invalid_request_error"}}),
        ))
        .mount(&server)
        .await;
    let chat = OpenAiChat::with_key(config(&server, 4), None)?;
    let err = chat
        .chat(&ask("hi"))
        .await
        .err()
        .ok_or("expected an error")?;
    assert!(
        matches!(
            err,
            LlmError::Http {
                status: 404,
                attempts: 1,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("does not exist"));
    assert_eq!(bodies(&server).await.len(), 1);
    Ok(())
}

#[tokio::test]
async fn malformed_body_is_a_typed_error() -> TestResult {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_string("<html>proxy error</html>"))
        .mount(&server)
        .await;
    let chat = OpenAiChat::with_key(config(&server, 3), None)?;
    let err = chat
        .chat(&ask("hi"))
        .await
        .err()
        .ok_or("expected an error")?;
    assert!(matches!(err, LlmError::Malformed { .. }), "{err:?}");
    assert!(err.to_string().contains("proxy error"));
    Ok(())
}

#[tokio::test]
async fn slow_answer_past_the_timeout_is_a_timeout() -> TestResult {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(completion("late"))
                .set_delay(Duration::from_secs(3)),
        )
        .mount(&server)
        .await;
    let mut cfg = config(&server, 3);
    cfg.retry.timeout_ms = 300;
    let chat = OpenAiChat::with_key(cfg, None)?;
    let started = Instant::now();
    let err = chat
        .chat(&ask("hi"))
        .await
        .err()
        .ok_or("expected an error")?;
    assert!(
        matches!(
            err,
            LlmError::Timeout {
                timeout_ms: 300,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    Ok(())
}

#[tokio::test]
async fn connection_refused_is_retried_then_typed() -> TestResult {
    // Bind a port, then free it: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let cfg = OpenAiConfig {
        base_url: Some(format!("http://127.0.0.1:{port}/v1")),
        retry: fast_policy(3),
        ..OpenAiConfig::default()
    };
    let chat = OpenAiChat::with_key(cfg, None)?;
    let err = chat
        .chat(&ask("hi"))
        .await
        .err()
        .ok_or("expected an error")?;
    assert!(
        matches!(err, LlmError::Connection { attempts: 3, .. }),
        "{err:?}"
    );
    Ok(())
}

#[tokio::test]
async fn key_never_appears_in_errors_or_debug_output() -> TestResult {
    let key = "sk-proj-SECRET-abcdef0123456789";
    let server = MockServer::start().await;
    // A server that echoes the key back in its error, as OpenAI's 401 does (partly).
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "error": {"message": format!("Incorrect API key provided: {key}."), "type": "invalid_request_error"}
        })))
        .mount(&server)
        .await;
    let chat = OpenAiChat::with_key(config(&server, 2), Some(Secret::new(key)))?;
    let err = chat
        .chat(&ask("hi"))
        .await
        .err()
        .ok_or("expected an error")?;
    for shown in [err.to_string(), format!("{err:?}"), format!("{chat:?}")] {
        assert!(!shown.contains(key), "key leaked in: {shown}");
        assert!(!shown.contains("SECRET-abcdef"), "key leaked in: {shown}");
    }
    assert!(err.to_string().contains("[redacted]"));
    let architect = LlmArchitect::new(chat);
    assert!(!format!("{architect:?}").contains("SECRET"));
    Ok(())
}

#[tokio::test]
async fn openai_service_needs_a_key_local_servers_do_not() -> TestResult {
    let cfg = OpenAiConfig {
        base_url: Some("https://api.openai.com/v1".into()),
        ..OpenAiConfig::default()
    };
    let err = OpenAiChat::with_key(cfg, None)
        .err()
        .ok_or("expected MissingKey")?;
    assert!(matches!(err, LlmError::MissingKey { .. }));
    assert!(err.to_string().contains("OPENAI_API_KEY"));
    let local = OpenAiConfig {
        base_url: Some("http://localhost:11434/v1".into()),
        model: "qwen2.5-coder:7b".into(),
        ..OpenAiConfig::default()
    };
    let chat = OpenAiChat::with_key(local, None)?;
    assert_eq!(
        chat.describe(),
        "openai-compatible qwen2.5-coder:7b at http://localhost:11434/v1"
    );
    let bad = OpenAiChat::with_key(OpenAiConfig::default(), Some(Secret::new("sk-a\u{1}b")));
    assert!(matches!(bad, Err(LlmError::Config(_))));
    Ok(())
}

#[tokio::test]
async fn rejected_json_schema_falls_back_to_plain_text_and_extraction() -> TestResult {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(wiremock::matchers::body_partial_json(json!({"response_format": {"type": "json_schema"}})))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "error": {"message": "response_format json_schema is not supported", "type": "invalid_request_error"}
        })))
        .with_priority(1)
        .mount(&server)
        .await;
    let prose = format!(
        "Sure! Here is the network:\n```json\n{}\n```\nIt should work well.",
        network_json()
    );
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion(&prose)))
        .with_priority(2)
        .mount(&server)
        .await;
    let chat = OpenAiChat::with_key(config(&server, 2), None)?;
    let architect = LlmArchitect::new(chat);
    let first = architect.propose_initial(&brief()).await?;
    assert!(first.design().is_some(), "{:?}", first.problem());
    assert!(!architect.model().schema_supported());
    let second = architect.propose_initial(&brief()).await?;
    assert!(second.design().is_some());
    let sent = bodies(&server).await;
    assert_eq!(sent.len(), 3, "schema once, then plain text twice");
    assert!(sent[0].get("response_format").is_some());
    assert!(sent[1].get("response_format").is_none());
    assert!(sent[2].get("response_format").is_none());
    Ok(())
}

#[tokio::test]
async fn unusable_answers_become_repair_rounds_with_the_error() -> TestResult {
    let server = MockServer::start().await;
    let truncated = &network_json()[..60];
    for (priority, content, finish) in [(1u8, "", "stop"), (2, truncated, "length")] {
        let mut body = completion(content);
        body["choices"][0]["finish_reason"] = json!(finish);
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200).set_body_json(body))
            .up_to_n_times(1)
            .with_priority(priority)
            .mount(&server)
            .await;
    }
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion(&network_json())))
        .with_priority(3)
        .mount(&server)
        .await;
    let architect = LlmArchitect::new(OpenAiChat::with_key(config(&server, 2), None)?);
    let b = brief();
    let empty = architect.propose_initial(&b).await?;
    let problem = empty.problem().ok_or("an empty answer is a problem")?;
    assert_eq!(problem.kind, "empty");
    let cut = architect.repair(&b, &empty, &problem.message).await?;
    let cut_problem = cut.problem().ok_or("a cut-off answer is a problem")?;
    assert_eq!(cut_problem.kind, "truncated");
    let fixed = architect.repair(&b, &cut, &cut_problem.message).await?;
    assert!(fixed.design().is_some());
    // The last repair carried the whole conversation: system, initial, answer, repair, answer, repair.
    let sent = bodies(&server).await;
    let messages = sent[2]["messages"].as_array().ok_or("messages")?;
    let roles: Vec<&str> = messages.iter().filter_map(|m| m["role"].as_str()).collect();
    assert_eq!(
        roles,
        ["system", "user", "assistant", "user", "assistant", "user"]
    );
    let last = messages[5]["content"].as_str().unwrap_or_default();
    assert!(last.contains(&cut_problem.message), "{last}");
    assert_eq!(messages[4]["content"], truncated);
    Ok(())
}
