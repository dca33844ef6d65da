//! The Helm chart: `helm lint --strict` passes, and every document `helm
//! template` renders is a valid Kubernetes object of its kind: it deserializes
//! into the k8s-openapi type and serializes back unchanged, so a misspelt or
//! misplaced field (which k8s-openapi would drop) fails the test. The CRDs in
//! the chart must equal the Rust types, the RBAC must stay least-privilege,
//! and every TIDEWAY_* variable the Deployment sets must be a `run` flag.
//!
//! Needs helm: `$TIDEWAY_HELM`, `helm` on PATH, or ~/.cache/tideway/k8s-*/bin/helm.
//! Without one the tests print a notice and pass, unless TIDEWAY_REQUIRE_HELM=1.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use clap::{CommandFactory, Parser};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tideway_operator::crd::all_crds;
use tideway_operator::settings::RunArgs;

/// Kubernetes version the chart is rendered for (the local test cluster's).
const KUBE_VERSION: &str = "1.36.0";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("operator/ has a parent")
        .to_path_buf()
}

fn chart_dir() -> PathBuf {
    repo_root().join("charts/tideway-operator")
}

fn find_helm() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("TIDEWAY_HELM") {
        return Some(PathBuf::from(path));
    }
    if Command::new("helm")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return Some(PathBuf::from("helm"));
    }
    let cache = PathBuf::from(std::env::var_os("HOME")?).join(".cache/tideway");
    let mut found: Vec<PathBuf> = std::fs::read_dir(cache)
        .ok()?
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.file_name().to_string_lossy().starts_with("k8s-"))
        .map(|entry| entry.path().join("bin/helm"))
        .filter(|path| path.is_file())
        .collect();
    found.sort();
    found.pop()
}

/// The helm binary, or `None` (after a notice) when the test should be skipped.
fn helm() -> Option<PathBuf> {
    let helm = find_helm();
    if helm.is_none() {
        assert!(
            std::env::var_os("TIDEWAY_REQUIRE_HELM").is_none(),
            "TIDEWAY_REQUIRE_HELM is set but no helm was found"
        );
        eprintln!(
            "NOTICE: helm not found ($TIDEWAY_HELM, PATH, ~/.cache/tideway/k8s-*/bin/helm): chart checks skipped"
        );
    }
    helm
}

fn template(helm: &Path, args: &[&str]) -> Result<String, String> {
    let output = Command::new(helm)
        .args([
            "template",
            "tideway",
            "--namespace",
            "tideway-system",
            "--kube-version",
            KUBE_VERSION,
        ])
        .arg(chart_dir())
        .args(args)
        .output()
        .map_err(|err| format!("running helm: {err}"))?;
    if output.status.success() {
        String::from_utf8(output.stdout).map_err(|err| err.to_string())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

fn documents(yaml: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(yaml)
        .map(|doc| Value::deserialize(doc).expect("helm output is YAML"))
        .filter(|doc| !doc.is_null())
        .collect()
}

/// Drops nulls (typed objects omit them) and makes every number a float
/// (k8s-openapi writes `1000.0` where YAML said `1000`), recursively.
fn normalize(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, normalize(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(normalize).collect()),
        Value::Number(n) => n
            .as_f64()
            .and_then(serde_json::Number::from_f64)
            .map_or(Value::Number(n), Value::Number),
        other => other,
    }
}

/// Deserializes `doc` into `T` and checks that nothing was lost on the way back.
fn strict<T: DeserializeOwned + Serialize>(doc: &Value) -> Result<T, String> {
    let typed: T = serde_path_to_error::deserialize(doc.clone())
        .map_err(|err| format!("at {}: {err}", err.path()))?;
    let back = serde_json::to_value(&typed).map_err(|err| err.to_string())?;
    let (want, have) = (normalize(doc.clone()), normalize(back));
    if want != have {
        return Err(format!(
            "fields lost or changed by the typed round trip (unknown or misplaced fields?)\n{}",
            first_difference(&want, &have, "")
        ));
    }
    Ok(typed)
}

fn first_difference(want: &Value, have: &Value, path: &str) -> String {
    match (want, have) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                match b.get(k) {
                    None => return format!("{path}.{k} is not a field of the type"),
                    Some(w) if w != v => return first_difference(v, w, &format!("{path}.{k}")),
                    _ => {}
                }
            }
            format!("{path}: the type added fields")
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => a
            .iter()
            .zip(b)
            .enumerate()
            .find(|(_, (x, y))| x != y)
            .map(|(i, (x, y))| first_difference(x, y, &format!("{path}[{i}]")))
            .unwrap_or_default(),
        _ => format!("{path}: rendered {want} but the type gives {have}"),
    }
}

/// Every object of one rendering, checked against its type.
#[derive(Default)]
struct Rendered {
    crds: Vec<CustomResourceDefinition>,
    cluster_roles: Vec<ClusterRole>,
    roles: Vec<Role>,
    bindings: usize,
    deployments: Vec<Deployment>,
    service_accounts: usize,
}

