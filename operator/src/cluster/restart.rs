//! Whether broker pods run the desired pod template, and why not. The builder
//! stamps a hash of the pod template (which includes a hash of the broker
//! ConfigMap, without the quorum's voters) into a template annotation; each
//! pod keeps the hash it was created from, so comparing hashes says which pods
//! are outdated without diffing fields the API server defaults. Which
//! outdated pod restarts when is the roll planner's decision (`roll`).

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, PodTemplateSpec};

use super::resources::config_map::{DYNAMIC_KEYS, VOTERS_KEY};

/// Pod template annotation: hash of the rest of the pod template.
pub const TEMPLATE_HASH_ANNOTATION: &str = "tideway.dev/pod-template-hash";
/// Pod template annotation: hash of the broker ConfigMap's data.
pub const CONFIG_HASH_ANNOTATION: &str = "tideway.dev/config-hash";

/// On the MessageCluster: a new value restarts every broker once (the value
/// goes into the pod template as [`TEMPLATE_RESTART_ANNOTATION`]). On a
/// broker pod: that broker restarts once (its replacement is created without it).
pub const RESTART_ANNOTATION: &str = "tideway.dev/restart";
/// Pod template annotation: the MessageCluster's last restart annotation value.
pub const TEMPLATE_RESTART_ANNOTATION: &str = "tideway.dev/cluster-restart";

/// FNV-1a, 64 bits: stable across Rust and operator versions (unlike
/// `DefaultHasher`), so upgrading the operator alone does not restart brokers.
fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// Hash of a ConfigMap's `data` (keys are sorted, so the order is stable),
/// without the voters (a broker reads them only on its first start, so a
/// new broker count must not make every pod outdated) and without the
/// settings the brokers take at runtime (`DYNAMIC_KEYS`).
pub fn hash_config_map(config_map: &ConfigMap) -> String {
    let mut text = String::new();
    for (key, value) in config_map.data.iter().flatten() {
        if key == VOTERS_KEY || DYNAMIC_KEYS.contains(&key.as_str()) {
            continue;
        }
        text.push_str(key);
        text.push('=');
        text.push_str(value);
        text.push('\n');
    }
    format!("{:016x}", fnv1a64(text.as_bytes()))
}

/// Hash of a pod template, ignoring any template hash already in it.
pub fn hash_pod_template(template: &PodTemplateSpec) -> Result<String, serde_json::Error> {
    let mut template = template.clone();
    if let Some(annotations) = template
        .metadata
        .as_mut()
        .and_then(|m| m.annotations.as_mut())
    {
        annotations.remove(TEMPLATE_HASH_ANNOTATION);
    }
    let json = serde_json::to_vec(&template)?;
    Ok(format!("{:016x}", fnv1a64(&json)))
}

/// Puts the template's own hash into its annotations.
pub fn stamp_template_hash(template: &mut PodTemplateSpec) -> Result<(), serde_json::Error> {
    let hash = hash_pod_template(template)?;
    template
        .metadata
        .get_or_insert_with(Default::default)
        .annotations
        .get_or_insert_with(Default::default)
        .insert(TEMPLATE_HASH_ANNOTATION.to_owned(), hash);
    Ok(())
}

/// The template hash a StatefulSet's pod template carries.
pub fn stateful_set_template_hash(sts: &StatefulSet) -> Option<&str> {
    sts.spec
        .as_ref()?
        .template
        .metadata
        .as_ref()?
        .annotations
        .as_ref()?
        .get(TEMPLATE_HASH_ANNOTATION)
        .map(String::as_str)
}

/// The template hash a pod was created from.
pub fn pod_template_hash(pod: &Pod) -> Option<&str> {
    pod.metadata
        .annotations
        .as_ref()?
        .get(TEMPLATE_HASH_ANNOTATION)
        .map(String::as_str)
}

/// Whether the live StatefulSet's pod template differs from the desired one
/// (so the StatefulSet must be updated). A live template without a hash counts as different.
pub fn template_changed(desired: &StatefulSet, live: &StatefulSet) -> bool {
    stateful_set_template_hash(desired) != stateful_set_template_hash(live)
        || stateful_set_template_hash(live).is_none()
}

