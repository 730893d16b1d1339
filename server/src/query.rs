//! Query parameters of the API: list and watch options, label and field selectors, continue
//! tokens.

use std::collections::BTreeMap;

use base64::Engine as _;
use edgefn_proto::EdgeFunctionRevision;
use serde::{Deserialize, Serialize};

use crate::status::ApiError;

/// The query parameters the resource's endpoints read. Others, such as `fieldManager` or
/// `pretty`, are accepted and have no effect.
#[derive(Clone, Debug, Default)]
pub struct Query {
    /// `labelSelector`.
    pub labels: LabelSelector,
    /// `fieldSelector`.
    pub fields: FieldSelector,
    /// `limit`: the largest number of items a list returns, 0 for all.
    pub limit: usize,
    /// `continue`: where the previous page stopped.
    pub continue_token: Option<ContinueToken>,
    /// `watch=true` or `watch=1`.
    pub watch: bool,
    /// `resourceVersion`, empty when absent.
    pub resource_version: String,
    /// `timeoutSeconds` of a watch.
    pub timeout_seconds: Option<u64>,
    /// `dryRun=All`: check and respond, but store nothing.
    pub dry_run: bool,
}

impl Query {
    /// Parses a query string such as `labelSelector=a%3Db&limit=10`.
    pub fn parse(raw: Option<&str>) -> Result<Self, ApiError> {
        let mut query = Query::default();
        let Some(raw) = raw else {
            return Ok(query);
        };

        for (key, value) in url_decode_pairs(raw) {
            match key.as_str() {
                "labelSelector" => query.labels = LabelSelector::parse(&value)?,
                "fieldSelector" => query.fields = FieldSelector::parse(&value)?,
                "limit" => query.limit = parse_number("limit", &value)?,
                "continue" if !value.is_empty() => {
                    query.continue_token = Some(ContinueToken::decode(&value)?)
                }
                "watch" => query.watch = matches!(value.as_str(), "true" | "1"),
                "resourceVersion" => query.resource_version = value,
                "timeoutSeconds" => {
                    query.timeout_seconds = Some(parse_number("timeoutSeconds", &value)?)
                }
                "dryRun" => match value.as_str() {
                    "All" => query.dry_run = true,
                    other => {
                        return Err(ApiError::bad_request(format!(
                            "unsupported dryRun value {other:?}: the only supported value is All"
                        )))
                    }
                },
                _ => {}
            }
        }
        Ok(query)
    }

    /// Returns whether an object matches both selectors.
    pub fn matches(&self, object: &EdgeFunctionRevision) -> bool {
        self.labels.matches(&object.metadata.labels) && self.fields.matches(object)
    }

    /// Returns the `resourceVersion` parameter as a number: `None` when it is absent or `0`,
    /// which both mean "from the current state".
    pub fn start_revision(&self) -> Result<Option<u64>, ApiError> {
        match self.resource_version.as_str() {
            "" | "0" => Ok(None),
            text => text.parse().map(Some).map_err(|_| {
                ApiError::bad_request(format!(
                    "invalid resourceVersion {text:?}: expected a resourceVersion returned by \
                     this server"
                ))
            }),
        }
    }
}

fn parse_number<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, ApiError> {
    value.parse().map_err(|_| {
        ApiError::bad_request(format!(
            "invalid {name} {value:?}: expected a non-negative integer"
        ))
    })
}

/// Splits a query string into decoded key-value pairs (`+` is a space).
fn url_decode_pairs(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key), percent_decode(value))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let byte = bytes[index];
        let hex = bytes
            .get(index + 1..index + 3)
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match (byte, hex) {
            (b'%', Some(value)) => {
                decoded.push(value);
                index += 3;
            }
            (b'+', _) => {
                decoded.push(b' ');
                index += 1;
            }
            _ => {
                decoded.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

/// One requirement of a label selector.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A Kubernetes label selector: comma-joined requirements, all of which must hold. Supports
/// `a=b`, `a==b`, `a!=b`, `a`, `!a`, `a in (x,y)` and `a notin (x,y)`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector(Vec<Requirement>);

impl LabelSelector {
    /// Parses a selector; an empty one matches everything.
    pub fn parse(text: &str) -> Result<Self, ApiError> {
        let mut requirements = Vec::new();
        for part in split_outside_parentheses(text) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            requirements.push(parse_requirement(part).map_err(|reason| {
                ApiError::bad_request(format!(
                    "invalid labelSelector {text:?}: {reason}; expected requirements such as \
                     a=b, a!=b, a, !a or a in (x,y), joined by commas"
                ))
            })?);
        }
        Ok(LabelSelector(requirements))
    }

    /// Returns whether `labels` meet every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|requirement| match requirement {
            Requirement::Equals(key, value) => labels.get(key) == Some(value),
            Requirement::NotEquals(key, value) => labels.get(key) != Some(value),
            Requirement::In(key, values) => labels.get(key).is_some_and(|v| values.contains(v)),
            Requirement::NotIn(key, values) => !labels.get(key).is_some_and(|v| values.contains(v)),
            Requirement::Exists(key) => labels.contains_key(key),
            Requirement::NotExists(key) => !labels.contains_key(key),
        })
    }
}

