//! The emulator driven as a schema-driven client drives Longhorn: load
//! `/v1/schemas`, then check every resource the emulator produces against
//! its schema (keys, nested types, actions) and call every action it offers.
//! The first tests need no test bed; backups need its S3.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::{Api, bare, local, testbed_store, wait};
use longhorn_emulator::{Emulator, EmulatorConfig, Timings};
use serde_json::{Map, Value, json};

/// Fields Go writes with `omitempty` at the top level of a resource
/// (api/model.go; `id` is omitempty in go-rancher client.Resource, so an
/// error or `empty` resource has none): absent when empty.
const OMITEMPTY: &[(&str, &str)] = &[("snapshotCR", "error"), ("*", "id")];

/// `/v1/schemas`, by id.
struct Schemas {
    base: String,
    by_id: BTreeMap<String, Value>,
}

impl Schemas {
    async fn load(api: &Api) -> Schemas {
        let r = api.get("v1/schemas").await;
        assert_eq!(r.status, 200, "{}", r.text);
        let base = api.base.as_str().trim_end_matches('/').to_owned();
        assert_eq!(r.json["type"], "collection");
        assert_eq!(r.json["resourceType"], "schema");
        assert_eq!(r.json["links"]["self"], format!("{base}/v1/schemas"));
        let by_id: BTreeMap<String, Value> = r.json["data"]
            .as_array()
            .expect("data")
            .iter()
            .map(|s| (s["id"].as_str().expect("id").to_owned(), s.clone()))
            .collect();
        assert_eq!(by_id.len(), 90, "longhorn-manager v1.12.1 has 90 schemas");
        Schemas { base, by_id }
    }

    fn schema(&self, kind: &str) -> &Value {
        self.by_id
            .get(kind)
            .unwrap_or_else(|| panic!("no schema for type {kind}"))
    }

    fn fields(&self, kind: &str) -> &Map<String, Value> {
        self.schema(kind)["resourceFields"]
            .as_object()
            .unwrap_or_else(|| panic!("schema {kind} has no resourceFields"))
    }

