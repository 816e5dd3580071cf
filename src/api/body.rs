//! Request bodies as PEON clients send them: usually a JSON object, sometimes nothing at all,
//! with or without a content type. Anything else is a 400 in the common error shape.
//! [`Loose`] reads such a body into a typed request (see [`super::dto`]).

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use serde_json::{Map, Value};

use super::error::ApiError;

/// A JSON object body; an empty body is an empty object.
#[derive(Debug, Default)]
pub struct Body(pub Map<String, Value>);

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::BadRequest(format!("Cannot read the request body: {e}")))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Body(Map::new()));
        }
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(m)) => Ok(Body(m)),
            Ok(_) => Err(ApiError::BadRequest(
                "The request body must be a JSON object.".into(),
            )),
            Err(e) => Err(ApiError::BadRequest(format!(
                "The request body is not valid JSON: {e}"
            ))),
        }
    }
}

/// A typed request body read the tolerant way of [`Body`], then checked by the type's
/// `TryFrom<Body>` (whose errors are the common 400s).
#[derive(Debug)]
pub struct Loose<T>(pub T);

impl<S, T> FromRequest<S> for Loose<T>
where
    S: Send + Sync,
    T: TryFrom<Body, Error = ApiError>,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let body = Body::from_request(req, state).await?;
        Ok(Loose(T::try_from(body)?))
    }
}

impl Body {
    /// PEON's truthiness, made strict: only JSON `true` or the string "True".
    pub fn flag(&self, key: &str) -> bool {
        match self.0.get(key) {
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) => s == "True",
            _ => false,
        }
    }

    /// A duration key: seconds, or a duration such as `90s`, `30m` or `2h`, at most `max`.
    pub fn duration(
        &self,
        key: &str,
        max: std::time::Duration,
    ) -> Result<Option<std::time::Duration>, ApiError> {
        let text = match self.0.get(key) {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::Number(n)) => n.to_string(),
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
        };
        crate::model::lifecycle::parse_duration(&text)
            .filter(|d| *d <= max)
            .map(Some)
            .ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "{key} [{text}] must be seconds or a duration like 90s, 30m or 2h, at most {}.",
                    crate::live::events::human_secs(max.as_secs())
                ))
            })
    }

    pub fn str(&self, key: &str) -> Result<Option<String>, ApiError> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(ApiError::BadRequest(format!(
                "The field {key} must be a string, not {other}."
            ))),
        }
    }
}
