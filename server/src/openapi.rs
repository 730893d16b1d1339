//! The OpenAPI v3 document of `extensions.apoxy.dev/v1alpha2`, served at
//! `/openapi/v3/apis/extensions.apoxy.dev/v1alpha2`.
//!
//! kubectl reads it to build `apply` patches and to learn that the server validates fields
//! itself: each PATCH operation lists the `fieldValidation` parameter and accepts
//! `application/strategic-merge-patch+json`, so kubectl sends `fieldValidation=Strict` instead
//! of validating on the client, and computes strategic merge patches from these schemas.

use serde_json::{json, Map, Value as Json};

use crate::resource::{COLLECTION_PATH, GROUP, KIND, LIST_KIND, VERSION};

/// Prefix of the schema names of the resource's own types.
pub const SCHEMA_PREFIX: &str = "dev.apoxy.extensions.v1alpha2.";
const META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.";

fn reference(name: &str) -> Json {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn own(name: &str) -> Json {
    reference(&format!("{SCHEMA_PREFIX}{name}"))
}

fn meta(name: &str) -> Json {
    reference(&format!("{META}{name}"))
}

fn string(description: &str) -> Json {
    json!({"type": "string", "description": description})
}

fn boolean(description: &str) -> Json {
    json!({"type": "boolean", "description": description})
}

fn string_map(description: &str) -> Json {
    json!({
        "type": "object",
        "description": description,
        "additionalProperties": {"type": "string"}
    })
}

fn array(items: Json, description: &str) -> Json {
    json!({"type": "array", "description": description, "items": items})
}

fn object(description: &str, properties: &[(&str, Json)], required: &[&str]) -> Json {
    let properties: Map<String, Json> = properties
        .iter()
        .map(|(name, schema)| ((*name).to_owned(), schema.clone()))
        .collect();
    let mut schema =
        json!({"type": "object", "description": description, "properties": properties});
    if !required.is_empty() {
        schema["required"] = json!(required);
    }
    schema
}

fn gvk(kind: &str) -> Json {
    json!([{"group": GROUP, "version": VERSION, "kind": kind}])
}

/// Returns the schemas of the EdgeFunctionRevision types, keyed by their name without
/// [`SCHEMA_PREFIX`].
pub fn revision_schemas() -> Vec<(&'static str, Json)> {
    let type_meta = |kind: &str| {
        [
            ("apiVersion", string("extensions.apoxy.dev/v1alpha2")),
            ("kind", string(kind)),
        ]
    };

    let [api_version, kind] = type_meta(KIND);
    let mut revision = object(
        "One immutable revision of an edge function.",
        &[
            api_version,
            kind,
            ("metadata", meta("ObjectMeta")),
            ("spec", own("EdgeFunctionRevisionSpec")),
            ("status", own("EdgeFunctionRevisionStatus")),
        ],
        &[],
    );
    revision["x-kubernetes-group-version-kind"] = gvk(KIND);

    let [api_version, kind] = type_meta(LIST_KIND);
    let mut list = object(
        "A list of EdgeFunctionRevisions.",
        &[
            api_version,
            kind,
            ("metadata", meta("ListMeta")),
            (
                "items",
                array(own("EdgeFunctionRevision"), "The revisions."),
            ),
        ],
        &["items"],
    );
    list["x-kubernetes-group-version-kind"] = gvk(LIST_KIND);

    vec![
        ("EdgeFunctionRevision", revision),
        ("EdgeFunctionRevisionList", list),
        (
            "EdgeFunctionRevisionSpec",
            object(
                "Desired state: the function's code and runtime settings.",
                &[
                    (
                        "mode",
                        string(
                            "filter or backend; defaults to filter when goPluginSource is set, \
                             backend otherwise.",
                        ),
                    ),
                    ("code", own("EdgeFunctionCodeSource")),
                    (
                        "env",
                        array(own("EnvVar"), "Environment variables of the function."),
                    ),
                    ("runtime", own("EdgeFunctionRuntime")),
                ],
                &["code"],
            ),
        ),
        (
            "EdgeFunctionCodeSource",
            object(
                "Source of the code: exactly one of jsSource, wasmSource or goPluginSource.",
                &[
                    ("metadata", meta("ObjectMeta")),
                    ("jsSource", own("JavaScriptSource")),
                    ("wasmSource", own("WasmSource")),
                    ("goPluginSource", own("GoPluginSource")),
                ],
                &[],
            ),
        ),
        (
            "GoPluginSource",
            object(
                "Go filter plugin: exactly one of url or oci.",
                &[
                    (
                        "url",
                        string("http, https or file URL, or absolute path, of the library."),
                    ),
                    ("oci", own("OCIImageRef")),
                    (
                        "pluginConfig",
                        string("A JSON or YAML object in a string, passed to the plugin."),
                    ),
                ],
                &[],
            ),
        ),
        (
            "OCIImageRef",
            object(
                "An OCI image that carries the plugin.",
                &[
                    (
                        "repo",
                        string("Repository, such as ghcr.io/example/plugin."),
                    ),
                    (
                        "tag",
                        string("Tag; defaults to latest unless repo names a digest."),
                    ),
                    ("credentials", own("OCICredentials")),
                    ("credentialsRef", own("OCICredentialsObjectReference")),
                ],
                &["repo"],
            ),
        ),
        (
            "OCICredentials",
            object(
                "Inline registry credentials. password and passwordData are write-only: \
                 stored, never returned.",
                &[
                    ("username", string("Registry user name.")),
                    ("password", string("Write-only password.")),
                    (
                        "passwordData",
                        json!({
                            "type": "string",
                            "format": "byte",
                            "description": "Write-only password bytes, base64."
                        }),
                    ),
                ],
                &[],
            ),
        ),
        (
            "OCICredentialsObjectReference",
            object(
                "The object that holds registry credentials.",
                &[
                    ("group", string("API group, empty for the core group.")),
                    ("kind", string("Kind, such as Secret.")),
                    ("name", string("Name.")),
                    ("namespace", string("Namespace.")),
                ],
                &[],
            ),
        ),
        (
            "JavaScriptSource",
            object(
                "JavaScript code: an entry point and exactly one of assets, git or npm.",
                &[
                    ("entrypoint", string("Relative path of the entry module.")),
                    ("assets", own("JavaScriptAssetsSource")),
                    ("git", own("JavaScriptGitSource")),
                    ("npm", own("JavaScriptNpmSource")),
                ],
                &["entrypoint"],
            ),
        ),
        (
            "JavaScriptAssetsSource",
            object(
                "Source files given inline.",
                &[("files", array(own("SourceFile"), "The files."))],
                &[],
            ),
        ),
        (
            "SourceFile",
            object(
                "One inline source file.",
                &[
                    ("path", string("Relative path.")),
                    ("content", string("Content.")),
                ],
                &["path", "content"],
            ),
        ),
        (
            "JavaScriptGitSource",
            object(
                "Source files from a git repository.",
                &[
                    ("repository", string("Repository URL.")),
                    ("branch", string("Branch.")),
                    ("commit", string("Commit.")),
                ],
                &[],
            ),
        ),
        (
            "JavaScriptNpmSource",
            object(
                "Source files from an npm package.",
                &[
                    ("package", string("Package name.")),
                    ("version", string("Version or range.")),
                ],
                &[],
            ),
        ),
        (
            "WasmSource",
            object(
                "A WebAssembly module.",
                &[("url", string("URL of the module."))],
                &[],
            ),
        ),
        (
            "EnvVar",
            object(
                "An environment variable.",
                &[("name", string("Name.")), ("value", string("Value."))],
                &["name"],
            ),
        ),
        (
            "EdgeFunctionRuntime",
            object(
                "Runtime settings.",
                &[
                    (
                        "timeout",
                        string("Per-request timeout as a Go duration, 30s when unset."),
                    ),
                    ("capabilities", own("RuntimeCapabilities")),
                    (
                        "port",
                        json!({
                            "type": "integer",
                            "format": "int32",
                            "description": "Port of a backend-mode function, 8080 when unset; \
                                            not allowed in filter mode."
                        }),
                    ),
                ],
                &[],
            ),
        ),
        (
            "RuntimeCapabilities",
            object(
                "Features the function may use; unset means enabled.",
                &[
                    (
                        "fetchAPI",
                        boolean("Whether the function may call the Fetch API."),
                    ),
                    (
                        "kv",
                        boolean("Whether the function may use the key-value store."),
                    ),
                ],
                &[],
            ),
        ),
        (
            "EdgeFunctionRevisionStatus",
            object(
                "Observed state, written through the status subresource.",
                &[
                    (
                        "ref",
                        string("Name of the stored artifact once ingest succeeded."),
                    ),
                    (
                        "conditions",
                        array(meta("Condition"), "Conditions, in the order they happened."),
                    ),
                ],
                &[],
            ),
        ),
    ]
}

/// Returns the schemas of the Kubernetes meta types the document refers to.
fn meta_schemas() -> Vec<(&'static str, Json)> {
    let any_object = json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true});
    vec![
        (
            "ObjectMeta",
            object(
                "Standard object metadata.",
                &[
                    ("name", string("Name, unique in the resource.")),
                    ("generateName", string("Prefix of a generated name.")),
                    (
                        "namespace",
                        string("Always empty: the resource is cluster-scoped."),
                    ),
                    ("uid", string("Unique id set by the server.")),
                    (
                        "resourceVersion",
                        string("Version for optimistic concurrency."),
                    ),
                    ("generation", json!({"type": "integer", "format": "int64"})),
                    (
                        "creationTimestamp",
                        json!({"type": "string", "format": "date-time"}),
                    ),
                    (
                        "deletionTimestamp",
                        json!({"type": "string", "format": "date-time"}),
                    ),
                    ("labels", string_map("Labels.")),
                    ("annotations", string_map("Annotations.")),
                    ("ownerReferences", array(any_object.clone(), "Owners.")),
                    (
                        "finalizers",
                        array(json!({"type": "string"}), "Finalizers."),
                    ),
                    (
                        "managedFields",
                        array(any_object.clone(), "Field managers."),
                    ),
                ],
                &[],
            ),
        ),
        (
            "ListMeta",
            object(
                "Standard list metadata.",
                &[
                    ("resourceVersion", string("Version of the list.")),
                    ("continue", string("Token of the next page.")),
                    (
                        "remainingItemCount",
                        json!({"type": "integer", "format": "int64"}),
                    ),
                ],
                &[],
            ),
        ),
        (
            "Condition",
            object(
                "One status condition.",
                &[
                    ("type", string("Type, such as Ready.")),
                    ("status", string("True, False or Unknown.")),
                    (
                        "observedGeneration",
                        json!({"type": "integer", "format": "int64"}),
                    ),
                    (
                        "lastTransitionTime",
                        json!({"type": "string", "format": "date-time"}),
                    ),
                    ("reason", string("CamelCase reason.")),
                    ("message", string("Message.")),
                ],
                &["type", "status", "lastTransitionTime", "reason", "message"],
            ),
        ),
        ("Status", any_object.clone()),
        ("DeleteOptions", any_object.clone()),
        (
            "Patch",
            json!({"type": "object", "description": "A patch in one of the accepted media types."}),
        ),
        (
            "WatchEvent",
            object(
                "One watch event.",
                &[
                    ("type", string("ADDED, MODIFIED, DELETED or ERROR.")),
                    ("object", any_object),
                ],
                &["type", "object"],
            ),
        ),
    ]
}

