//! RFC 6902 JSON patch, with RFC 6901 pointers.

use serde_json::Value;

/// Why a JSON patch was not applied.
#[derive(Debug, thiserror::Error)]
pub(crate) enum JsonPatchError {
    /// The patch is not a list of well-formed operations: the API server answers 400.
    #[error("{0}")]
    Malformed(String),
    /// An operation does not apply to the document: the API server answers 422.
    #[error("{0}")]
    DoesNotApply(String),
}

use JsonPatchError::{DoesNotApply, Malformed};

/// Applies every operation in order; the first that fails fails the whole patch.
pub(crate) fn apply(doc: &Value, patch: &Value) -> Result<Value, JsonPatchError> {
    let ops = patch.as_array().ok_or_else(|| {
        Malformed("json: cannot unmarshal object into Go value of type jsonpatch.Patch".into())
    })?;
    let mut doc = doc.clone();
    for op in ops {
        apply_one(&mut doc, op)?;
    }
    Ok(doc)
}

fn member<'a>(op: &'a Value, key: &str) -> Result<&'a str, JsonPatchError> {
    op.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| Malformed(format!("operation missing {key} field")))
}

fn value(op: &Value) -> Result<Value, JsonPatchError> {
    // A present `null` is a value; only a missing member is an error.
    op.get("value")
        .cloned()
        .ok_or_else(|| Malformed("operation missing value field".into()))
}

fn apply_one(doc: &mut Value, op: &Value) -> Result<(), JsonPatchError> {
    let kind = member(op, "op")?;
    let path = member(op, "path")?;
    match kind {
        "add" => add(doc, path, value(op)?),
        "remove" => remove(doc, path).map(drop),
        "replace" => {
            let v = value(op)?;
            let slot = get_mut(doc, path).ok_or_else(|| {
                DoesNotApply(format!(
                    "replace operation does not apply: doc is missing key: {path}: missing value"
                ))
            })?;
            *slot = v;
            Ok(())
        }
        "move" => {
            let from = member(op, "from")?;
            if path.starts_with(&format!("{from}/")) {
                return Err(DoesNotApply(format!(
                    "move operation does not apply: cannot move {from} into its own child {path}"
                )));
            }
            let v = remove(doc, from)?;
            add(doc, path, v)
        }
        "copy" => {
            let from = member(op, "from")?;
            let v = get_mut(doc, from).map(|v| v.clone()).ok_or_else(|| {
                DoesNotApply(format!(
                    "copy operation does not apply: doc is missing from path: {from}: missing value"
                ))
            })?;
            add(doc, path, v)
        }
        "test" => {
            let want = value(op)?;
            match get_mut(doc, path) {
                Some(v) if *v == want => Ok(()),
                _ => Err(DoesNotApply(format!(
                    "testing value {path} failed: test failed"
                ))),
            }
        }
        other => Err(Malformed(format!("Unexpected kind: {other}"))),
    }
}

/// A pointer's reference tokens, unescaped (`~1` before `~0`, as RFC 6901 orders it).
fn tokens(path: &str) -> Result<Vec<String>, JsonPatchError> {
    if path.is_empty() {
        return Ok(Vec::new());
    }
    let rest = path
        .strip_prefix('/')
        .ok_or_else(|| DoesNotApply(format!("invalid JSON pointer: {path:?}")))?;
    Ok(rest
        .split('/')
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect())
}

/// An array index token: digits, without a leading zero.
fn index(token: &str) -> Option<usize> {
    let digits = !token.is_empty() && token.bytes().all(|b| b.is_ascii_digit());
    if !digits || (token.len() > 1 && token.starts_with('0')) {
        return None;
    }
    token.parse().ok()
}

fn child<'a>(v: &'a mut Value, token: &str) -> Option<&'a mut Value> {
    match v {
        Value::Object(m) => m.get_mut(token),
        Value::Array(a) => a.get_mut(index(token)?),
        _ => None,
    }
}

fn get_mut<'a>(doc: &'a mut Value, path: &str) -> Option<&'a mut Value> {
    let mut cur = doc;
    for t in tokens(path).ok()? {
        cur = child(cur, &t)?;
    }
    Some(cur)
}

