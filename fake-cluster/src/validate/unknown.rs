//! Strict decoding: the fields a typed decode would drop.
//!
//! k8s-openapi's deserialisers skip unknown keys, so the request's raw JSON is compared with the
//! typed value serialised again: every key of the raw JSON must still be there at the same path.
//! This is sound because k8s-openapi keeps every known field it decoded (all are `Option`s or
//! collections, written back when present), so a key missing after the round trip is exactly one
//! the types do not know. A `null` is skipped: Go's decoder accepts a null for any known field and
//! the typed value drops it.

use serde_json::Value;

/// Paths of the unknown fields, in Go's spelling (`spec.containers[0].imagee`).
pub fn unknown_fields(raw: &Value, typed: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk(raw, typed, "", &mut out);
    out
}

fn walk(raw: &Value, typed: &Value, path: &str, out: &mut Vec<String>) {
    match (raw, typed) {
        (Value::Object(r), Value::Object(t)) => {
            for (k, v) in r {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match t.get(k) {
                    Some(tv) => walk(v, tv, &p, out),
                    None if v.is_null() => {}
                    None => out.push(p),
                }
            }
        }
        (Value::Array(r), Value::Array(t)) => {
            for (i, (rv, tv)) in r.iter().zip(t).enumerate() {
                walk(rv, tv, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}
