//! Tideway broker: a Kafka-compatible message broker.
//!
//! - [`server`]: the Kafka listener, framing, dispatch, error codes;
//! - [`handlers`]: one file per API family;
//! - [`broker`]: state and decisions shared by the handlers;
//! - [`runtime`]: the [`runtime::Context`] every serving layer takes;
//! - [`log`]: partitions as segmented logs on disk;
//! - [`metadata`]: topics and configs as explicit records;
//! - [`http`] and [`metrics`]: `/livez`, `/readyz`, `/metrics`.
//!
//! `main.rs` parses the command line and calls [`run`].

pub mod admin;
pub mod broker;
pub mod config;
pub mod group;
pub mod handlers;
pub mod http;
pub mod idempotence;
pub mod log;
pub mod logging;
pub mod metadata;
pub mod metrics;
pub mod partition;
pub mod replication;
pub mod runtime;
pub mod server;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::broker::{Broker, DataDir, StartError};
use crate::config::BrokerConfig;
use crate::log::FsyncPolicy;
use crate::metadata::local::LocalStore;
use crate::metadata::raft::RaftStore;
use crate::metadata::{MetadataError, MetadataRecord, MetadataStore};
use crate::runtime::{Context, stopped};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{flag} {addr}: cannot listen: {source}")]
    Bind {
        flag: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Start(#[from] StartError),
    #[error("{0}")]
    Config(String),
    #[error("loading committed offsets: {0}")]
    LoadOffsets(crate::group::offsets::OffsetError),
    #[error("the start-up task failed: {0}")]
    StartTask(String),
}

/// A running broker, for `main` and for tests that embed one.
pub struct Running {
    pub ctx: Arc<Context>,
    pub kafka_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    stopping: watch::Sender<bool>,
    tasks: tokio::task::JoinSet<()>,
}

impl Running {
    /// Graceful stop: stop accepting, finish in-flight requests, close the
    /// logs and mark the shutdown clean.
    pub async fn stop(mut self) {
        let _ = self.stopping.send(true);
        // In-flight requests get a bounded time; a straggler only costs a recovery scan.
        let _ = tokio::time::timeout(Duration::from_secs(10), async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        self.tasks.abort_all();
        let broker = self.ctx.broker.clone();
        drop(self);
        let _ = tokio::task::spawn_blocking(move || broker.close()).await;
    }
}

/// Starts a broker, in order: HTTP (live, not ready); the Kafka and admin
/// listeners; the data directory; the metadata store; the partitions; this
/// broker's registration; the internal offsets topic and, where its
/// partition lives, the group coordinator; then the Kafka listener serves
/// and the broker is ready.
pub async fn start(config: BrokerConfig) -> Result<Running, RunError> {
    config.validate().map_err(RunError::Config)?;
    let bind = |flag: &'static str, addr: SocketAddr| async move {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| RunError::Bind { flag, addr, source })?;
        let local =
            listener
                .local_addr()
                .map_err(|source| RunError::Bind { flag, addr, source })?;
        Ok::<_, RunError>((listener, local))
    };
    let (http_listener, http_addr) = bind("--http-listen", config.http_listen).await?;
    let ready = Arc::new(AtomicBool::new(false));
    let (stopping, stopping_rx) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    let ctx_cell: Arc<std::sync::OnceLock<Arc<Context>>> = Arc::new(std::sync::OnceLock::new());
    let http_state = http::HttpState {
        ctx: ctx_cell.clone(),
        ready: ready.clone(),
    };
    {
        let mut rx = stopping_rx.clone();
        tasks.spawn(async move {
            let shutdown = async move { stopped(&mut rx).await };
            if let Err(e) = http::serve(http_listener, http_state, shutdown).await {
                tracing::error!(error = %e, "HTTP server failed");
            }
        });
    }
    tracing::info!(%http_addr, "HTTP endpoint up (/livez, /readyz, /metrics)");

    let (listener, kafka_addr) = bind("--listen", config.listen).await?;
    let (admin_listener, admin_addr) = bind("--admin-listen", config.admin_listen).await?;
    let (host, port) = config
        .advertised_address
        .clone()
        .unwrap_or_else(|| (kafka_addr.ip().to_string(), kafka_addr.port()));

    let data_dir = config.data_dir.clone();
    let node_id = config.node_id;
    let data = tokio::task::spawn_blocking(move || DataDir::open(&data_dir))
        .await
        .map_err(|e| RunError::StartTask(e.to_string()))??;
    let meta_dir = config.data_dir.join(broker::METADATA_DIR);
    // A cluster of one keeps its metadata in a local file; a cluster, in the Raft quorum.
    let (store, raft_service): (Arc<dyn MetadataStore>, _) = match config.voters.clone() {
        None => {
            let local = tokio::task::spawn_blocking(move || LocalStore::open(&meta_dir, node_id))
                .await
                .map_err(|e| RunError::StartTask(e.to_string()))?
                .map_err(StartError::LoadMetadata)?;
            (Arc::new(local), None)
        }
        Some(voters) => {
            if !voters.contains_key(&(node_id as u64)) {
                return Err(RunError::Config(format!(
                    "--node-id {node_id} is not among --voters; every broker is a voter for now"
                )));
            }
            let (raft, service) =
                RaftStore::start(node_id as u64, voters, &config.data_dir.join("raft"))
                    .await
                    .map_err(StartError::LoadMetadata)?;
            (Arc::new(raft) as Arc<dyn MetadataStore>, Some(service))
        }
    };
    {
        let cell = ctx_cell.clone();
        let mut rx = stopping_rx.clone();
        tasks.spawn(async move {
            let incoming = tonic::transport::server::TcpIncoming::from(admin_listener);
            let served = tonic::transport::Server::builder()
                .add_service(admin::server(cell))
                .add_optional_service(
                    raft_service.map(tideway_admin_api::raft::raft_server::RaftServer::new),
                )
                .serve_with_incoming_shutdown(incoming, async move { stopped(&mut rx).await })
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "admin API server failed");
            }
        });
    }
    tracing::info!(%admin_addr, "admin API up");
    if config.voters.is_some() {
        // An empty write through the quorum: once it is applied here, this
        // broker's image is current, so no live topic's directory looks orphaned.
        tracing::info!("waiting for the metadata quorum");
        // Not ready until a majority of voters is up: retry without a deadline.
        loop {
            match store.commit(vec![]).await {
                Ok(_) => break,
                Err(MetadataError::Unavailable(reason)) => {
                    tracing::info!(%reason, "still waiting for the metadata quorum")
                }
                Err(e) => return Err(StartError::LoadMetadata(e).into()),
            }
        }
        if store.image().cluster_id.is_empty() {
            let cluster_id = uuid::Uuid::new_v4().simple().to_string();
            store
                .commit(vec![MetadataRecord::ClusterCreated { cluster_id }])
                .await
                .map_err(StartError::LoadMetadata)?;
        }
        tracing::info!(leader = ?store.quorum().leader, "metadata quorum reached");
    }

    let broker = tokio::task::spawn_blocking(move || Broker::open(config, data, store))
        .await
        .map_err(|e| RunError::StartTask(e.to_string()))??;
    let broker = Arc::new(broker);
    broker.set_advertised(host.clone(), port);
    register(&broker, &host, port).await?;
    // The offsets topic now if enough brokers are live (a single node always is).
    if let Err(e) = group::leadership::create_offsets_topic(&broker).await {
        tracing::warn!(error = %e, "creating the offsets topic failed; retrying in the background");
    }
    let ctx = Arc::new(Context::new(broker.clone()));
    let _ = ctx_cell.set(ctx.clone());
    // Roles (leader/follower) are set before the listener serves.
    let proposals = broker
        .take_proposals()
        .ok_or_else(|| RunError::StartTask("the replication driver started twice".into()))?;
    let driver = replication::driver::start(&broker, proposals, stopping_rx.clone());
    tasks.spawn(async move {
        let _ = driver.await;
    });
    group::leadership::sync_coordinator(&ctx)
        .await
        .map_err(RunError::LoadOffsets)?;
    tasks.spawn(group::leadership::run(ctx.clone(), stopping_rx.clone()));
    if broker.config.voters.is_some() {
        tasks.spawn(replication::control::heartbeat_loop(
            broker.clone(),
            stopping_rx.clone(),
        ));
        tasks.spawn(replication::control::controller_loop(
            broker.clone(),
            stopping_rx.clone(),
        ));
    }
    tasks.spawn(server::serve(ctx.clone(), listener, stopping_rx.clone()));
    spawn_background(&mut tasks, &ctx, &stopping_rx);
    ready.store(true, Ordering::Release);
    tracing::info!(%kafka_addr, advertised = %format!("{host}:{port}"), node_id, "Kafka listener up; broker ready");
    Ok(Running {
        ctx,
        kafka_addr,
        http_addr,
        admin_addr,
        stopping,
        tasks,
    })
}

