//! Helpers shared by the emulator's self-tests: start an emulator, call its
//! API raw, wait for conditions, reach the test bed (panicking with the hint
//! when it is not up: these tests never skip).
#![allow(dead_code)] // each test binary uses a part

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use longhorn_emulator::{Emulator, EmulatorConfig, StoreConfig, TestbedEnv};
use serde_json::Value;

pub const HINT: &str = "start the test bed with tests/testbed/up";

pub fn local() -> SocketAddr {
    "127.0.0.1:0".parse().expect("socket address")
}

/// An emulator with no store and no cluster.
pub async fn bare() -> Emulator {
    Emulator::start(EmulatorConfig::new(local()))
        .await
        .expect("starting the emulator")
}

/// A random lowercase suffix.
pub fn suffix() -> String {
    format!("{:08x}", rand::random::<u32>())
}

/// The test bed's S3 target with a fresh prefix; panics when the bed is not up.
pub async fn testbed_store() -> StoreConfig {
    let prefix = format!("emulator-selftest/{}", suffix());
    let cfg = StoreConfig::from_testbed_env_with_prefix(&prefix)
        .unwrap_or_else(|e| panic!("{e:#}: {HINT}"));
    let s3 = s3_client(&cfg);
    match tokio::time::timeout(
        Duration::from_secs(10),
        s3.head_bucket().bucket(&cfg.bucket).send(),
    )
    .await
    {
        Ok(Ok(_)) => cfg,
        Ok(Err(e)) => panic!(
            "S3 at {} does not serve bucket {}: {e:?}: {HINT}",
            cfg.endpoint, cfg.bucket
        ),
        Err(_) => panic!("S3 at {} did not answer in 10 s: {HINT}", cfg.endpoint),
    }
}

/// The test bed's cluster; panics when the bed is not up.
pub async fn testbed_kube() -> kube::Client {
    let env = TestbedEnv::load().unwrap_or_else(|e| panic!("{e:#}: {HINT}"));
    env.kube_client()
        .await
        .unwrap_or_else(|e| panic!("{e:#}: {HINT}"))
}

pub fn s3_client(cfg: &StoreConfig) -> aws_sdk_s3::Client {
    use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
    let creds = Credentials::new(&cfg.access_key, &cfg.secret_key, None, None, "selftest");
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(cfg.region.clone()))
        .endpoint_url(&cfg.endpoint)
        .credentials_provider(creds)
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// Every key under `prefix`.
pub async fn list_keys(s3: &aws_sdk_s3::Client, bucket: &str, prefix: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut token = None;
    loop {
        let out = s3
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .set_continuation_token(token.take())
            .send()
            .await
            .expect("ListObjectsV2");
        keys.extend(
            out.contents()
                .iter()
                .filter_map(|o| o.key())
                .map(str::to_owned),
        );
        match out.next_continuation_token() {
            Some(t) => token = Some(t.to_owned()),
            None => break,
        }
    }
    keys.sort();
    keys
}

pub async fn get_object(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Vec<u8> {
    s3.get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GetObject {key}: {e:?}"))
        .body
        .collect()
        .await
        .expect("reading object")
        .into_bytes()
        .to_vec()
}

pub async fn delete_prefix(s3: &aws_sdk_s3::Client, bucket: &str, prefix: &str) {
    for key in list_keys(s3, bucket, prefix).await {
        let _ = s3.delete_object().bucket(bucket).key(&key).send().await;
    }
}

/// A raw client of the manager API.
pub struct Api {
    pub base: url::Url,
    pub http: reqwest::Client,
}

/// A response: status, raw body, and the body as JSON when it is JSON.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub text: String,
    pub json: Value,
    pub content_type: String,
}

impl Api {
    pub fn new(emu: &Emulator) -> Api {
        Api {
            base: emu.url(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(30))
                .build()
                .expect("http client"),
        }
    }

    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Resp {
        let url = self.base.join(path.trim_start_matches('/')).expect("url");
        let mut req = self.http.request(method, url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap_or_else(|e| panic!("{path}: {e}"));
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let text = resp.text().await.expect("body");
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Resp {
            status,
            text,
            json,
            content_type,
        }
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Resp {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    /// An action that must succeed; its JSON.
    pub async fn action(&self, kind: &str, id: &str, action: &str, body: Value) -> Value {
        let r = self
            .post(&format!("v1/{kind}/{id}?action={action}"), body)
            .await;
        assert_eq!(r.status, 200, "{action} on {id}: {}", r.text);
        r.json
    }

    pub async fn volume(&self, name: &str) -> Value {
        let r = self.get(&format!("v1/volumes/{name}")).await;
        assert_eq!(r.status, 200, "GET volume {name}: {}", r.text);
        r.json
    }

    /// Waits until `pred` holds on the volume; panics after `secs`.
    pub async fn wait_volume(&self, name: &str, secs: u64, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let v = self.volume(name).await;
            if pred(&v) {
                return v;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("volume {name} did not reach the condition in {secs} s: {v:#}");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Polls `f` every 10 ms until it returns `Some`, for at most `secs` seconds.
pub async fn wait<T, F, Fut>(secs: u64, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if tokio::time::Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Deterministic pseudo-random bytes.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2654435761).to_le_bytes()[i % 4] ^ seed)
        .collect()
}
