//! Each fault against a real echo server on loopback: it has its effect, and
//! removing it at run time stops it. Timing checks use lower bounds (the
//! machine is noisy) and generous upper bounds.

use std::future::Future;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::num::{NonZeroU64, NonZeroUsize};
use std::time::{Duration, Instant};

use faultproxy::{Direction, FaultHandle, Proxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

const DEADLINE: Duration = Duration::from_secs(10);

/// An echo server: each connection gets back what it sends, then a close.
async fn echo_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    addr
}

async fn setup() -> (Proxy, FaultHandle) {
    let echo = echo_server().await;
    let proxy = Proxy::start("127.0.0.1:0".parse().unwrap(), echo)
        .await
        .unwrap();
    let h = proxy.handle();
    (proxy, h)
}

async fn connect(p: &Proxy) -> TcpStream {
    TcpStream::connect(p.listen_addr()).await.unwrap()
}

/// Sends `n` bytes and reads them back; returns the round trip.
async fn round_trip(s: &mut TcpStream, n: usize) -> Duration {
    let data: Vec<u8> = (0..n).map(|i| i as u8).collect();
    let t = Instant::now();
    s.write_all(&data).await.unwrap();
    let mut back = vec![0u8; n];
    timeout(DEADLINE, s.read_exact(&mut back))
        .await
        .expect("echo within the deadline")
        .unwrap();
    assert_eq!(back, data);
    t.elapsed()
}

/// Sends `n` bytes while reading everything until EOF; returns what came
/// back and how long it took.
async fn transfer_to_eof(s: TcpStream, n: usize, close_after_send: bool) -> (Vec<u8>, Duration) {
    let (mut r, mut w) = s.into_split();
    let t = Instant::now();
    let writer = tokio::spawn(async move {
        let data = vec![7u8; n];
        let _ = w.write_all(&data).await;
        if close_after_send {
            let _ = w.shutdown().await;
        }
        w
    });
    let mut back = Vec::new();
    timeout(Duration::from_secs(30), r.read_to_end(&mut back))
        .await
        .expect("EOF within the deadline")
        .unwrap();
    let elapsed = t.elapsed();
    drop(writer.await.unwrap());
    (back, elapsed)
}

/// Polls `cond` until it holds or the deadline passes.
async fn eventually<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let end = Instant::now() + DEADLINE;
    while Instant::now() < end {
        if cond().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("not within {DEADLINE:?}: {what}");
}

async fn refused(addr: SocketAddr) -> bool {
    matches!(TcpStream::connect(addr).await, Err(e) if e.kind() == ErrorKind::ConnectionRefused)
}

