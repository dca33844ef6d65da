//! Tideway broker: a Kafka-compatible message broker.
//!
//! - [`server`]: the Kafka listener, framing, dispatch, error codes;
//! - [`handlers`]: one file per API family;
//! - [`broker`]: state and decisions shared by the handlers;
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
pub mod metadata;
pub mod metrics;
pub mod partition;
pub mod replication;
pub mod server;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::broker::{Broker, StartError};
use crate::config::BrokerConfig;
use crate::group::coordinator::GroupCoordinator;
use crate::handlers::Context;
use crate::log::FsyncPolicy;

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

/// Starts a broker: HTTP first (live, not ready), then recovery, then the
/// Kafka listener; ready once both are up.
pub async fn start(config: BrokerConfig) -> Result<Running, RunError> {
    let http_listener = TcpListener::bind(config.http_listen)
        .await
        .map_err(|source| RunError::Bind {
            flag: "--http-listen",
            addr: config.http_listen,
            source,
        })?;
    let http_addr = http_listener
        .local_addr()
        .map_err(|source| RunError::Bind {
            flag: "--http-listen",
            addr: config.http_listen,
            source,
        })?;
    let ready = Arc::new(AtomicBool::new(false));
    let (stopping, stopping_rx) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    let http_state = http::HttpState {
        ctx: Arc::new(std::sync::OnceLock::new()),
        ready: ready.clone(),
    };
    {
        let state = http_state.clone();
        let mut rx = stopping_rx.clone();
        tasks.spawn(async move {
            let shutdown = async move { stopped(&mut rx).await };
            if let Err(e) = http::serve(http_listener, state, shutdown).await {
                tracing::error!(error = %e, "HTTP server failed");
            }
        });
    }
    tracing::info!(%http_addr, "HTTP endpoint up (/livez, /readyz, /metrics)");

    let listen = config.listen;
    let admin_listen = config.admin_listen;
    let advertised = config.advertised_address.clone();
    let broker = tokio::task::spawn_blocking(move || Broker::open(config))
        .await
        .map_err(|e| RunError::StartTask(e.to_string()))??;
    let broker = Arc::new(broker);
    let groups = {
        let b = broker.clone();
        let (group_config, retention) = (b.config.groups.clone(), b.config.offsets_retention_ms);
        tokio::task::spawn_blocking(move || GroupCoordinator::open(b, group_config, retention))
            .await
            .map_err(|e| RunError::StartTask(e.to_string()))?
            .map_err(RunError::LoadOffsets)?
    };
    let ctx = Arc::new(Context {
        broker: broker.clone(),
        groups: Arc::new(groups),
    });
    let _ = http_state.ctx.set(ctx.clone());

    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| RunError::Bind {
            flag: "--listen",
            addr: listen,
            source,
        })?;
    let kafka_addr = listener.local_addr().map_err(|source| RunError::Bind {
        flag: "--listen",
        addr: listen,
        source,
    })?;
    let (host, port) =
        advertised.unwrap_or_else(|| (kafka_addr.ip().to_string(), kafka_addr.port()));
    broker.set_advertised(host.clone(), port);
    tasks.spawn(server::serve(ctx.clone(), listener, stopping_rx.clone()));
    let admin_listener =
        TcpListener::bind(admin_listen)
            .await
            .map_err(|source| RunError::Bind {
                flag: "--admin-listen",
                addr: admin_listen,
                source,
            })?;
    let admin_addr = admin_listener
        .local_addr()
        .map_err(|source| RunError::Bind {
            flag: "--admin-listen",
            addr: admin_listen,
            source,
        })?;
    {
        let ctx = ctx.clone();
        let mut rx = stopping_rx.clone();
        tasks.spawn(async move {
            let incoming = tonic::transport::server::TcpIncoming::from(admin_listener);
            let served = tonic::transport::Server::builder()
                .add_service(admin::server(ctx))
                .serve_with_incoming_shutdown(incoming, async move { stopped(&mut rx).await })
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "admin API server failed");
            }
        });
    }
    spawn_background(&mut tasks, &ctx, &stopping_rx);
    ready.store(true, Ordering::Release);
    tracing::info!(%admin_addr, "admin API up");
    tracing::info!(%kafka_addr, advertised = %format!("{host}:{port}"), node_id = broker.node_id(), "Kafka listener up; broker ready");
    Ok(Running {
        ctx,
        kafka_addr,
        http_addr,
        admin_addr,
        stopping,
        tasks,
    })
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
            ctx.groups.expire_offsets().await;
            if let Err(e) = ctx.groups.offsets.compact(10_000).await {
                tracing::error!(error = %e, "compacting committed offsets failed");
            }
        })
    }));
    tasks.spawn(every(Duration::from_millis(100), |ctx| {
        Box::pin(async move { ctx.groups.tick() })
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

/// Resolves once `stopping` turns true (or its sender is gone).
pub async fn stopped(stopping: &mut watch::Receiver<bool>) {
    let _ = stopping.wait_for(|s| *s).await;
}

/// Runs until SIGTERM or SIGINT, then stops gracefully.
pub async fn run(config: BrokerConfig) -> Result<(), RunError> {
    let running = start(config).await?;
    wait_for_signal().await;
    tracing::info!("stopping");
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
