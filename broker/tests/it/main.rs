//! The broker's integration tests: real brokers on loopback ports, spoken to
//! as clients do (the Kafka wire protocol, the admin gRPC API).

mod admin;
mod cluster;
mod wire;