/// Whether a broker pod runs an older template than the desired StatefulSet
/// (so it must be restarted to pick up the change). A pod without a hash counts as outdated.
pub fn needs_restart(desired: &StatefulSet, pod: &Pod) -> bool {
    match (stateful_set_template_hash(desired), pod_template_hash(pod)) {
        (Some(want), Some(have)) => want != have,
        _ => true,
    }
}

/// Why a pod restarts, as the reason of the Event the operator records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestartCause {
    ImageChanged,
    ConfigChanged,
    ManualRestart,
    TemplateChanged,
    /// An outdated pod that does not start (or is not Ready) is replaced first.
    PodStuck,
}

impl RestartCause {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ImageChanged => "ImageChanged",
            Self::ConfigChanged => "ConfigChanged",
            Self::ManualRestart => "ManualRestart",
            Self::TemplateChanged => "TemplateChanged",
            Self::PodStuck => "PodStuck",
        }
    }
}

/// Whether a broker pod carries the restart annotation itself.
pub fn restart_requested(pod: &Pod) -> bool {
    pod.metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(RESTART_ANNOTATION))
}

/// Why `pod` must go, compared with the desired StatefulSet; first match of:
/// its own restart annotation; a different image; a different broker config
/// hash; a different restart annotation in the template; anything else.
pub fn restart_cause(desired: &StatefulSet, pod: &Pod) -> RestartCause {
    if restart_requested(pod) {
        return RestartCause::ManualRestart;
    }
    let template = desired.spec.as_ref().map(|s| &s.template);
    let want_annotation = |key: &str| {
        template
            .and_then(|t| t.metadata.as_ref())
            .and_then(|m| m.annotations.as_ref())
            .and_then(|a| a.get(key))
    };
    let have_annotation = |key: &str| pod.metadata.annotations.as_ref().and_then(|a| a.get(key));
    let image = |spec: Option<&k8s_openapi::api::core::v1::PodSpec>| {
        spec.and_then(|s| s.containers.first())
            .and_then(|c| c.image.clone())
    };
    if image(template.and_then(|t| t.spec.as_ref())) != image(pod.spec.as_ref()) {
        RestartCause::ImageChanged
    } else if want_annotation(CONFIG_HASH_ANNOTATION) != have_annotation(CONFIG_HASH_ANNOTATION) {
        RestartCause::ConfigChanged
    } else if want_annotation(TEMPLATE_RESTART_ANNOTATION)
        != have_annotation(TEMPLATE_RESTART_ANNOTATION)
    {
        RestartCause::ManualRestart
    } else {
        RestartCause::TemplateChanged
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;
    use crate::cluster::resources::build_cluster_resources;
    use crate::cluster::resources::tests::{demo_cluster, validated};
    use crate::settings::BuildSettings;

    fn desired(cluster: &crate::crd::MessageCluster) -> StatefulSet {
        build_cluster_resources(&validated(cluster, &BuildSettings::default()))
            .expect("build")
            .stateful_set
    }

    /// The demo cluster's StatefulSet with another controlled-shutdown timeout.
    fn desired_with_shutdown_timeout(seconds: i64) -> StatefulSet {
        let settings = BuildSettings {
            controlled_shutdown_timeout_seconds: seconds,
            ..BuildSettings::default()
        };
        build_cluster_resources(&validated(&demo_cluster(), &settings))
            .expect("build")
            .stateful_set
    }

    fn pod_from(sts: &StatefulSet) -> Pod {
        let annotations = sts
            .spec
            .as_ref()
            .and_then(|s| s.template.metadata.as_ref())
            .and_then(|m| m.annotations.clone());
        Pod {
            metadata: ObjectMeta {
                annotations,
                ..ObjectMeta::default()
            },
            ..Pod::default()
        }
    }

    #[test]
    fn hashes_are_stable_and_pinned() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(desired(&demo_cluster()), desired(&demo_cluster()));
    }

    #[test]
    fn unchanged_spec_needs_no_restart() {
        let sts = desired(&demo_cluster());
        assert!(!template_changed(&sts, &sts.clone()));
        assert!(!needs_restart(&sts, &pod_from(&sts)));
    }

    #[test]
    fn image_change_marks_pods_outdated() {
        let old = desired(&demo_cluster());
        let mut cluster = demo_cluster();
        cluster.spec.image = Some("tideway-broker:0.2.0".into());
        let new = desired(&cluster);
        assert!(template_changed(&new, &old));
        assert!(needs_restart(&new, &pod_from(&old)));
        assert!(!needs_restart(&new, &pod_from(&new)));
    }

    #[test]
    fn broker_defaults_are_applied_at_runtime_and_restart_nothing() {
        let old = desired(&demo_cluster());
        let mut cluster = demo_cluster();
        cluster.spec.config.retention_ms = Some(1000);
        cluster.spec.config.default_partitions = Some(12);
        cluster.spec.config.min_in_sync_replicas = Some(1);
        cluster.spec.config.auto_create_topics = Some(false);
        cluster.spec.log_level = Some("debug".into());
        assert!(!needs_restart(&desired(&cluster), &pod_from(&old)));
    }

    #[test]
    fn the_controlled_shutdown_timeout_needs_a_restart() {
        let old = desired(&demo_cluster());
        let new = desired_with_shutdown_timeout(90);
        assert!(needs_restart(&new, &pod_from(&old)));
    }

    #[test]
    fn scaling_changes_no_pod_template() {
        // TIDEWAY_VOTERS lists every broker but is read only on a broker's first
        // start: a new broker count must not roll the others (issue 14).
        let old = desired(&demo_cluster());
        let mut cluster = demo_cluster();
        cluster.spec.brokers = 5;
        let new = desired(&cluster);
        assert!(!template_changed(&new, &old));
        assert!(!needs_restart(&new, &pod_from(&old)));
    }

    #[test]
    fn the_cause_of_a_restart_is_named() {
        let old = desired(&demo_cluster());
        let with_pod = |sts: &StatefulSet| {
            let mut pod = pod_from(sts);
            pod.spec = sts.spec.as_ref().and_then(|s| s.template.spec.clone());
            pod
        };
        let mut cluster = demo_cluster();
        cluster.spec.image = Some("tideway-broker:0.2.0".into());
        assert_eq!(
            restart_cause(&desired(&cluster), &with_pod(&old)),
            RestartCause::ImageChanged
        );
        // A broker setting that needs a restart: the controlled-shutdown timeout.
        let new = desired_with_shutdown_timeout(90);
        assert_eq!(
            restart_cause(&new, &with_pod(&old)),
            RestartCause::ConfigChanged
        );
        let mut cluster = demo_cluster();
        cluster
            .metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(RESTART_ANNOTATION.into(), "1".into());
        let new = desired(&cluster);
        assert!(needs_restart(&new, &with_pod(&old)));
        // The cluster-wide value in the template is not a pod's own restart request.
        assert!(!restart_requested(&with_pod(&new)));
        assert_eq!(
            restart_cause(&new, &with_pod(&old)),
            RestartCause::ManualRestart
        );
        let mut cluster = demo_cluster();
        cluster.spec.template = Some(crate::crd::PodTemplateOverrides {
            annotations: Some([("team".to_owned(), "x".to_owned())].into()),
            ..Default::default()
        });
        assert_eq!(
            restart_cause(&desired(&cluster), &with_pod(&old)),
            RestartCause::TemplateChanged
        );
        // The pod's own annotation names it whatever else changed.
        let mut pod = with_pod(&old);
        pod.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(RESTART_ANNOTATION.into(), "now".into());
        assert!(restart_requested(&pod));
        assert_eq!(restart_cause(&old, &pod), RestartCause::ManualRestart);
    }

    #[test]
    fn missing_hash_counts_as_outdated() {
        let sts = desired(&demo_cluster());
        assert!(needs_restart(&sts, &Pod::default()));
        assert!(template_changed(&sts, &StatefulSet::default()));
    }
}
