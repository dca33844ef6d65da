//! Tideway broker library: the Kafka wire protocol server, the partition log,
//! topic metadata and the HTTP health/metrics endpoint. `main.rs` only parses
//! the command line and calls [`run`].
pub mod log;
