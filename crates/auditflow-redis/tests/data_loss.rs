//! Losing Redis's data (restart without persistence) on a throwaway
//! `redis-server`: the loss is detected through the epoch marker and groups
//! are rebuilt from the `WindowSource` before anything is decided.

mod common;

use std::sync::Arc;
use std::time::Duration;

use auditflow_core::window::{Decision, Observation};
use common::*;

const RETRY: Duration = Duration::from_secs(10);

/// Observes like analyze, then stores like the store/notify roles.
async fn observe_and_store(
    state: &auditflow_redis::RedisWindowState,
    source: &VecSource,
    observations: &[Observation],
) -> Vec<Decision> {
    let decisions = observe_retrying(state, observations, RETRY).await;
    source.store(observations, &decisions);
    decisions
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_straddling_a_restart_fires_exactly_once() {
    let mut server = Server::start();
    let prefix = Prefix::on(&server.url(), "loss");
    // `VecSource` stands in for the event store: every observed event is
    // stored with whether it raised an alert.
    let source = Arc::new(VecSource::default());
    let s = state(prefix.config(), source.clone());
    let first_epoch = s.epoch().await.unwrap();

    let two = observe_and_store(&s, &source, &[obs("r", "g", 1, 0), obs("r", "g", 2, 10)]).await;
    assert!(two.iter().all(|d| !d.fire));

    server.restart(); // empty: no persistence

    // The third failure: without a rebuild it would count 1 and miss.
    let third = observe_and_store(&s, &source, &[obs("r", "g", 3, 20)]).await;
    assert_eq!(
        third,
        [Decision {
            fire: true,
            count: 3
        }]
    );
    assert_ne!(s.epoch().await.unwrap(), first_epoch, "a new epoch");
    assert_eq!(s.epochs_created(), 2);
    // Rebuilt twice: on its first touch under each epoch (a first start
    // looks like a restart: the marker is new, so groups are read from the
    // source during the first TTL).
    assert_eq!(s.rebuilds(), 2);

    // The rebuilt group holds the fire: the next event is in cooldown, and
    // redeliveries get their recorded decisions.
    let fourth = observe_and_store(&s, &source, &[obs("r", "g", 4, 30)]).await;
    assert_eq!(
        fourth,
        [Decision {
            fire: false,
            count: 4
        }]
    );
    let again = observe_retrying(&s, &[obs("r", "g", 3, 20), obs("r", "g", 1, 0)], RETRY).await;
    assert_eq!(again[0], third[0]);
    assert!(!again[1].fire);

    // A group first seen after the restart is rebuilt from nothing (one
    // source query) and does not fire falsely.
    let queries = *source.queries.lock().unwrap();
    let fresh = observe_and_store(&s, &source, &[obs("r", "fresh", 10, 25)]).await;
    assert_eq!(
        fresh,
        [Decision {
            fire: false,
            count: 1
        }]
    );
    assert_eq!(*source.queries.lock().unwrap(), queries + 1);
    // ... only once: afterwards the group is known under the new epoch.
    observe_and_store(&s, &source, &[obs("r", "fresh", 11, 26)]).await;
    assert_eq!(*source.queries.lock().unwrap(), queries + 1);
}

/// The same straddling burst with a source that knows nothing: this is what
/// deciding on the empty state would do (count 1, no alert) — the miss the
/// rebuild prevents.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_event_store_the_burst_would_be_missed() {
    let mut server = Server::start();
    let prefix = Prefix::on(&server.url(), "noloss");
    let s = state(prefix.config(), Arc::new(EmptySource));
    observe_retrying(&s, &[obs("r", "g", 1, 0), obs("r", "g", 2, 10)], RETRY).await;
    server.restart();
    let third = observe_retrying(&s, &[obs("r", "g", 3, 20)], RETRY).await;
    assert_eq!(
        third,
        [Decision {
            fire: false,
            count: 1
        }]
    );
}

/// A redelivered event whose alert was raised but not stored when Redis
/// died (the source says "not fired") is decided anew and fires again with
/// the same deterministic alert id (notify drops the duplicate).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivery_after_the_loss_fires_again() {
    let mut server = Server::start();
    let prefix = Prefix::on(&server.url(), "refire");
    let source = Arc::new(VecSource::default());
    let s = state(prefix.config(), source.clone());
    let burst = [
        obs("r", "g", 1, 0),
        obs("r", "g", 2, 1),
        obs("r", "g", 3, 2),
    ];
    let decisions = observe_retrying(&s, &burst, RETRY).await;
    assert!(decisions[2].fire);
    // Stored, but the alert of event 3 was not (yet) stored by notify.
    source.store(
        &burst,
        &[
            decisions[0],
            decisions[1],
            Decision {
                fire: false,
                count: 0,
            },
        ],
    );
    server.restart();
    let again = observe_retrying(&s, &burst[2..], RETRY).await;
    assert_eq!(again, [decisions[2]]);
}

/// Two instances after a restart: they agree on one new epoch, and the
/// group is rebuilt once (the second finds it built and uses its state).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn competing_instances_agree_after_the_loss() {
    let mut server = Server::start();
    let prefix = Prefix::on(&server.url(), "two");
    let source = Arc::new(VecSource::default());
    let a = state(prefix.config(), source.clone());
    let b = state(prefix.config(), source.clone());
    let d = observe_retrying(&a, &[obs("r", "g", 1, 0), obs("r", "g", 2, 1)], RETRY).await;
    source.store(&[obs("r", "g", 1, 0), obs("r", "g", 2, 1)], &d);
    assert_eq!(a.epoch().await.unwrap(), b.epoch().await.unwrap());
    server.restart();
    let (third, fourth) = ([obs("r", "g", 3, 2)], [obs("r", "g", 4, 3)]);
    let (da, db) = tokio::join!(
        observe_retrying(&a, &third, RETRY),
        observe_retrying(&b, &fourth, RETRY),
    );
    // Exactly what one of the two sequential orders gives: event 3 first
    // (3 fires with count 3, then 4 counts 4 in cooldown), or event 4 first
    // (4 fires with count 3, then 3, a late event whose window ends before
    // 4, counts 3 in cooldown). Either way exactly one alert.
    let fire = |fire, count| Decision { fire, count };
    let got = (da[0], db[0]);
    assert!(
        got == (fire(true, 3), fire(false, 4)) || got == (fire(false, 3), fire(true, 3)),
        "{got:?}"
    );
    assert_eq!(a.epoch().await.unwrap(), b.epoch().await.unwrap());
    assert_eq!(a.epochs_created() + b.epochs_created(), 2);
}
