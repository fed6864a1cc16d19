//! The whole application: which handler answers which route, behind which
//! layers. Inference, history, image and model load/unload routes sit
//! behind the optional API key; health, metrics, stats, KServe metadata,
//! model config and statistics, the repository index, the OpenAPI
//! document and the page are public.

use axum::Router;
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::app::AppState;
use crate::error::ApiError;
use crate::handlers::{health, history, kserve, repository, seed, statistics};
use crate::response::{
    IMAGE_ID, INFERENCE_TIME, MODEL, QUEUE_TIME, REQUEST_ID, STORED, TOTAL_TIME,
};
use crate::{assets, auth, connection, limits, telemetry};

pub fn router(state: AppState) -> Router {
    let o = state.options().clone();
    let classify = limits::with_body_limit(
        Router::new().route("/classify", post(seed::classify)),
        o.max_body_size,
    );
    let infer = limits::with_body_limit(
        Router::new()
            .route("/v2/models/{name}/infer", post(kserve::infer))
            .route(
                "/v2/models/{name}/versions/{version}/infer",
                post(kserve::infer),
            ),
        o.max_infer_body_size,
    );
    let private = Router::new()
        .route("/api/history", get(history::history))
        .route("/api/images/{id}", get(history::image))
        .route("/v2/repository/models/{name}/load", post(repository::load))
        .route(
            "/v2/repository/models/{name}/unload",
            post(repository::unload),
        )
        .merge(classify)
        .merge(infer)
        .route_layer(from_fn_with_state(state.clone(), auth::require_api_key));
    let mut public = Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/openapi.json", get(health::openapi_json))
        .route("/api/stats", get(health::stats))
        .route("/api/stats/deployment", get(health::deployment_stats))
        .route("/v2", get(kserve::server_metadata))
        .route("/v2/health/live", get(kserve::live))
        .route("/v2/health/ready", get(kserve::ready))
        .route("/v2/models/stats", get(statistics::all))
        .route("/v2/models/{name}", get(kserve::model_metadata))
        .route("/v2/models/{name}/ready", get(kserve::model_ready))
        .route("/v2/models/{name}/config", get(kserve::model_config))
        .route("/v2/models/{name}/stats", get(statistics::model))
        .route(
            "/v2/models/{name}/versions/{version}",
            get(kserve::model_metadata),
        )
        .route(
            "/v2/models/{name}/versions/{version}/ready",
            get(kserve::model_ready),
        )
        .route(
            "/v2/models/{name}/versions/{version}/config",
            get(kserve::model_config),
        )
        .route(
            "/v2/models/{name}/versions/{version}/stats",
            get(statistics::model),
        )
        .route("/v2/repository/index", post(repository::repository_index));
    for path in assets::paths() {
        public = public.route(path, get(assets::serve));
    }
    let app = public
        .merge(private)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed);
    // Inside `observe`, so a trickled body is logged and counted as its 408.
    let mut app =
        connection::with_body_deadline(app, &o.connection, state.metrics().connections().clone())
            .layer(from_fn_with_state(state.clone(), telemetry::observe));
    if let Some(cors) = cors_layer(&o.cors_origins) {
        app = app.layer(cors);
    }
    app.with_state(state)
}

/// CORS only when origins are configured: the page is served from the
/// same origin, so cross-origin access is an explicit decision.
fn cors_layer(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    let expose = [
        REQUEST_ID,
        TOTAL_TIME,
        IMAGE_ID,
        STORED,
        QUEUE_TIME,
        INFERENCE_TIME,
        MODEL,
        "retry-after",
    ]
    .map(HeaderName::from_static);
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([
                header::CONTENT_TYPE,
                header::AUTHORIZATION,
                HeaderName::from_static(REQUEST_ID),
            ])
            .expose_headers(expose)
            .max_age(std::time::Duration::from_secs(600)),
    )
}

async fn not_found() -> ApiError {
    ApiError::NotFound("not found".into())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
