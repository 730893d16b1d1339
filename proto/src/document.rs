//! Reading text that is either JSON or YAML into a JSON value.

use serde_json::{Map, Number, Value as Json};
use serde_yaml_ng::Value as Yaml;

use crate::error;

/// Error of [`parse_json_or_yaml`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SyntaxError {
    /// `JSON` or `YAML`.
    pub(crate) format: &'static str,
    /// Parser message, with the location or the path of the bad value.
    pub(crate) message: String,
}

/// Parses `text` as JSON, or as YAML when it is not valid JSON.
///
/// The YAML is read as YAML 1.2 (so `yes` is a string, not `true`), merge keys (`<<`) are
/// applied, tags are dropped, and scalar mapping keys become strings as in
/// `sigs.k8s.io/yaml`. When both parsers fail, the error comes from the parser the text most
/// looks like: JSON when it starts with `{` or `[`, YAML otherwise.
///
/// NOTE: a key repeated in JSON keeps its last value, as in Go's encoding/json, instead of being
/// rejected. YAML rejects repeated keys.
pub(crate) fn parse_json_or_yaml(text: &str) -> Result<Json, SyntaxError> {
    let json_error = match serde_json::from_str::<Json>(text) {
        Ok(value) => return Ok(value),
        Err(error) => error,
    };

    // A number beyond the f64 range is valid JSON syntax that serde_json rejects. The YAML
    // parser would read it as a string, so report the JSON error instead.
    if json_error.to_string().starts_with("number out of range") {
        return Err(SyntaxError {
            format: "JSON",
            message: json_error.to_string(),
        });
    }

    check_flow_depth(text)?;
    let yaml_error = match yaml_to_json(text) {
        Ok(value) => return Ok(value),
        Err(error) => error,
    };

    let looks_like_json = text.trim_start().starts_with(['{', '[']);
    if looks_like_json {
        Err(SyntaxError {
            format: "JSON",
            message: json_error.to_string(),
        })
    } else {
        Err(yaml_error)
    }
}

/// Deepest `[`/`{` nesting accepted, the same limit as serde_json's recursion limit.
const MAX_FLOW_DEPTH: usize = 128;

/// Rejects flow-style nesting deeper than [`MAX_FLOW_DEPTH`] before the YAML parser runs,
/// because that parser takes time quadratic in the depth before it reports its own limit
/// (about 75 s for 100,000 levels). Quoted text is skipped.
fn check_flow_depth(text: &str) -> Result<(), SyntaxError> {
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in text.chars() {
        match quote {
            Some('"') if escaped => escaped = false,
            Some('"') if c == '\\' => escaped = true,
            Some(open) if c == open => quote = None,
            Some(_) => {}
            None => match c {
                '"' | '\'' => quote = Some(c),
                '[' | '{' => {
                    depth += 1;
                    if depth > MAX_FLOW_DEPTH {
                        return Err(SyntaxError {
                            format: "YAML",
                            message: format!(
                                "nesting deeper than {MAX_FLOW_DEPTH} levels of [ and {{"
                            ),
                        });
                    }
                }
                ']' | '}' => depth = depth.saturating_sub(1),
                _ => {}
            },
        }
    }
    Ok(())
}

fn yaml_to_json(text: &str) -> Result<Json, SyntaxError> {
    let syntax_error = |message: String| SyntaxError {
        format: "YAML",
        message,
    };

    let mut yaml: Yaml = serde_yaml_ng::from_str(text).map_err(|e| syntax_error(e.to_string()))?;
    yaml.apply_merge()
        .map_err(|e| syntax_error(e.to_string()))?;
    convert_yaml(yaml, "").map_err(syntax_error)
}

/// Converts a YAML value into JSON. `path` is the field path of `yaml`, for error messages.
fn convert_yaml(yaml: Yaml, path: &str) -> Result<Json, String> {
    let at = |what: &str| {
        if path.is_empty() {
            what.to_owned()
        } else {
            format!("{path}: {what}")
        }
    };

    match yaml {
        Yaml::Null => Ok(Json::Null),
        Yaml::Bool(value) => Ok(Json::Bool(value)),
        Yaml::Number(number) => convert_number(&number).ok_or_else(|| {
            at(&format!(
                "{number} has no JSON representation; use a finite number"
            ))
        }),
        Yaml::String(value) => Ok(Json::String(value)),
        Yaml::Sequence(items) => {
            let mut converted = Vec::with_capacity(items.len());
            for (position, item) in items.into_iter().enumerate() {
                converted.push(convert_yaml(item, &error::index(path, position))?);
            }
            Ok(Json::Array(converted))
        }
        Yaml::Mapping(mapping) => {
            let mut converted = Map::new();
            for (key, value) in mapping {
                let key = mapping_key(key).map_err(|what| at(&what))?;
                let value = convert_yaml(value, &error::key(path, &key))?;
                converted.insert(key, value);
            }
            Ok(Json::Object(converted))
        }
        Yaml::Tagged(tagged) => convert_yaml(tagged.value, path),
    }
}

