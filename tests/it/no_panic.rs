//! No input makes `dr` panic (exit code 101): the nastiest values of every
//! flag, configuration file, runbook and catalog content, run through the
//! built binary. Each is refused with an error that names the value (exit
//! 2, or 1 for a catalog that cannot be opened), or handled. SQLite catalogs
//! in temporary directories: no test bed needed.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use crate::harness::catalog as harness;
use assert_cmd::Command;
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use dr::catalog::{BackupState, BackupUpdate, Catalog, NewBackup, PointState, Verification};
use dr::config::Config;
use std::path::Path;

fn dr() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_dr"));
    for k in [
        "DR_CONFIG",
        "DR_CATALOG",
        "DR_OUTPUT",
        "DR_POLICY",
        "DR_TZ",
        "DR_LOG",
        "DR_RESTORE_TO",
    ] {
        c.env_remove(k);
    }
    c.timeout(std::time::Duration::from_secs(60));
    c
}

/// What a run of dr did.
struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs dr; fails the test on a panic (exit 101, "panicked" on stderr).
fn run(args: &[&str]) -> Ran {
    let out = dr().args(args).output().unwrap();
    let ran = Ran {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert!(
        ran.code != 101 && !ran.stderr.contains("panicked"),
        "dr {args:?} panicked (exit {}):\n{}",
        ran.code,
        ran.stderr
    );
    ran
}

/// Runs dr and checks it refused with `code`, naming every one of `names`.
fn refused(args: &[&str], code: i32, names: &[&str]) {
    let ran = run(args);
    assert_eq!(ran.code, code, "dr {args:?}:\n{}", ran.stderr);
    for n in names {
        assert!(
            ran.stderr.contains(n),
            "dr {args:?}: stderr does not name {n:?}:\n{}",
            ran.stderr
        );
    }
}

/// Runs dr and checks it succeeded.
fn succeeded(args: &[&str]) -> String {
    let ran = run(args);
    assert_eq!(ran.code, 0, "dr {args:?}:\n{}", ran.stderr);
    ran.stdout
}

fn sqlite(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("catalog.db").display())
}

/// Times no one should type, and the text each error must show.
const BAD_TIMES: &[(&str, &str)] = &[
    ("99999999999h ago", "outside the dates dr can represent"),
    ("999999999999999999999999999999h ago", "outside the dates"),
    ("now-99999999999h", "outside the dates"),
    ("now - 106751991167d7h12m55s808ms", "outside the dates"),
    ("+262142-12-31 23:00", "outside the dates"),
    ("-99h ago", "is not a time"),
    ("", "is not a time"),
    ("   ", "is not a time"),
    ("🙂", "is not a time"),
    ("2h ago 🙂", "is not a time"),
    ("1e9h ago", "is not a time"),
    ("now+2h", "is not a time"),
    ("9999-99-99 99:99", "is not a time"),
    ("2026-13-01T00:00:00Z", "is not a time"),
    ("-262143-01-01T00:00:00Z", "is not a time"),
];

#[test]
fn restore_to_any_time_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let cat = sqlite(dir.path());
    for (time, says) in BAD_TIMES {
        let to = format!("--to={time}");
        let quoted = format!("{time:?}");
        let args = [
            "--catalog",
            &cat,
            "restore",
            &to,
            "--tz",
            "America/New_York",
            "--dry-run",
        ];
        refused(&args, 2, &[&quoted, says]);
        refused(&[&args[..], &["-o", "json"]].concat(), 2, &[&quoted]);
    }
}

#[test]
fn any_zone_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let cat = sqlite(dir.path());
    for tz in [
        "",
        "Mars/Olympus",
        "UTC\n",
        "../../etc/passwd",
        "🙂",
        "utc+1",
    ] {
        let quoted = format!("{tz:?}");
        let tz = format!("--tz={tz}");
        for cmd in [
            &["restore", "--to", "2026-11-24 09:45", "--dry-run", &tz][..],
            &["report", "--since", "2026-11-24 09:45", &tz],
            &["incident", "open", "--title", "x", "--at", "1h ago", &tz],
        ] {
            let args = [&["--catalog", cat.as_str()][..], cmd].concat();
            refused(&args, 2, &[&quoted, "is not a time zone"]);
        }
    }
}

