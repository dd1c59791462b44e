//! The catalog's records and the lifecycles that move them. Pure: no SQL here.
//! Each lifecycle is an enum stored as text (with a CHECK constraint) and moved
//! only by its `can_move_to` rule.

use crate::names::{Namespace, PolicyName, VolumeName};
use crate::span::Span;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::fmt;
use std::str::FromStr;

macro_rules! id_type {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(pub i64);
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                s.trim().parse::<i64>().ok().filter(|v| *v > 0).map($name).ok_or_else(|| {
                    format!("{s:?} is not an id; use the positive number shown by `list`")
                })
            }
        }
    };
}
id_type!(
    /// A recovery point's id.
    PointId
);
id_type!(
    /// A backup's id.
    BackupId
);
id_type!(
    /// A run's (restore or drill) id.
    RunId
);
id_type!(
    /// An incident's id.
    IncidentId
);

macro_rules! text_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($(#[$vm])* $variant),+ }
        impl $name {
            /// Every value, in lifecycle order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// The text stored in the catalog.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }
        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(format!("{s:?} is not one of: {}", [$($text),+].join(", "))),
                }
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

text_enum!(
    /// A recovery point's lifecycle: `pending` while its tick runs, then
    /// `complete` (every backup completed), `partial` (some) or `failed` (none);
    /// finally `pruned` by retention.
    PointState {
        Pending = "pending",
        Complete = "complete",
        Partial = "partial",
        Failed = "failed",
        Pruned = "pruned",
    }
);

/// What a recovery point's data is consistent with. `crash-consistent`: each
/// volume as if the power had been cut at its snapshot (a database replays
/// its log on start); `filesystem-frozen`: Longhorn froze every volume's
/// filesystem for its snapshot, so the files are consistent on disk, though
/// an application's own buffers still were not flushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Consistency {
    CrashConsistent,
    FilesystemFrozen,
}

impl Consistency {
    /// The text stored in the catalog (and shown).
    pub fn as_str(self) -> &'static str {
        match self {
            Consistency::CrashConsistent => "crash-consistent",
            Consistency::FilesystemFrozen => "filesystem-frozen",
        }
    }

    /// A point's consistency from whether each of its volumes was frozen:
    /// frozen only if every one was. Pure.
    pub fn of_volumes(frozen: &[bool]) -> Consistency {
        if !frozen.is_empty() && frozen.iter().all(|f| *f) {
            Consistency::FilesystemFrozen
        } else {
            Consistency::CrashConsistent
        }
    }
}

impl FromStr for Consistency {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "crash-consistent" => Ok(Consistency::CrashConsistent),
            "filesystem-frozen" => Ok(Consistency::FilesystemFrozen),
            _ => Err(format!(
                "{s:?} is not one of: crash-consistent, filesystem-frozen"
            )),
        }
    }
}

impl fmt::Display for Consistency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PointState {
    /// Whether the lifecycle allows moving from `self` to `to` (staying put is allowed).
    pub fn can_move_to(self, to: PointState) -> bool {
        use PointState::*;
        self == to
            || matches!(
                (self, to),
                (Pending, Complete | Partial | Failed) | (Complete | Partial | Failed, Pruned)
            )
    }

    /// The state of a finished tick from its backups' final states.
    pub fn from_backups(states: &[BackupState]) -> PointState {
        let done = states
            .iter()
            .filter(|s| **s == BackupState::Completed)
            .count();
        if states.is_empty() || done == 0 {
            PointState::Failed
        } else if done == states.len() {
            PointState::Complete
        } else {
            PointState::Partial
        }
    }
}

text_enum!(
    /// A backup's lifecycle: a row is written before Longhorn is asked
    /// (`pending`), then the snapshot is made (`snapshotting`), the backup
    /// requested and followed (`backing_up`) to `completed` or `failed`;
    /// retention finally deletes it (`pruned`).
    BackupState {
        Pending = "pending",
        Snapshotting = "snapshotting",
        BackingUp = "backing_up",
        Completed = "completed",
        Failed = "failed",
        Pruned = "pruned",
    }
);

impl BackupState {
    /// Whether the lifecycle allows moving from `self` to `to`. Staying put is
    /// allowed (progress updates); a terminal state only moves to `pruned`.
    pub fn can_move_to(self, to: BackupState) -> bool {
        use BackupState::*;
        self == to
            || matches!(
                (self, to),
                (Pending, Snapshotting | BackingUp | Failed)
                    | (Snapshotting, BackingUp | Failed)
                    | (BackingUp, Completed | Failed)
                    | (Completed | Failed, Pruned)
            )
    }
    /// Whether nothing more will happen to it in Longhorn.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            BackupState::Completed | BackupState::Failed | BackupState::Pruned
        )
    }
}

