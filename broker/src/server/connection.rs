//! One client connection: length-prefixed frames in, responses out.
//!
//! The reader task reads ahead (up to `--connection-queued-max-requests`
//! frames, and only as many bytes as the budgets of [`super::limits`] allow)
//! while the handler task serves the frames one at a time, in arrival order,
//! and writes each response before taking the next frame. Handling in order is
//! what makes a client's pipelined Produce requests land in the log in the
//! order they were sent (Kafka serves a connection the same way); reading
//! ahead keeps the socket busy meanwhile.
//!
//! A frame that cannot be served (a length over the limit, a malformed
//! header or body, an unknown API or version) closes this connection and is
//! logged; the broker keeps serving everyone else.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{Semaphore, mpsc, watch};

use super::dispatch;
use super::limits::{Admission, QueuedBytes};
use crate::runtime::Context;

/// A request frame with the budget it holds until it is answered.
struct Frame {
    bytes: Bytes,
    _queued: QueuedBytes,
}

#[derive(Debug, thiserror::Error)]
enum FrameError {
    #[error("frame length {0} is negative or over the limit of {1} bytes")]
    BadLength(i32, usize),
    #[error("a frame of {0} bytes did not arrive within {1:?}")]
    Slow(usize, std::time::Duration),
    #[error("reading a frame: {0}")]
    Read(#[from] std::io::Error),
}

pub async fn serve(
    ctx: Arc<Context>,
    admission: Arc<Admission>,
    stream: TcpStream,
    peer: SocketAddr,
    stopping: watch::Receiver<bool>,
) {
    let (read, write) = stream.into_split();
    let (tx, rx) = mpsc::channel::<Frame>(admission.limits().connection_queued_max_requests);
    let handler = tokio::spawn(handle_in_order(ctx.clone(), write, rx, peer));
    if let Err(e) = read_frames(&ctx, &admission, read, tx, stopping).await {
        tracing::warn!(%peer, error = %e, "closing connection");
    }
    let _ = handler.await;
}

async fn read_frames(
    ctx: &Arc<Context>,
    admission: &Admission,
    read: OwnedReadHalf,
    tx: mpsc::Sender<Frame>,
    mut stopping: watch::Receiver<bool>,
) -> Result<(), FrameError> {
    let max = ctx.broker.config.max_request_bytes;
    let budget = Arc::new(Semaphore::new(
        admission.limits().connection_queued_max_bytes,
    ));
    let mut read = BufReader::with_capacity(64 * 1024, read);
    loop {
        let len = tokio::select! {
            len = read.read_i32() => match len {
                Ok(len) => len,
                // The client closed the connection between requests.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(e.into()),
            },
            _ = crate::runtime::stopped(&mut stopping) => return Ok(()),
            // The handler gave up (a request could not be served).
            _ = tx.closed() => return Ok(()),
        };
        if len < 0 || len as usize > max {
            ctx.broker.metrics.limit_hit("max_request_bytes");
            return Err(FrameError::BadLength(len, max));
        }
        let len = len as usize;
        // The whole frame within the deadline: a client that announces a
        // frame and sends it slowly (or never) is cut off.
        let deadline = tokio::time::Instant::now() + admission.limits().frame_read_timeout;
        let timeout = admission.limits().frame_read_timeout;
        let read_frame = async {
            // The budgets are taken once the body starts to arrive, for the
            // whole frame at once (taking them piecemeal lets many half-read
            // frames hold the budget between them and none ever complete).
            if len > 0 && read.fill_buf().await?.is_empty() {
                return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
            }
            let queued = admission.queue_frame(&budget, len).await;
            // Read into the buffer's spare capacity: no memset of a frame that is
            // about to be overwritten (it showed in profiles of large produce requests).
            let mut frame = BytesMut::with_capacity(len);
            while frame.len() < len {
                let want = (len - frame.len()) as u64;
                if (&mut read).take(want).read_buf(&mut frame).await? == 0 {
                    return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
                }
            }
            Ok((frame, queued))
        };
        let (frame, queued) = tokio::select! {
            read = tokio::time::timeout_at(deadline, read_frame) => match read {
                Ok(read) => read?,
                Err(_) => {
                    ctx.broker.metrics.limit_hit("frame_read_timeout");
                    return Err(FrameError::Slow(len, timeout));
                }
            },
            _ = crate::runtime::stopped(&mut stopping) => return Ok(()),
        };
        let frame = Frame {
            bytes: frame.freeze(),
            _queued: queued,
        };
        if tx.send(frame).await.is_err() {
            return Ok(());
        }
    }
}

async fn handle_in_order(
    ctx: Arc<Context>,
    write: OwnedWriteHalf,
    mut rx: mpsc::Receiver<Frame>,
    peer: SocketAddr,
) {
    let mut write = BufWriter::with_capacity(64 * 1024, write);
    // `frame` keeps its budget until its response is written.
    while let Some(frame) = rx.recv().await {
        let response = match dispatch::handle_frame(ctx.clone(), peer, frame.bytes.clone()).await {
            Ok(response) => response,
            Err(e) => {
                tracing::warn!(%peer, error = %e, "closing connection");
                break;
            }
        };
        if let Some(bytes) = response
            && write.write_all(&bytes).await.is_err()
        {
            break;
        }
        // Flush once no further request is waiting, so back-to-back responses share a write.
        if rx.is_empty() && write.flush().await.is_err() {
            break;
        }
    }
    let _ = write.flush().await;
    rx.close();
    let _ = write.into_inner().shutdown().await;
}