/// Records this broker's advertised address in the metadata when it is new or changed.
async fn register(broker: &Broker, host: &str, port: u16) -> Result<(), RunError> {
    let me = broker.node_id();
    let record = MetadataRecord::BrokerRegistered {
        id: me,
        host: host.to_string(),
        port,
        rack: broker.config.rack.clone(),
        replication: broker.config.replication_advertised_address.clone(),
    };
    let current = broker.image().brokers.get(&me).cloned();
    if current.is_some_and(|b| {
        (b.host.as_str(), b.port, &b.rack, &b.replication)
            == (
                host,
                port,
                &broker.config.rack,
                &broker.config.replication_advertised_address,
            )
    }) {
        return Ok(());
    }
    broker
        .store()
        .commit(vec![record])
        .await
        .map_err(StartError::LoadMetadata)?;
    Ok(())
}

/// Retention, offsets compaction and expiry, group timers and, with
/// `--fsync interval`, the flush timer.
fn spawn_background(
    tasks: &mut tokio::task::JoinSet<()>,
    ctx: &Arc<Context>,
    stopping: &watch::Receiver<bool>,
) {
    let every = |period: Duration, job: fn(Arc<Context>) -> BoxFuture| {
        let ctx = ctx.clone();
        let mut stopping = stopping.clone();
        async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => job(ctx.clone()).await,
                    _ = stopped(&mut stopping) => return,
                }
            }
        }
    };
    let config = &ctx.broker.config;
    tasks.spawn(every(config.retention_check_interval, |ctx| {
        Box::pin(async move {
            let b = ctx.broker.clone();
            let _ = tokio::task::spawn_blocking(move || {
                b.enforce_retention();
                b.snapshot_producers();
            })
            .await;
            if let Some(groups) = ctx.groups() {
                groups.expire_offsets().await;
                if let Err(e) = groups.offsets.compact(10_000).await {
                    tracing::error!(error = %e, "compacting committed offsets failed");
                }
            }
        })
    }));
    tasks.spawn(every(Duration::from_millis(100), |ctx| {
        Box::pin(async move {
            if let Some(groups) = ctx.groups() {
                groups.tick();
                groups.forget_deleted_topics().await;
            }
        })
    }));
    if let FsyncPolicy::Interval(period) = config.log_defaults.fsync {
        tasks.spawn(every(period, |ctx| {
            Box::pin(async move {
                let b = ctx.broker.clone();
                let _ = tokio::task::spawn_blocking(move || b.flush_all()).await;
            })
        }));
    }
}

type BoxFuture = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// Runs until SIGTERM or SIGINT, then stops gracefully.
pub async fn run(config: BrokerConfig) -> Result<(), RunError> {
    let running = start(config).await?;
    wait_for_signal().await;
    tracing::info!("stopping");
    if running.ctx.broker.config.voters.is_some() {
        replication::control::controlled_shutdown(&running.ctx.broker).await;
    }
    running.stop().await;
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
