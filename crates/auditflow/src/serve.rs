//! Serving the router on a TCP listener with hyper directly, in place of
//! `axum::serve`, for one setting axum does not expose: the largest read
//! buffer of an HTTP/1 connection.
//!
//! hyper reads a request body in reads of growing size (8 KiB, doubling up
//! to its default limit of about 400 KiB), and each chunk it hands on keeps
//! its whole read allocation alive until the body has been collected. A
//! 150 KB batch of events thus held about 500 KB per connection while it was
//! read (heaptrack of ingest under `scripts/bench.py --distributed`: 4.4 MB
//! of its peak heap for 8 client connections). With reads of at most
//! [`MAX_READ_BUFFER`] a body costs little more than its own size; the
//! extra reads are cheap next to parsing the events.
//!
//! Everything else is as `axum::serve` does it: HTTP/1 and HTTP/2 (prior
//! knowledge) on one port, the client's address as `ConnectInfo`, accept
//! errors survived, and a graceful shutdown that stops accepting and lets
//! the requests in flight finish.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::{Service, ServiceExt};

/// The largest read of an HTTP/1 connection, in bytes (hyper's minimum is
/// 8 KiB).
pub const MAX_READ_BUFFER: usize = 64 * 1024;

/// Serves `app` on `listener` until `shutdown` is cancelled, then waits for
/// the connections' requests in flight to finish.
pub async fn serve(listener: TcpListener, app: Router, shutdown: CancellationToken) {
    let mut make_service = app.into_make_service_with_connect_info::<SocketAddr>();
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    survive_accept_error(e).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        // Always ready; its error type is `Infallible`.
        let Ok(service) = make_service.call(remote).await;
        let service = service.map_request(|request: Request<Incoming>| request.map(Body::new));
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let mut builder = Builder::new(TokioExecutor::new());
            builder.http1().max_buf_size(MAX_READ_BUFFER);
            let connection = builder.serve_connection_with_upgrades(
                TokioIo::new(stream),
                TowerToHyperService::new(service),
            );
            if let Err(e) = watcher.watch(connection).await {
                tracing::trace!(%remote, error = %e, "connection ended with an error");
            }
        });
    }
    // No new connections; open ones finish their requests and close.
    drop(listener);
    graceful.shutdown().await;
}

/// After a failed accept: a connection that went away before we took it is
/// nothing; anything else (out of file descriptors, most likely) is logged,
/// and accepting pauses a second so the process does not spin on it.
async fn survive_accept_error(e: std::io::Error) {
    use std::io::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "cannot accept a connection, pausing for 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::extract::ConnectInfo;
    use axum::routing::{get, post};
    use bytes::Bytes;
    use tokio::sync::Notify;

    use super::*;

    async fn start(app: Router) -> (SocketAddr, CancellationToken, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let stop = CancellationToken::new();
        let served = tokio::spawn(serve(listener, app, stop.clone()));
        (address, stop, served)
    }

    #[tokio::test]
    async fn a_body_many_reads_long_arrives_whole_with_the_client_address() {
        let app = Router::new().route(
            "/echo",
            post(
                |ConnectInfo(from): ConnectInfo<SocketAddr>, body: Bytes| async move {
                    let sum: u64 = body.iter().map(|b| u64::from(*b)).sum();
                    format!("{} {} {}", from.ip(), body.len(), sum)
                },
            ),
        );
        let (address, stop, served) = start(app).await;
        // 20 reads' worth, with a pattern so a lost or repeated chunk shows.
        let body: Vec<u8> = (0..20 * MAX_READ_BUFFER).map(|i| (i % 251) as u8).collect();
        let expected: u64 = body.iter().map(|b| u64::from(*b)).sum();
        let answer = reqwest::Client::new()
            .post(format!("http://{address}/echo"))
            .body(body.clone())
            .send()
            .await
            .expect("request")
            .text()
            .await
            .expect("answer");
        assert_eq!(answer, format!("127.0.0.1 {} {expected}", body.len()));
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(5), served)
            .await
            .expect("serve returns after shutdown")
            .expect("serve task");
    }

    #[tokio::test]
    async fn shutdown_lets_the_request_in_flight_finish_and_accepts_no_more() {
        let entered = Arc::new(Notify::new());
        let release = Arc::new(Notify::new());
        let (entered_in, release_in) = (Arc::clone(&entered), Arc::clone(&release));
        let app = Router::new().route(
            "/slow",
            get(move || {
                let (entered, release) = (Arc::clone(&entered_in), Arc::clone(&release_in));
                async move {
                    entered.notify_one();
                    release.notified().await;
                    "done"
                }
            }),
        );
        let (address, stop, served) = start(app).await;
        let client = reqwest::Client::new();
        let in_flight = tokio::spawn({
            let client = client.clone();
            async move {
                client
                    .get(format!("http://{address}/slow"))
                    .send()
                    .await?
                    .text()
                    .await
            }
        });
        entered.notified().await;
        stop.cancel();
        // The listener closes at once; the open connection is kept.
        let refused = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                if tokio::net::TcpStream::connect(address).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        assert!(refused.is_ok(), "still accepting after shutdown");
        assert!(
            !served.is_finished(),
            "serve returned with a request in flight"
        );
        release.notify_one();
        let answer = in_flight
            .await
            .expect("client task")
            .expect("in-flight request");
        assert_eq!(answer, "done");
        tokio::time::timeout(Duration::from_secs(5), served)
            .await
            .expect("serve returns once the request is answered")
            .expect("serve task");
    }
}
