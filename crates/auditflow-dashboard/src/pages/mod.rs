//! One module per page. Handlers never answer 500: a failed source becomes a
//! panel marked unavailable, or a 503 page when the page has nothing else to show.

pub mod alerts;
pub mod dead_letters;
pub mod events;
pub mod health;
pub mod overview;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};

use crate::view::{page, Nav};

/// A whole page that could not be built because its one source failed:
/// 503 with the reason, navigation intact.
pub fn unavailable_page(title: &str, nav: Nav, signed_in: bool, reason: &str) -> Response {
    let body = html! {
        h1 { (title) }
        (crate::panel::unavailable(reason, chrono::Utc::now(), None))
    };
    (
        StatusCode::SERVICE_UNAVAILABLE,
        page(title, nav, signed_in, body),
    )
        .into_response()
}

/// A page for a missing item: 404.
pub fn not_found_page(title: &str, nav: Nav, signed_in: bool, what: &str) -> Response {
    let body: Markup = html! {
        h1 { (title) }
        p.notice { (what) " not found." }
    };
    (StatusCode::NOT_FOUND, page(title, nav, signed_in, body)).into_response()
}

/// A list page's 400 for a bad filter, with the form still usable.
pub fn bad_filter(title: &str, nav: Nav, signed_in: bool, form: Markup, reason: &str) -> Response {
    let body = html! {
        h1 { (title) }
        (form)
        p.error role="alert" { (reason) }
    };
    (StatusCode::BAD_REQUEST, page(title, nav, signed_in, body)).into_response()
}

/// The reason of a rejected filter, as the read API words it.
pub fn api_reason(error: auditflow_api::ApiError) -> String {
    match error {
        auditflow_api::ApiError::BadRequest(reason) => reason,
        other => format!("{other:?}"),
    }
}
