//! The three PATCH formats: JSON merge patch (RFC 7386), JSON patch (RFC 6902), and Kubernetes
//! strategic merge patch.
//!
//! The resource declares no merge keys or patch strategies, so a strategic merge patch merges
//! maps like a merge patch and replaces lists, as Kubernetes does for such a type. Its
//! `$patch: replace` and `$patch: delete` directives on maps are applied, and the bookkeeping
//! keys kubectl may add (`$setElementOrder/…`, `$retainKeys`, `$deleteFromPrimitiveList/…`)
//! are dropped, because with replaced lists they change nothing.

use axum::http::{header, HeaderMap};
use serde_json::{Map, Value as Json};

use crate::status::ApiError;

/// PATCH media types, for the 415 message.
pub const PATCH_MEDIA_TYPES: &str = "application/json-patch+json, application/merge-patch+json, \
                                     application/strategic-merge-patch+json";

/// A PATCH format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchType {
    /// `application/merge-patch+json`.
    Merge,
    /// `application/json-patch+json`.
    Json,
    /// `application/strategic-merge-patch+json`.
    Strategic,
}

impl PatchType {
    /// Returns the patch format of a request from its Content-Type, or 415.
    pub fn from_headers(headers: &HeaderMap) -> Result<Self, ApiError> {
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default();
        let essence = content_type.split(';').next().unwrap_or_default().trim();
        match essence.to_ascii_lowercase().as_str() {
            "application/merge-patch+json" => Ok(PatchType::Merge),
            "application/json-patch+json" => Ok(PatchType::Json),
            "application/strategic-merge-patch+json" => Ok(PatchType::Strategic),
            _ => Err(ApiError::UnsupportedMediaType {
                content_type: content_type.to_owned(),
                accepted: PATCH_MEDIA_TYPES,
            }),
        }
    }
}

/// Applies a patch body to a JSON document.
pub fn apply(kind: PatchType, document: &Json, body: &[u8]) -> Result<Json, ApiError> {
    let patch: Json = serde_json::from_slice(body).map_err(|error| {
        ApiError::bad_request(format!(
            "error decoding patch: the body is not JSON: {error}"
        ))
    })?;
    match kind {
        PatchType::Merge => {
            if !patch.is_object() {
                return Err(ApiError::bad_request(
                    "error decoding patch: a merge patch must be a JSON object",
                ));
            }
            Ok(merge(document, &patch, false))
        }
        PatchType::Strategic => {
            if !patch.is_object() {
                return Err(ApiError::bad_request(
                    "error decoding patch: a strategic merge patch must be a JSON object",
                ));
            }
            Ok(merge(document, &patch, true))
        }
        PatchType::Json => apply_json_patch(document, &patch),
    }
}

/// Merges `patch` into `target`: `null` deletes a key, objects merge, anything else replaces.
/// With `strategic`, the strategic merge patch directives are handled.
fn merge(target: &Json, patch: &Json, strategic: bool) -> Json {
    let Json::Object(patch) = patch else {
        return if strategic {
            strip_directives(patch)
        } else {
            patch.clone()
        };
    };

    let mut patch = patch.clone();
    let mut result = match target {
        Json::Object(target) => target.clone(),
        _ => Map::new(),
    };
    if strategic {
        match patch.remove("$patch").as_ref().and_then(Json::as_str) {
            Some("delete") => return Json::Null,
            Some("replace") => return strip_directives(&Json::Object(patch)),
            _ => {}
        }
        patch.retain(|key, _| !is_directive(key));
    }

    for (key, value) in patch {
        if value.is_null() {
            result.remove(&key);
            continue;
        }
        let merged = merge(result.get(&key).unwrap_or(&Json::Null), &value, strategic);
        if merged.is_null() {
            // `$patch: delete` inside a nested map.
            result.remove(&key);
        } else {
            result.insert(key, merged);
        }
    }
    Json::Object(result)
}