fn validate_rendering(yaml: &str) -> Rendered {
    let mut out = Rendered::default();
    let mut errors = Vec::new();
    for doc in documents(yaml) {
        let api_version = doc["apiVersion"].as_str().unwrap_or_default().to_owned();
        let kind = doc["kind"].as_str().unwrap_or_default().to_owned();
        let name = doc["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let result = match (api_version.as_str(), kind.as_str()) {
            ("apiextensions.k8s.io/v1", "CustomResourceDefinition") => {
                strict(&doc).map(|o| out.crds.push(o))
            }
            ("rbac.authorization.k8s.io/v1", "ClusterRole") => {
                strict(&doc).map(|o| out.cluster_roles.push(o))
            }
            ("rbac.authorization.k8s.io/v1", "Role") => strict(&doc).map(|o| out.roles.push(o)),
            ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => {
                strict::<ClusterRoleBinding>(&doc).map(|_| out.bindings += 1)
            }
            ("rbac.authorization.k8s.io/v1", "RoleBinding") => {
                strict::<RoleBinding>(&doc).map(|_| out.bindings += 1)
            }
            ("apps/v1", "Deployment") => strict(&doc).map(|o| out.deployments.push(o)),
            ("v1", "ServiceAccount") => {
                strict::<ServiceAccount>(&doc).map(|_| out.service_accounts += 1)
            }
            _ => Err("unexpected kind: add it to this test".to_owned()),
        };
        if let Err(err) = result {
            errors.push(format!("{api_version} {kind} {name}: {err}"));
        }
    }
    assert!(
        errors.is_empty(),
        "invalid objects in helm template output:\n{}",
        errors.join("\n")
    );
    out
}

#[test]
fn strict_check_catches_unknown_and_misplaced_fields() {
    let good = serde_json::json!({
        "apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": "a", "labels": {"x": "y"}}, "automountServiceAccountToken": false
    });
    strict::<ServiceAccount>(&good).expect("valid");
    let mut misspelt = good.clone();
    misspelt["automountServiceAcountToken"] = Value::Bool(false);
    let err = strict::<ServiceAccount>(&misspelt).expect_err("unknown field");
    assert!(err.contains("automountServiceAcountToken"), "{err}");
    let mut misplaced = good.clone();
    misplaced["metadata"]["replicas"] = Value::from(1);
    assert!(strict::<ServiceAccount>(&misplaced).is_err());
    let mut wrong_type = good;
    wrong_type["automountServiceAccountToken"] = Value::from("no");
    let err = strict::<ServiceAccount>(&wrong_type).expect_err("wrong type");
    assert!(err.contains("automountServiceAccountToken"), "{err}");
}

