//! dr's integration tests: one test binary (one link of aws-sdk, kube and
//! sqlx instead of one per suite), one module per area, and one harness for
//! the test bed and the Longhorn emulator (`harness`). Run one area with e.g.
//! `cargo test --test it catalog::`.

mod harness;

mod catalog;
mod catalog_open;
mod chart;
mod cli;
mod disaster;
mod drill;
mod longhorn_contract;
mod longhorn_field;
mod longhorn_k8s;
mod longhorn_lifecycle;
mod manifests;
mod monitoring;
mod no_panic;
mod probe;
mod protect;
mod rbac;
mod rbac_restore;
mod replicas;
mod report;
mod restore;
mod serve_crash;
mod serve_kill;
mod testbed_k8s;
mod testbed_pg;
mod testbed_s3;
