//! A real Prometheus (Debian's `prometheus` package) for the monitoring
//! tests: its own free port and data directory, 1 s scrapes and rule
//! evaluations, dr's rules file; killed on drop. And `dr serve` as a child
//! process killed on drop, so a failed assertion leaves nothing running.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const INSTALL: &str = "install it: apt-get install prometheus (or run tests/testbed/up)";

/// The path of `tool` (`prometheus`, `promtool`) on PATH; panics saying how
/// to install it.
pub fn tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} is not on PATH: {INSTALL}"))
}

/// A loopback port free right now (bound, read, released).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A child process killed (SIGKILL) and reaped on drop.
pub struct Guarded(pub Child);

impl Drop for Guarded {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `cmd` with its stderr copied to the test's, each line prefixed.
pub fn spawn_logged(mut cmd: Command, prefix: &'static str) -> Guarded {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {prefix}: {e}"));
    let err = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            eprintln!("[{prefix}] {line}");
        }
    });
    Guarded(child)
}

/// A running Prometheus scraping one target as job `dr`.
pub struct Prometheus {
    pub url: String,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
    _child: Guarded,
}

impl Prometheus {
    /// Starts Prometheus scraping `target` (host:port) every second and
    /// evaluating `rules` every second; returns when it is ready.
    pub async fn start(target: &str, rules: &Path) -> Prometheus {
        let bin = tool("prometheus");
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global: {{scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}}\nrule_files: [{:?}]\nscrape_configs:\n  - job_name: dr\n    static_configs: [{{targets: [{target:?}]}}]\n",
                rules.display().to_string()
            ),
        )
        .unwrap();
        let port = free_port();
        let mut cmd = Command::new(bin);
        cmd.arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn");
        let child = spawn_logged(cmd, "prometheus");
        let p = Prometheus {
            url: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
            _dir: dir,
            _child: child,
        };
        p.wait_ready().await;
        p
    }

    async fn wait_ready(&self) {
        let start = Instant::now();
        loop {
            let ready = self
                .http
                .get(format!("{}/-/ready", self.url))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "Prometheus at {} not ready after 30 s (its log is above)",
                self.url
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `GET /api/v1/<path>` with `params`: the answer's `data`.
    async fn api(&self, path: &str, params: &[(&str, &str)]) -> Value {
        let url = reqwest::Url::parse_with_params(&format!("{}/api/v1/{path}", self.url), params)
            .unwrap();
        let resp = self.http.get(url).send().await.unwrap();
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["status"], "success", "{path} {params:?}: {body}");
        body["data"].clone()
    }

    /// The instant query's result vector (or scalar) now.
    pub async fn query(&self, expr: &str) -> Vec<Value> {
        let data = self.api("query", &[("query", expr)]).await;
        match data["resultType"].as_str() {
            Some("vector") | Some("matrix") => data["result"].as_array().unwrap().clone(),
            _ => vec![data["result"].clone()],
        }
    }

    /// The active (pending or firing) alerts.
    pub async fn alerts(&self) -> Vec<Value> {
        self.api("alerts", &[]).await["alerts"]
            .as_array()
            .unwrap()
            .clone()
    }

    /// The state of the alerting rule `name` as /api/v1/rules reports it
    /// (`inactive`, `pending`, `firing`), and its last evaluation error.
    pub async fn rule(&self, name: &str) -> (String, Option<String>) {
        let data = self.api("rules", &[("type", "alert")]).await;
        for g in data["groups"].as_array().unwrap() {
            for r in g["rules"].as_array().unwrap() {
                if r["name"] == name {
                    let err = r["lastError"].as_str().filter(|e| !e.is_empty());
                    return (
                        r["state"].as_str().unwrap().to_owned(),
                        err.map(str::to_owned),
                    );
                }
            }
        }
        panic!("Prometheus has no alerting rule {name}: {data}");
    }
}
