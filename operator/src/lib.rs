//! tideway-operator: the Kubernetes operator of Tideway. It owns the custom
//! resource types (`crd`), the pure model of a broker cluster's Kubernetes
//! resources (`cluster`) and the operator's settings (`settings`). The broker
//! itself is reached only through the admin gRPC API (tideway-admin-api).

pub mod cluster;
pub mod crd;
pub mod settings;
