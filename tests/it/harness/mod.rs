//! The one harness of the integration tests: the test bed (`testbed`: its env
//! file, clients, namespaces, databases), a protected application on it with
//! the Longhorn emulator (`app`), and fresh catalogs on SQLite or the bed's
//! PostgreSQL (`catalog`). A missing service panics naming
//! `tests/testbed/up`: no test skips. The benches include it too.
#![allow(dead_code)] // the benches use a part of it

pub mod app;
pub mod catalog;
pub mod testbed;