#[test]
fn helm_lint_passes() {
    let Some(helm) = helm() else { return };
    for extra in [
        &[][..],
        &[
            "--set",
            "watchNamespaces={team-a,team-b}",
            "--set",
            "crds.install=false",
        ][..],
    ] {
        let output = Command::new(&helm)
            .args(["lint", "--strict", "--kube-version", KUBE_VERSION])
            .arg(chart_dir())
            .args(extra)
            .output()
            .expect("run helm lint");
        assert!(
            output.status.success(),
            "helm lint {extra:?} failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn default_rendering_is_valid_and_carries_the_crds() {
    let Some(helm) = helm() else { return };
    let out = validate_rendering(&template(&helm, &[]).expect("helm template"));
    assert_eq!(
        (
            out.deployments.len(),
            out.service_accounts,
            out.cluster_roles.len()
        ),
        (1, 1, 2),
        "one Deployment, one ServiceAccount, the ClusterRole and the nodes ClusterRole"
    );
    assert_eq!(out.roles.len(), 1, "the leader-election Role");
    assert_eq!(out.bindings, 3);

    // The chart's CRDs are the Rust types, plus Helm's labels and keep annotation.
    let mut want: Vec<Value> = all_crds()
        .iter()
        .map(|c| normalize(serde_json::to_value(c).expect("json")))
        .collect();
    let mut have: Vec<Value> = Vec::new();
    for crd in &out.crds {
        let annotations = crd.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(
            annotations
                .get("helm.sh/resource-policy")
                .map(String::as_str),
            Some("keep")
        );
        let mut crd = crd.clone();
        crd.metadata.annotations = None;
        crd.metadata.labels = None;
        have.push(normalize(serde_json::to_value(&crd).expect("json")));
    }
    want.sort_by_key(|v| v["metadata"]["name"].to_string());
    have.sort_by_key(|v| v["metadata"]["name"].to_string());
    assert!(
        want == have,
        "the chart's CRDs differ from the Rust types: regenerate them (see tests/crds.rs)"
    );
}

#[test]
fn namespaced_rendering_uses_roles_and_can_skip_crds() {
    let Some(helm) = helm() else { return };
    let yaml = template(
        &helm,
        &[
            "--set",
            "watchNamespaces={team-a,team-b}",
            "--set",
            "crds.install=false",
            "--set",
            "leaderElection.enabled=false",
        ],
    )
    .expect("helm template");
    let out = validate_rendering(&yaml);
    assert!(out.crds.is_empty());
    // Only the nodes ClusterRole (nodes are cluster-scoped): read-only, nodes only.
    assert_eq!(out.cluster_roles.len(), 1);
    for rule in out.cluster_roles[0].rules.iter().flatten() {
        assert_eq!(rule.resources.as_deref(), Some(&["nodes".to_owned()][..]));
        assert_eq!(rule.verbs, ["get", "list"]);
    }
    let namespaces: BTreeSet<_> = out
        .roles
        .iter()
        .filter_map(|r| r.metadata.namespace.clone())
        .collect();
    assert_eq!(
        namespaces,
        BTreeSet::from(["team-a".to_owned(), "team-b".to_owned()])
    );
    assert_eq!(
        out.bindings, 3,
        "a RoleBinding per namespace and the nodes binding"
    );
    let env = out.deployments[0]
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("pod spec")
        .containers[0]
        .env
        .clone()
        .unwrap_or_default();
    let watch = env
        .iter()
        .find(|e| e.name == "TIDEWAY_WATCH_NAMESPACES")
        .and_then(|e| e.value.clone());
    assert_eq!(watch.as_deref(), Some("team-a,team-b"));
}

#[test]
fn bad_values_are_refused() {
    let Some(helm) = helm() else { return };
    let err = template(
        &helm,
        &[
            "--set",
            "replicas=2",
            "--set",
            "leaderElection.enabled=false",
        ],
    )
    .expect_err("refused");
    assert!(err.contains("leaderElection"), "{err}");
    let err = template(&helm, &["--set", "leaderElction.enabled=true"])
        .expect_err("typo refused by values.schema.json");
    assert!(err.contains("leaderElction"), "{err}");
}

#[test]
fn rbac_is_least_privilege() {
    let Some(helm) = helm() else { return };
    let out = validate_rendering(&template(&helm, &[]).expect("helm template"));
    let rules: Vec<PolicyRule> = out
        .cluster_roles
        .iter()
        .flat_map(|r| r.rules.clone().unwrap_or_default())
        .collect();
    let mut granted = BTreeSet::new();
    for rule in &rules {
        for group in rule.api_groups.iter().flatten() {
            for resource in rule.resources.iter().flatten() {
                for verb in &rule.verbs {
                    assert!(
                        group != "*" && resource != "*" && verb != "*",
                        "wildcard in {rule:?}"
                    );
                    granted.insert(format!("{group}/{resource}:{verb}"));
                }
            }
        }
    }
    for needed in [
        "tideway.dev/messageclusters:watch",
        "tideway.dev/topics:patch",
        "tideway.dev/messageclusters/status:patch",
        "tideway.dev/topics/finalizers:update",
        "apps/statefulsets:patch",
        "/pods:delete",
        "/services:create",
        "/configmaps:patch",
        "/serviceaccounts:create",
        "/persistentvolumeclaims:list",
        "policy/poddisruptionbudgets:patch",
        "events.k8s.io/events:create",
        "/nodes:list",
        "tideway.dev/consumerautoscalers:watch",
        "tideway.dev/consumerautoscalers/status:patch",
        "tideway.dev/mirrorpolicies:watch",
        "tideway.dev/mirrorpolicies:patch",
        "tideway.dev/mirrorpolicies/status:patch",
        "tideway.dev/mirrorpolicies/finalizers:update",
        "apps/deployments/scale:patch",
        "apps/statefulsets/scale:get",
        "autoscaling/horizontalpodautoscalers:list",
    ] {
        assert!(granted.contains(needed), "missing {needed}");
    }
    for forbidden in [
        "/secrets:get",
        "/persistentvolumeclaims:delete",
        "apps/statefulsets:delete",
        "/pods:create",
        "/nodes:patch",
    ] {
        assert!(
            !granted.contains(forbidden),
            "{forbidden} should not be granted"
        );
    }
    // Leases only in the release namespace.
    assert!(
        !granted
            .iter()
            .any(|g| g.starts_with("coordination.k8s.io/"))
    );
    let lease_role = out.roles.iter().find(|r| {
        r.metadata
            .name
            .as_deref()
            .is_some_and(|n| n.ends_with("-leader-election"))
    });
    assert_eq!(
        lease_role.and_then(|r| r.metadata.namespace.as_deref()),
        Some("tideway-system")
    );
}

#[test]
fn deployment_env_names_are_run_flags() {
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        run: RunArgs,
    }
    let Some(helm) = helm() else { return };
    let flags: BTreeSet<String> = Cli::command()
        .get_arguments()
        .filter_map(|a| a.get_env())
        .map(|e| e.to_string_lossy().into_owned())
        .collect();
    let out = validate_rendering(&template(&helm, &[]).expect("helm template"));
    let container = &out.deployments[0]
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("pod spec")
        .containers[0];
    assert_eq!(container.args.as_deref(), Some(&["run".to_owned()][..]));
    for env in container
        .env
        .iter()
        .flatten()
        .filter(|e| e.name.starts_with("TIDEWAY_"))
    {
        assert!(
            flags.contains(&env.name),
            "{} is set by the chart but is no `run` flag",
            env.name
        );
    }
}
