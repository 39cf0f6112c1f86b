//! Negative controls: an embedded run whose result is broken on purpose
//! after the load, the way a bug would break it (an alert dropped, an
//! acknowledged event lost, an alert delivered twice, an extra alert, a
//! process dead). Each must be reported by exactly the invariant it breaks;
//! a checker that stays silent fails the suite.

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;

use super::{Fault, Scenario, SMOKE};
use crate::deployment::{Deployment, Mode};
use crate::invariants::Invariant;

/// How the run is broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sabotage {
    /// One stored alert deleted from the store.
    DropAlert,
    /// One stored alert copied under a new alert id.
    ExtraAlert,
    /// One acknowledged event deleted from the store.
    LoseAckedEvent,
    /// The file channel's first line appended again.
    DuplicateDelivery,
    /// The process SIGKILLed after the final state was read.
    KillProcess,
}

impl Sabotage {
    /// Whether it happens after the state was read (just before health).
    pub fn after_state(self) -> bool {
        self == Sabotage::KillProcess
    }
}

/// The negative controls.
pub fn controls() -> Vec<Scenario> {
    let control = |name, sabotage, invariant, description| Scenario {
        name,
        description,
        mode: Mode::Embedded,
        shape: SMOKE,
        fault: Fault::None,
        config: "",
        smoke: true,
        sabotage: Some((sabotage, invariant)),
    };
    vec![
        control(
            "control-drop-alert",
            Sabotage::DropAlert,
            Invariant::AlertsMatchOracle,
            "Negative control: one stored alert deleted from the store after the load.",
        ),
        control(
            "control-extra-alert",
            Sabotage::ExtraAlert,
            Invariant::AlertsMatchOracle,
            "Negative control: one stored alert copied under a new id after the load.",
        ),
        control(
            "control-lose-acked-event",
            Sabotage::LoseAckedEvent,
            Invariant::AckedStoredOnce,
            "Negative control: one acknowledged event deleted from the store after the load.",
        ),
        control(
            "control-duplicate-delivery",
            Sabotage::DuplicateDelivery,
            Invariant::DeliveredOncePerChannel,
            "Negative control: one alert written to the file channel a second time.",
        ),
        control(
            "control-dead-process",
            Sabotage::KillProcess,
            Invariant::HealthyAgain,
            "Negative control: the process SIGKILLed after the load and not started again.",
        ),
    ]
}

fn store(deployment: &Deployment) -> Result<Connection, String> {
    let up = deployment
        .procs
        .iter()
        .find(|p| p.launch.name == "up")
        .ok_or("sabotage needs the embedded deployment")?;
    let path = up.launch.data_dir.join("store.sqlite");
    let conn = Connection::open(&path).map_err(|e| format!("opening {}: {e}", path.display()))?;
    conn.busy_timeout(Duration::from_secs(10))
        .map_err(|e| e.to_string())?;
    Ok(conn)
}

fn duplicate_first_line(path: &Path) -> Result<String, String> {
    use std::io::Write as _;
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let first = text
        .lines()
        .next()
        .ok_or("the file channel wrote nothing")?;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(|e| e.to_string())?;
    writeln!(file, "{first}").map_err(|e| e.to_string())?;
    Ok("appended the file channel's first line again".into())
}

/// Breaks the run; says what it did.
pub async fn apply(sabotage: Sabotage, deployment: &mut Deployment) -> Result<String, String> {
    let sql = |statement: &str| -> Result<(), String> {
        store(deployment)?
            .execute_batch(statement)
            .map_err(|e| format!("{statement}: {e}"))
    };
    match sabotage {
        Sabotage::DropAlert => {
            sql("DELETE FROM alerts WHERE alert_id = (SELECT alert_id FROM alerts LIMIT 1)")?;
            Ok("deleted one alert row".into())
        }
        Sabotage::ExtraAlert => {
            let new_id = uuid::Uuid::new_v4().to_string();
            sql(&format!(
                "CREATE TEMP TABLE copy AS SELECT * FROM alerts LIMIT 1;
                 UPDATE copy SET alert_id = '{new_id}';
                 INSERT INTO alerts SELECT * FROM copy;"
            ))?;
            Ok(format!("copied one alert row under id {new_id}"))
        }
        Sabotage::LoseAckedEvent => {
            sql("DELETE FROM events WHERE rowid = (SELECT rowid FROM events LIMIT 1)")?;
            Ok("deleted one event row".into())
        }
        Sabotage::DuplicateDelivery => duplicate_first_line(&deployment.alerts_file()),
        Sabotage::KillProcess => {
            deployment.proc("up")?.kill9().await;
            Ok("SIGKILLed `auditflow up`".into())
        }
    }
}
