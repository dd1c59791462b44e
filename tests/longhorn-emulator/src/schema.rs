//! Longhorn's API schemas and how the server serves them and writes
//! resources through them.
//!
//! `data/longhorn-v1.12.1-schemas.json` is the `Data` of longhorn-manager
//! v1.12.1 `api/model.go` `NewSchema()`, marshalled as JSON (90 schemas,
//! `links: {}`, `actions: null` as built). What the vendored go-rancher
//! `api` package adds per request is modelled here:
//! - `api/handler.go` `SchemasHandler` / `SchemaHandler`: a deep copy of the
//!   schemas, `populateSchema` (a schema whose `collectionMethods` contain
//!   `GET` gets `links.collection` = `UrlBuilder.Collection(id)`), then
//!   `ApiContext.Write`.
//! - `api/writer.go` `populateCollection` (`links.self` = the request URL,
//!   `type` = `collection`, `resourceType` = the first item's type) and
//!   `populateResource` (`links.self` = `ReferenceByIdLink(type, id)` when
//!   the resource has a type and an id, else the request URL; `actions`
//!   becomes `{}` when nil).
//! - `api/api.go` `ResourceToMap`: every written resource is reduced to the
//!   fields its schema declares (`Schema.CheckField`); a type without a
//!   schema is written as `{}` (then populated).
//! - `api/url.go`: `getPluralName` lower-cases the schema's `pluralName`;
//!   `Current()` (`parseRequestUrl`) is `http://<Host><path>`, without the
//!   query string.

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use serde_json::{Map, Value, json};

const DATA: &str = include_str!("../data/longhorn-v1.12.1-schemas.json");

/// The parsed schemas.
pub struct Schemas {
    /// In `NewSchema()` order, as served.
    list: Vec<Value>,
    /// Lower-cased id -> index (`Schemas.CheckSchema` compares lower-cased).
    by_lower_id: HashMap<String, usize>,
    /// Id -> the names of its `resourceFields`.
    fields: HashMap<String, HashSet<String>>,
}

/// The schemas, parsed once.
pub fn schemas() -> &'static Schemas {
    static S: OnceLock<Schemas> = OnceLock::new();
    S.get_or_init(|| {
        let list: Vec<Value> = serde_json::from_str(DATA).expect("embedded schemas are JSON");
        let mut by_lower_id = HashMap::new();
        let mut fields = HashMap::new();
        for (i, s) in list.iter().enumerate() {
            let id = s["id"].as_str().unwrap_or_default().to_owned();
            // CheckSchema returns the first match.
            by_lower_id.entry(id.to_lowercase()).or_insert(i);
            let names: HashSet<String> = s["resourceFields"]
                .as_object()
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default();
            fields.insert(id, names);
        }
        Schemas {
            list,
            by_lower_id,
            fields,
        }
    })
}

impl Schemas {
    /// `Schemas.CheckSchema`: case-insensitive.
    pub fn get(&self, id: &str) -> Option<&Value> {
        self.by_lower_id
            .get(&id.to_lowercase())
            .map(|&i| &self.list[i])
    }

    /// `urlBuilder.getPluralName`: the schema's plural, lower-cased; the
    /// lower-cased type when it has none.
    pub fn plural(&self, kind: &str) -> String {
        self.get(kind)
            .and_then(|s| s["pluralName"].as_str())
            .filter(|p| !p.is_empty())
            .unwrap_or(kind)
            .to_lowercase()
    }

    /// The names of a schema's `resourceActions`.
    #[cfg(test)]
    pub fn resource_actions(&self, kind: &str) -> Vec<&str> {
        self.get(kind)
            .and_then(|s| s["resourceActions"].as_object())
            .map(|m| m.keys().map(String::as_str).collect())
            .unwrap_or_default()
    }

    /// `ResourceToMap`: only the fields `kind`'s schema declares; `{}` for a
    /// type without a schema.
    pub fn filter(&self, kind: &str, value: Value) -> Value {
        let Some(schema) = self.get(kind) else {
            return Value::Object(Map::new());
        };
        let id = schema["id"].as_str().unwrap_or_default();
        let Some(names) = self.fields.get(id) else {
            return value;
        };
        match value {
            Value::Object(m) => Value::Object(
                m.into_iter()
                    .filter(|(k, _)| names.contains(k.as_str()))
                    .collect(),
            ),
            other => other,
        }
    }
}