#[test]
fn report_and_incident_times_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let cat = sqlite(dir.path());
    for (time, says) in BAD_TIMES {
        let quoted = format!("{time:?}");
        let tz = "--tz=America/New_York";
        let since = format!("--since={time}");
        refused(
            &["--catalog", &cat, "report", &since, tz],
            2,
            &["--since", &quoted, says],
        );
        let until = format!("--until={time}");
        refused(
            &["--catalog", &cat, "report", &until, tz],
            2,
            &["--until", &quoted],
        );
        let at = format!("--at={time}");
        refused(
            &[
                "--catalog",
                &cat,
                "incident",
                "open",
                "--title",
                "x",
                &at,
                tz,
            ],
            2,
            &[&quoted],
        );
    }
    refused(
        &["--catalog", &cat, "report", "--since=now", "--until=1h ago"],
        2,
        &["is not before --until"],
    );
    for at in ["latest", "+262142-12-31 23:59:59", "2h"] {
        let flag = format!("--at={at}");
        refused(
            &["--catalog", &cat, "incident", "open", "--title", "x", &flag],
            2,
            &[&format!("{at:?}")],
        );
    }
    refused(
        &["--catalog", &cat, "incident", "open", "--title", " "],
        2,
        &["--title is empty"],
    );
}

#[test]
fn bad_flags_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let cat = sqlite(dir.path());
    let c = ["--catalog", cat.as_str()];
    for (args, names) in [
        (
            &["--output", "yaml", "status"][..],
            &["'yaml'", "--output"][..],
        ),
        (&["--output", "", "status"], &["--output"]),
        (
            &["--log", "dr=loud", "status"],
            &["\"dr=loud\"", "log filter"],
        ),
        (&["status", "--ticks", "0"], &["'0'", "--ticks"]),
        (&["status", "--ticks=-1"], &["'-1'", "--ticks"]),
        (
            &["status", "--ticks", "99999999999999999999"],
            &["'99999999999999999999'"],
        ),
        (
            &["status", "--policy", "Bad_Name"],
            &["\"Bad_Name\"", "policy name"],
        ),
        (&["catalog", "list", "--limit", "0"], &["'0'", "--limit"]),
        (
            &["catalog", "list", "--limit", "100001"],
            &["'100001'", "--limit"],
        ),
        (&["catalog", "show", "--", "-1"], &["\"-1\" is not an id"]),
        (
            &["catalog", "show", "99999999999999999999"],
            &["\"99999999999999999999\" is not an id"],
        ),
        (&["catalog", "show", "🙂"], &["\"🙂\" is not an id"]),
        (&["drill", "list", "--limit", "0"], &["'0'", "--limit"]),
        (&["drill", "show", "x"], &["'x'"]),
        (
            &["drill", "clean", "--ttl", "99999999999999999999d"],
            &["\"99999999999999999999d\" is not a duration dr can use"],
        ),
        (
            &["drill", "clean", "--ttl", "2 hours"],
            &["\"2 hours\" is not a duration"],
        ),
        (&["incident", "list", "--limit", "0"], &["'0'", "--limit"]),
        (&["incident", "resolve", "0"], &["\"0\""]),
        (&["incident", "resolve", "one"], &["\"one\""]),
        (&["report", "--format", "pdf"], &["'pdf'"]),
        (&["restore", "--to", "latest", "--policy", ""], &["\"\""]),
        (
            &["restore", "--to", "latest", "--namespace=-x-"],
            &["\"-x-\"", "namespace"],
        ),
        (
            &["serve", "--listen", "not an address"],
            &["not an address"],
        ),
        (
            &["runbook", "validate", "x.yaml", "--rto", "1e3"],
            &["\"1e3\""],
        ),
    ] {
        refused(&[&c[..], args].concat(), 2, names);
    }
}

#[test]
fn bad_catalogs_and_configs_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    for url in [
        "garbage",
        "",
        "mysql://dr:hunter2secret@db/dr",
        "sqlite:",
        "🙂",
    ] {
        let ran = run(&["--catalog", url, "status"]);
        assert_eq!(ran.code, 2, "{url}: {}", ran.stderr);
        assert!(
            ran.stderr.contains("is not a catalog URL"),
            "{}",
            ran.stderr
        );
        assert!(!ran.stderr.contains("hunter2secret"), "{}", ran.stderr);
    }
    let missing = format!("sqlite://{}/no/such/dir/x.db", dir.path().display());
    refused(&["--catalog", &missing, "status"], 1, &[&missing]);
    let missing = dir.path().join("missing.yaml");
    let missing = missing.to_str().unwrap();
    refused(&["--config", missing, "status"], 2, &[missing]);
    refused(&["config", "check", missing], 2, &[missing]);
    let as_dir = dir.path().to_str().unwrap();
    refused(&["--config", as_dir, "status"], 2, &[as_dir]);
    // A catalog URL in the file that is garbage.
    let f = dir.path().join("cat.yaml");
    std::fs::write(&f, "catalog: \"redis://x\"\n").unwrap();
    refused(
        &["config", "check", f.to_str().unwrap()],
        2,
        &["catalog", "\"redis://x\" is not a catalog URL"],
    );
}

