//! The Gemini backend against a local HTTP server speaking generateContent.

mod common;

use common::{brief, fast_policy, feedback, network_json};
use lemo_expert::Instruction;
use lemo_llm::{
    Architect, ChatModel, ChatRequest, GeminiChat, GeminiConfig, LlmArchitect, LlmError, Message,
    Secret,
};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const KEY: &str = "AIzaSy-TEST-KEY-0123456789";
const PATH: &str = "/v1beta/models/gemini-test:generateContent";

fn answer(text: &str) -> Value {
    json!({
        "candidates": [{
            "content": {"role": "model", "parts": [{"text": text}]},
            "finishReason": "STOP",
            "index": 0,
            "safetyRatings": [{"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"}]
        }],
        "usageMetadata": {"promptTokenCount": 900, "candidatesTokenCount": 200, "totalTokenCount": 1100},
        "modelVersion": "gemini-test-001"
    })
}

fn config(server: &MockServer, max_attempts: u32) -> GeminiConfig {
    GeminiConfig {
        model: "gemini-test".into(),
        base_url: format!("{}/v1beta", server.uri()),
        temperature: 0.4,
        retry: fast_policy(max_attempts),
        ..GeminiConfig::default()
    }
}

fn chat(server: &MockServer, max_attempts: u32) -> Result<GeminiChat, LlmError> {
    GeminiChat::with_key(config(server, max_attempts), Secret::new(KEY))
}

fn ask(text: &str) -> ChatRequest {
    ChatRequest {
        messages: vec![Message::system("be brief"), Message::user(text)],
        ..ChatRequest::default()
    }
}

async fn count(server: &MockServer) -> usize {
    server.received_requests().await.unwrap_or_default().len()
}

#[tokio::test]
async fn happy_path_sends_model_temperature_instructions_and_schema() -> TestResult {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(PATH))
        .and(header("x-goog-api-key", KEY))
        .respond_with(ResponseTemplate::new(200).set_body_json(answer(&network_json())))
        .expect(1)
        .mount(&server)
        .await;
    let architect = LlmArchitect::new(chat(&server, 3)?);
    let fb = feedback(
        2,
        &[Instruction::ReduceKernels, Instruction::AddSkipConnection],
    );
    let proposal = architect.propose_next(&brief(), &fb).await?;
    assert!(proposal.design().is_some(), "{:?}", proposal.problem());
    assert_eq!(proposal.usage.map(|u| u.total()), Some(1100));
    assert_eq!(proposal.model.as_deref(), Some("gemini-test-001"));
    assert_eq!(proposal.architect, "gemini gemini-test");

    let received = server.received_requests().await.unwrap_or_default();
    assert_eq!(received.len(), 1);
    // The key travels in a header, never in the URL.
    assert!(!received[0].url.as_str().contains(KEY));
    let body: Value = serde_json::from_slice(&received[0].body)?;
    let generation = &body["generationConfig"];
    assert!((generation["temperature"].as_f64().unwrap_or(-1.0) - 0.4).abs() < 1e-6);
    assert_eq!(generation["responseMimeType"], "application/json");
    assert_eq!(
        generation["responseSchema"],
        lemo_llm::to_gemini_schema(&lemo_arch::json_schema())
    );
    assert!(!generation["responseSchema"].to_string().contains("$ref"));
    let system = body["system_instruction"]["parts"][0]["text"]
        .as_str()
        .unwrap_or_default();
    assert!(system.contains("LeMo-NADe architecture IR"));
    assert_eq!(body["contents"].as_array().map(Vec::len), Some(1));
    assert_eq!(body["contents"][0]["role"], "user");
    let user = body["contents"][0]["parts"][0]["text"]
        .as_str()
        .unwrap_or_default();
    assert!(
        user.contains(&fb.command.render()),
        "instructions missing from: {user}"
    );
    Ok(())
}

#[tokio::test]
async fn rate_limit_then_success_honours_retry_after() -> TestResult {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(429).insert_header("retry-after", "1").set_body_json(
                json!({"error": {"code": 429, "message": "Resource exhausted", "status": "RESOURCE_EXHAUSTED"}}),
            ),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(answer("ok")))
        .with_priority(2)
        .mount(&server)
        .await;
    let started = Instant::now();
    let response = chat(&server, 3)?.chat(&ask("hi")).await?;
    assert_eq!(response.text, "ok");
    assert_eq!(count(&server).await, 2);
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "{:?}",
        started.elapsed()
    );
    Ok(())
}

