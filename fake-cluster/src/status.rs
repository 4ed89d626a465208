//! Kubernetes `Status` failures, worded as a real API server words them.

use serde_json::{json, Value};

/// One failed field check, as in a `Status`'s `details.causes`.
#[derive(Debug, Clone)]
pub(crate) struct Cause {
    /// `FieldValueRequired`, `FieldValueInvalid`, ...
    pub reason: &'static str,
    /// The field's path, e.g. `spec.containers[0].image`.
    pub field: String,
    /// The detail after the field, e.g. `Required value`.
    pub message: String,
}

impl Cause {
    pub fn required(field: impl Into<String>, detail: &str) -> Self {
        let message = if detail.is_empty() {
            "Required value".to_string()
        } else {
            format!("Required value: {detail}")
        };
        Self {
            reason: "FieldValueRequired",
            field: field.into(),
            message,
        }
    }

    pub fn invalid(field: impl Into<String>, value: &str, detail: &str) -> Self {
        Self {
            reason: "FieldValueInvalid",
            field: field.into(),
            message: format!("Invalid value: {}: {detail}", quote(value)),
        }
    }

    pub fn duplicate(field: impl Into<String>, value: &str) -> Self {
        Self {
            reason: "FieldValueDuplicate",
            field: field.into(),
            message: format!("Duplicate value: {}", quote(value)),
        }
    }

    pub fn forbidden(field: impl Into<String>, detail: &str) -> Self {
        Self {
            reason: "FieldValueForbidden",
            field: field.into(),
            message: format!("Forbidden: {detail}"),
        }
    }

    pub fn not_supported(field: impl Into<String>, value: &str, supported: &[&str]) -> Self {
        let list: Vec<String> = supported.iter().map(|s| quote(s)).collect();
        Self {
            reason: "FieldValueNotSupported",
            field: field.into(),
            message: format!(
                "Unsupported value: {}: supported values: {}",
                quote(value),
                list.join(", ")
            ),
        }
    }

    pub fn not_found(field: impl Into<String>, value: &str) -> Self {
        Self {
            reason: "FieldValueNotFound",
            field: field.into(),
            message: format!("Not found: {}", quote(value)),
        }
    }

    pub fn too_long(field: impl Into<String>, max: usize) -> Self {
        Self {
            reason: "FieldValueTooLong",
            field: field.into(),
            message: format!("Too long: must have at most {max} bytes"),
        }
    }
}

/// Go's `%q` for the plain strings the messages quote.
pub(crate) fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// A failed request: its HTTP code and the `Status` body.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: String, details: Option<Value>) -> Self {
        Self {
            code,
            reason,
            message,
            details,
        }
    }

    /// `pods "x" not found`.
    pub fn not_found(resource: &str, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{resource} {} not found", quote(name)),
            Some(json!({"name": name, "kind": resource})),
        )
    }

    /// `pods "x" already exists`.
    pub fn already_exists(resource: &str, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{resource} {} already exists", quote(name)),
            Some(json!({"name": name, "kind": resource})),
        )
    }

    /// `Pod "x" is invalid: [a: b, c: d]`, one cause per failed check.
    pub fn invalid(kind: &str, name: &str, causes: &[Cause]) -> Self {
        let parts: Vec<String> = causes
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect();
        let joined = if parts.len() == 1 {
            parts[0].clone()
        } else {
            format!("[{}]", parts.join(", "))
        };
        let causes: Vec<Value> = causes
            .iter()
            .map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}))
            .collect();
        Self::new(
            422,
            "Invalid",
            format!("{kind} {} is invalid: {joined}", quote(name)),
            Some(json!({"name": name, "kind": kind, "causes": causes})),
        )
    }

    /// The authorizer's refusal; `name` is empty for collection verbs.
    pub fn forbidden(
        user: &str,
        verb: &str,
        resource: &str,
        name: &str,
        namespace: Option<&str>,
    ) -> Self {
        let (group_res, sub) = match resource.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (resource, None),
        };
        let subject = if name.is_empty() {
            group_res.to_string()
        } else {
            format!("{group_res} {}", quote(name))
        };
        let scope = match namespace {
            Some(ns) => format!(" in the namespace {}", quote(ns)),
            None => " at the cluster scope".to_string(),
        };
        let what = match sub {
            Some(s) => format!("{group_res}/{s}"),
            None => group_res.to_string(),
        };
        let mut details = json!({"kind": group_res});
        if !name.is_empty() {
            details["name"] = json!(name);
        }
        Self::new(
            403,
            "Forbidden",
            format!("{subject} is forbidden: User {} cannot {verb} resource {} in API group \"\"{scope}", quote(user), quote(&what)),
            Some(details),
        )
    }

    /// A watch from a resourceVersion older than the retained history.
    pub fn expired(requested: u64, oldest: u64) -> Self {
        Self::new(
            410,
            "Expired",
            format!("too old resource version: {requested} ({oldest})"),
            None,
        )
    }

    /// A malformed request.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message.into(), None)
    }

    /// A wrong or missing bearer token.
    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized".into(), None)
    }

    /// A verb the resource does not have.
    pub fn method_not_allowed(method: &str) -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            format!("the server does not allow this method on the requested resource ({method})"),
            None,
        )
    }

    /// A request body over the API server's limit.
    pub fn new_too_large() -> Self {
        Self::new(
            413,
            "RequestEntityTooLarge",
            "Request entity too large: limit is 3145728".into(),
            None,
        )
    }

    /// A path the server does not serve.
    pub fn path_not_found() -> Self {
        Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource".into(),
            None,
        )
    }

    /// A failure a test injected with `fail_next`.
    pub fn injected(code: u16) -> Self {
        let (reason, message) = match code {
            429 => ("TooManyRequests", "the server has received too many requests and has asked us to try again later"),
            500 => ("InternalError", "an error on the server (\"injected\") has prevented the request from succeeding"),
            503 => ("ServiceUnavailable", "the server is currently unable to handle the request"),
            504 => ("Timeout", "the server was unable to return a response in the time allotted, but may still be processing the request"),
            409 => ("Conflict", "the object has been modified; please apply your changes to the latest version and try again"),
            404 => ("NotFound", "the server could not find the requested resource"),
            _ => ("InternalError", "injected failure"),
        };
        Self::new(code, reason, message.into(), None)
    }

    /// A JSON patch operation that does not apply, answered as the patch handler's generic 422.
    pub fn patch_does_not_apply(detail: &str) -> Self {
        Self::new(
            422,
            "Invalid",
            "the server rejected our request due to an error in our request".into(),
            Some(json!({"causes": [{"reason": "UnexpectedServerResponse", "message": detail}]})),
        )
    }

    /// A write based on a stale resourceVersion.
    pub fn conflict(resource: &str, name: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {resource} {}: the object has been modified; please apply your changes to the latest version and try again",
                quote(name)
            ),
            Some(json!({"name": name, "kind": resource})),
        )
    }

    /// A patch of a content type the server does not take.
    pub fn unsupported_patch_type() -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            // The real list also names apply-patch+yaml, which the fake does not serve.
            "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json".into(),
            None,
        )
    }

    /// The `Status` object.
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            v["details"] = d.clone();
        }
        v
    }
}
