//! The catalog suite, run on SQLite and on the test bed's PostgreSQL: every
//! case below becomes `<case>::sqlite` and `<case>::postgres`.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use crate::harness::catalog as harness;
use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use dr::catalog::*;
use dr::config::Config;
use dr::names::PolicyName;
use dr::restore::{self, PlanError};
use dr::timespec::Target;

macro_rules! on_both {
    ($($case:ident),+ $(,)?) => {$(
        mod $case {
            #[tokio::test]
            async fn sqlite() {
                let db = super::harness::sqlite().await;
                super::$case(&db.catalog).await;
                db.cleanup().await;
            }
            #[tokio::test]
            async fn postgres() {
                let db = super::harness::postgres().await;
                super::$case(&db.catalog).await;
                db.cleanup().await;
            }
        }
    )+};
}

on_both!(
    opens_migrated_and_empty,
    points_are_unique_per_policy_and_tick,
    concurrent_ticks_make_one_point,
    backups_are_unique_per_point_and_volume,
    backup_lifecycle_is_enforced,
    point_lifecycle_is_enforced,
    planning_query_finds_newest_complete_at_or_before,
    planning_query_is_an_index_seek,
    plan_refuses_impossible_targets,
    listing_counts_backups,
    runs_lock_their_target_and_steps_resume,
    incidents_open_resolve_list,
    unknown_policy_lists_known_ones,
    synthetic_seed_is_plannable,
    ticks_record_first_outcome_and_rpo_needs_verified_points,
    batch_records_are_idempotent,
    history_compacts_what_the_report_does_not_need,
    first_and_last_tick_span_ticks_and_points,
    finished_runs_between_reads_the_window_only,
    a_replica_that_lost_its_term_records_nothing,
);

mod reopen_is_idempotent {
    use super::*;

    async fn check(db: super::harness::TestDb) {
        let p = with_policy(&db.catalog, "shop").await;
        db.catalog.begin_point(&p, t(9, 0), t(9, 0)).await.unwrap();
        // Opening again runs the migrator over an up-to-date schema: nothing
        // changes and nothing is lost.
        let again = Catalog::open(&db.url.parse().unwrap()).await.unwrap();
        assert_eq!(again.list_points(Some(&p), 10).await.unwrap().len(), 1);
        again.close().await;
        db.cleanup().await;
    }
    #[tokio::test]
    async fn sqlite() {
        check(super::harness::sqlite().await).await;
    }
    #[tokio::test]
    async fn postgres() {
        check(super::harness::postgres().await).await;
    }
}

fn t(h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 24, h, m, 0).unwrap()
}

async fn with_policy(c: &Catalog, name: &str) -> PolicyName {
    let cfg = Config::parse(
        &format!("policies:\n  - name: {name}\n    namespace: ns-{name}\n    rpo: 15m\n"),
        "test",
    )
    .unwrap();
    c.upsert_policy(&(&cfg.policies[0]).into(), t(0, 0))
        .await
        .unwrap();
    cfg.policies[0].name.clone()
}

