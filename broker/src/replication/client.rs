//! A minimal Kafka client connection between brokers (followers fetching,
//! the group coordinator asking other leaders for offsets): one request at
//! a time, encoded and decoded by the kafka-protocol crate, each bounded by
//! a timeout.

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Responses larger than this are refused (a follower asks for far less).
const MAX_RESPONSE_BYTES: usize = 256 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connecting to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("{0} timed out")]
    Timeout(&'static str),
    #[error("I/O with {addr}: {source}")]
    Io {
        addr: String,
        source: std::io::Error,
    },
    #[error("protocol error with {addr}: {reason}")]
    Protocol { addr: String, reason: String },
}

pub struct Connection {
    addr: String,
    stream: TcpStream,
    correlation: i32,
    client_id: StrBytes,
}

impl Connection {
    pub async fn connect(
        addr: &str,
        client_id: String,
        timeout: Duration,
    ) -> Result<Self, ClientError> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| ClientError::Timeout("connect"))?
            .map_err(|source| ClientError::Connect {
                addr: addr.to_string(),
                source,
            })?;
        let _ = stream.set_nodelay(true);
        Ok(Self {
            addr: addr.to_string(),
            stream,
            correlation: 0,
            client_id: StrBytes::from_string(client_id),
        })
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Sends one request and reads its response.
    pub async fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        request: &Req,
        timeout: Duration,
    ) -> Result<Resp, ClientError> {
        let protocol = |reason: String| ClientError::Protocol {
            addr: self.addr.clone(),
            reason,
        };
        self.correlation = self.correlation.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(self.client_id.clone()));
        let mut body = BytesMut::new();
        body.put_i32(0);
        header
            .encode(&mut body, key.request_header_version(version))
            .map_err(|e| protocol(format!("encoding the header: {e}")))?;
        request
            .encode(&mut body, version)
            .map_err(|e| protocol(format!("encoding {key:?} v{version}: {e}")))?;
        let len = (body.len() - 4) as i32;
        body[..4].copy_from_slice(&len.to_be_bytes());
        let addr = self.addr.clone();
        let io = |source| ClientError::Io {
            addr: addr.clone(),
            source,
        };
        let exchange = async {
            self.stream.write_all(&body).await.map_err(io)?;
            let len = self.stream.read_i32().await.map_err(io)?;
            if len < 0 || len as usize > MAX_RESPONSE_BYTES {
                return Err(protocol(format!("response length {len}")));
            }
            let mut buf = vec![0u8; len as usize];
            self.stream.read_exact(&mut buf).await.map_err(io)?;
            Ok(Bytes::from(buf))
        };
        let mut buf = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| ClientError::Timeout("request"))??;
        let rh = ResponseHeader::decode(&mut buf, key.response_header_version(version))
            .map_err(|e| protocol(format!("decoding the response header: {e}")))?;
        if rh.correlation_id != self.correlation {
            return Err(protocol(format!(
                "correlation id {} instead of {}",
                rh.correlation_id, self.correlation
            )));
        }
        let resp = Resp::decode(&mut buf, version)
            .map_err(|e| protocol(format!("decoding {key:?} v{version}: {e}")))?;
        if buf.has_remaining() {
            return Err(protocol(format!("{} trailing bytes", buf.remaining())));
        }
        Ok(resp)
    }
}