/// The parent of a pointer's target and the target's last token; `None` for the whole document.
fn parent<'a>(
    doc: &'a mut Value,
    path: &str,
    op: &str,
) -> Result<Option<(&'a mut Value, String)>, JsonPatchError> {
    let mut toks = tokens(path)?;
    let Some(last) = toks.pop() else {
        return Ok(None);
    };
    let missing = || {
        DoesNotApply(format!(
            "{op} operation does not apply: doc is missing path: {path:?}: missing value"
        ))
    };
    let mut cur = doc;
    for t in &toks {
        cur = child(cur, t).ok_or_else(missing)?;
    }
    Ok(Some((cur, last)))
}

fn add(doc: &mut Value, path: &str, v: Value) -> Result<(), JsonPatchError> {
    let Some((parent, last)) = parent(doc, path, "add")? else {
        *doc = v;
        return Ok(());
    };
    match parent {
        Value::Object(m) => {
            m.insert(last, v);
            Ok(())
        }
        Value::Array(a) => {
            let i = if last == "-" {
                a.len()
            } else {
                index(&last).filter(|i| *i <= a.len()).ok_or_else(|| {
                    DoesNotApply(format!(
                        "add operation does not apply: index out of bounds: {path}"
                    ))
                })?
            };
            a.insert(i, v);
            Ok(())
        }
        _ => Err(DoesNotApply(format!(
            "add operation does not apply: doc is missing path: {path:?}: missing value"
        ))),
    }
}

fn remove(doc: &mut Value, path: &str) -> Result<Value, JsonPatchError> {
    let missing = || {
        DoesNotApply(format!(
            "remove operation does not apply: doc is missing path: {path:?}: missing value"
        ))
    };
    let Some((parent, last)) = parent(doc, path, "remove")? else {
        return Ok(std::mem::take(doc));
    };
    match parent {
        Value::Object(m) => m.remove(&last).ok_or_else(missing),
        Value::Array(a) => {
            let i = index(&last).filter(|i| *i < a.len()).ok_or_else(missing)?;
            Ok(a.remove(i))
        }
        _ => Err(missing()),
    }
}

#[cfg(test)]
mod tests {
    use super::{apply, JsonPatchError};
    use serde_json::json;

    #[test]
    fn operations_apply_in_order() {
        let doc = json!({"a": {"b": [1, 2]}, "c": "x", "d~/e": 0});
        let out = apply(
            &doc,
            &json!([
                {"op": "test", "path": "/c", "value": "x"},
                {"op": "add", "path": "/a/b/1", "value": 9},
                {"op": "add", "path": "/a/b/-", "value": 3},
                {"op": "replace", "path": "/c", "value": null},
                {"op": "remove", "path": "/d~0~1e"},
                {"op": "copy", "from": "/a/b", "path": "/f"},
                {"op": "move", "from": "/f/0", "path": "/g"},
            ]),
        )
        .unwrap();
        assert_eq!(
            out,
            json!({"a": {"b": [1, 9, 2, 3]}, "c": null, "f": [9, 2, 3], "g": 1})
        );
    }

    #[test]
    fn failures_say_which_kind() {
        let doc = json!({"a": [1]});
        for (patch, applies_wrongly) in [
            (json!([{"op": "test", "path": "/a/0", "value": 2}]), true),
            (json!([{"op": "remove", "path": "/b"}]), true),
            (json!([{"op": "replace", "path": "/a/1", "value": 2}]), true),
            (json!([{"op": "add", "path": "/a/01", "value": 2}]), true),
            (json!([{"op": "add", "path": "/x/y", "value": 2}]), true),
            (json!([{"op": "move", "from": "/a", "path": "/a/0"}]), true),
            (json!([{"op": "frob", "path": "/a"}]), false),
            (json!([{"op": "add", "path": "/a"}]), false),
            (json!({"op": "add"}), false),
        ] {
            let e = apply(&doc, &patch).unwrap_err();
            assert_eq!(
                matches!(e, JsonPatchError::DoesNotApply(_)),
                applies_wrongly,
                "{patch}: {e}"
            );
        }
    }
}
