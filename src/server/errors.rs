//! Error responses: one `ApiError` for every failure a handler can meet,
//! written in the dialect of the API that was called (OpenAI's
//! `{"error": {"message", "type", "code"}}` or Ollama's `{"error": "..."}`).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::engine::SubmitError;

#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// OpenAI's `code` (`context_length_exceeded`, `invalid_api_key`...).
    pub code: Option<&'static str>,
    /// Seconds a client should wait before retrying (`Retry-After`).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            code: None,
            retry_after: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn with_code(mut self, code: &'static str) -> ApiError {
        self.code = Some(code);
        self
    }

    pub fn loading() -> ApiError {
        ApiError {
            retry_after: Some(1),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the model is still loading",
            )
            .with_code("model_loading")
        }
    }

    /// OpenAI's `type`: client mistakes are `invalid_request_error`.
    fn kind(&self) -> &'static str {
        match self.status {
            StatusCode::UNAUTHORIZED => "authentication_error",
            StatusCode::NOT_FOUND => "not_found_error",
            StatusCode::SERVICE_UNAVAILABLE => "unavailable_error",
            s if s.is_client_error() => "invalid_request_error",
            _ => "server_error",
        }
    }

    /// The OpenAI error object (also sent as the last SSE event when a stream fails).
    pub fn openai_body(&self) -> serde_json::Value {
        json!({"error": {
            "message": self.message,
            "type": self.kind(),
            "code": self.code,
            "param": null,
        }})
    }

    pub fn ollama_body(&self) -> serde_json::Value {
        json!({ "error": self.message })
    }

    fn respond(&self, body: serde_json::Value) -> Response {
        let mut r = (self.status, axum::Json(body)).into_response();
        if let Some(s) = self.retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        r
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.message)
    }
}

impl From<SubmitError> for ApiError {
    fn from(e: SubmitError) -> ApiError {
        let msg = e.to_string();
        match e {
            SubmitError::QueueFull => ApiError {
                retry_after: Some(1),
                ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, msg).with_code("queue_full")
            },
            SubmitError::ShuttingDown => ApiError {
                retry_after: Some(5),
                ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, msg).with_code("shutting_down")
            },
            SubmitError::EmptyPrompt => ApiError::bad_request(msg).with_code("empty_prompt"),
            SubmitError::TooManyLogprobs(_) => ApiError::bad_request(msg),
            SubmitError::PromptTooLong { .. } => {
                ApiError::bad_request(msg).with_code("context_length_exceeded")
            }
        }
    }
}

/// An [`ApiError`] answered in OpenAI's format (also the server's own endpoints).
pub struct OpenAiError(pub ApiError);

/// An [`ApiError`] answered in Ollama's format.
pub struct OllamaError(pub ApiError);

impl From<ApiError> for OpenAiError {
    fn from(e: ApiError) -> Self {
        OpenAiError(e)
    }
}

impl From<ApiError> for OllamaError {
    fn from(e: ApiError) -> Self {
        OllamaError(e)
    }
}

impl From<SubmitError> for OpenAiError {
    fn from(e: SubmitError) -> Self {
        OpenAiError(e.into())
    }
}

impl From<SubmitError> for OllamaError {
    fn from(e: SubmitError) -> Self {
        OllamaError(e.into())
    }
}

impl IntoResponse for OpenAiError {
    fn into_response(self) -> Response {
        self.0.respond(self.0.openai_body())
    }
}

impl IntoResponse for OllamaError {
    fn into_response(self) -> Response {
        self.0.respond(self.0.ollama_body())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_shape_and_types() {
        let e = ApiError::bad_request("bad").with_code("x");
        assert_eq!(
            e.openai_body(),
            json!({"error": {"message": "bad", "type": "invalid_request_error", "code": "x", "param": null}})
        );
        assert_eq!(
            ApiError::new(StatusCode::UNAUTHORIZED, "k").openai_body()["error"]["type"],
            "authentication_error"
        );
        assert_eq!(
            ApiError::bad_request("m").ollama_body(),
            json!({"error": "m"})
        );
    }

    #[test]
    fn queue_full_is_503_with_retry_after() {
        let r = OpenAiError(SubmitError::QueueFull.into()).into_response();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
        let r = OllamaError(
            SubmitError::PromptTooLong {
                prompt: 9,
                n_ctx: 4,
            }
            .into(),
        )
        .into_response();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    }
}
