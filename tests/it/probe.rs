//! `dr serve`'s application probe: failures beyond the threshold open an
//! incident (source `probe`) dated at the first failure; recovery resolves
//! it. The application is a real HTTP server whose health the test toggles.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use crate::harness::testbed;
use dr::catalog::{Catalog, IncidentSource};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A tiny HTTP server answering 200 while `healthy`, else 503.
async fn app(healthy: Arc<AtomicBool>) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let ok = healthy.load(Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = sock.read(&mut buf).await;
                let resp = if ok {
                    "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
                } else {
                    "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 4\r\nconnection: close\r\n\r\ndown"
                };
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_probe_opens_an_incident_and_recovery_resolves_it() {
    let tb = testbed::get();
    let healthy = Arc::new(AtomicBool::new(true));
    let addr = app(healthy.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    // The probe runs only on the replica that leads the policy: its Lease
    // lives in this test's own namespace.
    let kube = tb.kube_client().await;
    let ns = testbed::TestNamespace::create(&kube, "dr-probe").await;
    let config = dir.path().join("dr.yaml");
    std::fs::write(
        &config,
        format!(
            "longhorn: {{url: \"http://127.0.0.1:9\", timeout: 1s}}\npolicies:\n  - name: shop\n    namespace: shop\n    schedule: \"0 0 0 1 1 *\"\n    probe: {{url: \"http://{addr}/healthz\", interval: 200ms, failures: 3, timeout: 1s}}\n"
        ),
    )
    .unwrap();
    let url = format!("sqlite://{}/c.db", dir.path().display());
    let mut serve = Command::new(env!("CARGO_BIN_EXE_dr"))
        .arg("--config")
        .arg(&config)
        .args(["--catalog", &url, "serve", "--listen", "127.0.0.1:0"])
        .env("KUBECONFIG", tb.kubeconfig())
        .env("DR_LEASE_NAMESPACE", &ns.name)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let catalog = Catalog::open(&url.parse().unwrap()).await.unwrap();
    let policy: dr::names::PolicyName = "shop".parse().unwrap();

    // Healthy for a while: no incident.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        catalog
            .list_incidents(None, false, 10)
            .await
            .unwrap()
            .is_empty()
    );

    healthy.store(false, Ordering::SeqCst);
    let down_at = chrono::Utc::now();
    let start = Instant::now();
    let incident = loop {
        let open = catalog
            .list_incidents(Some(&policy), true, 10)
            .await
            .unwrap();
        if let Some(i) = open.first() {
            break i.clone();
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no incident opened"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(incident.source, IncidentSource::Probe);
    assert!(incident.title.contains("503"), "{}", incident.title);
    // Dated at the first failure, not at the threshold.
    let lag = incident.opened_at - down_at;
    assert!(
        lag >= chrono::TimeDelta::zero() && lag < chrono::TimeDelta::milliseconds(600),
        "opened at {} for a failure starting {down_at}",
        incident.opened_at
    );

    healthy.store(true, Ordering::SeqCst);
    let start = Instant::now();
    loop {
        let i = catalog.incident(incident.id).await.unwrap();
        if let Some(r) = i.resolved_at {
            assert!(r > incident.opened_at);
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "never resolved");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        catalog.list_incidents(None, false, 10).await.unwrap().len(),
        1,
        "one outage, one incident"
    );
    let _ = Command::new("kill")
        .args(["-TERM", &serve.id().to_string()])
        .status();
    serve.wait().unwrap();
}
