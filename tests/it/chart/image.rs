//! The image recipe, checked without building it (there is no container
//! engine on the test machine): the Containerfile's last stage runs only the
//! builder's binary as the user the Deployment runs as, with the version the
//! chart and the manifests name; the build context holds every file the
//! build reads, with a Cargo.lock `--locked` accepts.

use super::{container, env, find, render, repo};
use serde_json::Value;
use std::path::Path;
use std::process::Command;

/// A Containerfile's stages: each `FROM` line's words, then the stage's
/// instructions (continuation lines joined).
fn stages() -> Vec<(Vec<String>, Vec<String>)> {
    let text = std::fs::read_to_string(repo().join("Containerfile")).unwrap();
    let joined = text.replace("\\\n", " ");
    let mut out: Vec<(Vec<String>, Vec<String>)> = Vec::new();
    for line in joined.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let words: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
        if words[0].eq_ignore_ascii_case("FROM") {
            out.push((words, Vec::new()));
        } else {
            out.last_mut().expect("FROM first").1.push(line.to_owned());
        }
    }
    out
}

fn instruction<'a>(stage: &'a [String], name: &str) -> Vec<&'a str> {
    stage
        .iter()
        .filter(|l| l.split_whitespace().next() == Some(name))
        .map(|l| l[name.len()..].trim())
        .collect()
}

#[test]
fn the_image_runs_the_builders_binary_as_the_deployments_user() {
    let stages = stages();
    assert_eq!(stages.len(), 2, "a builder and a runtime stage");
    let (from, build) = &stages[0];
    assert_eq!(from.last().unwrap(), "builder", "{from:?}");
    let rust = from[1].split(':').nth(1).unwrap();
    let wanted = env!("CARGO_PKG_RUST_VERSION");
    assert!(
        rust.starts_with(wanted),
        "builder {rust}, rust-version {wanted}"
    );
    let run = instruction(build, "RUN").join(" ");
    assert!(run.contains("cargo build --release --locked"), "{run}");

    let (from, runtime) = &stages[1];
    assert!(
        from[1].contains("distroless") && from[1].ends_with(":nonroot"),
        "{from:?}"
    );
    let copies = instruction(runtime, "COPY");
    assert_eq!(
        copies,
        ["--from=builder /out/dr /usr/local/bin/dr"],
        "only the binary"
    );
    assert!(
        run.contains("/out/dr"),
        "the builder puts the binary where it is copied from"
    );
    assert_eq!(instruction(runtime, "USER"), ["65532:65532"]);
    assert_eq!(
        instruction(runtime, "ENTRYPOINT"),
        [r#"["/usr/local/bin/dr"]"#]
    );
    assert_eq!(instruction(runtime, "CMD"), [r#"["serve"]"#]);
    let version = format!("VERSION={}", env!("CARGO_PKG_VERSION"));
    assert_eq!(instruction(runtime, "ARG")[0], version);

    let objects = render("dr", "dr-system", &[]);
    let d = find(&objects, "Deployment", "dr");
    let pod = &d["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsUser"], 65532);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let c = container(d);
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    let image = format!("ghcr.io/example/dr:{}", env!("CARGO_PKG_VERSION"));
    assert_eq!(c["image"], image.as_str());
    assert_eq!(c["args"], serde_json::json!(["serve"]));
    assert_eq!(env(c, "DR_CONFIG")["value"], "/etc/dr/dr.yaml");
}

/// Whether a `.dockerignore` pattern matches a path (the subset of Docker's
/// rules the file uses: `*` within a component, `**` for any components).
fn ignored(pattern: &str, path: &str) -> bool {
    fn glob(p: &str, s: &str) -> bool {
        match p.split_once('*') {
            None => p == s,
            Some((pre, post)) => {
                s.starts_with(pre) && (pre.len()..=s.len()).any(|i| glob(post, &s[i..]))
            }
        }
    }
    fn parts(p: &[&str], s: &[&str]) -> bool {
        match (p.first(), s.first()) {
            (None, _) => true, // a matched directory excludes what is under it
            (Some(&"**"), _) => (0..=s.len()).any(|i| parts(&p[1..], &s[i..])),
            (Some(_), None) => false,
            (Some(a), Some(b)) => glob(a, b) && parts(&p[1..], &s[1..]),
        }
    }
    let p: Vec<&str> = pattern.split('/').collect();
    let s: Vec<&str> = path.split('/').collect();
    parts(&p, &s)
}

#[test]
fn the_ignore_rules_match_as_docker_reads_them() {
    assert!(ignored("target", "target/release/dr"));
    assert!(ignored("**/*.db", "dr.db"));
    assert!(ignored("**/*.db", "a/b/dr.db"));
    assert!(!ignored("**/*.db", "a/dr.db-x"));
    assert!(!ignored("target", "src/target.rs"));
}

/// The build context (the repository's files less what `.dockerignore`
/// leaves out) holds every tracked file, so the build sees what CI builds;
/// copied alone, it is a workspace whose Cargo.lock `cargo --locked` accepts
/// (CI's builds do not pass --locked: a stale lock would fail only here).
#[test]
fn the_build_context_is_the_repository_with_a_current_lock() {
    let rules: Vec<String> = std::fs::read_to_string(repo().join(".dockerignore"))
        .unwrap()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect();
    assert!(
        rules.iter().any(|r| r == "target"),
        "the build output stays out"
    );
    let out = Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(out.status.success());
    let files: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .split('\0')
        .filter(|f| !f.is_empty())
        .map(str::to_owned)
        .collect();
    let dir = tempfile::tempdir().unwrap();
    for f in &files {
        if let Some(r) = rules.iter().find(|r| ignored(r, f)) {
            panic!("{f} is in the repository but .dockerignore's {r:?} leaves it out");
        }
        copy_file(&repo().join(f), &dir.path().join(f));
    }
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--locked", "--offline", "--format-version", "1"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo metadata --locked in the build context: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).unwrap();
    let bins: Vec<&Value> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["name"] == "dr")
        .flat_map(|p| p["targets"].as_array().unwrap())
        .filter(|t| t["kind"][0] == "bin")
        .collect();
    assert_eq!(bins.len(), 1, "one dr binary: {bins:?}");
}

/// Copies a tracked file; a tracked link stays a link.
fn copy_file(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    match std::fs::read_link(from) {
        Ok(target) => std::os::unix::fs::symlink(target, to).unwrap(),
        Err(_) => drop(std::fs::copy(from, to).unwrap()),
    }
}
