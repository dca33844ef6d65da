//! The HTTP endpoint for operators and orchestrators: `/livez` (the process
//! serves HTTP), `/readyz` (recovery finished and the Kafka listener is up),
//! `/metrics` (Prometheus text format) and `/v1/groups/{group}/lag`
//! (consumer lag as JSON, the autoscaler's input; the same question as the
//! admin API's GroupLag, with `?topic=a&topic=b&reset=earliest|latest`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use tokio::net::TcpListener;

use crate::group::lag::{LagError, LagQuery};
use crate::runtime::Context;

#[derive(Clone)]
pub struct HttpState {
    /// Set once start-up (recovery) is done.
    pub ctx: Arc<OnceLock<Arc<Context>>>,
    pub ready: Arc<AtomicBool>,
}

pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/livez", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/groups/{group}/lag", get(group_lag))
        .with_state(state)
}

async fn readyz(State(state): State<HttpState>) -> impl IntoResponse {
    if state.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n")
    }
}

/// Every group's lag is refreshed per scrape; reading the partition leaders'
/// offsets is bounded by `leader_offsets::READ_TIMEOUT`, so a broker that is
/// down slows a scrape by that much at most. A group whose lag is unknown
/// this time has no lag series in it.
async fn metrics(State(state): State<HttpState>) -> impl IntoResponse {
    let body = match state.ctx.get() {
        Some(ctx) => {
            let mut lags = Vec::new();
            if let Some(groups) = ctx.groups() {
                let mut unknown = Vec::new();
                for lag in groups.lag_of_every_group().await {
                    match lag {
                        Ok(lag) => lags.push(lag),
                        // Its offsets went away since it was listed: no group.
                        Err(LagError::GroupNotFound(_)) => {}
                        Err(e) => unknown.push(e.to_string()),
                    }
                }
                if let Some(first) = unknown.first() {
                    tracing::warn!(groups = unknown.len(), first = %first, "consumer lag left out of the metrics");
                }
            }
            ctx.broker.metrics.set_group_lags(&lags);
            ctx.broker.metrics.render()
        }
        None => String::new(),
    };
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
}

fn error(status: StatusCode, message: String) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

async fn group_lag(
    State(state): State<HttpState>,
    Path(group): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let Some(ctx) = state.ctx.get() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "starting\n").into_response();
    };
    let query = match parse_lag_query(query.as_deref()) {
        Ok(q) => q,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    let Some(groups) = ctx.groups() else {
        let coordinator = ctx
            .broker
            .image()
            .topics
            .get(crate::group::offsets::OFFSETS_TOPIC)
            .map(|t| t.leader(0));
        let message = format!(
            "groups are coordinated by broker {}; ask its HTTP endpoint",
            coordinator.unwrap_or(-1)
        );
        return error(StatusCode::MISDIRECTED_REQUEST, message);
    };
    match groups.lag(&group, &query).await {
        Ok(lag) => Json(lag).into_response(),
        Err(e @ (LagError::GroupNotFound(_) | LagError::TopicNotFound(_))) => {
            error(StatusCode::NOT_FOUND, e.to_string())
        }
        Err(e @ LagError::OffsetsUnreadable { .. }) => {
            error(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
        }
    }
}

/// `topic=a&topic=b&reset=earliest|latest` (each optional, `topic`
/// repeatable) as a lag question; Err names the bad parameter.
fn parse_lag_query(raw: Option<&str>) -> Result<LagQuery, String> {
    let mut query = LagQuery::default();
    for pair in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let (name, value) = (percent_decode(name)?, percent_decode(value)?);
        match name.as_str() {
            "topic" if value.is_empty() => return Err("empty topic parameter".to_string()),
            "topic" => query.topics.push(value),
            "reset" => query.reset = value.parse().map_err(|e| format!("{e}"))?,
            _ => {
                return Err(format!(
                    "unknown query parameter '{name}' (expected topic, reset)"
                ));
            }
        }
    }
    Ok(query)
}

/// Decodes `+` and `%XX` of a query string component.
fn percent_decode(s: &str) -> Result<String, String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = [bytes.next(), bytes.next()];
                let byte = match hex {
                    [Some(h), Some(l)] => std::str::from_utf8(&[h, l])
                        .ok()
                        .and_then(|h| u8::from_str_radix(h, 16).ok()),
                    _ => None,
                };
                out.push(byte.ok_or_else(|| format!("bad percent-encoding in '{s}'"))?);
            }
            b => out.push(b),
        }
    }
    String::from_utf8(out).map_err(|_| format!("'{s}' is not UTF-8"))
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    state: HttpState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::parse_lag_query;
    use crate::group::lag::ResetPolicy;

    #[test]
    fn lag_query_takes_repeated_topics_and_a_reset_policy() {
        let q = parse_lag_query(Some("topic=a&topic=b%2Ec&reset=latest")).expect("parse");
        assert_eq!(q.topics, vec!["a".to_string(), "b.c".to_string()]);
        assert_eq!(q.reset, ResetPolicy::Latest);
        let q = parse_lag_query(None).expect("parse");
        assert!(q.topics.is_empty());
        assert_eq!(q.reset, ResetPolicy::Earliest);
        assert_eq!(parse_lag_query(Some("")).expect("parse").topics.len(), 0);
    }

    #[test]
    fn lag_query_errors_name_the_parameter() {
        let err = parse_lag_query(Some("reset=sometimes")).expect_err("bad reset");
        assert!(err.contains("sometimes"), "{err}");
        let err = parse_lag_query(Some("topics=a")).expect_err("unknown");
        assert!(err.contains("topics"), "{err}");
        assert!(parse_lag_query(Some("topic=")).is_err());
        assert!(parse_lag_query(Some("topic=%zz")).is_err());
        assert!(parse_lag_query(Some("topic=%4")).is_err());
    }
}
