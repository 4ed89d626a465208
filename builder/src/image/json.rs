//! Deterministic JSON for the blobs kiln writes, and the lenient reading real peers need.
//!
//! A manifest's digest is the digest of its bytes, so the same image must always serialise to
//! the same bytes whatever serde_json's features are in the build: keys are written sorted
//! (as Docker's canonical JSON does), with no whitespace and no trailing newline.

use super::error::ImageError;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// `value` as canonical JSON: object keys sorted by their UTF-8 bytes, no insignificant
/// whitespace, no trailing newline.
pub fn to_canonical_vec<T: Serialize>(value: &T, what: &str) -> Result<Vec<u8>, ImageError> {
    let v = serde_json::to_value(value).map_err(ImageError::json(what))?;
    let mut out = Vec::with_capacity(1024);
    write_value(&v, &mut out).map_err(ImageError::json(what))?;
    Ok(out)
}

fn write_value(v: &Value, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    match v {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (k, val)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, k)?;
                out.push(b':');
                write_value(val, out)?;
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(item, out)?;
            }
            out.push(b']');
        }
        scalar => serde_json::to_writer(&mut *out, scalar)?,
    }
    Ok(())
}

/// Deserialises a field whose producers write `null` for "none" (Go's nil slices and maps) as
/// the type's default, so `null` and a missing field read the same.
pub fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// The `{}` values of `ExposedPorts` and `Volumes` (Go's `struct{}`); whatever a peer put there
/// is accepted and dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EmptyObject;

impl Serialize for EmptyObject {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        s.serialize_map(Some(0))?.end()
    }
}

impl<'de> Deserialize<'de> for EmptyObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde::de::IgnoredAny::deserialize(d)?;
        Ok(EmptyObject)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn keys_sorted_compact_no_newline() {
        let mut m = HashMap::new();
        m.insert("b", serde_json::json!({"z": 1, "a": [true, null, "é\n"]}));
        m.insert("a", serde_json::json!(u64::MAX));
        let out = to_canonical_vec(&m, "test").unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"a":18446744073709551615,"b":{"a":[true,null,"é\n"],"z":1}}"#
        );
    }
}
