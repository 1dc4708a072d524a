//! The dashboard at `/admin/`: one static page, its script and its style,
//! embedded in the binary (no build step, nothing fetched from elsewhere).
//!
//! The page itself is served without a token: it holds no data. Its scripts
//! read `/admin/v1/cluster`, `/admin/v1/health`, `/admin/v1/events`,
//! `/admin/v1/catalogue`, `/admin/v1/keys`, `/admin/v1/history`,
//! `/admin/v1/routes` and today's `/admin/v1/usage` every
//! two seconds with the admin token (sent as `Authorization: Bearer`), or
//! with none when the node runs without a token on loopback. The token is
//! typed into the page or given in the URL fragment (`/admin/#token=…`,
//! which never reaches the server and is taken off the address bar at once),
//! kept in the tab's `sessionStorage`, or in `localStorage` when the
//! operator asks the page to remember it (a wall display), until "Forget".
//! Whether the node wants a token is said from its answer (401 or not). A strict
//! Content-Security-Policy allows only this origin's script, style and
//! requests, and the script writes every value as text, never as markup.
//!
//! Routes, upstreams and keys are edited from the page through the same
//! admin API (`PUT`/`DELETE`), with the same token: the node refuses a bad
//! change with a 4xx naming the field, shown beside it, and proposes
//! nothing; a delete asks first; a key is write-only (never shown).

use axum::Router;
use axum::http::{HeaderName, HeaderValue, header};
use axum::response::IntoResponse;
use axum::routing::get;

use super::AdminState;

const INDEX: &str = include_str!("assets/index.html");
const SCRIPT: &str = include_str!("assets/app.js");
const TABLES: &str = include_str!("assets/tables.js");
const CHARTS: &str = include_str!("assets/charts.js");
const EDIT: &str = include_str!("assets/edit.js");
const STYLE: &str = include_str!("assets/style.css");

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The dashboard's routes: the page at `/admin/` (and `/admin`) and its
/// assets (the style and four scripts: the refresh, the tables, the
/// charts, the editor).
pub fn routes() -> Router<AdminState> {
    Router::new()
        .route(
            "/admin",
            get(|| async { asset("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/admin/",
            get(|| async { asset("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/admin/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route(
            "/admin/tables.js",
            get(|| async { asset("text/javascript; charset=utf-8", TABLES) }),
        )
        .route(
            "/admin/charts.js",
            get(|| async { asset("text/javascript; charset=utf-8", CHARTS) }),
        )
        .route(
            "/admin/edit.js",
            get(|| async { asset("text/javascript; charset=utf-8", EDIT) }),
        )
        .route(
            "/admin/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
}

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CSP),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                HeaderName::from_static("referrer-policy"),
                HeaderValue::from_static("no-referrer"),
            ),
        ],
        body,
    )
}
