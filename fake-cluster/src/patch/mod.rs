//! Patch documents: which kind a request sends and applying it to an object's JSON.

mod json_patch;
mod merge;

use serde_json::Value;

use crate::status::ApiError;
use json_patch::JsonPatchError;

/// The patch kinds the fake serves, by content type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PatchType {
    /// `application/json-patch+json`: RFC 6902 operations.
    Json,
    /// `application/merge-patch+json`: RFC 7386.
    Merge,
    /// `application/strategic-merge-patch+json`, simplified (see [`apply`]).
    Strategic,
}

impl PatchType {
    /// The kind a `Content-Type` names, parameters such as `charset` ignored; `None` is a 415.
    pub fn from_content_type(ct: &str) -> Option<Self> {
        match ct.split(';').next().unwrap_or_default().trim() {
            "application/json-patch+json" => Some(Self::Json),
            "application/merge-patch+json" => Some(Self::Merge),
            "application/strategic-merge-patch+json" => Some(Self::Strategic),
            _ => None,
        }
    }
}

/// Applies a patch body to an object's JSON, failing as the API server's patch handler does:
/// an undecodable patch is a 400, a JSON patch operation that does not apply a 422.
///
/// A strategic merge patch is applied as a JSON merge patch: maps merge the same way, but every
/// list is replaced whole instead of merged by its patch merge key (a container by `name`, an
/// owner reference by `uid`), and `$patch`/`$setElementOrder` directives are not understood (they
/// stay in the object and strict decoding then refuses them as unknown fields). The executor only
/// sends merge patches; a full strategic merge needs the schema's merge keys for every list.
pub(crate) fn apply(kind: PatchType, current: &Value, body: &[u8]) -> Result<Value, ApiError> {
    let patch: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
    match kind {
        PatchType::Merge | PatchType::Strategic => {
            let mut out = current.clone();
            merge::merge(&mut out, &patch);
            Ok(out)
        }
        PatchType::Json => json_patch::apply(current, &patch).map_err(|e| match e {
            JsonPatchError::Malformed(m) => ApiError::bad_request(m),
            JsonPatchError::DoesNotApply(m) => ApiError::patch_does_not_apply(&m),
        }),
    }
}
