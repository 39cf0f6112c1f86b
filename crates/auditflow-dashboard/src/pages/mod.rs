//! One module per page. Handlers never answer 500: a failed source becomes a
//! panel marked unavailable, or a 503 page when the page has nothing else to show.

pub mod alerts;
pub mod dead_letters;
pub mod events;
pub mod health;
pub mod overview;

use axum::extract::rejection::QueryRejection;
use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};

use crate::view::{self, page, Nav, BASE};

/// What the alerts and events lists have in common: filters read from the
/// query string, turned into a store query, shown as a form and as links.
pub trait ListFilters: Default {
    /// The store query the filters amount to.
    type Query;
    /// The store query, or the read API's reason for refusing the filters.
    fn query(&self) -> Result<Self::Query, auditflow_api::ApiError>;
    /// The filter form, filled in.
    fn form(&self) -> Markup;
    /// Query-string pairs of these filters at `cursor`.
    fn pairs<'a>(&'a self, cursor: Option<&'a str>) -> Vec<(&'a str, Option<&'a str>)>;
    /// The cursor of the page shown; `None` on the first page.
    fn cursor(&self) -> Option<&str>;
}

/// A list page's filters and their store query, or the page's 400 with the
/// reason and the form still usable.
pub fn list_query<F: ListFilters>(
    title: &str,
    nav: Nav,
    signed_in: bool,
    filters: Result<Query<F>, QueryRejection>,
) -> Result<(F, F::Query), Box<Response>> {
    let filters = match filters {
        Ok(Query(filters)) => filters,
        Err(rejection) => {
            let form = F::default().form();
            return Err(Box::new(bad_filter(
                title,
                nav,
                signed_in,
                form,
                &rejection.body_text(),
            )));
        }
    };
    match filters.query() {
        Ok(query) => Ok((filters, query)),
        Err(error) => Err(Box::new(bad_filter(
            title,
            nav,
            signed_in,
            filters.form(),
            &api_reason(error),
        ))),
    }
}

/// The "newest" and "older" links of the list at `path` (below `BASE`).
pub fn pager<F: ListFilters>(path: &str, filters: &F, older: Option<&str>) -> Markup {
    html! {
        nav.pager {
            @if filters.cursor().is_some() {
                a href={ (BASE) (path) (view::query_string(&filters.pairs(None))) } { "← newest" }
            }
            @if let Some(older) = older {
                a rel="next" href={ (BASE) (path) (view::query_string(&filters.pairs(Some(older)))) } { "older →" }
            }
        }
    }
}

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
