//! The CustomResourceDefinition in `crd/` and the served OpenAPI schemas list exactly the
//! fields of the edgefn-proto types.

use std::collections::BTreeSet;

use edgefn_proto::{
    Condition, EdgeFunctionCodeSource, EdgeFunctionRevision, EdgeFunctionRevisionSpec,
    EdgeFunctionRevisionStatus, EdgeFunctionRuntime, EnvVar, GoPluginSource,
    JavaScriptAssetsSource, JavaScriptGitSource, JavaScriptNpmSource, JavaScriptSource,
    OciCredentials, OciCredentialsObjectReference, OciImageRef, PasswordData, RuntimeCapabilities,
    SourceFile, WasmSource,
};
use serde_json::{Map, Value as Json};

const CRD_PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/crd/edgefunctionrevisions.yaml"
);

/// Paths whose content is Kubernetes object metadata, compared by name only.
const METADATA_PATHS: &[&str] = &["metadata", "spec.code.metadata"];

fn text(value: &str) -> String {
    value.to_owned()
}

/// Returns a revision with every field of every type set, listed without `..Default` so that
/// a field added to edgefn-proto breaks this build until the schemas list it.
fn full_revision() -> EdgeFunctionRevision {
    let oci = OciImageRef {
        repo: text("r"),
        tag: text("t"),
        credentials: Some(OciCredentials {
            username: text("u"),
            password: text("p"),
            password_data: Some(PasswordData(text("cA=="))),
        }),
        credentials_ref: Some(OciCredentialsObjectReference {
            group: text("g"),
            kind: text("k"),
            name: text("n"),
            namespace: text("ns"),
        }),
    };
    let js = JavaScriptSource {
        entrypoint: text("e"),
        assets: Some(JavaScriptAssetsSource {
            files: vec![SourceFile {
                path: text("p"),
                content: text("c"),
            }],
        }),
        git: Some(JavaScriptGitSource {
            repository: text("r"),
            branch: text("b"),
            commit: text("c"),
        }),
        npm: Some(JavaScriptNpmSource {
            package: text("p"),
            version: text("v"),
        }),
    };
    EdgeFunctionRevision {
        api_version: text("a"),
        kind: text("k"),
        metadata: Default::default(),
        spec: EdgeFunctionRevisionSpec {
            mode: text("filter"),
            code: EdgeFunctionCodeSource {
                metadata: Default::default(),
                js_source: Some(js),
                wasm_source: Some(WasmSource { url: text("u") }),
                go_plugin_source: Some(GoPluginSource {
                    url: Some(text("u")),
                    oci: Some(oci),
                    plugin_config: text("{}"),
                }),
            },
            env: vec![EnvVar {
                name: text("n"),
                value: text("v"),
            }],
            runtime: Some(EdgeFunctionRuntime {
                timeout: Some(text("1s")),
                capabilities: Some(RuntimeCapabilities {
                    fetch_api: Some(true),
                    kv: Some(true),
                }),
                port: Some(1),
            }),
        },
        status: EdgeFunctionRevisionStatus {
            artifact_ref: text("r"),
            conditions: vec![Condition {
                condition_type: text("t"),
                status: text("s"),
                observed_generation: 1,
                last_transition_time: text("l"),
                reason: text("r"),
                message: text("m"),
            }],
        },
    }
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

/// Collects the field paths of a JSON value, with `[]` for list items.
fn value_paths(value: &Json, prefix: &str, paths: &mut BTreeSet<String>) {
    match value {
        Json::Object(map) => {
            for (key, child) in map {
                let path = join(prefix, key);
                paths.insert(path.clone());
                if !METADATA_PATHS.contains(&path.as_str()) {
                    value_paths(child, &path, paths);
                }
            }
        }
        Json::Array(items) => {
            for item in items {
                value_paths(item, &format!("{prefix}[]"), paths);
            }
        }
        _ => {}
    }
}

/// Collects the field paths of an OpenAPI schema, following `$ref`s into `schemas`.
fn schema_paths(
    schema: &Json,
    schemas: &Map<String, Json>,
    prefix: &str,
    paths: &mut BTreeSet<String>,
) {
    let schema = match schema.get("$ref").and_then(Json::as_str) {
        Some(reference) => {
            let name = reference.trim_start_matches("#/components/schemas/");
            schemas
                .get(name)
                .unwrap_or_else(|| panic!("{reference} resolves"))
        }
        None => schema,
    };
    if let Some(items) = schema.get("items") {
        schema_paths(items, schemas, &format!("{prefix}[]"), paths);
    }
    if let Some(properties) = schema.get("properties").and_then(Json::as_object) {
        for (key, child) in properties {
            let path = join(prefix, key);
            paths.insert(path.clone());
            if !METADATA_PATHS.contains(&path.as_str()) {
                schema_paths(child, schemas, &path, paths);
            }
        }
    }
}

fn proto_paths() -> BTreeSet<String> {
    let json = serde_json::to_value(full_revision()).expect("serialize");
    let mut paths = BTreeSet::new();
    value_paths(&json, "", &mut paths);
    paths
}

fn crd() -> Json {
    let text = std::fs::read_to_string(CRD_PATH).expect("read the CRD");
    serde_yaml_ng::from_str(&text).expect("the CRD is YAML")
}

#[test]
fn crd_names_and_scope() {
    let crd = crd();
    assert_eq!(crd["apiVersion"], "apiextensions.k8s.io/v1");
    assert_eq!(crd["kind"], "CustomResourceDefinition");
    assert_eq!(
        crd["metadata"]["name"],
        "edgefunctionrevisions.extensions.apoxy.dev"
    );
    assert_eq!(crd["spec"]["group"], "extensions.apoxy.dev");
    assert_eq!(crd["spec"]["scope"], "Cluster");
    assert_eq!(crd["spec"]["names"]["kind"], "EdgeFunctionRevision");
    assert_eq!(crd["spec"]["names"]["plural"], "edgefunctionrevisions");
    assert_eq!(crd["spec"]["names"]["singular"], "edgefunctionrevision");
}

#[test]
fn crd_version_has_status_subresource() {
    let crd = crd();
    let version = &crd["spec"]["versions"][0];
    assert_eq!(version["name"], "v1alpha2");
    assert_eq!(version["served"], true);
    assert_eq!(version["storage"], true);
    assert!(version["subresources"]["status"].is_object());
}

#[test]
fn crd_fields_match_proto_types() {
    let crd = crd();
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    let mut crd_paths = BTreeSet::new();
    schema_paths(schema, &Map::new(), "", &mut crd_paths);

    let proto = proto_paths();
    let missing: Vec<_> = proto.difference(&crd_paths).collect();
    let extra: Vec<_> = crd_paths.difference(&proto).collect();
    assert!(
        missing.is_empty(),
        "fields missing from the CRD: {missing:?}"
    );
    assert!(
        extra.is_empty(),
        "CRD fields that edgefn-proto lacks: {extra:?}"
    );
}

#[test]
fn openapi_fields_match_proto_types() {
    let document = edgefn_server::openapi_document();
    let schemas = document["components"]["schemas"]
        .as_object()
        .expect("schemas");
    let root = schemas
        .get(&format!(
            "{}EdgeFunctionRevision",
            edgefn_server::SCHEMA_PREFIX
        ))
        .expect("EdgeFunctionRevision schema");
    let mut served = BTreeSet::new();
    schema_paths(root, schemas, "", &mut served);

    let proto = proto_paths();
    let missing: Vec<_> = proto.difference(&served).collect();
    let extra: Vec<_> = served.difference(&proto).collect();
    assert!(
        missing.is_empty(),
        "fields missing from the OpenAPI schema: {missing:?}"
    );
    assert!(
        extra.is_empty(),
        "OpenAPI fields that edgefn-proto lacks: {extra:?}"
    );
}

#[test]
fn crd_marks_password_data_as_bytes() {
    let crd = crd();
    let credentials = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
        ["spec"]["properties"]["code"]["properties"]["goPluginSource"]["properties"]["oci"]
        ["properties"]["credentials"]["properties"];
    assert_eq!(credentials["passwordData"]["format"], "byte");
}