fn query_parameter(name: &str, schema_type: &str, description: &str) -> Json {
    json!({
        "name": name,
        "in": "query",
        "description": description,
        "schema": {"type": schema_type, "uniqueItems": true}
    })
}

fn write_parameters() -> Vec<Json> {
    vec![
        query_parameter(
            "dryRun",
            "string",
            "All: check the request and store nothing.",
        ),
        query_parameter("fieldManager", "string", "Accepted and not used."),
        query_parameter(
            "fieldValidation",
            "string",
            "Accepted; unknown or duplicate fields are always rejected (Strict).",
        ),
    ]
}

fn list_parameters() -> Vec<Json> {
    vec![
        query_parameter("labelSelector", "string", "Label selector."),
        query_parameter(
            "fieldSelector",
            "string",
            "metadata.name=NAME or metadata.name!=NAME.",
        ),
        query_parameter("limit", "integer", "Largest number of items to return."),
        query_parameter(
            "continue",
            "string",
            "metadata.continue of the previous page.",
        ),
        query_parameter(
            "resourceVersion",
            "string",
            "For a watch: the version to start after.",
        ),
        query_parameter("watch", "boolean", "Stream changes instead of listing."),
        query_parameter(
            "allowWatchBookmarks",
            "boolean",
            "Accepted; no bookmarks are sent.",
        ),
        query_parameter("timeoutSeconds", "integer", "Length of a watch."),
    ]
}