fn is_directive(key: &str) -> bool {
    key == "$patch"
        || key == "$retainKeys"
        || key.starts_with("$setElementOrder/")
        || key.starts_with("$deleteFromPrimitiveList/")
}

/// Returns a value with every strategic merge patch directive key removed, at any depth.
fn strip_directives(value: &Json) -> Json {
    match value {
        Json::Object(map) => Json::Object(
            map.iter()
                .filter(|(key, _)| !is_directive(key))
                .map(|(key, value)| (key.clone(), strip_directives(value)))
                .collect(),
        ),
        Json::Array(items) => Json::Array(items.iter().map(strip_directives).collect()),
        other => other.clone(),
    }
}

/// Applies an RFC 6902 JSON patch.
fn apply_json_patch(document: &Json, patch: &Json) -> Result<Json, ApiError> {
    let Json::Array(operations) = patch else {
        return Err(ApiError::bad_request(
            "error decoding patch: a JSON patch must be a JSON array of operations",
        ));
    };

    let mut document = document.clone();
    for (index, operation) in operations.iter().enumerate() {
        apply_operation(&mut document, operation).map_err(|reason| {
            ApiError::UnprocessablePatch {
                message: format!("JSON patch operation {index} failed: {reason}"),
            }
        })?;
    }
    Ok(document)
}

fn apply_operation(document: &mut Json, operation: &Json) -> Result<(), String> {
    let field = |name: &str| operation.get(name);
    let text = |name: &str| {
        field(name)
            .and_then(Json::as_str)
            .ok_or_else(|| format!("missing string field {name:?}"))
    };
    let value = || {
        field("value")
            .cloned()
            .ok_or_else(|| "missing field \"value\"".to_owned())
    };

    let op = text("op")?;
    let path = text("path")?;
    match op {
        "add" => add(document, path, value()?),
        "remove" => remove(document, path).map(drop),
        "replace" => {
            remove(document, path)?;
            add(document, path, value()?)
        }
        "move" => {
            let from = text("from")?;
            if path.starts_with(&format!("{from}/")) {
                return Err(format!("cannot move {from:?} into its own child {path:?}"));
            }
            let moved = remove(document, from)?;
            add(document, path, moved)
        }
        "copy" => {
            let from = text("from")?;
            let copied = document
                .pointer(from)
                .cloned()
                .ok_or_else(|| format!("path {from:?} does not exist"))?;
            add(document, path, copied)
        }
        "test" => {
            let expected = value()?;
            // The message leaves out both values: the document may hold data the client must
            // not learn through a test.
            match document.pointer(path) {
                Some(actual) if *actual == expected => Ok(()),
                _ => Err(format!("test of {path:?} failed: the value differs")),
            }
        }
        other => Err(format!(
            "unsupported op {other:?}: expected add, remove, replace, move, copy or test"
        )),
    }
}

/// Splits a JSON pointer into its parent pointer and its unescaped last token.
fn split_pointer(path: &str) -> Result<(&str, String), String> {
    if path.is_empty() {
        return Err("the whole document cannot be the target".to_owned());
    }
    let (parent, last) = path
        .rsplit_once('/')
        .ok_or_else(|| format!("invalid path {path:?}: a JSON pointer starts with '/'"))?;
    Ok((parent, last.replace("~1", "/").replace("~0", "~")))
}

fn add(document: &mut Json, path: &str, value: Json) -> Result<(), String> {
    let (parent_path, key) = split_pointer(path)?;
    let parent = document
        .pointer_mut(parent_path)
        .ok_or_else(|| format!("path {parent_path:?} does not exist"))?;
    match parent {
        Json::Object(map) => {
            map.insert(key, value);
            Ok(())
        }
        Json::Array(items) => {
            let index = if key == "-" {
                items.len()
            } else {
                array_index(&key, items.len() + 1)?
            };
            items.insert(index, value);
            Ok(())
        }
        _ => Err(format!(
            "path {parent_path:?} is neither an object nor an array"
        )),
    }
}

