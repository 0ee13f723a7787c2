//! Streaming framings: server-sent events (OpenAI) and NDJSON (Ollama).

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue};
use axum::response::Response;
use futures_util::Stream;

/// One SSE event: `data: PAYLOAD` and a blank line.
pub fn sse_data(payload: &str) -> Bytes {
    Bytes::from(format!("data: {payload}\n\n"))
}

/// OpenAI's end of stream.
pub fn sse_done() -> Bytes {
    sse_data("[DONE]")
}

/// One NDJSON line.
pub fn ndjson_line(v: &serde_json::Value) -> Bytes {
    let mut s = v.to_string();
    s.push('\n');
    Bytes::from(s)
}

/// A streamed response. Dropping the body (the client went away) drops the
/// stream and with it the request's handle, which cancels the generation.
pub fn stream_response<S>(content_type: &'static str, stream: S) -> Response
where
    S: Stream<Item = Bytes> + Send + 'static,
{
    use futures_util::StreamExt;
    let body = Body::from_stream(stream.map(Ok::<_, std::convert::Infallible>));
    let mut r = Response::new(body);
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Proxies (nginx) must not buffer the tokens.
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    r
}

pub const EVENT_STREAM: &str = "text/event-stream";
pub const NDJSON: &str = "application/x-ndjson";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing() {
        assert_eq!(sse_data("{\"a\":1}"), Bytes::from("data: {\"a\":1}\n\n"));
        assert_eq!(sse_done(), Bytes::from("data: [DONE]\n\n"));
        assert_eq!(
            ndjson_line(&serde_json::json!({"done": true})),
            Bytes::from("{\"done\":true}\n")
        );
    }
}
