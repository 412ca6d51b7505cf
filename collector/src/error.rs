//! The one error type of the HTTP boundary; [`ApiError::status`] is the single place that maps
//! errors to status codes, and every error answers JSON naming the problem.

use hyper::StatusCode;

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ApiError {
    /// The envelope is not JSON, or an envelope field is missing or invalid.
    #[error("{message}")]
    BadRequest {
        message: String,
        field: &'static str,
    },
    #[error("unknown site")]
    UnknownSite,
    #[error("origin not allowed")]
    OriginNotAllowed,
    #[error("body larger than {0} bytes")]
    TooLarge(usize),
    #[error("content type must be application/json or text/plain")]
    UnsupportedMediaType,
    #[error("too many requests from this client")]
    RateLimited { retry_after_s: u64 },
    #[error("overloaded, retry later")]
    Overloaded { retry_after_s: u64 },
    #[error("store unavailable, retry later")]
    StoreUnavailable,
    #[error("not found")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The report API without a valid `Authorization: Bearer` token.
    #[error("missing or invalid API token")]
    Unauthorized,
    /// A report for a site that is not registered.
    #[error("unknown site")]
    SiteNotFound,
    #[error("unknown report {0:?}")]
    UnknownReport(String),
}

impl From<crate::report::ReportError> for ApiError {
    fn from(e: crate::report::ReportError) -> ApiError {
        use crate::report::ReportError;
        match e {
            ReportError::BadParam { field, message } => ApiError::BadRequest { message, field },
            ReportError::UnknownReport(r) => ApiError::UnknownReport(r),
            ReportError::UnknownSite => ApiError::SiteNotFound,
            ReportError::Store(e) => {
                tracing::error!(error = %e, "report query failed");
                ApiError::StoreUnavailable
            }
        }
    }
}

impl ApiError {
    /// A 400 naming a field (of the envelope, or a report parameter).
    pub fn bad(field: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::BadRequest {
            message: message.into(),
            field,
        }
    }

    /// The HTTP status for this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::UnknownSite | ApiError::OriginNotAllowed => StatusCode::FORBIDDEN,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Overloaded { .. } | ApiError::StoreUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::NotFound | ApiError::SiteNotFound | ApiError::UnknownReport(_) => {
                StatusCode::NOT_FOUND
            }
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        }
    }

    /// Seconds for the `Retry-After` header, where the client should retry.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            ApiError::RateLimited { retry_after_s } | ApiError::Overloaded { retry_after_s } => {
                Some(*retry_after_s)
            }
            ApiError::StoreUnavailable => Some(5),
            _ => None,
        }
    }

    /// The JSON body: `{"error": …}` plus `"field"` for a bad field or parameter.
    pub fn body(&self) -> serde_json::Value {
        match self {
            ApiError::BadRequest { message, field } => {
                serde_json::json!({ "error": message, "field": field })
            }
            other => serde_json::json!({ "error": other.to_string() }),
        }
    }
}
