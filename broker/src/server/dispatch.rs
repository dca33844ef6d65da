//! Decodes one request frame, routes it to its handler and encodes the
//! response frame (length prefix, response header, body).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable};

use super::versions;
use crate::handlers;
use crate::runtime::Context;

#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error("frame of {0} bytes is too short for a request header")]
    ShortFrame(usize),
    #[error("unknown API key {0}")]
    UnknownApiKey(i16),
    #[error("{api:?} version {version} is not supported")]
    UnsupportedVersion { api: ApiKey, version: i16 },
    #[error("decoding {api:?} v{version}: {reason}")]
    Decode {
        api: ApiKey,
        version: i16,
        reason: String,
    },
    #[error(
        "{api:?} v{version} names {entries} partitions or other entries, over --max-request-partitions {max}"
    )]
    TooManyEntries {
        api: ApiKey,
        version: i16,
        entries: usize,
        max: usize,
    },
    #[error("encoding the {api:?} v{version} response: {reason}")]
    Encode {
        api: ApiKey,
        version: i16,
        reason: String,
    },
}

/// A request decoded from a frame, or the KIP-511 answer to a too-new
/// ApiVersions (which is answered without decoding its body).
pub enum Decoded {
    Request {
        api: ApiKey,
        label: &'static str,
        version: i16,
        header: RequestHeader,
        request: RequestKind,
    },
    ApiVersionsTooNew {
        correlation_id: i32,
    },
}

/// Decodes one request frame (header and body) for an advertised API and
/// version, and checks `--max-request-partitions`. Pure: the fuzz target
/// (broker/tests/fuzz.rs) runs exactly this on hostile frames.
pub fn decode_request(mut frame: Bytes, max_entries: usize) -> Result<Decoded, DispatchError> {
    if frame.len() < 8 {
        return Err(DispatchError::ShortFrame(frame.len()));
    }
    let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let api = ApiKey::try_from(raw_key).map_err(|()| DispatchError::UnknownApiKey(raw_key))?;
    let (label, min, max) = versions::lookup(api).ok_or(DispatchError::UnknownApiKey(raw_key))?;
    if api == ApiKey::ApiVersions && version > max {
        let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
        return Ok(Decoded::ApiVersionsTooNew { correlation_id });
    }
    if !(min..=max).contains(&version) {
        return Err(DispatchError::UnsupportedVersion { api, version });
    }
    let decode_err = |e: anyhow::Error| DispatchError::Decode {
        api,
        version,
        reason: format!("{e:#}"),
    };
    let header = RequestHeader::decode(&mut frame, api.request_header_version(version))
        .map_err(decode_err)?;
    let request = RequestKind::decode(api, &mut frame, version).map_err(decode_err)?;
    if frame.has_remaining() {
        tracing::debug!(
            ?api,
            version,
            trailing = frame.remaining(),
            "ignoring trailing bytes after a request"
        );
    }
    let entries = super::limits::entries_named(&request);
    if entries > max_entries {
        return Err(DispatchError::TooManyEntries {
            api,
            version,
            entries,
            max: max_entries,
        });
    }
    Ok(Decoded::Request {
        api,
        label,
        version,
        header,
        request,
    })
}

/// Handles one frame; `Ok(None)` means no response (Produce with acks=0).
pub async fn handle_frame(
    ctx: Arc<Context>,
    peer: SocketAddr,
    frame: Bytes,
) -> Result<Option<Bytes>, DispatchError> {
    let max_entries = ctx.broker.config.server.max_request_partitions;
    let (api, label, version, header, request) = match decode_request(frame, max_entries) {
        Ok(Decoded::Request {
            api,
            label,
            version,
            header,
            request,
        }) => (api, label, version, header, request),
        // KIP-511: answer a too-new ApiVersions with a v0 body listing what we support.
        Ok(Decoded::ApiVersionsTooNew { correlation_id }) => {
            let body = ResponseKind::ApiVersions(handlers::api_versions::unsupported_version());
            return encode_response(correlation_id, ApiKey::ApiVersions, 0, &body).map(Some);
        }
        Err(e) => {
            if matches!(e, DispatchError::TooManyEntries { .. }) {
                ctx.broker.metrics.limit_hit("max_request_partitions");
            }
            return Err(e);
        }
    };
    let started = Instant::now();
    let response = handlers::handle(&ctx, &header, peer, request).await;
    ctx.broker
        .metrics
        .record_request(label, started.elapsed().as_secs_f64());
    response
        .map(|body| encode_response(header.correlation_id, api, version, &body))
        .transpose()
}

fn encode_response(
    correlation_id: i32,
    api: ApiKey,
    version: i16,
    body: &ResponseKind,
) -> Result<Bytes, DispatchError> {
    let encode_err = |e: anyhow::Error| DispatchError::Encode {
        api,
        version,
        reason: format!("{e:#}"),
    };
    let mut buf = BytesMut::with_capacity(256);
    buf.put_i32(0);
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut buf, api.response_header_version(version))
        .map_err(encode_err)?;
    body.encode(&mut buf, version).map_err(encode_err)?;
    let len = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    Ok(buf.freeze())
}
