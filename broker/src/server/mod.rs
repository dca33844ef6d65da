//! The Kafka listener: accepts connections and serves each on its own task
//! ([`connection`]); frames are decoded and routed in [`dispatch`]; what
//! clients may hold or send is bounded in [`limits`].

pub mod connection;
pub mod dispatch;
pub mod errors;
pub mod limits;
pub mod versions;

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::runtime::Context;

/// Accepts connections until `stopping` turns true, then waits for open
/// connections to finish their in-flight requests.
pub async fn serve(ctx: Arc<Context>, listener: TcpListener, mut stopping: watch::Receiver<bool>) {
    let mut connections = JoinSet::new();
    let for_connections = stopping.clone();
    let admission = limits::Admission::new(ctx.clone());
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    // Over a connection limit: closed at once (counted in admit).
                    let Some(slot) = admission.admit(peer.ip()) else {
                        tracing::debug!(%peer, "connection refused: connection limit reached");
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    let serve = connection::serve(ctx.clone(), admission.clone(), stream, peer, for_connections.clone());
                    connections.spawn(async move {
                        serve.await;
                        drop(slot);
                    });
                }
                Err(e) => {
                    // Out of file descriptors and similar: keep serving the others.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = crate::runtime::stopped(&mut stopping) => break,
        }
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}
