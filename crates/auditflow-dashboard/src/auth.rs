//! Access control of the dashboard.
//!
//! When a token is configured (`http.auth_token`, required by the platform
//! whenever it listens beyond loopback), every dashboard page needs either
//! `Authorization: Bearer <token>` (scripts, proxies) or a session cookie
//! from the login form (people). The cookie is not the token: it is
//! `<issued unix seconds>.<HMAC-SHA256(token, issued)>`, valid for
//! [`SESSION_LIFETIME`], `HttpOnly`, `SameSite=Strict` (so another site
//! cannot make the browser send it with a forged re-drive), and changing the
//! token signs everyone out. Without a token the dashboard is open, like the
//! rest of the API.
//!
//! State-changing requests (`POST`) that a browser marks as cross-site are
//! refused even without a token, so a page on another site cannot re-drive
//! dead letters through a dashboard on loopback.

use std::sync::Arc;

use axum::extract::{Form, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use hmac::{Hmac, KeyInit, Mac};
use maud::html;
use serde::Deserialize;
use sha2::Sha256;

use crate::view::{page, Nav, BASE};
use crate::Dashboard;

/// Name of the session cookie.
pub const COOKIE: &str = "auditflow_session";
/// How long a login lasts.
pub const SESSION_LIFETIME: chrono::Duration = chrono::Duration::hours(12);

/// The configured token, if any.
#[derive(Clone, Default)]
pub struct Auth {
    token: Option<Arc<str>>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the token.
        f.debug_struct("Auth")
            .field("token", &self.token.as_ref().map(|_| "***"))
            .finish()
    }
}

impl Auth {
    /// Requires `token` when it is `Some`; the dashboard is open otherwise.
    pub fn new(token: Option<String>) -> Auth {
        Auth {
            token: token.filter(|t| !t.is_empty()).map(Arc::from),
        }
    }

    /// True when a token is configured.
    pub fn required(&self) -> bool {
        self.token.is_some()
    }

    fn mac(token: &str, issued: i64) -> Option<Hmac<Sha256>> {
        let mut mac = Hmac::<Sha256>::new_from_slice(token.as_bytes()).ok()?;
        mac.update(b"auditflow-dashboard-session/");
        mac.update(issued.to_string().as_bytes());
        Some(mac)
    }

    /// A fresh session value for the cookie, when a token is configured.
    pub fn new_session(&self) -> Option<String> {
        let token = self.token.as_deref()?;
        let issued = Utc::now().timestamp();
        let tag = Auth::mac(token, issued)?.finalize().into_bytes();
        Some(format!("{issued}.{}", hex(&tag)))
    }

    /// True when `value` is a session this token signed and it has not expired.
    pub fn session_valid(&self, value: &str) -> bool {
        let Some(token) = self.token.as_deref() else {
            return false;
        };
        let Some((issued, tag)) = value.split_once('.') else {
            return false;
        };
        let (Ok(issued), Some(tag)) = (issued.parse::<i64>(), unhex(tag)) else {
            return false;
        };
        let age = Utc::now().timestamp() - issued;
        if !(0..=SESSION_LIFETIME.num_seconds()).contains(&age) {
            return false;
        }
        // `verify_slice` compares in constant time.
        Auth::mac(token, issued).is_some_and(|mac| mac.verify_slice(&tag).is_ok())
    }

    /// True when `given` is the token (constant-time comparison).
    pub fn token_matches(&self, given: &str) -> bool {
        let Some(expected) = self.token.as_deref() else {
            return false;
        };
        subtle::ConstantTimeEq::ct_eq(given.as_bytes(), expected.as_bytes()).into()
    }

    /// True when the request carries the bearer token or a valid session.
    pub fn allows(&self, headers: &HeaderMap) -> bool {
        if !self.required() {
            return true;
        }
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if bearer.is_some_and(|b| self.token_matches(b)) {
            return true;
        }
        session_cookie(headers).is_some_and(|s| self.session_valid(s))
    }
}

/// The value of our session cookie in the request, if any.
fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// True when the browser says the request comes from another site.
fn cross_site(headers: &HeaderMap) -> bool {
    headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|site| site == "cross-site")
}

/// Middleware: lets authorised requests through; sends people to the login
/// page and answers 401 to everything else (live refreshes, posts).
pub async fn require_login(
    State(dashboard): State<Arc<Dashboard>>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    let open = path == format!("{BASE}/login") || path.starts_with(&format!("{BASE}/assets/"));
    if request.method() == Method::POST && cross_site(request.headers()) {
        return (StatusCode::FORBIDDEN, "cross-site request refused").into_response();
    }
    if open || dashboard.auth.allows(request.headers()) {
        return next.run(request).await;
    }
    let is_page = request.method() == Method::GET
        && !path.starts_with(&format!("{BASE}/panels/"))
        && !request
            .uri()
            .query()
            .is_some_and(|q| q.contains("partial="));
    if is_page {
        let next_path = request
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| BASE.to_string());
        let target = format!(
            "{BASE}/login{}",
            crate::view::query_string(&[("next", Some(&next_path))])
        );
        return Redirect::to(&target).into_response();
    }
    let mut response = (StatusCode::UNAUTHORIZED, "sign in first").into_response();
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

