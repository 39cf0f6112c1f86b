//! The read API as the end-to-end tests use it: JSON GETs and whole
//! cursor-paginated listings.

use serde_json::Value;

/// GETs `url` as text; any failure or non-2xx is an error that names the URL.
pub async fn get_text(api: &reqwest::Client, url: &str) -> Result<String, String> {
    let response = api
        .get(url)
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    let status = response.status();
    let text = response
        .text()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    if !status.is_success() {
        return Err(format!("GET {url}: {status}: {text}"));
    }
    Ok(text)
}

/// GETs `url` and parses the JSON answer; any failure or non-2xx is an error
/// that names the URL.
pub async fn get_json(api: &reqwest::Client, url: &str) -> Result<Value, String> {
    let text = get_text(api, url).await?;
    serde_json::from_str(&text).map_err(|e| format!("GET {url}: {e}: {text}"))
}

/// Every item of a cursor-paginated listing (`query` without `?`/`&`).
pub async fn list_all(
    api: &reqwest::Client,
    base: &str,
    path: &str,
    query: &str,
) -> Result<Vec<Value>, String> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10_000 {
        let mut url = format!("{base}{path}?limit=1000");
        if !query.is_empty() {
            url.push('&');
            url.push_str(query);
        }
        if let Some(c) = &cursor {
            url.push_str("&cursor=");
            url.push_str(c);
        }
        let page = get_json(api, &url).await?;
        items.extend(page["items"].as_array().cloned().unwrap_or_default());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => return Ok(items),
        }
    }
    Err(format!("{path}: more than 10 000 pages"))
}