fn remove(document: &mut Json, path: &str) -> Result<Json, String> {
    let (parent_path, key) = split_pointer(path)?;
    let parent = document
        .pointer_mut(parent_path)
        .ok_or_else(|| format!("path {parent_path:?} does not exist"))?;
    match parent {
        Json::Object(map) => map
            .remove(&key)
            .ok_or_else(|| format!("path {path:?} does not exist")),
        Json::Array(items) => {
            let index = array_index(&key, items.len())?;
            Ok(items.remove(index))
        }
        _ => Err(format!(
            "path {parent_path:?} is neither an object nor an array"
        )),
    }
}

fn array_index(token: &str, bound: usize) -> Result<usize, String> {
    let index: usize = token
        .parse()
        .map_err(|_| format!("invalid array index {token:?}"))?;
    if index < bound {
        Ok(index)
    } else {
        Err(format!("array index {index} is out of range"))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn merge_patch_deletes_null_and_merges_maps() {
        let document = json!({"a": {"b": 1, "c": 2}, "d": [1, 2]});
        let patched = merge(
            &document,
            &json!({"a": {"b": null, "e": 3}, "d": [3]}),
            false,
        );
        assert_eq!(patched, json!({"a": {"c": 2, "e": 3}, "d": [3]}));
    }

    #[test]
    fn strategic_patch_replaces_lists_and_drops_directives() {
        let document = json!({"spec": {"env": [{"name": "A", "value": "1"}]}});
        let patch = json!({
            "$setElementOrder/env": [{"name": "B"}],
            "spec": {"env": [{"name": "B", "value": "2"}]}
        });
        let patched = merge(&document, &patch, true);
        assert_eq!(
            patched,
            json!({"spec": {"env": [{"name": "B", "value": "2"}]}})
        );
    }

    #[test]
    fn strategic_patch_replace_directive() {
        let document = json!({"m": {"a": 1, "b": 2}});
        let patched = merge(
            &document,
            &json!({"m": {"$patch": "replace", "c": 3}}),
            true,
        );
        assert_eq!(patched, json!({"m": {"c": 3}}));
    }

    #[test]
    fn strategic_patch_delete_directive() {
        let document = json!({"m": {"a": 1}, "n": 1});
        let patched = merge(&document, &json!({"m": {"$patch": "delete"}}), true);
        assert_eq!(patched, json!({"n": 1}));
    }

    #[test]
    fn json_patch_operations() {
        let document = json!({"a": [1, 2], "b": {"c": "x"}});
        let patch = json!([
            {"op": "add", "path": "/a/-", "value": 3},
            {"op": "replace", "path": "/b/c", "value": "y"},
            {"op": "copy", "from": "/b/c", "path": "/d"},
            {"op": "move", "from": "/d", "path": "/e"},
            {"op": "remove", "path": "/a/0"},
            {"op": "test", "path": "/e", "value": "y"}
        ]);
        let patched = apply_json_patch(&document, &patch).expect("patch applies");
        assert_eq!(patched, json!({"a": [2, 3], "b": {"c": "y"}, "e": "y"}));
    }

    #[test]
    fn json_patch_failed_test_is_422() {
        let patch = json!([{"op": "test", "path": "/a", "value": 2}]);
        let error = apply_json_patch(&json!({"a": 1}), &patch).expect_err("test fails");
        assert_eq!(error.code(), axum::http::StatusCode::UNPROCESSABLE_ENTITY);
    }

    #[test]
    fn json_patch_escaped_pointer() {
        let document = json!({"m": {}});
        let patch = json!([{"op": "add", "path": "/m/a~1b", "value": 1}]);
        let patched = apply_json_patch(&document, &patch).expect("patch applies");
        assert_eq!(patched, json!({"m": {"a/b": 1}}));
    }
}