const POLICY: &str = "policies:\n  - name: shop\n    namespace: shop\n";

/// Configuration values past every limit, the key each error must name, and
/// the value it must quote.
const BAD_CONFIGS: &[(&str, &str, &str)] = &[
    (
        "longhorn: {concurrency: 99999999999999999999}\n",
        "longhorn.concurrency",
        "99999999999999999999 is out of range",
    ),
    (
        "longhorn: {concurrency: -1}\n",
        "longhorn.concurrency",
        "-1 is out of range",
    ),
    (
        "longhorn: {concurrency: \"16\"}\n",
        "longhorn.concurrency",
        "\"16\" is not a whole number",
    ),
    ("longhorn: {timeout: 0s}\n", "longhorn.timeout", "\"0s\""),
    (
        "longhorn: {follow_interval: 0s}\n",
        "longhorn.follow_interval",
        "\"0s\"",
    ),
    (
        "longhorn: {timeout: 9999999999999999999999d}\n",
        "longhorn.timeout",
        "\"9999999999999999999999d\"",
    ),
    (
        "longhorn: {url: \"ftp://x\"}\n",
        "longhorn.url",
        "\"ftp://x\"",
    ),
    (
        "    rpo: 106751991167d7h12m55s808ms\n",
        "policies[0].rpo",
        "\"106751991167d7h12m55s808ms\" is not a duration dr can use",
    ),
    (
        "    rpo: 15\n",
        "policies[0].rpo",
        "\"15\" is not a duration",
    ),
    ("    rto: 0ms\n", "policies[0].rto", "\"0ms\""),
    (
        "    retain: {last: -1}\n",
        "policies[0].retain.last",
        "-1 is out of range",
    ),
    (
        "    retain: {monthly: 4294967296}\n",
        "policies[0].retain.monthly",
        "4294967296 is out of range",
    ),
    (
        "    retain: {daily: 1.5}\n",
        "policies[0].retain.daily",
        "1.5",
    ),
    (
        "    probe: {url: \"http://x/\", failures: 0}\n",
        "policies[0].probe.failures",
        "0 is out of range",
    ),
    (
        "    probe: {url: \"http://x/\", interval: 0s}\n",
        "policies[0].probe.interval",
        "\"0s\"",
    ),
    (
        "    drill: {schedule: \"0 0 0 30 2 *\"}\n",
        "policies[0].drill.schedule",
        "\"0 0 0 30 2 *\" never fires",
    ),
    (
        "    drill: {schedule: \"0 0 3 * * SUN\", ttl: 99999999999999999999999999d}\n",
        "policies[0].drill.ttl",
        "\"99999999999999999999999999d\"",
    ),
    (
        "    schedule: \"* * * * *\"\n",
        "policies[0].schedule",
        "\"* * * * *\" is not a cron schedule",
    ),
    (
        "    selector: \"a=b,\"\n",
        "policies[0].selector",
        "\"a=b,\"",
    ),
];

#[test]
fn configuration_values_past_every_limit_are_refused_by_key() {
    let dir = tempfile::tempdir().unwrap();
    let cat = sqlite(dir.path());
    let f = dir.path().join("dr.yaml");
    let file = f.to_str().unwrap();
    for (text, key, says) in BAD_CONFIGS {
        let text = if text.starts_with("    ") {
            format!("{POLICY}{text}")
        } else {
            format!("{text}{POLICY}")
        };
        std::fs::write(&f, &text).unwrap();
        refused(&["config", "check", file], 2, &[key, says]);
        refused(
            &["--catalog", &cat, "--config", file, "status"],
            2,
            &[key, says],
        );
    }
    for name in ["Shop", "ünï", "", &"a".repeat(41)] {
        std::fs::write(
            &f,
            format!("policies:\n  - name: {name:?}\n    namespace: shop\n"),
        )
        .unwrap();
        refused(
            &["config", "check", file],
            2,
            &["policies[0].name", &format!("{name:?}")],
        );
    }
}

