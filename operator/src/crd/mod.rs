//! Custom resource types (one file per kind, plus conditions) and their
//! rendering as CustomResourceDefinition YAML for `tideway-operator crd`,
//! crds/ and the Helm chart. The reconcilers that act on them live elsewhere.

pub mod conditions;
pub mod consumer_autoscaler;
pub mod message_cluster;
pub mod mirror_policy;
pub mod topic;

#[cfg(test)]
mod cel_tests;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

pub use consumer_autoscaler::{
    ConsumerAutoscaler, ConsumerAutoscalerSpec, ConsumerAutoscalerStatus,
};
pub use message_cluster::{
    BrokerConfig, BrokerStatus, ClaimPolicy, MessageCluster, MessageClusterSpec,
    MessageClusterStatus, PodTemplateOverrides, RackSpec, RolloutPhase, RolloutStatus, StorageSpec,
};
pub use mirror_policy::{MirrorPolicy, MirrorPolicySpec, MirrorPolicyStatus};
pub use topic::{ClusterRef, DeletionPolicy, Topic, TopicSpec, TopicStatus};

/// API group of every Tideway kind.
pub const GROUP: &str = "tideway.dev";

/// Failed to render a CRD as YAML.
#[derive(Debug, thiserror::Error)]
pub enum RenderCrdError {
    #[error("serializing CRD {name} to YAML")]
    SerializeYaml {
        name: String,
        #[source]
        source: serde_yaml_ng::Error,
    },
}

/// Every CRD the operator owns, in a stable order.
pub fn all_crds() -> Vec<CustomResourceDefinition> {
    vec![
        MessageCluster::crd(),
        Topic::crd(),
        ConsumerAutoscaler::crd(),
        MirrorPolicy::crd(),
    ]
}

/// The file a CRD is committed as under crds/: `<plural>.<group>.yaml`.
pub fn crd_file_name(crd: &CustomResourceDefinition) -> String {
    format!("{}.yaml", crd.metadata.name.as_deref().unwrap_or("unnamed"))
}

/// One CRD as a YAML document (no leading `---`).
pub fn render_crd_yaml(crd: &CustomResourceDefinition) -> Result<String, RenderCrdError> {
    serde_yaml_ng::to_string(crd).map_err(|source| RenderCrdError::SerializeYaml {
        name: crd.metadata.name.clone().unwrap_or_default(),
        source,
    })
}

/// Every CRD as `(file name, YAML)`, as committed under crds/ and the chart.
pub fn render_crd_files() -> Result<Vec<(String, String)>, RenderCrdError> {
    all_crds()
        .iter()
        .map(|crd| Ok((crd_file_name(crd), render_crd_yaml(crd)?)))
        .collect()
}

/// Every CRD as one multi-document YAML stream, as `tideway-operator crd` prints it.
pub fn render_all_crds_yaml() -> Result<String, RenderCrdError> {
    let mut out = String::new();
    for crd in all_crds() {
        out.push_str("---\n");
        out.push_str(&render_crd_yaml(&crd)?);
    }
    Ok(out)
}
