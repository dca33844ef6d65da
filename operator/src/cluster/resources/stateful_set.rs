//! The brokers' StatefulSet: one pod and one PersistentVolumeClaim per broker.
//! Pods start in parallel (the quorum needs them together) and are replaced
//! only when the operator deletes them (`OnDelete`), so the rollout planner,
//! not the StatefulSet controller, decides which broker restarts when.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
    StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapEnvSource, ConfigMapVolumeSource, Container, ContainerPort,
    EmptyDirVolumeSource, EnvFromSource, EnvVar, EnvVarSource, HTTPGetAction, ObjectFieldSelector,
    PersistentVolumeClaim, PersistentVolumeClaimSpec, PodSecurityContext, PodSpec, PodTemplateSpec,
    Probe, SeccompProfile, SecurityContext, TopologySpreadConstraint, Volume, VolumeMount,
    VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::config_map::RACKS_DIR;
use super::{
    ADMIN_PORT, BuildResourcesError, DATA_DIR, HTTP_PORT, KAFKA_PORT, labels, owned_meta,
    selector_labels,
};
use crate::cluster::restart::{
    CONFIG_HASH_ANNOTATION, TEMPLATE_RESTART_ANNOTATION, hash_config_map, stamp_template_hash,
};
use crate::cluster::validate::ValidatedCluster;
use crate::crd::ClaimPolicy;
use crate::settings::AdvertiseMode;

/// Name of the broker container.
pub const BROKER_CONTAINER: &str = "broker";
/// Name of the data volume claim template (PVCs are `data-<pod>`).
pub const DATA_VOLUME: &str = "data";
/// Label the StatefulSet controller (Kubernetes ≥ 1.28) puts on each pod: its ordinal.
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";
/// UID and GID of the broker image's user.
const BROKER_UID: i64 = 65532;

/// Builds the StatefulSet `<cluster>`; `config_map` is the one built for the
/// same cluster, whose content hash goes into the pod template so a settings
/// change marks every pod outdated.
pub fn build_stateful_set(
    cluster: &ValidatedCluster,
    config_map: &ConfigMap,
) -> Result<StatefulSet, BuildResourcesError> {
    let mut template = build_pod_template(cluster, &hash_config_map(config_map));
    stamp_template_hash(&mut template).map_err(|source| BuildResourcesError::HashPodTemplate {
        namespace: cluster.namespace.clone(),
        name: cluster.name.clone(),
        source,
    })?;
    Ok(StatefulSet {
        metadata: owned_meta(cluster, cluster.stateful_set_name()),
        spec: Some(StatefulSetSpec {
            replicas: Some(cluster.brokers),
            service_name: Some(cluster.headless_service_name()),
            selector: LabelSelector {
                match_labels: Some(selector_labels(cluster)),
                ..LabelSelector::default()
            },
            pod_management_policy: Some("Parallel".to_owned()),
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("OnDelete".to_owned()),
                ..StatefulSetUpdateStrategy::default()
            }),
            // Data outlives pods and the cluster: PVCs are deleted only after a
            // scale-down, and only when `spec.claimsOnScaleDown` says Delete.
            persistent_volume_claim_retention_policy: Some(
                StatefulSetPersistentVolumeClaimRetentionPolicy {
                    when_deleted: Some("Retain".to_owned()),
                    when_scaled: Some(
                        match cluster.claims_on_scale_down {
                            ClaimPolicy::Retain => "Retain",
                            ClaimPolicy::Delete => "Delete",
                        }
                        .to_owned(),
                    ),
                },
            ),
            volume_claim_templates: Some(vec![build_volume_claim_template(cluster)]),
            template,
            ..StatefulSetSpec::default()
        }),
        ..StatefulSet::default()
    })
}

fn build_volume_claim_template(cluster: &ValidatedCluster) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(DATA_VOLUME.to_owned()),
            labels: Some(labels(cluster)),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".to_owned()]),
            storage_class_name: cluster.storage.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_owned(),
                    cluster.storage.size.clone(),
                )])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    }
}