/// A finished point at `tick` whose backups (one per volume) end in the given states.
async fn point_with(
    c: &Catalog,
    p: &PolicyName,
    tick: DateTime<Utc>,
    outcomes: &[BackupState],
) -> PointRecord {
    let point = c.begin_point(p, tick, tick).await.unwrap();
    let mut states = Vec::new();
    for (i, end) in outcomes.iter().enumerate() {
        let b = c
            .record_backup(&NewBackup {
                point_id: point.id,
                volume: format!("vol-{i}").parse().unwrap(),
                pvc: Some(format!("claim-{i}")),
                snapshot_name: format!("dr-{}-{i}", tick.timestamp()),
                requested_at: tick,
            })
            .await
            .unwrap();
        c.update_backup(
            b.id,
            &BackupUpdate {
                state: Some(BackupState::BackingUp),
                snapshot_at: Some(tick + TimeDelta::seconds(i as i64 + 1)),
                backup_name: Some(format!("backup-{:016x}", b.id.0)),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let done = c
            .update_backup(
                b.id,
                &BackupUpdate {
                    state: Some(*end),
                    size_bytes: Some(1000 * (i as i64 + 1)),
                    progress: Some(100),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        states.push(done.state);
    }
    c.finish_point(
        point.id,
        PointState::from_backups(&states),
        Some(tick + TimeDelta::seconds(1)),
        None,
        tick + TimeDelta::minutes(1),
    )
    .await
    .unwrap()
}

async fn opens_migrated_and_empty(c: &Catalog) {
    c.ping().await.unwrap();
    assert!(c.policies().await.unwrap().is_empty());
}

async fn points_are_unique_per_policy_and_tick(c: &Catalog) {
    let p = with_policy(c, "shop").await;
    let a = c.begin_point(&p, t(9, 0), t(9, 0)).await.unwrap();
    let again = c.begin_point(&p, t(9, 0), t(9, 1)).await.unwrap();
    assert_eq!(a.id, again.id);
    assert_eq!(again.created_at, t(9, 0), "the first write wins");
    let b = c.begin_point(&p, t(9, 15), t(9, 15)).await.unwrap();
    assert_ne!(a.id, b.id);
    assert_eq!(a.state, PointState::Pending);
}

async fn concurrent_ticks_make_one_point(c: &Catalog) {
    let p = with_policy(c, "shop").await;
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let c = c.clone();
            let p = p.clone();
            tokio::spawn(async move { c.begin_point(&p, t(10, 0), t(10, 0)).await.unwrap().id })
        })
        .collect();
    let mut ids = Vec::new();
    for task in tasks {
        ids.push(task.await.unwrap());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(c.list_points(Some(&p), 10).await.unwrap().len(), 1);
}

async fn backups_are_unique_per_point_and_volume(c: &Catalog) {
    let p = with_policy(c, "shop").await;
    let point = c.begin_point(&p, t(9, 0), t(9, 0)).await.unwrap();
    let nb = |vol: &str| NewBackup {
        point_id: point.id,
        volume: vol.parse().unwrap(),
        pvc: None,
        snapshot_name: format!("dr-shop-0900-{vol}"),
        requested_at: t(9, 0),
    };
    let a = c.record_backup(&nb("vol-a")).await.unwrap();
    let a2 = c.record_backup(&nb("vol-a")).await.unwrap();
    assert_eq!(a.id, a2.id);
    let b = c.record_backup(&nb("vol-b")).await.unwrap();
    assert_ne!(a.id, b.id);
    let all = c.backups_of(point.id).await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].snapshot_name, "dr-shop-0900-vol-a");
}

async fn backup_lifecycle_is_enforced(c: &Catalog) {
    let p = with_policy(c, "shop").await;
    let point = c.begin_point(&p, t(9, 0), t(9, 0)).await.unwrap();
    let b = c
        .record_backup(&NewBackup {
            point_id: point.id,
            volume: "vol-a".parse().unwrap(),
            pvc: None,
            snapshot_name: "s".into(),
            requested_at: t(9, 0),
        })
        .await
        .unwrap();
    let jump = c
        .update_backup(
            b.id,
            &BackupUpdate {
                state: Some(BackupState::Completed),
                ..Default::default()
            },
        )
        .await;
    assert!(
        matches!(jump, Err(CatalogError::Transition { .. })),
        "{jump:?}"
    );
    let step = |s| BackupUpdate {
        state: Some(s),
        ..Default::default()
    };
    c.update_backup(b.id, &step(BackupState::Snapshotting))
        .await
        .unwrap();
    c.update_backup(b.id, &step(BackupState::BackingUp))
        .await
        .unwrap();
    let prog = c
        .update_backup(
            b.id,
            &BackupUpdate {
                progress: Some(40),
                backup_name: Some("backup-0123456789abcdef".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(prog.progress, 40);
    assert_eq!(prog.state, BackupState::BackingUp);
    // Verification only applies to completed backups.
    assert!(
        c.set_verification(b.id, Verification::Verified, t(9, 5))
            .await
            .is_err()
    );
    let done = c
        .update_backup(
            b.id,
            &BackupUpdate {
                state: Some(BackupState::Completed),
                progress: Some(100),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        done.backup_name.as_deref(),
        Some("backup-0123456789abcdef"),
        "kept"
    );
    c.set_verification(b.id, Verification::Verified, t(9, 5))
        .await
        .unwrap();
    assert_eq!(
        c.backup(b.id).await.unwrap().verification,
        Verification::Verified
    );
    let back = c.update_backup(b.id, &step(BackupState::BackingUp)).await;
    assert!(matches!(back, Err(CatalogError::Transition { .. })));
    c.update_backup(b.id, &step(BackupState::Pruned))
        .await
        .unwrap();
    // Nothing unfinished is left to adopt.
    assert!(c.unfinished_backups().await.unwrap().is_empty());
}

async fn point_lifecycle_is_enforced(c: &Catalog) {
    let p = with_policy(c, "shop").await;
    let point = point_with(c, &p, t(9, 0), &[BackupState::Completed]).await;
    assert_eq!(point.state, PointState::Complete);
    assert_eq!(point.point_at, Some(t(9, 0) + TimeDelta::seconds(1)));
    let back = c
        .finish_point(point.id, PointState::Pending, None, None, t(9, 2))
        .await;
    assert!(matches!(back, Err(CatalogError::Transition { .. })));
    let pruned = c
        .finish_point(point.id, PointState::Pruned, None, None, t(10, 0))
        .await
        .unwrap();
    assert_eq!(pruned.pruned_at, Some(t(10, 0)));
    assert_eq!(pruned.finished_at, Some(t(9, 1)), "finish time kept");
    let partial = point_with(
        c,
        &p,
        t(9, 15),
        &[BackupState::Completed, BackupState::Failed],
    )
    .await;
    assert_eq!(partial.state, PointState::Partial);
}

async fn planning_query_finds_newest_complete_at_or_before(c: &Catalog) {
    let p = with_policy(c, "shop").await;
    let other = with_policy(c, "other").await;
    let ok = [BackupState::Completed, BackupState::Completed];
    let p900 = point_with(c, &p, t(9, 0), &ok).await;
    let p915 = point_with(c, &p, t(9, 15), &ok).await;
    let _partial930 = point_with(
        c,
        &p,
        t(9, 30),
        &[BackupState::Completed, BackupState::Failed],
    )
    .await;
    let _failed945 = point_with(c, &p, t(9, 45), &[BackupState::Failed]).await;
    let _pending = c.begin_point(&p, t(10, 15), t(10, 15)).await.unwrap();
    let p1000 = point_with(c, &p, t(10, 0), &ok).await;
    let _other = point_with(c, &other, t(9, 50), &ok).await;

    let at = |time| c.newest_complete_at_or_before(&p, time);
    assert_eq!(
        at(t(9, 50)).await.unwrap().unwrap().id,
        p915.id,
        "skips partial/failed"
    );
    assert_eq!(
        at(t(10, 30)).await.unwrap().unwrap().id,
        p1000.id,
        "skips pending"
    );
    let exact = p915.point_at.unwrap();
    assert_eq!(
        at(exact).await.unwrap().unwrap().id,
        p915.id,
        "at is inclusive"
    );
    assert_eq!(
        at(exact - TimeDelta::milliseconds(1))
            .await
            .unwrap()
            .unwrap()
            .id,
        p900.id
    );
    assert!(at(t(8, 0)).await.unwrap().is_none());
    assert_eq!(
        c.oldest_complete_after(&p, t(9, 20))
            .await
            .unwrap()
            .unwrap()
            .id,
        p1000.id
    );
    let w = c.window(&p).await.unwrap().unwrap();
    assert_eq!(w.oldest, p900.point_at.unwrap());
    assert_eq!(w.newest, p1000.point_at.unwrap());
    let nobody = with_policy(c, "empty").await;
    assert!(c.window(&nobody).await.unwrap().is_none());
}

async fn planning_query_is_an_index_seek(c: &Catalog) {
    let p = with_policy(c, "shop").await;
    let plan = c.explain_planning_query(&p).await.unwrap();
    assert!(
        plan.contains("recovery_points_plan"),
        "not the plan index:\n{plan}"
    );
    assert!(
        !plan.contains("SCAN recovery_points\n") && !plan.ends_with("SCAN recovery_points"),
        "{plan}"
    );
    assert!(!plan.contains("Seq Scan"), "{plan}");
    assert!(
        !plan.contains("TEMP B-TREE"),
        "sorts instead of walking the index:\n{plan}"
    );
}

async fn plan_refuses_impossible_targets(c: &Catalog) {
    let p = with_policy(c, "shop").await;
    let ok = [BackupState::Completed];
    point_with(c, &p, t(9, 0), &ok).await;
    let p915 = point_with(c, &p, t(9, 15), &ok).await;
    point_with(c, &p, t(9, 30), &ok).await;
    let policy = restore::choose_policy(c, Some(&"shop".parse().unwrap()))
        .await
        .unwrap();
    let now = t(12, 0);

    let plan = restore::plan(c, &policy, Target::At(t(9, 25)), now)
        .await
        .unwrap();
    assert_eq!(plan.point.id, p915.id);
    assert_eq!(plan.backups.len(), 1);
    assert_eq!(plan.data_loss_seconds, TimeDelta::seconds(9 * 60 + 59));
    assert!(plan.within_rpo);
    assert_eq!(
        plan.next_point.as_ref().map(|n| n.at),
        Some(t(9, 30) + TimeDelta::seconds(1))
    );

    let latest = restore::plan(c, &policy, Target::Latest, now)
        .await
        .unwrap();
    assert!(!latest.within_rpo, "2.5 hours old is over a 15m RPO");

    match restore::plan(c, &policy, Target::At(t(13, 0)), now).await {
        Err(PlanError::FutureTime {
            candidates, window, ..
        }) => {
            assert_eq!(candidates.len(), 2);
            assert_eq!(candidates[0].at, t(9, 30) + TimeDelta::seconds(1));
            assert_eq!(window.oldest, t(9, 0) + TimeDelta::seconds(1));
        }
        other => panic!("{other:?}"),
    }
    match restore::plan(c, &policy, Target::At(t(8, 0)), now).await {
        Err(PlanError::BeforeWindow { candidates, .. }) => {
            assert_eq!(candidates[0].at, t(9, 0) + TimeDelta::seconds(1));
        }
        other => panic!("{other:?}"),
    }
}

async fn listing_counts_backups(c: &Catalog) {
    let p = with_policy(c, "shop").await;
    point_with(
        c,
        &p,
        t(9, 0),
        &[BackupState::Completed, BackupState::Failed],
    )
    .await;
    point_with(
        c,
        &p,
        t(9, 15),
        &[BackupState::Completed, BackupState::Completed],
    )
    .await;
    let list = c.list_points(Some(&p), 10).await.unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].point.tick_at, t(9, 15), "newest first");
    assert_eq!(
        (list[0].backups, list[0].completed, list[0].size_bytes),
        (2, 2, 3000)
    );
    assert_eq!((list[1].backups, list[1].completed), (2, 1));
    assert_eq!(c.list_points(None, 1).await.unwrap().len(), 1);
}

async fn runs_lock_their_target_and_steps_resume(c: &Catalog) {
    let p = with_policy(c, "shop").await;
    let new = NewRun {
        kind: RunKind::Restore,
        policy: p.clone(),
        point_id: None,
        target_namespace: "shop".parse().unwrap(),
        target_at: Some(t(9, 0)),
        incident_id: None,
        started_at: t(11, 0),
        holder: "a".into(),
    };
    let run = c.start_run(&new).await.unwrap();
    assert_eq!(run.holder.as_deref(), Some("a"));
    assert_eq!(run.heartbeat_at, Some(t(11, 0)));
    match c.start_run(&new).await {
        Err(CatalogError::TargetBusy { run: busy, .. }) => assert_eq!(busy, run.id),
        other => panic!("{other:?}"),
    }
    // The holder's heartbeat keeps the run; a fresh one cannot be taken over.
    assert!(c.heartbeat(run.id, "a", t(11, 1)).await.unwrap());
    let seen = c.run(run.id).await.unwrap();
    assert!(!c.take_over(&seen, "b", t(11, 0), t(11, 2)).await.unwrap());
    // A stale one can, once: the second taker lost the compare-and-swap.
    assert!(c.take_over(&seen, "b", t(11, 5), t(11, 6)).await.unwrap());
    assert!(!c.take_over(&seen, "c", t(11, 5), t(11, 6)).await.unwrap());
    assert!(
        !c.heartbeat(run.id, "a", t(11, 7)).await.unwrap(),
        "a lost it"
    );
    assert!(c.heartbeat(run.id, "b", t(11, 7)).await.unwrap());
    c.set_run_summary(run.id, "{}").await.unwrap();
    assert_eq!(c.run(run.id).await.unwrap().summary.as_deref(), Some("{}"));
    let step = |state, seq| StepRecord {
        seq,
        stage: "data".into(),
        step: "restore-volumes".into(),
        state,
        budget: Some(dr::span::Span::from_secs(1200)),
        started_at: Some(t(11, 1)),
        finished_at: None,
        detail: None,
    };
    c.record_step(run.id, &step(StepState::Running, 1))
        .await
        .unwrap();
    c.record_step(run.id, &step(StepState::Succeeded, 1))
        .await
        .unwrap();
    assert!(
        c.record_step(run.id, &step(StepState::Running, 1))
            .await
            .is_err(),
        "done stays done"
    );
    c.record_step(run.id, &step(StepState::Running, 2))
        .await
        .unwrap();
    c.record_step(run.id, &step(StepState::Failed, 2))
        .await
        .unwrap();
    c.record_step(run.id, &step(StepState::Running, 2))
        .await
        .unwrap();
    let steps = c.steps(run.id).await.unwrap();
    assert_eq!(steps.len(), 2);
    assert_eq!(steps[0].state, StepState::Succeeded);
    assert_eq!(steps[0].budget, Some(dr::span::Span::from_secs(1200)));
    let done = c
        .finish_run(run.id, RunState::Succeeded, None, t(11, 30))
        .await
        .unwrap();
    assert_eq!(done.finished_at, Some(t(11, 30)));
    assert!(
        c.finish_run(run.id, RunState::Failed, None, t(11, 31))
            .await
            .is_err()
    );
    let again = c.start_run(&new).await.unwrap();
    assert_ne!(again.id, run.id);
    assert_eq!(
        c.list_runs(Some(RunKind::Restore), Some(&p), 10)
            .await
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        c.list_runs(Some(RunKind::Drill), None, 10)
            .await
            .unwrap()
            .len(),
        0
    );
}

async fn incidents_open_resolve_list(c: &Catalog) {
    let p = with_policy(c, "shop").await;
    let a = c
        .open_incident(Some(&p), "web down", IncidentSource::Declared, t(9, 0))
        .await
        .unwrap();
    let b = c
        .open_incident(None, "cluster-wide", IncidentSource::Declared, t(10, 0))
        .await
        .unwrap();
    assert!(matches!(
        c.resolve_incident(a.id, t(8, 0), None).await,
        Err(CatalogError::Incident { .. })
    ));
    let r = c
        .resolve_incident(a.id, t(9, 30), Some("restored"))
        .await
        .unwrap();
    assert_eq!(r.resolved_at, Some(t(9, 30)));
    assert_eq!(r.note.as_deref(), Some("restored"));
    assert!(matches!(
        c.resolve_incident(a.id, t(9, 45), None).await,
        Err(CatalogError::Incident { .. })
    ));
    assert!(matches!(
        c.resolve_incident(IncidentId(999), t(9, 45), None).await,
        Err(CatalogError::NotFound { .. })
    ));
    let open = c.list_incidents(None, true, 10).await.unwrap();
    assert_eq!(open.iter().map(|i| i.id).collect::<Vec<_>>(), vec![b.id]);
    assert_eq!(
        c.list_incidents(Some(&p), false, 10).await.unwrap().len(),
        1
    );
    assert_eq!(c.list_incidents(None, false, 10).await.unwrap().len(), 2);
}

async fn unknown_policy_lists_known_ones(c: &Catalog) {
    with_policy(c, "shop").await;
    with_policy(c, "blog").await;
    let e = c.policy("shpo").await.unwrap_err().to_string();
    assert!(e.contains("\"shpo\"") && e.contains("blog, shop"), "{e}");
    let e = restore::choose_policy(c, None).await.unwrap_err();
    assert_eq!(e.kind(), "policy_required");
}

async fn synthetic_seed_is_plannable(c: &Catalog) {
    let p = with_policy(c, "bench").await;
    let every = dr::span::Span::from_secs(900);
    c.seed_synthetic(&p, 20, 7, t(12, 0), every).await.unwrap();
    let list = c.list_points(Some(&p), 100).await.unwrap();
    assert_eq!(list.len(), 20);
    assert!(list.iter().all(|s| s.backups == 7 && s.completed == 7));
    let policy = restore::choose_policy(c, Some(&"bench".parse().unwrap()))
        .await
        .unwrap();
    let plan = restore::plan(c, &policy, Target::At(t(11, 50)), t(12, 30))
        .await
        .unwrap();
    assert_eq!(plan.point.tick_at, t(11, 45));
    assert_eq!(plan.backups.len(), 7);
}

async fn ticks_record_first_outcome_and_rpo_needs_verified_points(c: &Catalog) {
    let p = with_policy(c, "shop").await;
    let point = point_with(c, &p, t(9, 0), &[BackupState::Completed]).await;
    c.record_tick(&p, t(9, 0), TickOutcome::Ran, Some(point.id), None, t(9, 1))
        .await
        .unwrap();
    // A later "missed" for the same tick (e.g. after a restart) does not override it.
    c.record_tick(
        &p,
        t(9, 0),
        TickOutcome::Missed,
        None,
        Some("dr was down"),
        t(9, 20),
    )
    .await
    .unwrap();
    c.record_tick(
        &p,
        t(9, 15),
        TickOutcome::Skipped,
        None,
        Some("9:00 still running"),
        t(9, 15),
    )
    .await
    .unwrap();
    let ticks = c.ticks(&p, 10).await.unwrap();
    assert_eq!(ticks.len(), 2);
    assert_eq!(ticks[0].outcome, TickOutcome::Skipped);
    assert_eq!(ticks[1].outcome, TickOutcome::Ran);
    assert_eq!(ticks[1].point_id, Some(point.id));

    // Complete but not verified: not what the RPO counts from.
    assert!(c.newest_verified_point(&p).await.unwrap().is_none());
    for b in c.backups_of(point.id).await.unwrap() {
        c.set_verification(b.id, Verification::Verified, t(9, 2))
            .await
            .unwrap();
    }
    assert_eq!(
        c.newest_verified_point(&p).await.unwrap().unwrap().id,
        point.id
    );

    let pending = c.begin_point(&p, t(9, 30), t(9, 30)).await.unwrap();
    assert_eq!(
        c.pending_points()
            .await
            .unwrap()
            .iter()
            .map(|p| p.id)
            .collect::<Vec<_>>(),
        vec![pending.id]
    );
    c.finish_point(point.id, PointState::Pruned, None, None, t(10, 0))
        .await
        .unwrap();
    let live = c.live_points(&p).await.unwrap();
    assert_eq!(
        live.iter().map(|p| p.id).collect::<Vec<_>>(),
        vec![pending.id]
    );
}

async fn batch_records_are_idempotent(c: &Catalog) {
    let p = with_policy(c, "shop").await;
    let point = c.begin_point(&p, t(9, 0), t(9, 0)).await.unwrap();
    let nb = |i: usize| NewBackup {
        point_id: point.id,
        volume: format!("vol-{i:04}").parse().unwrap(),
        pvc: Some(format!("claim-{i}")),
        snapshot_name: format!("dr-shop-0900-{i}"),
        requested_at: t(9, 0),
    };
    // More rows than one statement carries, so chunking is exercised.
    let batch: Vec<NewBackup> = (0..250).map(nb).collect();
    let rows = c.record_backups(&batch).await.unwrap();
    assert_eq!(rows.len(), 250);
    assert!(rows.iter().all(|r| r.state == BackupState::Pending));
    // A row that moved on keeps its state when the batch is recorded again.
    c.update_backup(
        rows[0].id,
        &BackupUpdate {
            state: Some(BackupState::BackingUp),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let again = c.record_backups(&batch).await.unwrap();
    assert_eq!(again.len(), 250);
    assert_eq!(
        again.iter().find(|r| r.id == rows[0].id).unwrap().state,
        BackupState::BackingUp
    );
    assert_eq!(c.backups_of(point.id).await.unwrap().len(), 250);
    assert!(c.record_backups(&[]).await.unwrap().is_empty());
}

async fn verified(c: &Catalog, point: &PointRecord, at: DateTime<Utc>) {
    for b in c.backups_of(point.id).await.unwrap() {
        c.set_verification(b.id, Verification::Verified, at)
            .await
            .unwrap();
    }
}

async fn history_compacts_what_the_report_does_not_need(c: &Catalog) {
    let p = with_policy(c, "shop").await;
    let done = [BackupState::Completed, BackupState::Completed];
    let old = point_with(c, &p, t(9, 0), &done).await;
    verified(c, &old, t(9, 2)).await;
    c.record_tick(&p, t(9, 0), TickOutcome::Ran, Some(old.id), None, t(9, 2))
        .await
        .unwrap();
    let live = point_with(c, &p, t(9, 15), &done).await;
    verified(c, &live, t(9, 17)).await;
    c.finish_point(old.id, PointState::Pruned, None, None, t(10, 0))
        .await
        .unwrap();
    let times = c.verified_point_times(&p).await.unwrap();
    assert_eq!(times.len(), 2, "a pruned point counted while it existed");

    // Backup rows of points pruned before 10:30: none yet.
    let none = c.compact(t(9, 59), t(8, 0), 1).await.unwrap();
    assert_eq!(none, Compacted::default());
    // In batches of one: the pruned point's two rows, then nothing.
    let mut removed = Compacted::default();
    loop {
        let b = c.compact(t(10, 30), t(8, 0), 1).await.unwrap();
        assert!(b.backup_rows <= 1, "{b:?}");
        if b.total() == 0 {
            break;
        }
        removed.backup_rows += b.backup_rows;
    }
    assert_eq!(removed.backup_rows, 2);
    assert!(c.backups_of(old.id).await.unwrap().is_empty());
    assert_eq!(c.backups_of(live.id).await.unwrap().len(), 2);
    assert_eq!(
        c.verified_point_times(&p).await.unwrap(),
        times,
        "the report's RPO history survives the compaction of backup rows"
    );

    // Points and tick outcomes older than 9:10: the pruned point and its
    // tick go; the live point (older than the cut too, later) never does.
    let gone = c.compact(t(10, 30), t(9, 10), 100).await.unwrap();
    assert_eq!((gone.points, gone.ticks), (1, 1), "{gone:?}");
    let all = c.compact(t(10, 30), t(12, 0), 100).await.unwrap();
    assert_eq!(all.points, 0, "a live point is kept whatever its age");
    assert_eq!(
        c.newest_verified_point(&p).await.unwrap().map(|x| x.id),
        Some(live.id)
    );
}

async fn first_and_last_tick_span_ticks_and_points(c: &Catalog) {
    let p = with_policy(c, "shop").await;
    let other = with_policy(c, "blog").await;
    assert_eq!(c.first_and_last_tick(&p).await.unwrap(), None);
    // A point rebuilt by sync (no tick row) before the first recorded tick,
    // and a missed tick after the last point: the span covers both.
    c.begin_point(&p, t(8, 45), t(8, 45)).await.unwrap();
    c.record_tick(&p, t(9, 0), TickOutcome::Ran, None, None, t(9, 0))
        .await
        .unwrap();
    c.record_tick(&p, t(9, 30), TickOutcome::Missed, None, None, t(10, 0))
        .await
        .unwrap();
    c.record_tick(&other, t(7, 0), TickOutcome::Ran, None, None, t(7, 0))
        .await
        .unwrap();
    assert_eq!(
        c.first_and_last_tick(&p).await.unwrap(),
        Some((t(8, 45), t(9, 30)))
    );
    assert_eq!(
        c.first_and_last_tick(&other).await.unwrap(),
        Some((t(7, 0), t(7, 0)))
    );
}

async fn finished_runs_between_reads_the_window_only(c: &Catalog) {
    let p = with_policy(c, "shop").await;
    let run = |k: u32, kind: RunKind| NewRun {
        kind,
        policy: p.clone(),
        point_id: None,
        target_namespace: format!("dr-drill-shop-{k}").parse().unwrap(),
        target_at: None,
        incident_id: None,
        started_at: t(k, 0),
        holder: "a".into(),
    };
    // Drills at 1:00 .. 6:00 (finished, with summaries), a restore at 3:00,
    // a drill at 7:00 still running, one at 8:00 without a summary.
    for k in 1..=8 {
        let kind = if k == 3 {
            RunKind::Restore
        } else {
            RunKind::Drill
        };
        let r = c.start_run(&run(k, kind)).await.unwrap();
        if k == 7 {
            continue;
        }
        c.finish_run(r.id, RunState::Succeeded, None, t(k, 30))
            .await
            .unwrap();
        if k != 8 {
            c.set_run_summary(r.id, "{}").await.unwrap();
        }
    }
    let starts = |runs: Vec<RunRecord>| runs.iter().map(|r| r.started_at).collect::<Vec<_>>();
    let drills = c
        .finished_runs_between(RunKind::Drill, &p, t(2, 0), t(9, 0), 10)
        .await
        .unwrap();
    assert_eq!(starts(drills), vec![t(6, 0), t(5, 0), t(4, 0), t(2, 0)]);
    let limited = c
        .finished_runs_between(RunKind::Drill, &p, t(0, 0), t(5, 0), 2)
        .await
        .unwrap();
    assert_eq!(starts(limited), vec![t(4, 0), t(2, 0)]);
    let restores = c
        .finished_runs_between(RunKind::Restore, &p, t(0, 0), t(9, 0), 10)
        .await
        .unwrap();
    assert_eq!(starts(restores), vec![t(3, 0)]);
}

/// Fencing: a replica's policy writes go through only while the catalog
/// names it and its term; a newer term (another replica took the Lease)
/// refuses them all, and an older term cannot be claimed back.
async fn a_replica_that_lost_its_term_records_nothing(c: &Catalog) {
    use dr::catalog::{CatalogError, Fence};
    let p = with_policy(c, "shop").await;
    let (fa, fb) = (Fence::new("a"), Fence::new("b"));
    let (a, b) = (c.fenced(fa.clone()), c.fenced(fb.clone()));
    // Not leading: refused before anything is written.
    let err = a.begin_point(&p, t(9, 0), t(9, 0)).await.unwrap_err();
    assert!(matches!(err, CatalogError::Fenced { .. }), "{err}");
    assert!(c.claim_term("shop", "a", 1, t(9, 0)).await.unwrap());
    fa.lead("shop", 1);
    let point = a.begin_point(&p, t(9, 0), t(9, 0)).await.unwrap();
    assert!(
        a.record_tick(&p, t(9, 0), TickOutcome::Ran, Some(point.id), None, t(9, 1))
            .await
            .unwrap()
    );
    // b takes over in term 2; a, paused meanwhile, wakes up.
    assert!(c.claim_term("shop", "b", 2, t(9, 5)).await.unwrap());
    fb.lead("shop", 2);
    assert!(
        !c.claim_term("shop", "a", 1, t(9, 6)).await.unwrap(),
        "an old term is not claimed back"
    );
    let err = a.begin_point(&p, t(9, 10), t(9, 10)).await.unwrap_err();
    assert!(err.to_string().contains("b leads it now (term 2"), "{err}");
    let err = a
        .record_tick(&p, t(9, 10), TickOutcome::Missed, None, Some("x"), t(9, 10))
        .await
        .unwrap_err();
    assert!(matches!(err, CatalogError::Fenced { .. }), "{err}");
    let err = a
        .finish_point(point.id, PointState::Failed, None, Some("stale"), t(9, 10))
        .await
        .unwrap_err();
    assert!(matches!(err, CatalogError::Fenced { .. }), "{err}");
    assert_eq!(c.point(point.id).await.unwrap().state, PointState::Pending);
    // b goes on.
    b.begin_point(&p, t(9, 10), t(9, 10)).await.unwrap();
    let leaders = c.leaders().await.unwrap();
    assert_eq!((leaders[0].holder.as_str(), leaders[0].term), ("b", 2));
    // The same holder renewing the same term keeps its start.
    assert!(c.claim_term("shop", "b", 2, t(9, 20)).await.unwrap());
    assert_eq!(c.leaders().await.unwrap()[0].since, t(9, 5));
}
