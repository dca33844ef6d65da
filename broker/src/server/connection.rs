//! One client connection: length-prefixed frames in, responses out in
//! request order. Requests are pipelined: the reader hands each frame to
//! its own task at once and queues the task's handle; the writer awaits the
//! handles in order, so responses keep request order as Kafka clients
//! require while later requests are already being handled.
//!
//! A frame that cannot be served (a length over the limit, a malformed
//! header or body, an unknown API or version) closes this connection and is
//! logged; the broker keeps serving everyone else.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::dispatch::{self, DispatchError};
use crate::handlers::Context;

/// Requests handled concurrently on one connection before reading pauses.
const MAX_IN_FLIGHT: usize = 64;

type Pending = JoinHandle<Result<Option<Bytes>, DispatchError>>;

#[derive(Debug, thiserror::Error)]
enum FrameError {
    #[error("frame length {0} is negative or over the limit of {1} bytes")]
    BadLength(i32, usize),
    #[error("reading a frame: {0}")]
    Read(#[from] std::io::Error),
}

pub async fn serve(
    ctx: Arc<Context>,
    stream: TcpStream,
    peer: SocketAddr,
    stopping: watch::Receiver<bool>,
) {
    let (read, write) = stream.into_split();
    let (tx, rx) = mpsc::channel::<Pending>(MAX_IN_FLIGHT);
    let writer = tokio::spawn(write_responses(write, rx, peer));
    if let Err(e) = read_requests(&ctx, read, peer, tx, stopping).await {
        tracing::warn!(%peer, error = %e, "closing connection");
    }
    let _ = writer.await;
}

async fn read_requests(
    ctx: &Arc<Context>,
    read: OwnedReadHalf,
    peer: SocketAddr,
    tx: mpsc::Sender<Pending>,
    mut stopping: watch::Receiver<bool>,
) -> Result<(), FrameError> {
    let max = ctx.broker.config.max_request_bytes;
    let mut read = BufReader::with_capacity(64 * 1024, read);
    loop {
        let len = tokio::select! {
            len = read.read_i32() => match len {
                Ok(len) => len,
                // The client closed the connection between requests.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(e.into()),
            },
            _ = crate::stopped(&mut stopping) => return Ok(()),
            // The writer gave up (a request could not be served).
            _ = tx.closed() => return Ok(()),
        };
        if len < 0 || len as usize > max {
            return Err(FrameError::BadLength(len, max));
        }
        let mut frame = BytesMut::zeroed(len as usize);
        read.read_exact(&mut frame).await?;
        let handle = tokio::spawn(dispatch::handle_frame(ctx.clone(), peer, frame.freeze()));
        if tx.send(handle).await.is_err() {
            return Ok(());
        }
    }
}

async fn write_responses(write: OwnedWriteHalf, mut rx: mpsc::Receiver<Pending>, peer: SocketAddr) {
    let mut write = BufWriter::with_capacity(64 * 1024, write);
    while let Some(pending) = rx.recv().await {
        let response = match pending.await {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => {
                tracing::warn!(%peer, error = %e, "closing connection");
                break;
            }
            Err(e) => {
                tracing::error!(%peer, error = %e, "request handler failed; closing connection");
                break;
            }
        };
        if let Some(bytes) = response
            && write.write_all(&bytes).await.is_err()
        {
            break;
        }
        // Flush once the queue of finished responses is drained.
        if rx.is_empty() && write.flush().await.is_err() {
            break;
        }
    }
    let _ = write.flush().await;
    rx.close();
    let _ = write.into_inner().shutdown().await;
}
