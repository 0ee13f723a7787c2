//! `--api-key`: every route but `/health` and the static page needs
//! `Authorization: Bearer KEY`, compared in constant time.

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::errors::{ApiError, OllamaError, OpenAiError};
use super::state::AppState;

/// Paths anyone may read: the load balancer's probe, and the page, which
/// holds no data and asks for the key itself.
const PUBLIC: &[&str] = &["/health", "/", "/index.html"];

/// Equal iff same length and bytes; the time taken depends only on the lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() ^ b.len()) as u64;
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= u64::from(std::hint::black_box(x ^ y));
    }
    diff == 0
}

/// The key a request presents: `Authorization: Bearer KEY`.
fn presented(req: &Request) -> Option<&[u8]> {
    let v = req.headers().get(header::AUTHORIZATION)?.as_bytes();
    let scheme = v.get(..7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| v[7..].trim_ascii())
}

pub async fn require_key(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(key) = &state.api_key else {
        return next.run(req).await;
    };
    if PUBLIC.contains(&req.uri().path()) {
        return next.run(req).await;
    }
    let ok = presented(&req).is_some_and(|k| constant_time_eq(k, key.as_bytes()));
    if ok {
        return next.run(req).await;
    }
    let msg = if presented(&req).is_some() {
        "invalid API key"
    } else {
        "missing API key: send the header 'Authorization: Bearer KEY'"
    };
    let e = ApiError::new(StatusCode::UNAUTHORIZED, msg).with_code("invalid_api_key");
    if req.uri().path().starts_with("/api/") {
        OllamaError(e).into_response()
    } else {
        OpenAiError(e).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_only_when_identical() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(constant_time_eq(b"", b""));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"secret", b"secre"));
        assert!(!constant_time_eq(b"", b"x"));
        // Length difference alone, with a common prefix of zero bytes.
        assert!(!constant_time_eq(b"\0", b""));
    }

    #[test]
    fn bearer_scheme_is_case_insensitive_and_trimmed() {
        let req = |v: &str| {
            Request::builder()
                .header(header::AUTHORIZATION, v)
                .body(axum::body::Body::empty())
                .unwrap()
        };
        assert_eq!(presented(&req("Bearer abc")), Some(&b"abc"[..]));
        assert_eq!(presented(&req("bearer  abc ")), Some(&b"abc"[..]));
        assert_eq!(presented(&req("Basic abc")), None);
        assert_eq!(presented(&req("Bear")), None);
    }
}
