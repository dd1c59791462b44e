//! The `longhorn-emulator` binary: prints where it listens, serves, stops on SIGTERM.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn binary_listens_and_stops_on_sigterm() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_longhorn-emulator"))
        .args(["--listen", "127.0.0.1:0", "--timings", "realistic"])
        .env_remove("DR_TESTBED_ENV")
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting longhorn-emulator");
    let stderr = child.stderr.take().expect("stderr");
    let mut addr = None;
    for line in BufReader::new(stderr).lines() {
        let line = line.expect("reading stderr");
        if let Some(a) = line.strip_prefix("listening on ") {
            addr = Some(a.trim().to_owned());
            break;
        }
    }
    let addr = addr.expect("no `listening on` line");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let t: serde_json::Value = reqwest::get(format!("{addr}/v1/backuptargets/default"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(t["available"], false);
        let timings =
            longhorn_emulator::Control::new(url::Url::parse(&format!("{addr}/")).unwrap())
                .timings()
                .await
                .unwrap();
        assert_eq!(timings, longhorn_emulator::Timings::realistic());
    });
    let pid = child.id().to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "exit status {status}");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "still running 10 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
