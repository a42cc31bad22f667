//! A refused or failed request: its status and one line of words, answered as `{"error": "..."}` by the API and
//! shown in a paragraph by the page. Never a stack trace: a library error is its one-line message.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use soundalike::ErrorKind;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// Seconds, for a 503 of a full queue.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 400: what was sent cannot be asked (the words the command line would use).
    pub fn bad(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }
}

/// The library's kinds as statuses: a request that cannot be made or read is the client's (400), a clip that
/// is not there 404, a damaged index or a failing disk the server's (500).
impl From<soundalike::Error> for ApiError {
    fn from(error: soundalike::Error) -> ApiError {
        let status = match error.kind() {
            ErrorKind::Usage | ErrorKind::BadInput => StatusCode::BAD_REQUEST,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let hint = match error.kind() {
            ErrorKind::DamagedIndex => crate::DAMAGED_HINT,
            _ => "",
        };
        ApiError::new(status, format!("{error}{hint}"))
    }
}

impl From<axum::extract::multipart::MultipartError> for ApiError {
    fn from(error: axum::extract::multipart::MultipartError) -> ApiError {
        // Its status is 413 when the body passed the limit, 400 for a malformed form.
        let status = error.status();
        let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "the request is larger than this server takes".to_string()
        } else {
            format!("cannot read the form: {}", error.body_text())
        };
        ApiError::new(status, message)
    }
}

impl ApiError {
    /// The Retry-After header, when there is one.
    pub fn headers(&self) -> Option<(header::HeaderName, HeaderValue)> {
        self.retry_after
            .map(|seconds| (header::RETRY_AFTER, HeaderValue::from(seconds)))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(serde_json::json!({ "error": self.message })),
        )
            .into_response();
        if let Some((name, value)) = self.headers() {
            response.headers_mut().insert(name, value);
        }
        response
    }
}