/// Where to go after signing in: a dashboard path, never another site.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(path)
            if path.starts_with(BASE)
                && !path.starts_with("//")
                && !path.contains('\\')
                && !path.contains("://") =>
        {
            path.to_string()
        }
        _ => BASE.to_string(),
    }
}

/// Query of the login page.
#[derive(Debug, Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
    failed: Option<String>,
}

/// `GET /dashboard/login`.
pub async fn login_page(Query(query): Query<LoginQuery>) -> Response {
    let next = safe_next(query.next.as_deref());
    let body = html! {
        section.panel.login {
            h1 { "Sign in" }
            p { "Enter the AuditFlow access token (" code { "http.auth_token" } ")." }
            @if query.failed.is_some() {
                p.error role="alert" { "That token is not right." }
            }
            form method="post" action={ (BASE) "/login" } {
                input type="hidden" name="next" value=(next);
                label for="token" { "Token" }
                input type="password" id="token" name="token" autocomplete="current-password" required;
                button type="submit" { "Sign in" }
            }
        }
    };
    page("Sign in", Nav::Login, false, body).into_response()
}

/// Form of the login page.
#[derive(Deserialize)]
pub struct LoginForm {
    token: String,
    next: Option<String>,
}

/// `POST /dashboard/login`: sets the session cookie when the token is right.
pub async fn login(
    State(dashboard): State<Arc<Dashboard>>,
    Form(form): Form<LoginForm>,
) -> Response {
    let next = safe_next(form.next.as_deref());
    if !dashboard.auth.required() {
        return Redirect::to(&next).into_response();
    }
    if !dashboard.auth.token_matches(&form.token) {
        tracing::warn!("dashboard sign-in with a wrong token");
        let target = format!(
            "{BASE}/login{}",
            crate::view::query_string(&[("next", Some(&next)), ("failed", Some("1"))])
        );
        return Redirect::to(&target).into_response();
    }
    let Some(session) = dashboard.auth.new_session() else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "cannot sign a session").into_response();
    };
    let cookie = format!(
        "{COOKIE}={session}; Path={BASE}; HttpOnly; SameSite=Strict; Max-Age={}",
        SESSION_LIFETIME.num_seconds()
    );
    let mut response = Redirect::to(&next).into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// `POST /dashboard/logout`: clears the session cookie.
pub async fn logout() -> Response {
    let mut response = Redirect::to(&format!("{BASE}/login")).into_response();
    let cookie = format!("{COOKIE}=; Path={BASE}; HttpOnly; SameSite=Strict; Max-Age=0");
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn sessions_are_signed_by_the_token_and_are_not_the_token() {
        let auth = Auth::new(Some("s3cret-token".into()));
        let session = auth.new_session().unwrap();
        assert!(!session.contains("s3cret-token"));
        assert!(auth.session_valid(&session));
        assert!(!Auth::new(Some("other".into())).session_valid(&session));
        let (issued, tag) = session.split_once('.').unwrap();
        let forged = format!("{}.{tag}", issued.parse::<i64>().unwrap() + 1);
        assert!(!auth.session_valid(&forged));
        assert!(!auth.session_valid("garbage"));
        assert!(!auth.session_valid("1.zz"));
    }

    #[test]
    fn old_sessions_expire() {
        let auth = Auth::new(Some("t".into()));
        let issued = Utc::now().timestamp() - SESSION_LIFETIME.num_seconds() - 5;
        let tag = Auth::mac("t", issued).unwrap().finalize().into_bytes();
        assert!(!auth.session_valid(&format!("{issued}.{}", hex(&tag))));
    }

    #[test]
    fn bearer_or_cookie_is_accepted_when_a_token_is_set() {
        let auth = Auth::new(Some("hunter2".into()));
        assert!(!auth.allows(&headers(&[])));
        assert!(auth.allows(&headers(&[("authorization", "Bearer hunter2")])));
        assert!(!auth.allows(&headers(&[("authorization", "Bearer hunter3")])));
        let cookie = format!("a=b; {COOKIE}={}", auth.new_session().unwrap());
        assert!(auth.allows(&headers(&[("cookie", &cookie)])));
        assert!(!auth.allows(&headers(&[("cookie", "auditflow_session=1.00")])));
        assert!(Auth::new(None).allows(&headers(&[])));
        assert!(!format!("{auth:?}").contains("hunter2"));
    }

    #[test]
    fn sign_in_only_returns_to_dashboard_paths() {
        assert_eq!(
            safe_next(Some("/dashboard/alerts?x=1")),
            "/dashboard/alerts?x=1"
        );
        assert_eq!(safe_next(Some("https://evil.example/")), "/dashboard");
        assert_eq!(safe_next(Some("//evil.example")), "/dashboard");
        assert_eq!(safe_next(Some("/dashboard\\..")), "/dashboard");
        assert_eq!(safe_next(None), "/dashboard");
    }
}
