//! The Slack-compatible channel against a real HTTP receiver on loopback.

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;

use auditflow::channels::{self, Outcome};
use auditflow::config::{ChannelConfig, Config};
use auditflow::monitor::book::{Condition, Kind, Notice, State as NoticeState};
use auditflow::resilient::{Policies, PrometheusObserver};

type Received = Arc<Mutex<Vec<(HeaderMap, String)>>>;

/// A receiver answering `status` and keeping what it got.
async fn receiver(status: StatusCode) -> (String, Received) {
    let received: Received = Arc::default();
    let app = Router::new()
        .route(
            "/hook",
            post(
                move |State(received): State<Received>, headers: HeaderMap, body: String| async move {
                    received.lock().expect("lock").push((headers, body));
                    status
                },
            ),
        )
        .with_state(Arc::clone(&received));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

fn alert(config: &Config) -> auditflow_core::Alert {
    auditflow::monitor::delivery::to_alert(
        config,
        &Notice {
            state: NoticeState::Firing,
            condition: Condition {
                kind: Kind::RoleDead,
                key: "analyze@127.0.0.1:9101".into(),
                detail: "analyze@127.0.0.1:9101 sends no heartbeats".into(),
            },
        },
    )
}

#[tokio::test]
async fn posts_a_slack_message_and_reports_refusals() {
    let config = Config::default();
    let policies = Policies::build(&config.resilience, Arc::new(PrometheusObserver::default()))
        .expect("policies");
    let alert = alert(&config);

    let (url, received) = receiver(StatusCode::OK).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let built = channels::build(
        &[ChannelConfig::Slack {
            name: "chat".into(),
            url,
            resilience: None,
        }],
        dir.path(),
        &policies,
    )
    .expect("channel");
    let outcome = built[0].deliver(&[&alert]).await;
    assert!(
        matches!(outcome[..], [Ok(Outcome::Delivered)]),
        "{outcome:?}"
    );
    let got = received.lock().expect("lock").clone();
    assert_eq!(got.len(), 1);
    let (headers, body) = &got[0];
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(
        headers["idempotency-key"],
        alert.alert_id.to_string().as_str()
    );
    let message: serde_json::Value = serde_json::from_str(body).expect("JSON body");
    let text = message["text"].as_str().expect("a text field");
    assert!(
        text.starts_with(":rotating_light: *[CRITICAL] role_dead: analyze@127.0.0.1:9101*"),
        "{text}"
    );
    assert!(text.contains("sends no heartbeats"), "{text}");
    assert!(text.contains(&alert.alert_id.to_string()), "{text}");
    assert!(text.contains("`SYS-ROLE-DEAD`"), "{text}");

    // A 4xx is a permanent refusal: one POST, an error for the record.
    let (url, received) = receiver(StatusCode::BAD_REQUEST).await;
    let built = channels::build(
        &[ChannelConfig::Slack {
            name: "chat-refusing".into(),
            url,
            resilience: None,
        }],
        dir.path(),
        &policies,
    )
    .expect("channel");
    let outcome = built[0].deliver(&[&alert]).await;
    match &outcome[..] {
        [Err(e)] => {
            assert_eq!(e.attempts, 1, "{e:?}");
            assert!(e.message.contains("400"), "{e:?}");
        }
        other => panic!("expected a refusal: {other:?}"),
    }
    assert_eq!(received.lock().expect("lock").len(), 1);
}
