//! Proof that the test bed's S3 server (versitygw, posix backend) serves the
//! object calls dr makes, through aws-sdk-s3 with a custom endpoint and
//! path-style addressing. Needs `tests/testbed/up`.

use crate::harness::testbed;
use aws_sdk_s3::primitives::ByteStream;

#[tokio::test]
async fn put_get_list_delete_an_object() {
    let tb = testbed::get();
    let s3 = tb.s3_checked().await;
    let bucket = tb.s3_bucket();
    let prefix = format!("testbed-s3/{}/", testbed::suffix());
    let key = format!("{prefix}hello.bin");
    let body: Vec<u8> = (0..=255u8).cycle().take(300_000).collect();

    s3.put_object()
        .bucket(bucket)
        .key(&key)
        .content_type("application/octet-stream")
        .body(ByteStream::from(body.clone()))
        .send()
        .await
        .expect("PutObject");

    let got = s3
        .get_object()
        .bucket(bucket)
        .key(&key)
        .send()
        .await
        .expect("GetObject");
    assert_eq!(got.content_length(), Some(body.len() as i64));
    let bytes = got
        .body
        .collect()
        .await
        .expect("reading the object")
        .into_bytes();
    assert_eq!(bytes.as_ref(), body.as_slice(), "object read back differs");

    let listed = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(&prefix)
        .send()
        .await
        .expect("ListObjectsV2");
    let keys: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, [key.as_str()]);
    let size = listed.contents()[0].size();
    assert_eq!(size, Some(body.len() as i64));

    s3.delete_object()
        .bucket(bucket)
        .key(&key)
        .send()
        .await
        .expect("DeleteObject");
    let listed = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(&prefix)
        .send()
        .await
        .expect("ListObjectsV2");
    assert!(
        listed.contents().is_empty(),
        "object still listed after delete: {listed:?}"
    );
    let err = s3
        .head_object()
        .bucket(bucket)
        .key(&key)
        .send()
        .await
        .expect_err("HeadObject after delete");
    assert!(
        err.as_service_error().is_some_and(|e| e.is_not_found()),
        "expected 404, got {err:?}"
    );
}

#[tokio::test]
async fn requests_with_wrong_credentials_are_refused() {
    use aws_sdk_s3::config::Credentials;
    let tb = testbed::get();
    tb.s3_checked().await;
    let conf = tb
        .s3_client()
        .config()
        .to_builder()
        .credentials_provider(Credentials::new(
            "drtest",
            "not-the-secret",
            None,
            None,
            "wrong",
        ))
        .build();
    let s3 = aws_sdk_s3::Client::from_conf(conf);
    let err = s3
        .list_objects_v2()
        .bucket(tb.s3_bucket())
        .send()
        .await
        .expect_err("listing with a bad secret");
    let status = err.raw_response().map(|r| r.status().as_u16());
    assert_eq!(status, Some(403), "expected 403, got {err:?}");
}
