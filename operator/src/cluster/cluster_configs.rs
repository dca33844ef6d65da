//! Broker settings applied at runtime: `spec.config` becomes the brokers'
//! cluster-wide dynamic configs (admin AlterClusterConfigs, kept in the
//! metadata quorum) and `spec.logLevel` each broker's log filter (admin
//! SetLogFilter), so changing them restarts no broker. What the brokers
//! should hold is built in `resources::config_map::build_cluster_configs`;
//! this module compares it with what they hold and writes the difference.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::Pod;
use kube::Resource;
use kube::ResourceExt;
use kube::runtime::events::EventType;
use tideway_admin_api::v1::{
    AlterClusterConfigsRequest, DescribeClusterRequest, SetLogFilterRequest,
};

use super::resources::config_map::{MOVE_THROTTLE_CONFIG, build_cluster_configs};
use super::validate::ValidatedCluster;
use crate::admin::{admin_addresses, connect_admin, connect_ready_admin, pod_is_ready};
use crate::context::Context;
use crate::crd::MessageCluster;

/// Pure: the entries of `desired` that `current` lacks or holds with another
/// value, and the optional ones the operator manages (the move throttle)
/// that `current` holds but `desired` no longer has. Other entries only
/// `current` has are left alone: a person may have set them.
pub fn plan_cluster_configs(
    desired: &BTreeMap<String, String>,
    current: &HashMap<String, String>,
) -> (BTreeMap<String, String>, Vec<String>) {
    let set = desired
        .iter()
        .filter(|(k, v)| current.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let delete = [MOVE_THROTTLE_CONFIG]
        .into_iter()
        .filter(|k| current.contains_key(*k) && !desired.contains_key(*k))
        .map(str::to_owned)
        .collect();
    (set, delete)
}

/// Best effort, every reconcile: asks a ready broker for the cluster configs
/// and sets those that differ, with an Event naming them. A broker that
/// cannot be asked (none ready yet, an older image without the call) is
/// retried on the next reconcile.
pub async fn apply_cluster_configs(
    ctx: &Context,
    cluster: &MessageCluster,
    validated: &ValidatedCluster,
    pods: &[Pod],
) {
    let Some(mut admin) = connect_ready_admin(validated, pods).await else {
        return;
    };
    let Ok(described) = admin.describe_cluster(DescribeClusterRequest {}).await else {
        return;
    };
    let (set, delete) = plan_cluster_configs(
        &build_cluster_configs(validated),
        &described.into_inner().cluster_configs,
    );
    if set.is_empty() && delete.is_empty() {
        return;
    }
    let note = set
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .chain(delete.iter().map(|k| format!("{k} removed")))
        .collect::<Vec<_>>()
        .join(", ");
    let request = AlterClusterConfigsRequest {
        set_configs: set.into_iter().collect(),
        delete_configs: delete,
    };
    match admin.alter_cluster_configs(request).await {
        Ok(_) => {
            tracing::info!(cluster = %validated.name, %note, "broker defaults applied at runtime");
            ctx.publish_event(
                &cluster.object_ref(&()),
                EventType::Normal,
                "ConfigApplied",
                format!("applied to the running brokers, no restart: {note}"),
                "AlterClusterConfigs",
            )
            .await;
        }
        Err(status) => {
            tracing::warn!(cluster = %validated.name, error = %status, "AlterClusterConfigs failed")
        }
    }
}

/// Best effort, every reconcile: sets `spec.logLevel` on every Ready broker
/// (admin SetLogFilter; a no-op where it is already in force), with one
/// Event when any broker changed.
pub async fn apply_log_filter(
    ctx: &Context,
    cluster: &MessageCluster,
    validated: &ValidatedCluster,
    pods: &[Pod],
) {
    let mut changed = Vec::new();
    for pod in pods.iter().filter(|p| pod_is_ready(p)) {
        let addresses = admin_addresses(validated, std::slice::from_ref(pod));
        let Ok(mut admin) = connect_admin(validated, &addresses).await else {
            continue;
        };
        let request = SetLogFilterRequest {
            filter: validated.log_level.clone(),
        };
        match admin.set_log_filter(request).await {
            Ok(r) if r.get_ref().changed => changed.push(pod.name_any()),
            Ok(_) => {}
            Err(status) => {
                tracing::warn!(cluster = %validated.name, pod = %pod.name_any(), error = %status, "SetLogFilter failed")
            }
        }
    }
    if !changed.is_empty() {
        ctx.publish_event(
            &cluster.object_ref(&()),
            EventType::Normal,
            "LogLevelApplied",
            format!(
                "log filter {:?} set on {} with no restart",
                validated.log_level,
                changed.join(", ")
            ),
            "SetLogFilter",
        )
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_missing_or_different_entries_are_set() {
        let desired = BTreeMap::from([
            ("num.partitions".to_string(), "6".to_string()),
            ("log.retention.ms".to_string(), "1000".to_string()),
        ]);
        let current = HashMap::from([
            ("num.partitions".to_string(), "6".to_string()),
            ("log.retention.ms".to_string(), "2000".to_string()),
            ("other".to_string(), "x".to_string()),
        ]);
        let (set, delete) = plan_cluster_configs(&desired, &current);
        assert_eq!(
            set,
            BTreeMap::from([("log.retention.ms".to_string(), "1000".to_string())])
        );
        assert!(delete.is_empty());
        let (set, delete) = plan_cluster_configs(&desired, &desired.clone().into_iter().collect());
        assert!(set.is_empty() && delete.is_empty());
        // The move throttle, no longer in the spec, is removed from the brokers.
        let mut current: HashMap<String, String> = desired.clone().into_iter().collect();
        current.insert(MOVE_THROTTLE_CONFIG.into(), "1000".into());
        let (set, delete) = plan_cluster_configs(&desired, &current);
        assert!(set.is_empty());
        assert_eq!(delete, [MOVE_THROTTLE_CONFIG]);
    }
}
