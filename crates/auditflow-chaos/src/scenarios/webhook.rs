//! A webhook receiver that can be told to hang: while hanging it accepts
//! each request and never answers (the connection stays open until the
//! client gives up); otherwise it answers 200 and records the alert id.
//! Only answered deliveries count: a request the sender gave up on was not
//! delivered, whatever bytes arrived.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use serde_json::Value;
use uuid::Uuid;

#[derive(Default)]
struct Shared {
    hanging: AtomicBool,
    delivered: Mutex<Vec<Uuid>>,
    hung_requests: Mutex<usize>,
}

/// The running receiver; stops when dropped.
pub struct Receiver {
    shared: Arc<Shared>,
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

async fn hook(State(shared): State<Arc<Shared>>, body: axum::body::Bytes) -> StatusCode {
    if shared.hanging.load(Ordering::SeqCst) {
        if let Ok(mut n) = shared.hung_requests.lock() {
            *n += 1;
        }
        // Never answer; the client's timeout ends the request.
        std::future::pending::<()>().await;
    }
    let id = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["alert_id"].as_str().and_then(|s| Uuid::parse_str(s).ok()));
    match id {
        Some(id) => {
            if let Ok(mut d) = shared.delivered.lock() {
                d.push(id);
            }
            StatusCode::OK
        }
        None => StatusCode::BAD_REQUEST,
    }
}

impl Receiver {
    /// Listens on a free loopback port.
    pub async fn start() -> Result<Receiver, String> {
        let shared = Arc::new(Shared::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("webhook receiver: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let app = Router::new()
            .route("/hook", post(hook))
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Receiver { shared, addr, task })
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub fn hang(&self, on: bool) {
        self.shared.hanging.store(on, Ordering::SeqCst);
    }

    /// Alert ids answered 200, one entry per answered request.
    pub fn delivered(&self) -> Vec<Uuid> {
        self.shared
            .delivered
            .lock()
            .map(|d| d.clone())
            .unwrap_or_default()
    }

    /// Requests that got no answer.
    pub fn hung_requests(&self) -> usize {
        self.shared.hung_requests.lock().map(|n| *n).unwrap_or(0)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}
