//! The HTTP endpoint for operators and orchestrators: `/livez` (the process
//! serves HTTP), `/readyz` (recovery finished and the Kafka listener is up),
//! `/metrics` (Prometheus text format) and `/v1/groups/{group}/lag`
//! (consumer lag as JSON, the autoscaler's input).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use tokio::net::TcpListener;

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

async fn metrics(State(state): State<HttpState>) -> impl IntoResponse {
    let body = match state.ctx.get() {
        Some(ctx) => {
            let lags: Vec<_> = match ctx.groups() {
                Some(groups) => groups
                    .group_ids()
                    .iter()
                    .filter_map(|g| groups.lag(g))
                    .collect(),
                None => Vec::new(),
            };
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

async fn group_lag(State(state): State<HttpState>, Path(group): Path<String>) -> Response {
    let Some(ctx) = state.ctx.get() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "starting\n").into_response();
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
        return (
            StatusCode::MISDIRECTED_REQUEST,
            Json(serde_json::json!({ "error": message })),
        )
            .into_response();
    };
    match groups.lag(&group) {
        Some(lag) => Json(lag).into_response(),
        None => (StatusCode::NOT_FOUND, Json(serde_json::json!({"error": format!("group '{group}' has no members and no committed offsets")})))
            .into_response(),
    }
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