    fn actions(&self, kind: &str) -> BTreeSet<String> {
        self.schema(kind)["resourceActions"]
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// A top-level resource: exactly its schema's fields (bar omitempty
    /// ones), nested objects within their types' fields, `links.self`
    /// under the base, actions declared and linked as Longhorn links them.
    fn check(&self, r: &Value) {
        let kind = r["type"].as_str().unwrap_or_else(|| panic!("no type: {r}"));
        let fields = self.fields(kind);
        let obj = r.as_object().expect("an object");
        for k in obj.keys() {
            assert!(
                fields.contains_key(k),
                "{kind}.{k} is not in the {kind} schema: {r:#}"
            );
        }
        for k in fields.keys() {
            if OMITEMPTY.contains(&(kind, k.as_str())) || OMITEMPTY.contains(&("*", k.as_str())) {
                continue;
            }
            assert!(obj.contains_key(k), "{kind} lacks schema field {k}: {r:#}");
        }
        for (k, v) in obj {
            if let Some(t) = fields[k]["type"].as_str() {
                self.check_nested(&format!("{kind}.{k}"), t, v);
            }
        }
        let self_link = r["links"]["self"].as_str().expect("links.self");
        assert!(self_link.starts_with(&self.base), "{self_link}");
        let declared = self.actions(kind);
        let actions = r["actions"].as_object().expect("actions is a map");
        for (name, url) in actions {
            assert!(
                declared.contains(name),
                "{kind} offers {name}, not in its schema's resourceActions"
            );
            let plural = self.schema(kind)["pluralName"]
                .as_str()
                .unwrap()
                .to_lowercase();
            let id = r["id"].as_str().expect("a resource with actions has an id");
            assert_eq!(
                url,
                &json!(format!("{}/v1/{plural}/{id}?action={name}", self.base))
            );
        }
    }

    /// A nested value of schema type `t` (`array[X]`, `map[X]`, `X`): when X
    /// is a schema, its objects' keys are X's fields.
    fn check_nested(&self, at: &str, t: &str, v: &Value) {
        let (inner, each): (&str, Vec<&Value>) =
            if let Some(x) = t.strip_prefix("array[").and_then(|x| x.strip_suffix(']')) {
                (
                    x,
                    v.as_array().map(|a| a.iter().collect()).unwrap_or_default(),
                )
            } else if let Some(x) = t.strip_prefix("map[").and_then(|x| x.strip_suffix(']')) {
                (
                    x,
                    v.as_object()
                        .map(|m| m.values().collect())
                        .unwrap_or_default(),
                )
            } else {
                (t, vec![v])
            };
        let Some(schema) = self.by_id.get(inner) else {
            return;
        };
        let fields = schema["resourceFields"].as_object().unwrap();
        for item in each {
            let Some(obj) = item.as_object() else {
                continue;
            };
            for (k, nested) in obj {
                let f = fields
                    .get(k)
                    .unwrap_or_else(|| panic!("{at}: {k} is not a field of {inner}: {item:#}"));
                if let Some(t) = f["type"].as_str() {
                    self.check_nested(&format!("{at}.{k}"), t, nested);
                }
            }
        }
    }

    /// A valid input for `action` of `kind`, built from its input schema:
    /// strings empty (`name`: a name nothing has), numbers 0, false, empty
    /// lists and maps.
    fn input(&self, kind: &str, action: &str) -> Value {
        let input = &self.schema(kind)["resourceActions"][action]["input"];
        let Some(fields) = input
            .as_str()
            .and_then(|i| self.by_id.get(i))
            .and_then(|s| s["resourceFields"].as_object())
        else {
            return json!({});
        };
        let body: Map<String, Value> = fields
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "id" | "type" | "links" | "actions"))
            .map(|(k, f)| {
                let t = f["type"].as_str().unwrap_or("string");
                let v = match t {
                    "string" if k == "name" => json!("schema-probe"),
                    "string" => json!(""),
                    "int" => json!(0),
                    "bool" => json!(false),
                    _ if t.starts_with("array[") => json!([]),
                    _ => json!({}),
                };
                (k.clone(), v)
            })
            .collect();
        Value::Object(body)
    }

    /// POSTs every action `r` offers with a valid input: each is routed
    /// (a JSON answer, 200 or Longhorn's error envelope; never mux's 404/405).
    async fn call_actions(&self, api: &Api, r: &Value) {
        let kind = r["type"].as_str().unwrap();
        let actions = r["actions"].as_object().unwrap().clone();
        for (name, url) in actions {
            let body = self.input(kind, &name);
            let resp = api
                .http
                .post(url.as_str().unwrap())
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap();
            assert!(
                status == 200 || status == 500 || (status == 404 && text.starts_with('{')),
                "{kind} action {name} with {body}: {status} {text}"
            );
            assert_ne!(
                text, "404 page not found\n",
                "{kind} action {name} not routed"
            );
        }
    }
}

/// Waits for a snapshot CR to be ready.
async fn ready_snapshot(api: &Api, vol: &str, snap: &str) -> Value {
    wait(10, || async {
        let s = api
            .action("volumes", vol, "snapshotCRGet", json!({"name": snap}))
            .await;
        (s["readyToUse"] == true).then_some(s)
    })
    .await
    .expect("snapshot ready")
}