fn convert_number(number: &serde_yaml_ng::Number) -> Option<Json> {
    if let Some(value) = number.as_u64() {
        return Some(Json::Number(value.into()));
    }
    if let Some(value) = number.as_i64() {
        return Some(Json::Number(value.into()));
    }
    let value = number.as_f64()?;
    Number::from_f64(value).map(Json::Number)
}

/// Converts a YAML mapping key into a JSON object key: strings as they are, booleans and
/// numbers as their text.
fn mapping_key(key: Yaml) -> Result<String, String> {
    match key {
        Yaml::String(key) => Ok(key),
        Yaml::Bool(key) => Ok(key.to_string()),
        Yaml::Number(key) => Ok(key.to_string()),
        Yaml::Tagged(tagged) => mapping_key(tagged.value),
        Yaml::Null => Err("a mapping key is null; JSON needs string keys".to_owned()),
        Yaml::Sequence(_) | Yaml::Mapping(_) => {
            Err("a mapping key is a list or a mapping; JSON needs string keys".to_owned())
        }
    }
}

/// Returns the JSON type name of a value, for error messages.
pub(crate) fn json_type_name(value: &Json) -> &'static str {
    match value {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "a list",
        Json::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn json_text_parses_as_json() {
        let value = parse_json_or_yaml(r#"{"a": [1, 2.5, null, true]}"#);
        assert_eq!(value, Ok(json!({"a": [1, 2.5, null, true]})));
    }

    #[test]
    fn yaml_text_parses_as_yaml() {
        let value = parse_json_or_yaml("a:\n  - 1\n  - x\nb: {c: d}\n");
        assert_eq!(value, Ok(json!({"a": [1, "x"], "b": {"c": "d"}})));
    }

    #[test]
    fn yaml_uses_yaml_1_2_booleans() {
        let value = parse_json_or_yaml("a: yes\nb: true\n");
        assert_eq!(value, Ok(json!({"a": "yes", "b": true})));
    }

    #[test]
    fn yaml_scalar_keys_become_strings() {
        let value = parse_json_or_yaml("1: a\ntrue: b\n1.5: c\n");
        assert_eq!(value, Ok(json!({"1": "a", "true": "b", "1.5": "c"})));
    }

    #[test]
    fn yaml_merge_keys_are_applied() {
        let value = parse_json_or_yaml("base: &b {x: 1}\nderived:\n  <<: *b\n  y: 2\n");
        assert_eq!(
            value,
            Ok(json!({"base": {"x": 1}, "derived": {"x": 1, "y": 2}}))
        );
    }

    #[test]
    fn yaml_tags_are_dropped() {
        let value = parse_json_or_yaml("a: !custom {b: 1}\n");
        assert_eq!(value, Ok(json!({"a": {"b": 1}})));
    }

    #[test]
    fn yaml_nan_is_rejected_with_path() {
        let error = parse_json_or_yaml("a:\n  b: [1, .nan]\n").expect_err("NaN is not JSON");
        assert_eq!(error.format, "YAML");
        assert_eq!(
            error.message,
            "a.b[1]: .nan has no JSON representation; use a finite number"
        );
    }

    #[test]
    fn yaml_null_key_is_rejected() {
        let error = parse_json_or_yaml("~: a\n").expect_err("null key");
        assert_eq!(
            error.message,
            "a mapping key is null; JSON needs string keys"
        );
    }

    #[test]
    fn json_number_beyond_f64_is_rejected() {
        let error = parse_json_or_yaml(r#"{"a": 1e400}"#).expect_err("1e400 overflows f64");
        assert_eq!(error.format, "JSON");
    }

    #[test]
    fn bad_json_reports_json_error() {
        let error = parse_json_or_yaml("{\"a\": [1}").expect_err("invalid JSON");
        assert_eq!(error.format, "JSON");
    }

    #[test]
    fn bad_yaml_reports_yaml_error() {
        let error = parse_json_or_yaml("a: [1, 2\n").expect_err("invalid YAML");
        assert_eq!(error.format, "YAML");
    }

    #[test]
    fn duplicate_yaml_keys_are_rejected() {
        let error = parse_json_or_yaml("a: 1\na: 2\n").expect_err("duplicate key");
        assert_eq!(error.format, "YAML");
    }
}