/// Every limit reached but none passed: accepted, printed unchanged, and
/// every read-only command works with it.
const EXTREME_BUT_VALID: &str = "\
longhorn: {concurrency: 256, timeout: 106751991167d7h12m55s807ms}
policies:
  - name: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa
    namespace: shop
    schedule: \"0 0 0 29 2 *\"
    rpo: 106751991167d7h12m55s807ms
    rto: 1ms
    retain: {last: 4294967295, hourly: 0, daily: 4294967295, weekly: 0, monthly: 4294967295}
    drill: {schedule: \"59 59 23 31 12 *\", ttl: 106751991167d7h12m55s807ms}
    probe: {url: \"http://probe.invalid/\", interval: 1ms, failures: 4294967295, timeout: 106751991167d7h12m55s807ms}
";

#[test]
fn configuration_values_at_every_limit_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let cat = sqlite(dir.path());
    let f = dir.path().join("dr.yaml");
    std::fs::write(&f, EXTREME_BUT_VALID).unwrap();
    let file = f.to_str().unwrap();
    let printed = succeeded(&["config", "check", file]);
    for kept in [
        "rpo: 106751991167d7h12m55s807ms",
        "rto: 1ms",
        "last: 4294967295",
        "failures: 4294967295",
        "concurrency: 256",
        "schedule: 0 0 0 29 2 *",
    ] {
        assert!(printed.contains(kept), "{kept} not in:\n{printed}");
    }
    let c = ["--catalog", cat.as_str(), "--config", file];
    for cmd in [
        &["status"][..],
        &["-o", "json", "status"],
        &["report"],
        &[
            "report",
            "--since=-262143-01-01 00:00",
            "--until=+262142-12-31 23:59:59",
        ],
        &["-o", "json", "report", "--since", "90000000d ago"],
        &["report", "-f", "html", "--since", "90000000d ago"],
        &["report", "-f", "markdown", "--since=-262143-01-01 00:00"],
        &["catalog", "list"],
        &[
            "incident",
            "open",
            "--title",
            "long ago",
            "--at=-262143-01-01 00:00",
        ],
        &["incident", "list"],
        &["-o", "json", "incident", "list"],
        &["report", "--since=-262143-01-01 00:00"],
        &["prune", "--dry-run"],
    ] {
        succeeded(&[&c[..], cmd].concat());
    }
    // No point yet: refused, by name.
    refused(
        &[&c[..], &["restore", "--to=90000000d ago", "--dry-run"]].concat(),
        2,
        &["has no complete recovery point"],
    );
}

#[test]
fn runbooks_past_every_limit_are_refused_by_step() {
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("runbooks/standard.yaml"),
    )
    .unwrap();
    let f = dir.path().join("rb.yaml");
    let file = f.to_str().unwrap();
    std::fs::write(&f, &good).unwrap();
    for rto in ["0s", "99999999999999999999d", ""] {
        let flag = format!("--rto={rto}");
        refused(
            &["runbook", "validate", file, &flag],
            2,
            &[&format!("{rto:?}")],
        );
    }
    let first_budget = good
        .lines()
        .find(|l| l.trim_start().starts_with("budget:"))
        .unwrap()
        .to_owned();
    for (budget, says) in [
        (
            "budget: 106751991167d7h12m55s808ms",
            "is not a duration dr can use",
        ),
        ("budget: 0s", "\"0s\" must be more than zero"),
        ("budget: 15", "found 15"),
        ("budget: .nan", "NaN is not a number a runbook can use"),
        (
            "budget: 99999999999999999999999",
            "99999999999999999999999 is not a number",
        ),
    ] {
        let indent = &first_budget[..first_budget.len() - first_budget.trim_start().len()];
        std::fs::write(
            &f,
            good.replacen(&first_budget, &format!("{indent}{budget}"), 1),
        )
        .unwrap();
        refused(&["runbook", "validate", file], 2, &[says]);
    }
    // The longest budget everywhere: more than any RTO, refused, not a panic.
    let mut long = String::new();
    for l in good.lines() {
        if l.trim_start().starts_with("budget:") {
            let indent = &l[..l.len() - l.trim_start().len()];
            long.push_str(&format!("{indent}budget: 106751991167d7h12m55s807ms\n"));
        } else {
            long.push_str(l);
            long.push('\n');
        }
    }
    std::fs::write(&f, &long).unwrap();
    refused(
        &[
            "runbook",
            "validate",
            file,
            "--rto",
            "106751991167d7h12m55s807ms",
        ],
        2,
        &["more than any RTO"],
    );
    std::fs::write(&f, "\u{feff}\0🙂: [").unwrap();
    refused(&["runbook", "validate", file], 2, &[file]);
}

