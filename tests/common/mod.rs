pub mod app;
pub mod testbed;