/// The pod template without its template hash (added by the caller).
fn build_pod_template(cluster: &ValidatedCluster, config_hash: &str) -> PodTemplateSpec {
    let overrides = &cluster.template;
    // User annotations first; the operator's own keys win on conflict.
    let mut annotations = overrides.annotations.clone().unwrap_or_default();
    annotations.insert(CONFIG_HASH_ANNOTATION.to_owned(), config_hash.to_owned());
    match &cluster.restart_nonce {
        Some(nonce) => annotations.insert(TEMPLATE_RESTART_ANNOTATION.to_owned(), nonce.clone()),
        None => annotations.remove(TEMPLATE_RESTART_ANNOTATION),
    };

    // Rack awareness spreads brokers over the topology key. ScheduleAnyway keeps
    // single-zone clusters schedulable. Each broker reads its --rack from its
    // node's entry in the `<cluster>-racks` map (`build_rack_config_map`).
    let topology_spread_constraints = cluster.rack.as_ref().map(|rack| {
        vec![TopologySpreadConstraint {
            max_skew: 1,
            topology_key: rack.topology_key.clone(),
            when_unsatisfiable: "ScheduleAnyway".to_owned(),
            label_selector: Some(LabelSelector {
                match_labels: Some(selector_labels(cluster)),
                ..LabelSelector::default()
            }),
            ..TopologySpreadConstraint::default()
        }]
    });

    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels(cluster)),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            service_account_name: Some(cluster.service_account_name()),
            automount_service_account_token: Some(false),
            // Service links would inject `<SERVICE>_PORT`-style variables, which can
            // collide with the broker's TIDEWAY_* flags (a Service named `tideway`).
            enable_service_links: Some(false),
            termination_grace_period_seconds: Some(cluster.termination_grace_period_seconds),
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                run_as_user: Some(BROKER_UID),
                run_as_group: Some(BROKER_UID),
                fs_group: Some(BROKER_UID),
                fs_group_change_policy: Some("OnRootMismatch".to_owned()),
                seccomp_profile: Some(SeccompProfile {
                    type_: "RuntimeDefault".to_owned(),
                    ..SeccompProfile::default()
                }),
                ..PodSecurityContext::default()
            }),
            affinity: overrides.affinity.clone(),
            tolerations: overrides.tolerations.clone(),
            node_selector: overrides.node_selector.clone(),
            topology_spread_constraints,
            containers: vec![build_broker_container(cluster)],
            volumes: Some(build_volumes(cluster)),
            ..PodSpec::default()
        }),
    }
}

fn build_broker_container(cluster: &ValidatedCluster) -> Container {
    let http_get = |path: &str| HTTPGetAction {
        path: Some(path.to_owned()),
        port: IntOrString::String("http".to_owned()),
        ..HTTPGetAction::default()
    };
    let container_port = |name: &str, port: i32| ContainerPort {
        name: Some(name.to_owned()),
        container_port: port,
        protocol: Some("TCP".to_owned()),
        ..ContainerPort::default()
    };
    Container {
        name: BROKER_CONTAINER.to_owned(),
        image: Some(cluster.image.clone()),
        image_pull_policy: Some("IfNotPresent".to_owned()),
        ports: Some(vec![
            container_port("kafka", KAFKA_PORT),
            container_port("admin", ADMIN_PORT),
            container_port("http", HTTP_PORT),
        ]),
        env_from: Some(vec![EnvFromSource {
            config_map_ref: Some(ConfigMapEnvSource {
                name: cluster.config_map_name(),
                optional: Some(false),
            }),
            ..EnvFromSource::default()
        }]),
        env: Some(build_broker_env(cluster)),
        resources: cluster.resources.clone(),
        volume_mounts: Some(build_volume_mounts(cluster)),
        // Log recovery after an unclean stop can take minutes: liveness starts only
        // once the process serves HTTP, for at most 10 minutes of start-up.
        startup_probe: Some(Probe {
            http_get: Some(http_get("/livez")),
            period_seconds: Some(5),
            failure_threshold: Some(120),
            ..Probe::default()
        }),
        liveness_probe: Some(Probe {
            http_get: Some(http_get("/livez")),
            period_seconds: Some(10),
            timeout_seconds: Some(5),
            failure_threshold: Some(6),
            ..Probe::default()
        }),
        readiness_probe: Some(Probe {
            http_get: Some(http_get("/readyz")),
            period_seconds: Some(5),
            timeout_seconds: Some(3),
            failure_threshold: Some(3),
            ..Probe::default()
        }),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_owned()]),
                ..Capabilities::default()
            }),
            ..SecurityContext::default()
        }),
        ..Container::default()
    }
}