#[tokio::test]
async fn repeated_server_errors_give_a_typed_error_after_the_attempts() -> TestResult {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503).set_body_json(
            json!({"error": {"code": 503, "message": "The model is overloaded", "status": "UNAVAILABLE"}}),
        ))
        .mount(&server)
        .await;
    let err = chat(&server, 4)?
        .chat(&ask("hi"))
        .await
        .err()
        .ok_or("expected an error")?;
    assert!(
        matches!(
            err,
            LlmError::Http {
                status: 503,
                attempts: 4,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("UNAVAILABLE: The model is overloaded")
    );
    assert_eq!(count(&server).await, 4);
    Ok(())
}

#[tokio::test]
async fn malformed_body_is_a_typed_error() -> TestResult {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_string("{\"unexpected\": true}"))
        .mount(&server)
        .await;
    let err = chat(&server, 3)?
        .chat(&ask("hi"))
        .await
        .err()
        .ok_or("expected an error")?;
    assert!(matches!(err, LlmError::Malformed { .. }), "{err:?}");
    Ok(())
}

#[tokio::test]
async fn slow_answer_past_the_timeout_is_a_timeout() -> TestResult {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(answer("late"))
                .set_delay(Duration::from_secs(3)),
        )
        .mount(&server)
        .await;
    let mut cfg = config(&server, 3);
    cfg.retry.timeout_ms = 300;
    let started = Instant::now();
    let err = GeminiChat::with_key(cfg, Secret::new(KEY))?
        .chat(&ask("hi"))
        .await
        .err()
        .ok_or("expected an error")?;
    assert!(matches!(err, LlmError::Timeout { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    Ok(())
}

#[tokio::test]
async fn key_never_appears_in_errors_or_debug_output() -> TestResult {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": {
            "code": 400, "message": format!("API key not valid: {KEY}"), "status": "INVALID_ARGUMENT"
        }})))
        .mount(&server)
        .await;
    let chat = chat(&server, 2)?;
    let err = chat
        .chat(&ask("hi"))
        .await
        .err()
        .ok_or("expected an error")?;
    for shown in [err.to_string(), format!("{err:?}"), format!("{chat:?}")] {
        assert!(!shown.contains(KEY), "key leaked in: {shown}");
    }
    assert!(err.to_string().contains("[redacted]"));
    // A transport error names the URL: the key is not in it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let cfg = GeminiConfig {
        base_url: format!("http://127.0.0.1:{port}/v1beta"),
        retry: fast_policy(2),
        ..GeminiConfig::default()
    };
    let err = GeminiChat::with_key(cfg, Secret::new(KEY))?
        .chat(&ask("hi"))
        .await
        .err()
        .ok_or("expected an error")?;
    assert!(
        matches!(err, LlmError::Connection { attempts: 2, .. }),
        "{err:?}"
    );
    assert!(!format!("{err} {err:?}").contains(KEY));
    Ok(())
}

#[tokio::test]
async fn rejected_schema_keeps_json_mime_type_only() -> TestResult {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(wiremock::matchers::body_string_contains("responseSchema\":{"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": {
            "code": 400, "message": "Invalid JSON payload received. Unknown name \"anyOf\"", "status": "INVALID_ARGUMENT"
        }})))
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(answer(&network_json())))
        .with_priority(2)
        .mount(&server)
        .await;
    let architect = LlmArchitect::new(chat(&server, 2)?);
    let proposal = architect.propose_initial(&brief()).await?;
    assert!(proposal.design().is_some(), "{:?}", proposal.problem());
    assert!(!architect.model().schema_supported());
    let received = server.received_requests().await.unwrap_or_default();
    assert_eq!(received.len(), 2);
    let second: Value = serde_json::from_slice(&received[1].body)?;
    assert_eq!(
        second["generationConfig"]["responseMimeType"],
        "application/json"
    );
    assert!(second["generationConfig"]["responseSchema"].is_null());
    Ok(())
}

#[test]
fn missing_key_is_a_typed_error_naming_the_variables() {
    let cfg = GeminiConfig {
        api_key_env: vec![
            "LEMO_TEST_NO_SUCH_VARIABLE_1".into(),
            "LEMO_TEST_NO_SUCH_VARIABLE_2".into(),
        ],
        ..GeminiConfig::default()
    };
    let err = GeminiChat::new(cfg).err();
    assert!(
        matches!(&err, Some(LlmError::MissingKey { variables, .. }) if variables == "LEMO_TEST_NO_SUCH_VARIABLE_1 or LEMO_TEST_NO_SUCH_VARIABLE_2"),
        "{err:?}"
    );
}
