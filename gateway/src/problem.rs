//! [`Problem`]: an RFC 9457 `application/problem+json` error body.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// The media type of problem documents.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An error response: RFC 9457's members plus the call it concerns.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Problem {
    /// A URI naming the kind of problem, `urn:warren:problem:<slug>`.
    #[serde(rename = "type")]
    pub kind: String,
    /// A short summary of the kind of problem.
    pub title: &'static str,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong with this request.
    pub detail: String,
    /// The service called, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// The method called, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// The remote error's type, for errors raised by the service.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exc_type: Option<String>,
    /// The request id (also in the `X-Request-Id` header).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Seconds to wait before retrying, sent as `Retry-After` (not part of the body).
    #[serde(skip)]
    pub retry_after: Option<u32>,
    /// Methods the resource allows, sent as `Allow` on a 405 (not part of the body).
    #[serde(skip)]
    pub allow: Option<&'static str>,
    /// The challenge sent as `WWW-Authenticate` on a 401 or 403 (not part of the body).
    #[serde(skip)]
    pub www_authenticate: Option<String>,
}

impl Problem {
    /// The HTTP status as a [`StatusCode`].
    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status_code();
        let body = serde_json::to_vec(&self).unwrap_or_else(|_| b"{}".to_vec());
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if let Some(allow) = self.allow {
            headers.insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        if let Some(challenge) = self
            .www_authenticate
            .as_deref()
            .and_then(|c| HeaderValue::from_str(c).ok())
        {
            headers.insert(header::WWW_AUTHENTICATE, challenge);
        }
        if let Some(id) = self
            .request_id
            .as_deref()
            .and_then(|id| HeaderValue::from_str(id).ok())
        {
            headers.insert(crate::headers::REQUEST_ID, id);
        }
        response
    }
}