fn json_content(schema: Json) -> Json {
    json!({"application/json": {"schema": schema}})
}

/// Returns an operation on EdgeFunctionRevisions that returns 200 with `response`.
fn operation(action: &str, operation_id: &str, summary: &str, response: Json) -> Json {
    json!({
        "summary": summary,
        "operationId": operation_id,
        "parameters": [],
        "responses": {"200": {"description": "OK", "content": json_content(response)}},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": GROUP, "version": VERSION, "kind": KIND},
    })
}

fn with_parameters(mut operation: Json, parameters: Vec<Json>) -> Json {
    operation["parameters"] = Json::Array(parameters);
    operation
}

fn with_body(mut operation: Json, content: Json) -> Json {
    operation["requestBody"] = json!({"required": true, "content": content});
    operation
}

fn patch_body() -> Json {
    let patch = json!({"schema": meta("Patch")});
    json!({
        "application/json-patch+json": patch,
        "application/merge-patch+json": patch,
        "application/strategic-merge-patch+json": patch,
    })
}

fn collection_path() -> Json {
    let list = own("EdgeFunctionRevisionList");
    let revision = own("EdgeFunctionRevision");

    let get = operation(
        "list",
        "listEdgeFunctionRevision",
        "List or watch",
        list.clone(),
    );
    let post = operation(
        "post",
        "createEdgeFunctionRevision",
        "Create",
        revision.clone(),
    );
    let delete = operation(
        "deletecollection",
        "deleteCollectionEdgeFunctionRevision",
        "Delete the selected objects",
        list,
    );
    json!({
        "get": with_parameters(get, list_parameters()),
        "post": with_body(with_parameters(post, write_parameters()), json_content(revision)),
        "delete": with_parameters(delete, list_parameters()),
    })
}

