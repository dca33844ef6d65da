//! The controllers against a real kube-apiserver (no nodes, so no pods run):
//! starts etcd and kube-apiserver from ~/.cache/tideway/k8s-*/bin (or
//! $TIDEWAY_K8S_BIN) on free ports, installs the CRDs, runs the controllers
//! in-process and checks what they write. Prints a notice and passes when the
//! binaries or openssl are absent (tests/run.sh builds the binaries first).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config, ResourceExt};
use serde_json::json;
use tideway_operator::context::Context;
use tideway_operator::crd::{MessageCluster, MirrorPolicy, Topic, all_crds};
use tideway_operator::metrics::Metrics;
use tideway_operator::settings::{BuildSettings, OperatorSettings};

/// Generous: etcd, kube-apiserver and the controllers share a loaded 2-core machine (issue 13).
const DEADLINE: Duration = Duration::from_secs(60);

fn k8s_bin() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("TIDEWAY_K8S_BIN") {
        return Some(PathBuf::from(dir));
    }
    let cache = std::env::var_os("TIDEWAY_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/tideway")))?;
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(cache)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("k8s-"))
        })
        .map(|p| p.join("bin"))
        .collect();
    dirs.sort();
    dirs.pop()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// etcd + kube-apiserver, killed on drop.
struct ApiServer {
    children: Vec<Child>,
    dir: tempfile::TempDir,
    kubeconfig: PathBuf,
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        for child in self.children.iter_mut().rev() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn openssl(dir: &Path, args: &[&str]) -> bool {
    Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn start_apiserver() -> Option<ApiServer> {
    let Some(bin) =
        k8s_bin().filter(|b| b.join("etcd").exists() && b.join("kube-apiserver").exists())
    else {
        eprintln!(
            "NOTICE: etcd/kube-apiserver not found ($TIDEWAY_K8S_BIN, ~/.cache/tideway/k8s-*/bin): reconcile tests skipped"
        );
        return None;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    if !openssl(dir.path(), &["genrsa", "-out", "sa.key", "2048"])
        || !openssl(
            dir.path(),
            &["rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub"],
        )
    {
        eprintln!("NOTICE: openssl not usable: reconcile tests skipped");
        return None;
    }
    let token = format!("t{:x}", std::process::id() as u64 * 7919 + 17);
    std::fs::write(
        dir.path().join("tokens.csv"),
        format!("{token},admin,admin,system:masters\n"),
    )
    .expect("tokens");
    let (etcd_port, peer_port, api_port) = (free_port(), free_port(), free_port());
    let logs = dir.path().to_owned();
    let log = move |name: &str| std::fs::File::create(logs.join(name)).expect("log file");
    let etcd = Command::new(bin.join("etcd"))
        .args(["--name", "test", "--data-dir"])
        .arg(dir.path().join("etcd"))
        .args([
            "--listen-client-urls",
            &format!("http://127.0.0.1:{etcd_port}"),
            "--advertise-client-urls",
            &format!("http://127.0.0.1:{etcd_port}"),
            "--listen-peer-urls",
            &format!("http://127.0.0.1:{peer_port}"),
            "--initial-advertise-peer-urls",
            &format!("http://127.0.0.1:{peer_port}"),
            "--initial-cluster",
            &format!("test=http://127.0.0.1:{peer_port}"),
            "--unsafe-no-fsync",
        ])
        .stdout(log("etcd.log"))
        .stderr(log("etcd.err"))
        .spawn()
        .expect("start etcd");
    let mut server = ApiServer {
        children: vec![etcd],
        kubeconfig: dir.path().join("kubeconfig"),
        dir,
    };
    let d = server.dir.path().to_owned();
    let apiserver = Command::new(bin.join("kube-apiserver"))
        .args([
            "--etcd-servers",
            &format!("http://127.0.0.1:{etcd_port}"),
            "--bind-address",
            "127.0.0.1",
            "--advertise-address",
            "127.0.0.1",
            "--secure-port",
            &api_port.to_string(),
            "--authorization-mode",
            "RBAC",
            "--service-account-issuer",
            "https://kubernetes.default.svc",
            "--service-cluster-ip-range",
            "172.31.253.0/24",
            "--profiling=false",
        ])
        .arg(format!("--cert-dir={}", d.join("certs").display()))
        .arg(format!(
            "--token-auth-file={}",
            d.join("tokens.csv").display()
        ))
        .arg(format!(
            "--service-account-key-file={}",
            d.join("sa.pub").display()
        ))
        .arg(format!(
            "--service-account-signing-key-file={}",
            d.join("sa.key").display()
        ))
        .stdout(log("kube-apiserver.log"))
        .stderr(log("kube-apiserver.err"))
        .spawn()
        .expect("start kube-apiserver");
    server.children.push(apiserver);
    std::fs::write(
        &server.kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: t, cluster: {{server: \"https://127.0.0.1:{api_port}\", insecure-skip-tls-verify: true}}}}]\n\
             users: [{{name: admin, user: {{token: \"{token}\"}}}}]\ncontexts: [{{name: t, context: {{cluster: t, user: admin, namespace: default}}}}]\ncurrent-context: t\n"
        ),
    )
    .expect("kubeconfig");
    Some(server)
}

async fn client(server: &ApiServer) -> Client {
    let kubeconfig = Kubeconfig::read_from(&server.kubeconfig).expect("read kubeconfig");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("config");
    let client = Client::try_from(config).expect("client");
    let start = Instant::now();
    loop {
        if client.apiserver_version().await.is_ok()
            && Api::<Namespace>::all(client.clone())
                .get_opt("default")
                .await
                .ok()
                .flatten()
                .is_some()
        {
            return client;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "kube-apiserver not ready in 60 s; logs in {}",
            server.dir.path().display()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Polls `check` until it returns Some or the deadline passes.
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn settings() -> OperatorSettings {
    OperatorSettings {
        build: BuildSettings::default(),
        watch_namespaces: vec![],
        leader_election: false,
        operator_namespace: "default".into(),
        http_listen: "127.0.0.1:0".parse().expect("addr"),
        log: "info".into(),
        resync_period: Duration::from_secs(60),
        identity: "test".into(),
    }
}

fn condition(
    conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    type_: &str,
) -> Option<(String, String)> {
    conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone()))
}

async fn install_crds(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in all_crds() {
        crds.patch(
            &crd.name_any(),
            &PatchParams::apply("test").force(),
            &Patch::Apply(&crd),
        )
        .await
        .expect("install CRD");
    }
    let (_tx, rx) = tokio::sync::watch::channel(false);
    tokio::time::timeout(DEADLINE, tideway_operator::run::wait_for_crds(client, rx))
        .await
        .expect("CRDs served in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controllers_against_a_real_apiserver() {
    let Some(server) = start_apiserver() else {
        return;
    };
    let client = client(&server).await;

    // The CRD check names what is missing before the CRDs exist.
    let served = client
        .list_api_group_resources("tideway.dev/v1alpha1")
        .await;
    assert!(served.is_err(), "no tideway.dev group yet");
    install_crds(&client).await;

    let ctx = Arc::new(Context::new(
        client.clone(),
        settings(),
        Arc::new(Metrics::default()),
    ));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let controllers = tokio::spawn(tideway_operator::run::run_controllers(ctx.clone(), async {
        let _ = stop_rx.await;
    }));

    let ns = "default";
    let clusters: Api<MessageCluster> = Api::namespaced(client.clone(), ns);
    let demo: MessageCluster = serde_json::from_value(json!({
        "apiVersion": "tideway.dev/v1alpha1", "kind": "MessageCluster",
        "metadata": {"name": "demo"},
        "spec": {"brokers": 1, "storage": {"size": "1Gi"}}
    }))
    .expect("cluster");
    let demo = clusters
        .create(&PostParams::default(), &demo)
        .await
        .expect("create demo");
    let uid = demo.uid().expect("uid");

    // 1. every owned resource appears with a controller owner reference
    let owned_by_demo = |meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
        meta.owner_references
            .iter()
            .flatten()
            .any(|o| o.uid == uid && o.controller == Some(true) && o.kind == "MessageCluster")
    };
    let sts: StatefulSet = eventually("StatefulSet demo", || {
        let api: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
        async move { api.get_opt("demo").await.ok().flatten() }
    })
    .await;
    assert!(owned_by_demo(&sts.metadata));
    assert_eq!(sts.spec.as_ref().and_then(|s| s.replicas), Some(1));
    assert!(
        sts.metadata
            .managed_fields
            .iter()
            .flatten()
            .any(|f| f.manager.as_deref() == Some("tideway-operator")),
        "applied with the tideway-operator field manager"
    );
    for svc in ["demo", "demo-brokers"] {
        let s = Api::<Service>::namespaced(client.clone(), ns)
            .get(svc)
            .await
            .expect("service");
        assert!(owned_by_demo(&s.metadata), "{svc}");
    }
    let cm = Api::<ConfigMap>::namespaced(client.clone(), ns)
        .get("demo-config")
        .await
        .expect("cm");
    assert!(owned_by_demo(&cm.metadata));
    let pdb = Api::<PodDisruptionBudget>::namespaced(client.clone(), ns)
        .get("demo")
        .await
        .expect("pdb");
    assert!(owned_by_demo(&pdb.metadata));
    let sa = Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .get("demo-broker")
        .await
        .expect("sa");
    assert!(owned_by_demo(&sa.metadata));

    // 2. status: no node runs the pod, so the cluster is Progressing (Creating), not Ready
    let status = eventually("demo status", || {
        let clusters = clusters.clone();
        async move {
            let c = clusters.get("demo").await.ok()?;
            let s = c.status?;
            (condition(&s.conditions, "Progressing") == Some(("True".into(), "Creating".into())))
                .then_some(s)
        }
    })
    .await;
    assert_eq!(
        condition(&status.conditions, "Ready"),
        Some(("False".into(), "BrokersNotReady".into()))
    );
    assert_eq!(status.observed_generation, Some(1));
    assert_eq!(status.brokers.len(), 1);
    assert_eq!(
        status.bootstrap_servers.as_deref(),
        Some("demo-0.demo-brokers.default.svc:9092")
    );

    // 3. an orphan the cluster owns is deleted; a foreign object is left alone
    let mut orphan = cm.clone();
    orphan.metadata = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        name: Some("demo-stale".into()),
        namespace: Some(ns.into()),
        labels: cm.metadata.labels.clone(),
        owner_references: cm.metadata.owner_references.clone(),
        ..Default::default()
    };
    Api::<ConfigMap>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &orphan)
        .await
        .expect("orphan");
    eventually("orphan ConfigMap deleted", || {
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
        async move {
            api.get_opt("demo-stale")
                .await
                .ok()
                .and_then(|o| o.is_none().then_some(()))
        }
    })
    .await;

    // 4. an invalid spec (default RF above the broker count) is a condition, not an error loop
    let bad: MessageCluster = serde_json::from_value(json!({
        "apiVersion": "tideway.dev/v1alpha1", "kind": "MessageCluster",
        "metadata": {"name": "bad"},
        "spec": {"brokers": 1, "storage": {"size": "1Gi"}, "config": {"defaultReplicationFactor": 3}}
    }))
    .expect("bad cluster");
    clusters
        .create(&PostParams::default(), &bad)
        .await
        .expect("create bad");
    let bad_status = eventually("InvalidSpec on bad", || {
        let clusters = clusters.clone();
        async move {
            let s = clusters.get("bad").await.ok()?.status?;
            (condition(&s.conditions, "Ready") == Some(("False".into(), "InvalidSpec".into())))
                .then_some(s)
        }
    })
    .await;
    assert_eq!(
        condition(&bad_status.conditions, "Degraded"),
        Some(("True".into(), "InvalidSpec".into()))
    );
    assert!(
        Api::<StatefulSet>::namespaced(client.clone(), ns)
            .get_opt("bad")
            .await
            .expect("get")
            .is_none()
    );

    // 5. a Topic whose cluster does not exist: finalizer added, ClusterNotFound; deleting it is not blocked
    let topics: Api<Topic> = Api::namespaced(client.clone(), ns);
    let orphan_topic: Topic = serde_json::from_value(json!({
        "apiVersion": "tideway.dev/v1alpha1", "kind": "Topic",
        "metadata": {"name": "lost"},
        "spec": {"clusterRef": {"name": "nowhere"}, "partitions": 1, "replicationFactor": 1}
    }))
    .expect("topic");
    topics
        .create(&PostParams::default(), &orphan_topic)
        .await
        .expect("create topic");
    let t = eventually("ClusterNotFound on topic", || {
        let topics = topics.clone();
        async move {
            let t = topics.get("lost").await.ok()?;
            let s = t.status.clone()?;
            (condition(&s.conditions, "Ready") == Some(("False".into(), "ClusterNotFound".into())))
                .then_some(t)
        }
    })
    .await;
    assert!(t.finalizers().iter().any(|f| f == "tideway.dev/topic"));
    // A topic of a cluster without brokers (no nodes here) waits for the cluster.
    let waiting: Topic = serde_json::from_value(json!({
        "apiVersion": "tideway.dev/v1alpha1", "kind": "Topic",
        "metadata": {"name": "orders"},
        "spec": {"clusterRef": {"name": "demo"}, "partitions": 2, "replicationFactor": 3, "minInSyncReplicas": 1}
    }))
    .expect("topic");
    topics
        .create(&PostParams::default(), &waiting)
        .await
        .expect("create topic");
    eventually("InvalidReplicationFactor on orders", || {
        let topics = topics.clone();
        async move {
            let s = topics.get("orders").await.ok()?.status?;
            (condition(&s.conditions, "Ready")
                == Some(("False".into(), "InvalidReplicationFactor".into())))
            .then_some(())
        }
    })
    .await;
    for name in ["lost", "orders"] {
        topics
            .delete(name, &DeleteParams::default())
            .await
            .expect("delete topic");
    }
    eventually("topics gone", || {
        let topics = topics.clone();
        async move {
            let a = topics.get_opt("lost").await.ok()?;
            let b = topics.get_opt("orders").await.ok()?;
            (a.is_none() && b.is_none()).then_some(())
        }
    })
    .await;

    // 6. MirrorPolicies: admission (CEL on the real API server), the
    // finalizer, ClusterNotFound, ClusterNotReady while no broker answers,
    // and deletion not blocked by a cluster without brokers.
    let policies: Api<MirrorPolicy> = Api::namespaced(client.clone(), ns);
    let policy = |name: &str, cluster: &str, replicas: serde_json::Value| -> MirrorPolicy {
        serde_json::from_value(json!({
            "apiVersion": "tideway.dev/v1alpha1", "kind": "MirrorPolicy",
            "metadata": {"name": name},
            "spec": {
                "clusterRef": {"name": cluster},
                "match": {"topics": [{"type": "Prefix", "value": "orders."}]},
                "replicas": replicas,
                "minInSyncReplicas": 2
            }
        }))
        .expect("policy")
    };
    let refused = policies
        .create(
            &PostParams::default(),
            &policy("bad", "demo", json!({"mode": "Exactly"})),
        )
        .await
        .expect_err("Exactly without count");
    assert!(
        refused
            .to_string()
            .contains("replicas.count is required with mode Exactly"),
        "{refused}"
    );
    for (name, cluster) in [("lost", "nowhere"), ("orders", "demo")] {
        policies
            .create(
                &PostParams::default(),
                &policy(name, cluster, json!({"mode": "Exactly", "count": 3})),
            )
            .await
            .expect("create policy");
    }
    let p = eventually("ClusterNotFound on policy", || {
        let policies = policies.clone();
        async move {
            let p = policies.get("lost").await.ok()?;
            let s = p.status.clone()?;
            (condition(&s.conditions, "Ready") == Some(("False".into(), "ClusterNotFound".into())))
                .then_some(p)
        }
    })
    .await;
    assert!(
        p.finalizers()
            .iter()
            .any(|f| f == "tideway.dev/mirror-policy")
    );
    eventually("ClusterNotReady on policy", || {
        let policies = policies.clone();
        async move {
            let s = policies.get("orders").await.ok()?.status?;
            (condition(&s.conditions, "Ready") == Some(("False".into(), "ClusterNotReady".into())))
                .then_some(())
        }
    })
    .await;
    for name in ["lost", "orders"] {
        policies
            .delete(name, &DeleteParams::default())
            .await
            .expect("delete policy");
    }
    eventually("policies gone", || {
        let policies = policies.clone();
        async move {
            let a = policies.get_opt("lost").await.ok()?;
            let b = policies.get_opt("orders").await.ok()?;
            (a.is_none() && b.is_none()).then_some(())
        }
    })
    .await;

    let _ = stop_tx.send(());
    tokio::time::timeout(DEADLINE, controllers)
        .await
        .expect("controllers stop")
        .expect("join");
    let metrics = ctx.metrics.encode();
    assert!(
        metrics.contains("tideway_operator_reconciles_total{controller=\"messagecluster\"}"),
        "{metrics}"
    );

    // 7. leader election: two replicas, one Lease, one leader
    let leases: Api<Lease> = Api::namespaced(client.clone(), "default");
    assert!(
        tideway_operator::leader::try_acquire_or_renew(&leases, "a")
            .await
            .expect("a")
    );
    assert!(
        !tideway_operator::leader::try_acquire_or_renew(&leases, "b")
            .await
            .expect("b")
    );
    assert!(
        tideway_operator::leader::try_acquire_or_renew(&leases, "a")
            .await
            .expect("a renews")
    );
    let lease = leases
        .get(tideway_operator::leader::LEASE_NAME)
        .await
        .expect("lease");
    assert_eq!(
        lease.spec.and_then(|s| s.holder_identity).as_deref(),
        Some("a")
    );
}
