//! Admission of a created object: strict decoding, validation and the defaults a real API server
//! fills in.

pub(crate) mod names;
mod owners;
mod pod;
mod pod_update;
mod unknown;
mod update;

pub(crate) use update::{admit_update, Write};

use k8s_openapi::api::core::v1::{Event, Pod, Secret};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

use crate::resource::Resource;
use crate::status::{ApiError, Cause};
use crate::store::name_suffix;

const MAX_ANNOTATIONS_BYTES: usize = 256 * 1024;
const MAX_SECRET_BYTES: usize = 1024 * 1024;

/// Why a strict decode failed.
pub(crate) enum DecodeError {
    /// A value of the wrong type, or a missing required field.
    Type(String),
    /// Fields the type does not have, by path.
    Unknown(Vec<String>),
}

/// Decodes strictly: the typed value and its JSON, or what was wrong.
pub(crate) fn decode_strict<T: DeserializeOwned + Serialize>(
    raw: &Value,
) -> Result<(T, Value), DecodeError> {
    let typed: T =
        serde_json::from_value(raw.clone()).map_err(|e| DecodeError::Type(e.to_string()))?;
    let back = serde_json::to_value(&typed).map_err(|e| DecodeError::Type(e.to_string()))?;
    let unknown = unknown::unknown_fields(raw, &back);
    if !unknown.is_empty() {
        return Err(DecodeError::Unknown(unknown));
    }
    Ok((typed, back))
}

/// Go's wording of unknown fields: `unknown field "a", unknown field "b"`.
pub(crate) fn unknown_list(fields: &[String]) -> String {
    let list: Vec<String> = fields
        .iter()
        .map(|f| format!("unknown field \"{f}\""))
        .collect();
    list.join(", ")
}

/// Decodes strictly: a type error or an unknown field is refused as `fieldValidation=Strict` does.
fn decode<T: DeserializeOwned + Serialize>(
    kind: &str,
    raw: &Value,
) -> Result<(T, Value), ApiError> {
    decode_strict(raw).map_err(|e| {
        let detail = match e {
            DecodeError::Type(m) => m,
            DecodeError::Unknown(f) => format!("strict decoding error: {}", unknown_list(&f)),
        };
        ApiError::bad_request(format!(
            "{kind} in version \"v1\" cannot be handled as a {kind}: {detail}"
        ))
    })
}