#[tokio::test]
async fn schemas_served_with_links_from_the_request() {
    let emu = bare().await;
    let api = Api::new(&emu);
    let host = "emulated.example:9500";
    let get = |path: &str| {
        let url = api.base.join(path).unwrap();
        api.http.get(url).header(reqwest::header::HOST, host).send()
    };
    let resp = get("v1/schemas/backupVolume").await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        resp.headers()["x-api-schemas"],
        format!("http://{host}/v1/schemas").as_str()
    );
    let s: Value = resp.json().await.unwrap();
    assert_eq!(s["id"], "backupVolume");
    assert_eq!(s["type"], "schema");
    assert_eq!(
        s["links"],
        json!({
            "self": format!("http://{host}/v1/schemas/backupVolume"),
            "collection": format!("http://{host}/v1/backupvolumes"),
        })
    );
    assert_eq!(s["actions"], json!({}));
    assert_eq!(s["pluralName"], "backupVolumes");
    assert!(s["resourceActions"]["backupListByVolume"].is_object());

    // CheckSchema is case-insensitive; the answer carries the schema's id.
    let s: Value = get("v1/schemas/VOLUME")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(s["id"], "volume");
    assert_eq!(
        s["links"]["self"],
        format!("http://{host}/v1/schemas/volume")
    );

    // Every schema in the list is populated the same way.
    let list: Value = get("v1/schemas?x=1").await.unwrap().json().await.unwrap();
    assert_eq!(list["links"]["self"], format!("http://{host}/v1/schemas"));
    for s in list["data"].as_array().unwrap() {
        let id = s["id"].as_str().unwrap();
        let plural = s["pluralName"].as_str().unwrap().to_lowercase();
        assert_eq!(s["links"]["self"], format!("http://{host}/v1/schemas/{id}"));
        assert_eq!(
            s["links"]["collection"],
            format!("http://{host}/v1/{plural}")
        );
        assert_eq!(s["actions"], json!({}));
    }

    // An unknown id: SchemaHandler writes the zero Schema, which has no
    // schema of its own: 200 with only the populated links and actions.
    let resp = get("v1/schemas/noSuchType").await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let s: Value = resp.json().await.unwrap();
    assert_eq!(
        s,
        json!({"actions": {}, "links": {"self": format!("http://{host}/v1/schemas/noSuchType")}})
    );

    // /v1 links every collection by pluralName; / has latest.
    let v: Value = get("v1").await.unwrap().json().await.unwrap();
    assert_eq!(
        v["links"]["backupVolumes"],
        format!("http://{host}/v1/backupvolumes")
    );
    assert_eq!(v["links"]["self"], format!("http://{host}/v1"));
    let root: Value = get("").await.unwrap().json().await.unwrap();
    assert_eq!(root["links"]["latest"], format!("http://{host}/v1"));
    assert_eq!(
        root["data"][0]["links"],
        json!({"self": format!("http://{host}/v1")})
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn resources_without_a_store_match_their_schemas() {
    let emu = bare().await;
    let api = Api::new(&emu);
    let ctl = emu.control();
    let schemas = Schemas::load(&api).await;
    for path in ["v1", ""] {
        let r = api.get(path).await;
        let items = if path.is_empty() {
            r.json["data"].as_array().unwrap().clone()
        } else {
            vec![r.json.clone()]
        };
        for v in items {
            schemas.check(&v);
        }
    }

    // A detached volume, its snapshot CR, and the volume attached.
    ctl.create_volume("sv", 8 << 20).await.unwrap();
    let v = api.volume("sv").await;
    schemas.check(&v);
    assert!(v["actions"]["updateBackupTargetName"].is_string());
    assert!(v["actions"].get("snapshotList").is_none());
    let s = api
        .action("volumes", "sv", "snapshotCRCreate", json!({"name": "s1"}))
        .await;
    schemas.check(&s);
    let s = ready_snapshot(&api, "sv", "s1").await;
    schemas.check(&s);
    let list = api
        .action("volumes", "sv", "snapshotCRList", json!({}))
        .await;
    assert_eq!(list["resourceType"], "snapshotCR");
    for s in list["data"].as_array().unwrap() {
        schemas.check(s);
    }
    ctl.attach("sv").await.unwrap();
    let v = api.volume("sv").await;
    schemas.check(&v);
    assert!(v["actions"]["snapshotList"].is_string());
    let list = api.action("volumes", "sv", "snapshotList", json!({})).await;
    assert_eq!(list["resourceType"], "snapshot");
    for s in list["data"].as_array().unwrap() {
        schemas.check(s);
    }
    let snap = api
        .action("volumes", "sv", "snapshotCreate", json!({"name": "legacy"}))
        .await;
    schemas.check(&snap);
    let list = api.get("v1/volumes").await;
    for v in list.json["data"].as_array().unwrap() {
        schemas.check(v);
    }
    let empty = api
        .action("volumes", "sv", "snapshotCRDelete", json!({"name": "s1"}))
        .await;
    schemas.check(&empty);
    let jobs = api
        .action("volumes", "sv", "recurringJobList", json!({}))
        .await;
    assert_eq!(jobs["resourceType"], "volumeRecurringJob");

    // Settings, the default target without a URL, a backup volume stub,
    // the error envelope.
    for s in api.get("v1/settings").await.json["data"]
        .as_array()
        .unwrap()
    {
        schemas.check(s);
    }
    let t = api.get("v1/backuptargets/default").await.json;
    schemas.check(&t);
    schemas.call_actions(&api, &t).await;
    let bv = api.get("v1/backupvolumes/nothing-here").await.json;
    schemas.check(&bv);
    let e = api.post("v1/volumes/nope?action=attach", json!({})).await;
    assert_eq!(e.status, 404);
    schemas.check(&e.json);

    // Every action offered, attached and detached, is routed.
    schemas.call_actions(&api, &api.volume("sv").await).await;
    let v = api
        .wait_volume("sv", 10, |v| {
            matches!(v["state"].as_str(), Some("detached" | "attached"))
        })
        .await;
    schemas.call_actions(&api, &v).await;
    ctl.create_volume("sv2", 8 << 20).await.unwrap();
    schemas.call_actions(&api, &api.volume("sv2").await).await;
    schemas.call_actions(&api, &bv).await;
    emu.shutdown().await;
}

#[tokio::test]
async fn backups_match_their_schemas() {
    let store = testbed_store().await;
    let mut cfg = EmulatorConfig::new(local());
    cfg.store = Some(store);
    cfg.timings = Timings::fast();
    let emu = Emulator::start(cfg).await.expect("starting the emulator");
    let api = Api::new(&emu);
    let ctl = emu.control();
    let schemas = Schemas::load(&api).await;
    ctl.create_volume("bk", 8 << 20).await.unwrap();
    ctl.write("bk", 0, b"schema").await.unwrap();
    api.action("volumes", "bk", "snapshotCRCreate", json!({"name": "bs"}))
        .await;
    ready_snapshot(&api, "bk", "bs").await;
    let v = api
        .action("volumes", "bk", "snapshotBackup", json!({"name": "bs"}))
        .await;
    schemas.check(&v);
    let v = api
        .wait_volume("bk", 20, |v| {
            v["backupStatus"][0]["state"] == "Completed" && v["state"] == "detached"
        })
        .await;
    schemas.check(&v);
    let name = v["backupStatus"][0]["id"].as_str().unwrap().to_owned();

    let bvs = api.get("v1/backupvolumes").await.json;
    let bv = bvs["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["volumeName"] == "bk")
        .expect("backup volume of bk")
        .clone();
    schemas.check(&bv);
    let id = bv["id"].as_str().unwrap();
    let b = api
        .action("backupvolumes", id, "backupGet", json!({"name": name}))
        .await;
    schemas.check(&b);
    assert_eq!(b["state"], "Completed");
    let list = api
        .action("backupvolumes", id, "backupList", json!({}))
        .await;
    assert_eq!(list["resourceType"], "backup");
    for b in list["data"].as_array().unwrap() {
        schemas.check(b);
    }
    let t = api.get("v1/backuptargets/default").await.json;
    assert_eq!(t["available"], true);
    schemas.check(&t);
    // backupDelete with the probe name deletes nothing that exists.
    schemas.call_actions(&api, &bv).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let b = api
        .action("backupvolumes", id, "backupGet", json!({"name": name}))
        .await;
    assert_eq!(b["state"], "Completed");
    // Clean the store up.
    let r = api
        .call(
            reqwest::Method::DELETE,
            &format!("v1/backupvolumes/{id}"),
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    emu.shutdown().await;
}
