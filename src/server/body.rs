//! Request bodies: a size limit, UTF-8, then JSON into the request type,
//! each failure a 4xx naming what is wrong (the field path included).

use axum::body::Body;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use super::errors::ApiError;

/// Largest request body accepted (a long conversation fits many times over).
pub const MAX_BODY_BYTES: usize = 8 << 20;

pub async fn read_json<T: DeserializeOwned>(body: Body) -> Result<T, ApiError> {
    let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "request body over the limit of {} MiB",
                    MAX_BODY_BYTES >> 20
                ),
            )
        })?;
    parse_json(&bytes)
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        ApiError::bad_request(format!(
            "request body is not valid UTF-8 (byte {})",
            e.valid_up_to()
        ))
    })?;
    if text.trim().is_empty() {
        return Err(ApiError::bad_request(
            "empty request body: expected a JSON object",
        ));
    }
    let de = &mut serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." || path.is_empty() {
            ApiError::bad_request(format!("invalid JSON body: {inner}"))
        } else {
            ApiError::bad_request(format!("invalid JSON body: {path}: {inner}"))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    struct T {
        #[allow(dead_code)]
        a: Vec<u32>,
    }

    #[test]
    fn errors_name_the_problem() {
        let e = parse_json::<T>(br#"{"a": [1, "x"]}"#).unwrap_err();
        assert!(e.message.contains("a[1]"), "{}", e.message);
        let e = parse_json::<T>(b"{\"a\": [\xff]}").unwrap_err();
        assert!(e.message.contains("UTF-8"), "{}", e.message);
        let e = parse_json::<T>(b"").unwrap_err();
        assert!(e.message.contains("empty"), "{}", e.message);
        let e = parse_json::<T>(b"{").unwrap_err();
        assert!(e.message.starts_with("invalid JSON body"), "{}", e.message);
        assert!(parse_json::<T>(br#"{"a": [1]}"#).is_ok());
    }
}