/// Checks a created object and returns it as it will be stored (defaults filled, name final).
pub(crate) fn admit(resource: Resource, ns: &str, raw: &Value) -> Result<Value, ApiError> {
    let kind = resource.kind();
    if !raw.is_object() {
        return Err(ApiError::bad_request(format!(
            "{kind} in version \"v1\" cannot be handled as a {kind}: expected an object"
        )));
    }
    if let Some(v) = raw.get("apiVersion").and_then(Value::as_str) {
        if v != "v1" {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({v}) does not match the expected API version (v1)"
            )));
        }
    }
    if let Some(k) = raw.get("kind").and_then(Value::as_str) {
        if k != kind {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({kind})"
            )));
        }
    }
    if let Some(n) = raw["metadata"].get("namespace").and_then(Value::as_str) {
        if !n.is_empty() && n != ns {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
    }
    let mut obj = match resource {
        Resource::Pods => {
            let (mut pod, _) = decode::<Pod>(kind, raw)?;
            let name = final_name(kind, &mut pod.metadata)?;
            let mut causes = meta_causes(&pod.metadata);
            causes.extend(pod::validate(&pod));
            if !causes.is_empty() {
                return Err(ApiError::invalid(kind, &name, &causes));
            }
            pod::set_defaults(&mut pod);
            let mut v = to_value(&pod)?;
            v["status"] = json!({"phase": "Pending", "qosClass": pod::qos_class(&pod)});
            v
        }
        Resource::Secrets => {
            let (mut secret, _) = decode::<Secret>(kind, raw)?;
            let name = final_name(kind, &mut secret.metadata)?;
            // The API server folds stringData into data on write and never stores it.
            if let Some(sd) = secret.string_data.take() {
                let data = secret.data.get_or_insert_with(Default::default);
                for (k, v) in sd {
                    data.insert(k, k8s_openapi::ByteString(v.into_bytes()));
                }
            }
            let mut causes = meta_causes(&secret.metadata);
            let mut total = 0;
            for (k, v) in secret.data.iter().flatten() {
                if let Some(e) = names::config_key_errors(k) {
                    causes.push(Cause::invalid(format!("data[{k}]"), k, &e));
                }
                total += k.len() + v.0.len();
            }
            if total > MAX_SECRET_BYTES {
                causes.push(Cause::too_long("data", MAX_SECRET_BYTES));
            }
            if !causes.is_empty() {
                return Err(ApiError::invalid(kind, &name, &causes));
            }
            secret.type_.get_or_insert_with(|| "Opaque".into());
            to_value(&secret)?
        }
        Resource::Events => {
            let (mut event, _) = decode::<Event>(kind, raw)?;
            let name = final_name(kind, &mut event.metadata)?;
            let mut causes = meta_causes(&event.metadata);
            if let Some(n) = event.involved_object.namespace.as_deref() {
                if n != ns {
                    causes.push(Cause::invalid(
                        "involvedObject.namespace",
                        n,
                        "does not match event.namespace",
                    ));
                }
            }
            if event.reason.as_deref().unwrap_or_default().is_empty() {
                causes.push(Cause::required("reason", ""));
            }
            if !causes.is_empty() {
                return Err(ApiError::invalid(kind, &name, &causes));
            }
            to_value(&event)?
        }
    };
    obj["apiVersion"] = json!("v1");
    obj["kind"] = json!(kind);
    Ok(obj)
}

fn to_value<T: Serialize>(v: &T) -> Result<Value, ApiError> {
    serde_json::to_value(v).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// The object's name, made from `generateName` when it has none.
fn final_name(
    kind: &str,
    meta: &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Result<String, ApiError> {
    if meta.name.as_deref().unwrap_or_default().is_empty() {
        match meta.generate_name.as_deref() {
            Some(g) if !g.is_empty() => {
                let base: String = g.chars().take(58).collect();
                meta.name = Some(format!("{base}{}", name_suffix()));
            }
            _ => {
                return Err(ApiError::invalid(
                    kind,
                    "",
                    &[Cause::required(
                        "metadata.name",
                        "name or generateName is required",
                    )],
                ))
            }
        }
    }
    Ok(meta.name.clone().unwrap_or_default())
}

fn meta_causes(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Vec<Cause> {
    let mut causes = Vec::new();
    let name = meta.name.as_deref().unwrap_or_default();
    for e in names::dns1123_subdomain_errors(name) {
        causes.push(Cause::invalid("metadata.name", name, &e));
    }
    for (k, v) in meta.labels.iter().flatten() {
        if let Some(e) = names::qualified_name_errors(k) {
            causes.push(Cause::invalid("metadata.labels", k, &e));
        }
        if let Some(e) = names::label_value_errors(v) {
            causes.push(Cause::invalid("metadata.labels", v, &e));
        }
    }
    causes.extend(owners::causes(
        meta.owner_references.as_deref().unwrap_or_default(),
    ));
    let mut total = 0;
    for (k, v) in meta.annotations.iter().flatten() {
        if let Some(e) = names::qualified_name_errors(&k.to_lowercase()) {
            causes.push(Cause::invalid("metadata.annotations", k, &e));
        }
        total += k.len() + v.len();
    }
    if total > MAX_ANNOTATIONS_BYTES {
        causes.push(Cause::too_long(
            "metadata.annotations",
            MAX_ANNOTATIONS_BYTES,
        ));
    }
    causes
}
