//! The broker pods' ServiceAccount. Brokers never call the Kubernetes API, so
//! no token is mounted and no role is bound; the account exists so that
//! policies (PSA, network, cloud IAM) can name the brokers.

use k8s_openapi::api::core::v1::ServiceAccount;

use super::owned_meta;
use crate::cluster::validate::ValidatedCluster;

/// Builds `<cluster>-broker` with token automount off.
pub fn build_service_account(cluster: &ValidatedCluster) -> ServiceAccount {
    ServiceAccount {
        metadata: owned_meta(cluster, cluster.service_account_name()),
        automount_service_account_token: Some(false),
        ..ServiceAccount::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::resources::tests::{demo_cluster, validated};
    use crate::settings::BuildSettings;

    #[test]
    fn no_token() {
        let sa = build_service_account(&validated(&demo_cluster(), &BuildSettings::default()));
        assert_eq!(sa.metadata.name.as_deref(), Some("demo-broker"));
        assert_eq!(sa.automount_service_account_token, Some(false));
    }
}
