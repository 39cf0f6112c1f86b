//! One proxied connection: connect upstream, run both directions, close
//! gracefully or with a reset.

use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::timeout;

use crate::control::{Control, Shared};
use crate::fault::Flow;
use crate::pipe::{self, Outcome};
use crate::stats::{ActiveGuard, Counters};

/// How a connection ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Graceful,
    Reset,
}

/// Resolves once the reset epoch differs from `start`.
async fn reset_requested(ctrl: &mut watch::Receiver<Control>, start: u64) {
    loop {
        if ctrl.borrow_and_update().reset_epoch != start {
            return;
        }
        if ctrl.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

fn reset(counters: &Counters, streams: &[&TcpStream]) {
    for s in streams {
        // Best effort: a socket that cannot take the option just closes normally.
        let _ = s.set_zero_linger();
    }
    Counters::bump(&counters.reset);
}

/// Serves one accepted client connection until it ends.
pub(crate) async fn serve(mut client: TcpStream, shared: Arc<Shared>) {
    let _active = ActiveGuard::new(&shared.counters);
    let mut ctrl = shared.control.subscribe();
    let (start_epoch, p) = {
        let c = ctrl.borrow_and_update();
        (c.reset_epoch, c.faults.reset_probability)
    };
    if p > 0.0 && shared.rng.next_f64() < p {
        reset(&shared.counters, &[&client]);
        return;
    }
    let connect = timeout(shared.connect_timeout, TcpStream::connect(shared.upstream));
    let mut upstream = tokio::select! {
        r = connect => match r {
            Ok(Ok(s)) => s,
            _ => {
                Counters::bump(&shared.counters.connect_failures);
                reset(&shared.counters, &[&client]);
                return;
            }
        },
        _ = reset_requested(&mut ctrl, start_epoch) => {
            reset(&shared.counters, &[&client]);
            return;
        }
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);

    let end = {
        let (cr, cw) = client.split();
        let (ur, uw) = upstream.split();
        let up = pipe::run(cr, uw, Flow::Upstream, &shared, ctrl.clone());
        let down = pipe::run(ur, cw, Flow::Downstream, &shared, ctrl.clone());
        tokio::pin!(up, down);
        let (mut up_done, mut down_done) = (false, false);
        loop {
            if up_done && down_done {
                break End::Graceful;
            }
            let outcome = tokio::select! {
                o = &mut up, if !up_done => { up_done = true; o }
                o = &mut down, if !down_done => { down_done = true; o }
                _ = reset_requested(&mut ctrl, start_epoch) => Outcome::Abort,
            };
            match outcome {
                Outcome::Finished => {}
                Outcome::Close => break End::Graceful,
                Outcome::Abort => break End::Reset,
            }
        }
    };
    match end {
        End::Reset => reset(&shared.counters, &[&client, &upstream]),
        End::Graceful => {
            // FIN both ways before closing, so that data already forwarded is
            // read before any reset the kernel may send for unread input.
            let _ = client.shutdown().await;
            let _ = upstream.shutdown().await;
        }
    }
}