/// Name of the volume holding the node → rack map.
const RACKS_VOLUME: &str = "racks";

fn build_volumes(cluster: &ValidatedCluster) -> Vec<Volume> {
    let mut volumes = vec![Volume {
        name: "tmp".to_owned(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Volume::default()
    }];
    if cluster.rack.is_some() {
        volumes.push(Volume {
            name: RACKS_VOLUME.to_owned(),
            config_map: Some(ConfigMapVolumeSource {
                name: cluster.rack_config_map_name(),
                optional: Some(false),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        });
    }
    volumes
}

fn build_volume_mounts(cluster: &ValidatedCluster) -> Vec<VolumeMount> {
    let mount = |name: &str, path: &str, read_only: bool| VolumeMount {
        name: name.to_owned(),
        mount_path: path.to_owned(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    };
    let mut mounts = vec![
        mount(DATA_VOLUME, DATA_DIR, false),
        mount("tmp", "/tmp", false),
    ];
    if cluster.rack.is_some() {
        mounts.push(mount(RACKS_VOLUME, RACKS_DIR, true));
    }
    mounts
}

/// Per-pod environment: node id from the pod ordinal and the advertised
/// address, both through the downward API (no shell in the image); with
/// `spec.rack`, the rack file of the pod's node.
fn build_broker_env(cluster: &ValidatedCluster) -> Vec<EnvVar> {
    let field = |name: &str, path: &str| EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.to_owned(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    };
    let value = |name: &str, value: String| EnvVar {
        name: name.to_owned(),
        value: Some(value),
        ..EnvVar::default()
    };
    let mut env = vec![
        field(
            "TIDEWAY_NODE_ID",
            &format!("metadata.labels['{POD_INDEX_LABEL}']"),
        ),
        field("POD_NAME", "metadata.name"),
    ];
    if cluster.rack.is_some() {
        env.push(field("NODE_NAME", "spec.nodeName"));
        env.push(value(
            "TIDEWAY_RACK_FILE",
            format!("{RACKS_DIR}/$(NODE_NAME)"),
        ));
    }
    // `$(VAR)` refers to a variable defined earlier in this list.
    match cluster.advertise {
        AdvertiseMode::PodDns => env.push(value(
            "TIDEWAY_ADVERTISED_ADDRESS",
            format!(
                "$(POD_NAME).{}.{}.svc:{KAFKA_PORT}",
                cluster.headless_service_name(),
                cluster.namespace
            ),
        )),
        AdvertiseMode::PodIp => {
            env.push(field("POD_IP", "status.podIP"));
            env.push(value(
                "TIDEWAY_ADVERTISED_ADDRESS",
                format!("$(POD_IP):{KAFKA_PORT}"),
            ));
        }
    }
    env
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{Affinity, NodeAffinity, ResourceRequirements, Toleration};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    use super::*;
    use crate::cluster::resources::config_map::build_config_map;
    use crate::cluster::resources::tests::{demo_cluster, validated};
    use crate::cluster::restart::TEMPLATE_HASH_ANNOTATION;
    use crate::crd::{PodTemplateOverrides, RackSpec};
    use crate::settings::BuildSettings;

    fn build(cluster: &crate::crd::MessageCluster, settings: &BuildSettings) -> StatefulSet {
        let c = validated(cluster, settings);
        build_stateful_set(&c, &build_config_map(&c)).expect("build")
    }

    fn pod_spec(sts: &StatefulSet) -> &PodSpec {
        sts.spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .expect("pod spec")
    }

    fn env_of(sts: &StatefulSet) -> BTreeMap<String, EnvVar> {
        pod_spec(sts).containers[0]
            .env
            .clone()
            .expect("env")
            .into_iter()
            .map(|e| (e.name.clone(), e))
            .collect()
    }

    #[test]
    fn shape_of_the_stateful_set() {
        let mut cluster = demo_cluster();
        cluster.spec.storage.size = Quantity("10Gi".into());
        cluster.spec.storage.storage_class_name = Some("standard".into());
        let sts = build(&cluster, &BuildSettings::default());
        let spec = sts.spec.as_ref().expect("spec");
        assert_eq!(spec.replicas, Some(3));
        assert_eq!(spec.service_name.as_deref(), Some("demo-brokers"));
        assert_eq!(spec.pod_management_policy.as_deref(), Some("Parallel"));
        assert_eq!(
            spec.update_strategy
                .as_ref()
                .and_then(|u| u.type_.as_deref()),
            Some("OnDelete")
        );
        let pvc = &spec.volume_claim_templates.as_ref().expect("claims")[0];
        let pvc_spec = pvc.spec.as_ref().expect("pvc spec");
        assert_eq!(pvc_spec.storage_class_name.as_deref(), Some("standard"));
        assert_eq!(
            pvc_spec
                .resources
                .as_ref()
                .and_then(|r| r.requests.as_ref())
                .expect("requests")["storage"]
                .0,
            "10Gi"
        );
        let pod = pod_spec(&sts);
        // controlled shutdown (30 s) plus the margin
        assert_eq!(pod.termination_grace_period_seconds, Some(60));
        assert_eq!(pod.service_account_name.as_deref(), Some("demo-broker"));
        let container = &pod.containers[0];
        assert_eq!(container.image.as_deref(), Some("tideway-broker:0.1.0"));
        let ports: Vec<_> = container
            .ports
            .as_ref()
            .expect("ports")
            .iter()
            .map(|p| (p.name.clone(), p.container_port))
            .collect();
        assert_eq!(
            ports,
            vec![
                (Some("kafka".into()), 9092),
                (Some("admin".into()), 9093),
                (Some("http".into()), 9644)
            ]
        );
        let probe_path = |p: &Option<Probe>| {
            p.as_ref()
                .and_then(|p| p.http_get.as_ref())
                .and_then(|h| h.path.clone())
        };
        assert_eq!(
            probe_path(&container.readiness_probe).as_deref(),
            Some("/readyz")
        );
        assert_eq!(
            probe_path(&container.liveness_probe).as_deref(),
            Some("/livez")
        );
        assert_eq!(
            container.env_from.as_ref().expect("envFrom")[0]
                .config_map_ref
                .as_ref()
                .expect("cm")
                .name,
            "demo-config"
        );
        let annotations = sts
            .spec
            .as_ref()
            .and_then(|s| s.template.metadata.as_ref())
            .and_then(|m| m.annotations.clone());
        let annotations = annotations.expect("annotations");
        assert!(annotations.contains_key(TEMPLATE_HASH_ANNOTATION));
        assert!(annotations.contains_key(CONFIG_HASH_ANNOTATION));
    }

    #[test]
    fn env_advertises_pod_dns_or_pod_ip() {
        let dns = env_of(&build(&demo_cluster(), &BuildSettings::default()));
        assert_eq!(
            dns["TIDEWAY_NODE_ID"]
                .value_from
                .as_ref()
                .and_then(|v| v.field_ref.as_ref())
                .map(|f| f.field_path.as_str()),
            Some("metadata.labels['apps.kubernetes.io/pod-index']")
        );
        assert_eq!(
            dns["TIDEWAY_ADVERTISED_ADDRESS"].value.as_deref(),
            Some("$(POD_NAME).demo-brokers.ns.svc:9092")
        );
        assert!(!dns.contains_key("POD_IP"));

        let settings = BuildSettings {
            advertise: AdvertiseMode::PodIp,
            ..BuildSettings::default()
        };
        let ip = env_of(&build(&demo_cluster(), &settings));
        assert_eq!(
            ip["TIDEWAY_ADVERTISED_ADDRESS"].value.as_deref(),
            Some("$(POD_IP):9092")
        );
        assert_eq!(
            ip["POD_IP"]
                .value_from
                .as_ref()
                .and_then(|v| v.field_ref.as_ref())
                .map(|f| f.field_path.as_str()),
            Some("status.podIP")
        );
    }

    #[test]
    fn overrides_resources_and_rack_are_merged() {
        let mut cluster = demo_cluster();
        cluster.spec.image = Some("registry.local/broker:dev".into());
        cluster.spec.resources = Some(ResourceRequirements {
            limits: Some(BTreeMap::from([(
                "memory".to_owned(),
                Quantity("1Gi".into()),
            )])),
            ..ResourceRequirements::default()
        });
        cluster.spec.rack = Some(RackSpec {
            topology_key: "topology.kubernetes.io/zone".into(),
        });
        cluster.spec.template = Some(PodTemplateOverrides {
            affinity: Some(Affinity {
                node_affinity: Some(NodeAffinity::default()),
                ..Affinity::default()
            }),
            tolerations: Some(vec![Toleration {
                key: Some("dedicated".into()),
                ..Toleration::default()
            }]),
            node_selector: Some(BTreeMap::from([("disk".to_owned(), "ssd".to_owned())])),
            annotations: Some(BTreeMap::from([
                ("team".to_owned(), "data".to_owned()),
                (CONFIG_HASH_ANNOTATION.to_owned(), "user-value".to_owned()),
            ])),
        });
        let settings = BuildSettings {
            controlled_shutdown_timeout_seconds: 10,
            ..BuildSettings::default()
        };
        let sts = build(&cluster, &settings);
        let pod = pod_spec(&sts);
        assert_eq!(pod.termination_grace_period_seconds, Some(40));
        assert!(
            pod.affinity
                .as_ref()
                .and_then(|a| a.node_affinity.as_ref())
                .is_some()
        );
        assert_eq!(
            pod.tolerations.as_ref().expect("tolerations")[0]
                .key
                .as_deref(),
            Some("dedicated")
        );
        assert_eq!(
            pod.node_selector.as_ref().expect("nodeSelector")["disk"],
            "ssd"
        );
        let spread = &pod.topology_spread_constraints.as_ref().expect("spread")[0];
        assert_eq!(spread.topology_key, "topology.kubernetes.io/zone");
        // The broker reads its rack from its node's entry of the racks map.
        let env = env_of(&sts);
        assert_eq!(
            env["TIDEWAY_RACK_FILE"].value.as_deref(),
            Some("/etc/tideway/racks/$(NODE_NAME)")
        );
        assert!(env.contains_key("NODE_NAME"));
        let racks = pod
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == "racks")
            .and_then(|v| v.config_map.as_ref())
            .expect("racks volume");
        assert_eq!(racks.name, "demo-racks");
        let container = &pod.containers[0];
        assert_eq!(
            container.image.as_deref(),
            Some("registry.local/broker:dev")
        );
        assert!(
            container
                .resources
                .as_ref()
                .and_then(|r| r.limits.as_ref())
                .is_some()
        );
        let annotations = sts
            .spec
            .as_ref()
            .and_then(|s| s.template.metadata.clone())
            .and_then(|m| m.annotations)
            .expect("annotations");
        assert_eq!(annotations["team"], "data");
        assert_ne!(annotations[CONFIG_HASH_ANNOTATION], "user-value");
    }
}