/// Returns the path item of one object, or of its status when `status` is set.
fn item_path(status: bool) -> Json {
    let revision = own("EdgeFunctionRevision");
    let suffix = if status { "Status" } else { "" };
    let id = |verb: &str| format!("{verb}EdgeFunctionRevision{suffix}");
    let target = if status { "the status" } else { "an object" };

    let get = operation(
        "get",
        &id("read"),
        &format!("Read {target}"),
        revision.clone(),
    );
    let put = operation(
        "put",
        &id("replace"),
        &format!("Replace {target}"),
        revision.clone(),
    );
    let patch = operation(
        "patch",
        &id("patch"),
        &format!("Patch {target}"),
        revision.clone(),
    );
    let mut path = json!({
        "parameters": [{
            "name": "name",
            "in": "path",
            "required": true,
            "description": "Name of the EdgeFunctionRevision.",
            "schema": {"type": "string"}
        }],
        "get": get,
        "put": with_body(with_parameters(put, write_parameters()), json_content(revision.clone())),
        "patch": with_body(with_parameters(patch, write_parameters()), patch_body()),
    });
    if !status {
        let delete = operation("delete", &id("delete"), "Delete an object", revision);
        let dry_run = query_parameter("dryRun", "string", "All: check the request only.");
        path["delete"] = with_body(
            with_parameters(delete, vec![dry_run]),
            json_content(meta("DeleteOptions")),
        );
    }
    path
}

fn paths() -> Json {
    let mut paths = Map::new();
    paths.insert(COLLECTION_PATH.to_owned(), collection_path());
    paths.insert(format!("{COLLECTION_PATH}/{{name}}"), item_path(false));
    paths.insert(
        format!("{COLLECTION_PATH}/{{name}}/status"),
        item_path(true),
    );
    Json::Object(paths)
}

/// Returns the OpenAPI v3 document of the group version.
pub fn document() -> Json {
    let mut schemas = Map::new();
    for (name, schema) in revision_schemas() {
        schemas.insert(format!("{SCHEMA_PREFIX}{name}"), schema);
    }
    for (name, schema) in meta_schemas() {
        schemas.insert(format!("{META}{name}"), schema);
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "edgefn", "version": env!("CARGO_PKG_VERSION")},
        "paths": paths(),
        "components": {"schemas": schemas},
    })
}

/// Returns a short hash of the document, which the OpenAPI v3 index puts in the document's
/// URL so that clients can cache it.
pub fn document_hash() -> String {
    use std::hash::{Hash, Hasher};

    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    document().to_string().hash(&mut hasher);
    format!("{:016X}", hasher.finish())
}