async fn echoes(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect(addr).await else {
        return false;
    };
    if s.write_all(b"hi").await.is_err() {
        return false;
    }
    let mut b = [0u8; 2];
    matches!(
        timeout(Duration::from_secs(2), s.read_exact(&mut b)).await,
        Ok(Ok(_))
    ) && &b == b"hi"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwards_and_counts() {
    let (p, h) = setup().await;
    assert!(h.faults().is_clear());
    assert!(h.is_listening());
    let mut s = connect(&p).await;
    round_trip(&mut s, 1000).await;
    let st = h.stats();
    assert_eq!(st.connections_accepted, 1);
    assert_eq!(st.connections_active, 1);
    assert_eq!(st.bytes_upstream, 1000);
    assert_eq!(st.bytes_downstream, 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_adds_delay_per_direction_and_is_removable() {
    let (p, h) = setup().await;
    let mut s = connect(&p).await;
    round_trip(&mut s, 10).await;

    h.set_latency(
        Direction::Upstream,
        Duration::from_millis(200),
        Duration::ZERO,
    );
    let rtt = round_trip(&mut s, 10).await;
    assert!(rtt >= Duration::from_millis(200), "{rtt:?}");
    assert!(rtt < Duration::from_secs(3), "{rtt:?}");

    h.set_latency(Direction::Both, Duration::from_millis(200), Duration::ZERO);
    let rtt = round_trip(&mut s, 10).await;
    assert!(rtt >= Duration::from_millis(400), "{rtt:?}");
    assert!(rtt < Duration::from_secs(4), "{rtt:?}");

    // Removed mid-connection: the same connection is fast again.
    h.clear_latency(Direction::Both);
    assert!(h.faults().is_clear());
    let rtt = round_trip(&mut s, 10).await;
    assert!(rtt < Duration::from_millis(300), "{rtt:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_jitter_stays_within_base_and_base_plus_jitter() {
    let (p, h) = setup().await;
    h.set_latency(
        Direction::Downstream,
        Duration::from_millis(50),
        Duration::from_millis(100),
    );
    let l = h.faults().downstream.latency.unwrap();
    assert_eq!(l.jitter, Duration::from_millis(100));
    let mut s = connect(&p).await;
    for _ in 0..5 {
        let rtt = round_trip(&mut s, 10).await;
        assert!(rtt >= Duration::from_millis(50), "{rtt:?}");
        assert!(rtt < Duration::from_secs(2), "{rtt:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_latency_set_while_a_chunk_waits_is_lifted_at_once() {
    let (p, h) = setup().await;
    let mut s = connect(&p).await;
    h.set_latency(Direction::Upstream, Duration::from_secs(30), Duration::ZERO);
    s.write_all(b"abc").await.unwrap();
    let mut b = [0u8; 3];
    assert!(timeout(Duration::from_millis(300), s.read_exact(&mut b))
        .await
        .is_err());
    h.clear_latency(Direction::Upstream);
    timeout(Duration::from_secs(5), s.read_exact(&mut b))
        .await
        .expect("the held chunk is released when the latency is removed")
        .unwrap();
    assert_eq!(&b, b"abc");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bandwidth_limit_bounds_the_rate() {
    let (p, h) = setup().await;
    let rate = 128 * 1024;
    h.set_bandwidth(Direction::Downstream, NonZeroU64::new(rate).unwrap());
    let n = 256 * 1024;
    let (back, took) = transfer_to_eof(connect(&p).await, n, true).await;
    assert_eq!(back.len(), n);
    // 2 s at the rate; the first 50 ms piece goes at once.
    assert!(took >= Duration::from_millis(1800), "{took:?}");
    assert!(took < Duration::from_secs(15), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bandwidth_limit_removed_mid_transfer_stops_applying() {
    let (p, h) = setup().await;
    // 256 KiB at 16 KiB/s would take 16 s.
    h.set_bandwidth(Direction::Downstream, NonZeroU64::new(16 * 1024).unwrap());
    let s = connect(&p).await;
    let h2 = h.clone();
    let clearer = tokio::spawn(async move {
        eventually("some bytes passed", || {
            let h = h2.clone();
            async move { h.stats().bytes_downstream >= 8 * 1024 }
        })
        .await;
        h2.clear_bandwidth(Direction::Downstream);
    });
    let (back, took) = transfer_to_eof(s, 256 * 1024, true).await;
    clearer.await.unwrap();
    assert_eq!(back.len(), 256 * 1024);
    assert!(took < Duration::from_secs(10), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_makes_reads_fail_with_connection_reset() {
    let (p, h) = setup().await;
    let mut s = connect(&p).await;
    round_trip(&mut s, 10).await;
    h.reset_connections();
    let mut b = [0u8; 1];
    let r = timeout(DEADLINE, s.read(&mut b)).await.expect("read ends");
    assert_eq!(r.unwrap_err().kind(), ErrorKind::ConnectionReset);
    assert_eq!(h.stats().connections_reset, 1);
    // A one-shot fault: new connections work.
    let mut s = connect(&p).await;
    round_trip(&mut s, 10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_probability_resets_new_connections() {
    let (p, h) = setup().await;
    assert!(h.set_reset_probability(1.5).is_err());
    h.set_reset_probability(1.0).unwrap();
    for _ in 0..3 {
        // The reset can arrive before connect() returns, or on the first read.
        let r = match TcpStream::connect(p.listen_addr()).await {
            Err(e) => Err(e),
            Ok(mut s) => {
                let mut b = [0u8; 1];
                timeout(DEADLINE, s.read(&mut b)).await.expect("read ends")
            }
        };
        assert_eq!(r.unwrap_err().kind(), ErrorKind::ConnectionReset);
    }
    assert_eq!(h.stats().connections_reset, 3);
    h.set_reset_probability(0.0).unwrap();
    let mut s = connect(&p).await;
    round_trip(&mut s, 10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blackhole_reads_but_never_answers_and_is_removable() {
    let (p, h) = setup().await;
    let mut s = connect(&p).await;
    round_trip(&mut s, 10).await;
    h.set_blackhole(Direction::Upstream, true);
    assert!(h.faults().upstream.blackhole);
    s.write_all(b"lost").await.unwrap();
    let mut b = [0u8; 4];
    assert!(
        timeout(Duration::from_millis(500), s.read(&mut b))
            .await
            .is_err(),
        "a blackholed request gets no answer"
    );
    eventually("the proxy read the request", || async {
        h.stats().bytes_blackholed >= 4
    })
    .await;
    // Still open: once removed, the same connection works again.
    h.set_blackhole(Direction::Upstream, false);
    round_trip(&mut s, 10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_close_delays_the_close() {
    let (p, h) = setup().await;
    h.set_slow_close(Direction::Downstream, Duration::from_millis(500));
    let (back, took) = transfer_to_eof(connect(&p).await, 10, true).await;
    assert_eq!(back.len(), 10);
    assert!(took >= Duration::from_millis(500), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");

    h.clear_slow_close(Direction::Downstream);
    let (_, took) = transfer_to_eof(connect(&p).await, 10, true).await;
    assert!(took < Duration::from_millis(400), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_limit_closes_after_exactly_n_bytes() {
    let (p, h) = setup().await;
    h.set_data_limit(Direction::Downstream, 1000);
    let (back, _) = transfer_to_eof(connect(&p).await, 4096, false).await;
    assert_eq!(back.len(), 1000);
    assert!(back.iter().all(|b| *b == 7));

    h.clear_data_limit(Direction::Downstream);
    let (back, _) = transfer_to_eof(connect(&p).await, 4096, true).await;
    assert_eq!(back.len(), 4096);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn down_refuses_and_drops_then_up_restores() {
    let (p, h) = setup().await;
    let addr = p.listen_addr();
    let mut s = connect(&p).await;
    round_trip(&mut s, 10).await;

    h.down();
    assert!(h.faults().down);
    let mut b = [0u8; 1];
    let r = timeout(DEADLINE, s.read(&mut b)).await.expect("read ends");
    assert_eq!(r.unwrap_err().kind(), ErrorKind::ConnectionReset);
    eventually("new connections refused", || refused(addr)).await;
    assert!(!h.is_listening());

    h.up();
    eventually("listening again", || async { h.is_listening() }).await;
    assert!(echoes(addr).await);
    assert!(h.faults().is_clear());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slicer_splits_and_delays_writes() {
    let (p, h) = setup().await;
    h.set_slicer(
        Direction::Downstream,
        NonZeroUsize::new(100).unwrap(),
        Duration::from_millis(10),
    );
    let mut s = connect(&p).await;
    // 4,000 bytes in 40 pieces, 10 ms after each.
    let rtt = round_trip(&mut s, 4000).await;
    assert!(rtt >= Duration::from_millis(390), "{rtt:?}");
    assert!(rtt < Duration::from_secs(5), "{rtt:?}");
    h.clear_slicer(Direction::Downstream);
    let rtt = round_trip(&mut s, 4000).await;
    assert!(rtt < Duration::from_millis(300), "{rtt:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_the_listener_and_every_connection() {
    let (p, h) = setup().await;
    let addr = p.listen_addr();
    let mut s = connect(&p).await;
    round_trip(&mut s, 10).await;
    p.shutdown().await;
    assert_eq!(h.stats().connections_active, 0);
    let mut b = [0u8; 1];
    let r = timeout(DEADLINE, s.read(&mut b)).await.expect("read ends");
    assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
    assert!(refused(addr).await);
    assert!(!h.is_listening());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_proxy_stops_its_tasks() {
    let (p, h) = setup().await;
    let addr = p.listen_addr();
    let mut s = connect(&p).await;
    round_trip(&mut s, 10).await;
    drop(p);
    eventually("connections closed", || async {
        h.stats().connections_active == 0
    })
    .await;
    eventually("listener closed", || refused(addr)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_apply_only_to_their_direction_and_clear_all_removes_them() {
    let (p, h) = setup().await;
    h.set_blackhole(Direction::Downstream, true);
    h.update(Direction::Upstream, |f| {
        f.data_limit = Some(1_000_000);
        f.slow_close = Some(Duration::from_millis(1));
    });
    let f = h.faults();
    assert!(f.downstream.blackhole && !f.upstream.blackhole);
    assert_eq!(f.upstream.data_limit, Some(1_000_000));
    assert_eq!(f.downstream.data_limit, None);

    // Downstream blackhole: the request reaches the server, its answer is discarded.
    let mut s = connect(&p).await;
    s.write_all(b"ping").await.unwrap();
    eventually("the answer was discarded", || async {
        h.stats().bytes_blackholed >= 4
    })
    .await;
    assert_eq!(h.stats().bytes_upstream, 4);
    assert_eq!(h.stats().bytes_downstream, 0);

    h.clear_all();
    assert!(h.faults().is_clear());
    round_trip(&mut s, 10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_data_limit_lets_exactly_n_bytes_reach_the_server() {
    let (p, h) = setup().await;
    h.set_data_limit(Direction::Upstream, 300);
    let (back, _) = transfer_to_eof(connect(&p).await, 4096, false).await;
    // The echo server got exactly 300 bytes; the connection then closed.
    assert!(back.len() <= 300, "{}", back.len());
    assert_eq!(h.stats().bytes_upstream, 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_reaches_every_open_connection() {
    let (p, h) = setup().await;
    let mut conns = Vec::new();
    for _ in 0..5 {
        let mut s = connect(&p).await;
        round_trip(&mut s, 10).await;
        conns.push(s);
    }
    h.reset_connections();
    for mut s in conns {
        let mut b = [0u8; 1];
        let r = timeout(DEADLINE, s.read(&mut b)).await.expect("read ends");
        assert_eq!(r.unwrap_err().kind(), ErrorKind::ConnectionReset);
    }
    eventually("no connection left", || async {
        h.stats().connections_active == 0
    })
    .await;
    assert_eq!(h.stats().connections_reset, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_upstream_resets_the_client() {
    // A port nothing listens on: bind, read the port, close.
    let dead = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let p = Proxy::start("127.0.0.1:0".parse().unwrap(), dead)
        .await
        .unwrap();
    let h = p.handle();
    assert_eq!(h.upstream_addr(), dead);
    let r = match TcpStream::connect(p.listen_addr()).await {
        Err(e) => Err(e),
        Ok(mut s) => {
            let mut b = [0u8; 1];
            timeout(DEADLINE, s.read(&mut b)).await.expect("read ends")
        }
    };
    assert_eq!(r.unwrap_err().kind(), ErrorKind::ConnectionReset);
    eventually("the failure is counted", || async {
        h.stats().upstream_connect_failures == 1
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handle_outliving_its_proxy_is_harmless() {
    let (p, h) = setup().await;
    p.shutdown().await;
    h.set_latency(Direction::Both, Duration::from_millis(5), Duration::ZERO);
    h.reset_connections();
    h.down();
    h.up();
    assert_eq!(h.stats().connections_active, 0);
}