text_enum!(
    /// Whether a completed backup's objects were found intact in the backup store.
    Verification {
        Unverified = "unverified",
        Verified = "verified",
        Mismatch = "mismatch",
    }
);

text_enum!(
    /// What a run is for.
    RunKind {
        Restore = "restore",
        Drill = "drill",
    }
);

text_enum!(
    /// A run's lifecycle.
    RunState {
        Running = "running",
        Succeeded = "succeeded",
        Failed = "failed",
    }
);

impl RunState {
    /// Only a running run can finish, and only once.
    pub fn can_move_to(self, to: RunState) -> bool {
        self == to || (self == RunState::Running && to != RunState::Running)
    }
}

text_enum!(
    /// A runbook step's lifecycle.
    StepState {
        Pending = "pending",
        Running = "running",
        Succeeded = "succeeded",
        Failed = "failed",
        Skipped = "skipped",
    }
);

impl StepState {
    /// Steps go pending → running → succeeded/failed/skipped; a failed step may
    /// be run again when a run resumes; a succeeded or skipped one stays done.
    pub fn can_move_to(self, to: StepState) -> bool {
        use StepState::*;
        self == to
            || matches!(
                (self, to),
                (Pending, Running | Skipped)
                    | (Running, Succeeded | Failed | Skipped)
                    | (Failed, Running)
            )
    }
}

text_enum!(
    /// Where an incident came from.
    IncidentSource {
        Declared = "declared",
        Probe = "probe",
        Restore = "restore",
    }
);

text_enum!(
    /// What became of one firing of a policy's schedule.
    TickOutcome {
        /// The tick ran and made (or adopted) a recovery point.
        Ran = "ran",
        /// The previous tick of the policy was still running.
        Skipped = "skipped",
        /// dr was not running when it was due.
        Missed = "missed",
    }
);

/// One firing of a policy's schedule.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TickRecord {
    pub policy: PolicyName,
    pub tick_at: DateTime<Utc>,
    pub outcome: TickOutcome,
    pub point_id: Option<PointId>,
    pub reason: Option<String>,
    pub recorded_at: DateTime<Utc>,
}

/// A policy as the catalog keeps it (so plans work without the config file).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicyRecord {
    pub name: PolicyName,
    pub namespace: Namespace,
    pub selector: String,
    pub schedule: String,
    pub rpo: Span,
    pub rto: Span,
}

/// One recovery point.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PointRecord {
    pub id: PointId,
    pub policy: PolicyName,
    pub tick_at: DateTime<Utc>,
    /// The oldest snapshot time among its backups; unknown until they are done.
    pub point_at: Option<DateTime<Utc>>,
    pub state: PointState,
    pub bundle_key: Option<String>,
    pub reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub pruned_at: Option<DateTime<Utc>>,
    /// Unknown for points made before dr recorded it.
    pub consistency: Option<Consistency>,
}

/// A recovery point with counts of its backups, for listings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PointSummary {
    #[serde(flatten)]
    pub point: PointRecord,
    pub backups: i64,
    pub completed: i64,
    pub size_bytes: i64,
}

/// One Longhorn backup of one volume, in one recovery point.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BackupRecord {
    pub id: BackupId,
    pub point_id: PointId,
    pub volume: VolumeName,
    pub pvc: Option<String>,
    pub snapshot_name: String,
    pub backup_name: Option<String>,
    pub backup_url: Option<String>,
    pub state: BackupState,
    pub progress: i64,
    pub size_bytes: Option<i64>,
    pub snapshot_at: Option<DateTime<Utc>>,
    pub requested_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
    pub verification: Verification,
    pub verified_at: Option<DateTime<Utc>>,
    pub pruned_at: Option<DateTime<Utc>>,
    /// The policy's content probe's answer for the volume before the snapshot.
    pub content_checksum: Option<String>,
    /// The PV's filesystem (`spec.csi.fsType`) when it was backed up.
    pub fs_type: Option<String>,
}

/// A backup about to be requested: the row is written before Longhorn is asked.
#[derive(Debug, Clone, PartialEq)]
pub struct NewBackup {
    pub point_id: PointId,
    pub volume: VolumeName,
    pub pvc: Option<String>,
    /// Deterministic per (policy, tick, volume), so a retry finds it.
    pub snapshot_name: String,
    pub requested_at: DateTime<Utc>,
}