/// `urlBuilder.Collection(kind)`: `<base>/v1/<plural>`.
pub fn collection_url(base: &str, kind: &str) -> String {
    format!("{base}/v1/{}", schemas().plural(kind))
}

/// One schema as `SchemaHandler` writes it: `populateSchema`, then
/// `populateResource` (the `schema` schema declares every key a schema has).
fn populated(base: &str, schema: &Value) -> Value {
    let mut s = schema.clone();
    let id = s["id"].as_str().unwrap_or_default().to_owned();
    let get = s["collectionMethods"]
        .as_array()
        .is_some_and(|m| m.iter().any(|x| x == "GET"));
    let mut links = s["links"].as_object().cloned().unwrap_or_default();
    if get {
        links.insert("collection".into(), json!(collection_url(base, &id)));
    }
    links
        .entry("self")
        .or_insert_with(|| json!(format!("{base}/v1/schemas/{id}")));
    s["links"] = Value::Object(links);
    if s["actions"].is_null() {
        s["actions"] = json!({});
    }
    schemas().filter("schema", s)
}

/// `GET /v1/schemas`.
pub fn list(base: &str, url: &str) -> Value {
    let data: Vec<Value> = schemas().list.iter().map(|s| populated(base, s)).collect();
    json!({
        "type": "collection",
        "resourceType": "schema",
        "links": { "self": url },
        "data": data,
    })
}

/// `GET /v1/schemas/{id}`. An id no schema has is not an error in
/// Longhorn: `SchemaHandler` copies the zero `client.Schema`,
/// `ResourceToMap` finds no schema for its empty type and writes `{}`, and
/// `populateResource` adds the request URL as `links.self`: 200
/// `{"actions":{},"links":{"self":"<request URL>"}}`.
pub fn one(base: &str, url: &str, id: &str) -> Value {
    match schemas().get(id) {
        Some(s) => populated(base, s),
        None => json!({ "actions": {}, "links": { "self": url } }),
    }
}

/// `VersionHandler` (`GET /v1`): a link per schema whose
/// `collectionMethods` contain `GET`, keyed by its `pluralName` as written
/// (`backupVolumes`), plus `self`.
pub fn api_version(base: &str) -> Value {
    let mut links = Map::new();
    for s in &schemas().list {
        let get = s["collectionMethods"]
            .as_array()
            .is_some_and(|m| m.iter().any(|x| x == "GET"));
        if let (true, Some(plural), Some(id)) = (get, s["pluralName"].as_str(), s["id"].as_str()) {
            links.insert(plural.to_owned(), json!(collection_url(base, id)));
        }
    }
    links.insert("self".into(), json!(format!("{base}/v1")));
    json!({
        "id": "v1",
        "type": "apiVersion",
        "links": links,
        "actions": {},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_data() {
        let s = schemas();
        assert_eq!(s.list.len(), 90);
        assert!(s.get("BackupVolume").is_some());
        assert_eq!(s.plural("backupVolume"), "backupvolumes");
        assert_eq!(s.plural("nope"), "nope");
        let v = s.filter("backup", json!({"name": "b", "bogus": 1}));
        assert_eq!(v, json!({"name": "b"}));
        assert_eq!(s.filter("nope", json!({"a": 1})), json!({}));
    }

    #[test]
    fn offered_actions_are_declared() {
        let s = schemas();
        for a in crate::render::BV_ACTIONS {
            assert!(s.resource_actions("backupVolume").contains(a), "{a}");
        }
        for a in ["backupTargetSync", "backupTargetUpdate"] {
            assert!(s.resource_actions("backupTarget").contains(&a), "{a}");
        }
    }

    #[test]
    fn served_schema() {
        let v = one("http://h:1", "http://h:1/v1/schemas/volume", "Volume");
        assert_eq!(v["id"], "volume");
        assert_eq!(v["links"]["self"], "http://h:1/v1/schemas/volume");
        assert_eq!(v["links"]["collection"], "http://h:1/v1/volumes");
        assert_eq!(v["actions"], json!({}));
        let v = one("http://h:1", "http://h:1/v1/schemas/x", "x");
        assert_eq!(
            v,
            json!({"actions": {}, "links": {"self": "http://h:1/v1/schemas/x"}})
        );
    }
}