fn split_outside_parentheses(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0_i32;
    let mut start = 0;
    for (index, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[start..index]);
                start = index + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

fn parse_requirement(part: &str) -> Result<Requirement, String> {
    if let Some(key) = part.strip_prefix('!') {
        return Ok(Requirement::NotExists(check_key(key.trim())?));
    }
    if let Some((key, value)) = part.split_once("!=") {
        return Ok(Requirement::NotEquals(
            check_key(key.trim())?,
            check_value(value.trim())?,
        ));
    }
    if let Some((key, value)) = part.split_once("==").or_else(|| part.split_once('=')) {
        return Ok(Requirement::Equals(
            check_key(key.trim())?,
            check_value(value.trim())?,
        ));
    }
    for (operator, negated) in [(" notin ", true), (" in ", false)] {
        if let Some((key, values)) = part.split_once(operator) {
            let values = values
                .trim()
                .strip_prefix('(')
                .and_then(|values| values.strip_suffix(')'))
                .ok_or_else(|| format!("{part:?}: the values of {operator:?} need parentheses"))?;
            let values = values
                .split(',')
                .map(|value| check_value(value.trim()))
                .collect::<Result<Vec<_>, _>>()?;
            let key = check_key(key.trim())?;
            return Ok(if negated {
                Requirement::NotIn(key, values)
            } else {
                Requirement::In(key, values)
            });
        }
    }
    Ok(Requirement::Exists(check_key(part)?))
}

fn check_key(key: &str) -> Result<String, String> {
    let valid = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    if valid {
        Ok(key.to_owned())
    } else {
        Err(format!("invalid label key {key:?}"))
    }
}

fn check_value(value: &str) -> Result<String, String> {
    let valid = value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if valid {
        Ok(value.to_owned())
    } else {
        Err(format!("invalid label value {value:?}"))
    }
}

/// A field selector. The resource supports `metadata.name` and `metadata.namespace` (always
/// empty, as the resource is cluster-scoped), with `=`, `==` and `!=`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSelector(Vec<(String, bool, String)>);

impl FieldSelector {
    /// Parses a selector; an empty one matches everything.
    pub fn parse(text: &str) -> Result<Self, ApiError> {
        let mut requirements = Vec::new();
        for part in text
            .split(',')
            .map(str::trim)
            .filter(|part| !part.is_empty())
        {
            let (field, equal, value) = if let Some((field, value)) = part.split_once("!=") {
                (field, false, value)
            } else if let Some((field, value)) =
                part.split_once("==").or_else(|| part.split_once('='))
            {
                (field, true, value)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid fieldSelector {text:?}: {part:?} has no operator; expected \
                     metadata.name=NAME or metadata.name!=NAME"
                )));
            };
            let field = field.trim();
            if !matches!(field, "metadata.name" | "metadata.namespace") {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {field}; edgefunctionrevisions support \
                     metadata.name and metadata.namespace"
                )));
            }
            requirements.push((field.to_owned(), equal, value.trim().to_owned()));
        }
        Ok(FieldSelector(requirements))
    }

    /// Returns whether an object meets every requirement.
    pub fn matches(&self, object: &EdgeFunctionRevision) -> bool {
        self.0.iter().all(|(field, equal, value)| {
            let actual = match field.as_str() {
                "metadata.name" => object.metadata.name.as_str(),
                _ => "",
            };
            (actual == value) == *equal
        })
    }
}

/// Position of a paged list: the revision of its first page and the last name returned.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContinueToken {
    /// Revision of the first page, so that every page reads the same snapshot where the store
    /// can.
    pub revision: u64,
    /// The next page starts after this name.
    pub after: String,
}

impl ContinueToken {
    /// Encodes the token as URL-safe base64 of JSON.
    pub fn encode(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
    }

    /// Decodes a token made by [`ContinueToken::encode`].
    pub fn decode(text: &str) -> Result<Self, ApiError> {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text)
            .ok()
            .and_then(|json| serde_json::from_slice(&json).ok())
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "invalid continue token {text:?}: pass the metadata.continue value of the \
                     previous page unchanged"
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn label_selector_forms() {
        let set = labels(&[("app", "web"), ("tier", "edge")]);
        let cases = [
            ("app=web", true),
            ("app==web", true),
            ("app=api", false),
            ("app!=api", true),
            ("app!=web", false),
            ("tier", true),
            ("missing", false),
            ("!missing", true),
            ("!app", false),
            ("app=web,tier=edge", true),
            ("app=web,tier=core", false),
            ("app in (api,web)", true),
            ("app notin (api,web)", false),
            ("missing notin (a)", true),
            ("", true),
        ];
        for (selector, expected) in cases {
            let parsed = LabelSelector::parse(selector).expect(selector);
            assert_eq!(parsed.matches(&set), expected, "selector {selector:?}");
        }
    }

    #[test]
    fn label_selector_rejects_bad_key() {
        assert!(LabelSelector::parse("a b=c").is_err());
    }

    #[test]
    fn field_selector_rejects_other_fields() {
        assert!(FieldSelector::parse("spec.mode=filter").is_err());
    }

    #[test]
    fn query_decodes_percent_escapes() {
        let query = Query::parse(Some("labelSelector=app%3Dweb%2Ctier&limit=2")).expect("query");
        assert_eq!(query.limit, 2);
        assert!(query
            .labels
            .matches(&labels(&[("app", "web"), ("tier", "x")])));
    }

    #[test]
    fn continue_token_round_trips() {
        let token = ContinueToken {
            revision: 7,
            after: "b".to_owned(),
        };
        assert_eq!(ContinueToken::decode(&token.encode()), Ok(token));
    }
}