/// What changed about a backup; `None` fields keep their stored value.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BackupUpdate {
    pub state: Option<BackupState>,
    pub backup_name: Option<String>,
    pub backup_url: Option<String>,
    pub progress: Option<i64>,
    pub size_bytes: Option<i64>,
    pub snapshot_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
    pub fs_type: Option<String>,
    /// When retention deleted it (with `state: Pruned`).
    pub pruned_at: Option<DateTime<Utc>>,
}

/// The oldest and newest complete recovery points of a policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Window {
    pub oldest: DateTime<Utc>,
    pub newest: DateTime<Utc>,
}

/// A run about to start.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRun {
    pub kind: RunKind,
    pub policy: PolicyName,
    pub point_id: Option<PointId>,
    pub target_namespace: Namespace,
    pub target_at: Option<DateTime<Utc>>,
    pub incident_id: Option<IncidentId>,
    pub started_at: DateTime<Utc>,
    /// Who runs it (`host:pid:random`), for the lock's liveness.
    pub holder: String,
}

/// A run (restore or drill).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunRecord {
    pub id: RunId,
    pub kind: RunKind,
    pub policy: PolicyName,
    pub point_id: Option<PointId>,
    pub target_namespace: Namespace,
    pub target_at: Option<DateTime<Utc>>,
    pub state: RunState,
    pub incident_id: Option<IncidentId>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
    /// The process running it, and when it last said it still does.
    pub holder: Option<String>,
    pub heartbeat_at: Option<DateTime<Utc>>,
    /// Stages against budgets, RTO and RPO verdicts (JSON), once finished.
    pub summary: Option<String>,
}

/// One step of a run, timed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepRecord {
    /// Position in the runbook; the key of the step within its run.
    pub seq: i64,
    pub stage: String,
    pub step: String,
    pub state: StepState,
    pub budget: Option<Span>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub detail: Option<String>,
}

/// An outage window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IncidentRecord {
    pub id: IncidentId,
    pub policy: Option<PolicyName>,
    pub title: String,
    pub source: IncidentSource,
    pub opened_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub note: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trips() {
        for s in BackupState::ALL {
            assert_eq!(s.as_str().parse::<BackupState>().unwrap(), *s);
        }
        for s in PointState::ALL {
            assert_eq!(s.as_str().parse::<PointState>().unwrap(), *s);
        }
        assert!(
            "done"
                .parse::<BackupState>()
                .unwrap_err()
                .contains("completed")
        );
    }

    #[test]
    fn backup_lifecycle() {
        use BackupState::*;
        let allowed = [
            (Pending, Snapshotting),
            (Pending, BackingUp),
            (Pending, Failed),
            (Snapshotting, BackingUp),
            (Snapshotting, Failed),
            (BackingUp, Completed),
            (BackingUp, Failed),
            (Completed, Pruned),
            (Failed, Pruned),
        ];
        for from in BackupState::ALL {
            for to in BackupState::ALL {
                let want = from == to || allowed.contains(&(*from, *to));
                assert_eq!(from.can_move_to(*to), want, "{from} -> {to}");
            }
        }
    }

    #[test]
    fn point_lifecycle_and_outcome() {
        use PointState::*;
        assert!(Pending.can_move_to(Complete));
        assert!(!Complete.can_move_to(Pending));
        assert!(!Pruned.can_move_to(Complete));
        assert!(Partial.can_move_to(Pruned));
        use BackupState as B;
        assert_eq!(PointState::from_backups(&[]), Failed);
        assert_eq!(
            PointState::from_backups(&[B::Completed, B::Completed]),
            Complete
        );
        assert_eq!(
            PointState::from_backups(&[B::Completed, B::Failed]),
            Partial
        );
        assert_eq!(PointState::from_backups(&[B::Failed]), Failed);
    }

    #[test]
    fn run_and_step_lifecycles() {
        assert!(RunState::Running.can_move_to(RunState::Failed));
        assert!(!RunState::Succeeded.can_move_to(RunState::Failed));
        assert!(StepState::Failed.can_move_to(StepState::Running));
        assert!(!StepState::Succeeded.can_move_to(StepState::Running));
    }

    #[test]
    fn ids_parse() {
        assert_eq!("42".parse::<PointId>().unwrap(), PointId(42));
        assert!("0".parse::<PointId>().is_err());
        assert!("x".parse::<RunId>().unwrap_err().contains("not an id"));
    }
}
