//! tideway-operator: the Kubernetes operator of Tideway. It owns the custom
//! resource types (`crd`), the MessageCluster pipeline (`cluster`: pure
//! validate/build plus the reconciler), the Topic pipeline (`topic`), consumer autoscaling on lag
//! (`autoscaler`), mirror policies handed to the brokers (`mirror_policy`;
//! `cluster_ref` is what the kinds naming a cluster share), the
//! process around them (`run`: HTTP endpoint, CRD check, leader election in
//! `leader`, metrics) and the operator's settings. The broker itself is reached
//! only through the admin gRPC API (tideway-admin-api, see `admin`).

pub mod admin;
pub mod autoscaler;
pub mod cluster;
pub mod cluster_ref;
pub mod context;
pub mod crd;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod mirror_policy;
pub mod run;
pub mod settings;
pub mod topic;