/// One complete point of policy `shop` at `at`, with one verified backup.
async fn point_at(catalog: &Catalog, at: DateTime<Utc>, n: u32) {
    let cfg = Config::parse(POLICY, "t").unwrap();
    let policy = &cfg.policies[0];
    let now = Utc::now().duration_trunc(TimeDelta::seconds(1)).unwrap();
    catalog.upsert_policy(&policy.into(), now).await.unwrap();
    let point = catalog.begin_point(&policy.name, at, at).await.unwrap();
    let b = catalog
        .record_backup(&NewBackup {
            point_id: point.id,
            volume: "pvc-0".parse().unwrap(),
            pvc: Some("data-0".into()),
            snapshot_name: format!("dr-shop-{n}"),
            requested_at: at,
        })
        .await
        .unwrap();
    for update in [
        BackupUpdate {
            state: Some(BackupState::BackingUp),
            snapshot_at: Some(at),
            backup_name: Some(format!("backup-{n:016x}")),
            ..Default::default()
        },
        BackupUpdate {
            state: Some(BackupState::Completed),
            size_bytes: Some(i64::MAX),
            ..Default::default()
        },
    ] {
        catalog.update_backup(b.id, &update).await.unwrap();
    }
    catalog
        .set_verification(b.id, Verification::Verified, at)
        .await
        .unwrap();
    catalog
        .finish_point(point.id, PointState::Complete, Some(at), None, at)
        .await
        .unwrap();
}

/// A catalog whose only point is at chrono's first instant: planning a
/// restore to a future time looked for the point "just before" it (a panic
/// of `DateTime - TimeDelta` before the checked subtraction).
#[tokio::test]
async fn a_point_at_the_first_instant_plans_and_refuses_without_panic() {
    let db = harness::sqlite().await;
    point_at(&db.catalog, DateTime::<Utc>::MIN_UTC, 0).await;
    let cat = db.url.clone();
    let c = ["--catalog", cat.as_str()];
    refused(
        &[
            &c[..],
            &["restore", "--to=+262142-12-31 23:59:59", "--dry-run"],
        ]
        .concat(),
        2,
        &["+262142-12-31T23:59:59Z", "in the future"],
    );
    refused(
        &[
            &c[..],
            &[
                "-o",
                "json",
                "restore",
                "--to=+262142-12-31 23:59:59",
                "--dry-run",
            ],
        ]
        .concat(),
        2,
        &["in the future"],
    );
    for to in ["latest", "1h ago", "-262143-01-01 00:00"] {
        let to = format!("--to={to}");
        succeeded(&[&c[..], &["restore", &to, "--dry-run"]].concat());
        succeeded(&[&c[..], &["-o", "json", "restore", &to, "--dry-run"]].concat());
    }
    for cmd in [
        &["status"][..],
        &["-o", "json", "status"],
        &["catalog", "list"],
        &["catalog", "show", "1"],
        &["report", "--since=-262143-01-01 00:00"],
        &[
            "-o",
            "json",
            "report",
            "--since=-262143-01-01 00:00",
            "--until=+262142-12-31 23:59:59",
        ],
        &["report", "-f", "html", "--since=-262143-01-01 00:00"],
        &["drill", "list"],
    ] {
        succeeded(&[&c[..], cmd].concat());
    }
    db.cleanup().await;
}

/// Points at both ends of the calendar and now: every plan and report.
#[tokio::test]
async fn points_across_the_whole_calendar_plan_and_report() {
    let db = harness::sqlite().await;
    let now = Utc::now().duration_trunc(TimeDelta::seconds(1)).unwrap();
    point_at(&db.catalog, DateTime::<Utc>::MIN_UTC, 0).await;
    point_at(&db.catalog, now - TimeDelta::minutes(10), 1).await;
    let cat = db.url.clone();
    let c = ["--catalog", cat.as_str()];
    for to in [
        "latest",
        "now",
        "1ms ago",
        "90000000d ago",
        "-262143-01-01 00:00",
        "-262143-01-01 00:00:01",
    ] {
        let to = format!("--to={to}");
        succeeded(&[&c[..], &["restore", &to, "--dry-run"]].concat());
    }
    refused(
        &[
            &c[..],
            &["restore", "--to=+262142-12-31 23:59:59", "--dry-run"],
        ]
        .concat(),
        2,
        &["in the future", "nearest candidates"],
    );
    succeeded(
        &[
            &c[..],
            &[
                "report",
                "--since=-262143-01-01 00:00",
                "--until=+262142-12-31 23:59:59",
            ],
        ]
        .concat(),
    );
    succeeded(&[&c[..], &["-o", "json", "status"]].concat());
    refused(
        &[&c[..], &["prune", "--dry-run"]].concat(),
        2,
        &["no policy is configured"],
    );
    db.cleanup().await;
}
