//! The Azure and Google Cloud Storage emulators' harnesses (common::azure, common::gcs) proved on
//! their own: a store uploaded key for key lists as its files, comes back byte for byte with its
//! push order, and takes a racing write and deletion.

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

use common::azure::Azurite;
use common::emu::Emulator;
use common::gcs::FakeGcs;
use common::*;

/// Every file under `dir` with its bytes, by path relative to `dir`.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .map(|e| (e.path().strip_prefix(dir).unwrap().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap()))
        .collect()
}

/// Each repository's tags in push order (mtime of `current/link`; ties by name).
fn push_order(root: &Path) -> BTreeMap<String, Vec<String>> {
    let mut tags: Vec<(String, SystemTime, String)> = tags_on_disk(root)
        .into_iter()
        .map(|(r, t)| {
            let link = v2(root).join(format!("repositories/{r}/_manifests/tags/{t}/current/link"));
            (r, std::fs::metadata(link).unwrap().modified().unwrap(), t)
        })
        .collect();
    tags.sort();
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (r, _, t) in tags {
        out.entry(r).or_default().push(t);
    }
    out
}

/// The demo store in `reg` under `root`: its keys are its files, a download is the same files
/// (and, paced, the same push order, with times of now to the second), a racing put and delete
/// show in the listing.
fn round_trip(emu: &dyn Emulator, root: &str, paced: bool) {
    let demo = fixture("demo");
    emu.create("reg");
    let start = SystemTime::now() - Duration::from_secs(1);
    emu.upload(demo.path(), "reg", root, paced);
    let prefix = if root.trim_matches('/').is_empty() { String::new() } else { format!("{}/", root.trim_matches('/')) };
    let want: Vec<String> = files(demo.path()).into_keys().map(|k| format!("{prefix}{k}")).collect();
    assert_eq!(emu.keys("reg"), want);

    let copy = tempfile::tempdir().unwrap();
    emu.download("reg", root, copy.path());
    assert!(files(copy.path()) == files(demo.path()), "the download is the store, byte for byte");
    for e in walkdir::WalkDir::new(copy.path()).into_iter().flatten().filter(|e| e.file_type().is_file()) {
        let mtime = e.metadata().unwrap().modified().unwrap();
        assert!(mtime >= start && mtime <= SystemTime::now(), "{}: {mtime:?}", e.path().display());
        let nanos = mtime.duration_since(SystemTime::UNIX_EPOCH).unwrap().subsec_nanos();
        assert_eq!(nanos, 0, "{}: times are to the second", e.path().display());
    }
    if paced {
        assert_eq!(push_order(copy.path()), push_order(demo.path()), "the same push order");
    }

    let key = format!("{prefix}docker/registry/v2/repositories/team/app/_manifests/tags/racer/current/link");
    emu.put("reg", &key, b"sha256:0000000000000000000000000000000000000000000000000000000000000000");
    assert!(emu.keys("reg").contains(&key));
    emu.delete("reg", &key);
    assert_eq!(emu.keys("reg"), want);
}

#[test]
fn azurite_holds_a_store_key_for_key_in_push_order() {
    round_trip(&Azurite::start(), "/store", true);
}

#[test]
fn azurite_holds_a_store_at_the_container_root() {
    round_trip(&Azurite::start(), "", false);
}

#[test]
fn fake_gcs_holds_a_store_key_for_key_in_push_order() {
    round_trip(&FakeGcs::start(), "store/nested", true);
}

#[test]
fn fake_gcs_holds_a_store_at_the_bucket_root() {
    round_trip(&FakeGcs::start(), "", false);
}

/// The headers of a GET, with curl.
fn head_of(url: &str) -> String {
    let out = std::process::Command::new("curl").args(["-s", "-D", "-", "-o", "/dev/null", url]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).to_ascii_lowercase()
}

/// The environment regsweep is given names each server where object_store looks for it: the
/// blob service at AZURITE_BLOB_STORAGE_URL, the XML API at GOOGLE_BASE_URL (its public host).
#[test]
fn the_emulators_environments_name_their_servers() {
    let (az, gcs) = (Azurite::start(), FakeGcs::start());
    let env: BTreeMap<_, _> = az.env().into_iter().collect();
    assert_eq!(env["AZURE_STORAGE_USE_EMULATOR"], "true");
    assert_eq!(env["AZURE_STORAGE_ACCOUNT_NAME"], "devstoreaccount1");
    let url = &env["AZURITE_BLOB_STORAGE_URL"];
    assert!(head_of(&format!("{url}/devstoreaccount1/reg?restype=container")).contains("server: azurite-blob"));
    assert_eq!(az.url("reg", "/store"), "azure://reg/store");

    let env: BTreeMap<_, _> = gcs.env().into_iter().collect();
    assert_eq!(env["GOOGLE_SKIP_SIGNATURE"], "true");
    gcs.create_bucket("reg");
    gcs.put("reg", "store/a", b"a");
    let head = head_of(&format!("{}/reg/store/a", env["GOOGLE_BASE_URL"]));
    assert!(head.starts_with("http/1.1 200") && head.contains("x-goog-generation:"), "{head}");
    assert_eq!(gcs.url("reg", "store"), "gs://reg/store");
}

/// A request with curl: (status, headers lowercased, body).
fn curl(args: &[&str]) -> (u16, String, String) {
    let out = std::process::Command::new("curl").args(["-s", "-D", "/dev/stderr"]).args(args).output().unwrap();
    let head = String::from_utf8_lossy(&out.stderr).to_ascii_lowercase();
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, head, String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A header's value in curl's lowercased headers.
fn header_of(head: &str, name: &str) -> String {
    head.lines().find_map(|l| l.strip_prefix(&format!("{name}: "))).unwrap_or("").trim().to_string()
}

/// The bridge in front of fake-gcs-server takes the XML API's PUT as GCS does (generation
/// conditions too), copies, and pages listings; the server alone refuses the PUT.
#[test]
fn fake_gcs_takes_xml_puts_and_pages_listings_through_its_bridge() {
    let gcs = FakeGcs::start();
    gcs.create_bucket("reg");
    let (direct, bridge) = (gcs.endpoint(), format!("http://127.0.0.1:{}", gcs.bridge));
    let put = |base: &str, key: &str, body: &str, generation: Option<&str>| {
        let url = format!("{base}/reg/{key}");
        let condition = generation.map(|g| format!("x-goog-if-generation-match: {g}"));
        let mut args = vec!["-X", "PUT", "--data-binary", body, url.as_str()];
        if let Some(c) = &condition {
            args.extend(["-H", c.as_str()]);
        }
        curl(&args)
    };
    assert_eq!(put(&direct, "lock", "a", None).0, 400, "fake-gcs-server alone refuses a PUT");

    let (status, head, _) = put(&bridge, "lock", "a", Some("0"));
    assert_eq!(status, 200, "{head}");
    let generation = header_of(&head, "x-goog-generation");
    assert!(generation.parse::<u64>().is_ok(), "{head}");
    assert_eq!(header_of(&head, "etag"), "\"dmf1ucdxtqgxw5niaxcmyq==\"", "the quoted base64 MD5 of a");
    assert_eq!(put(&bridge, "lock", "b", Some("0")).0, 412, "created only once");
    assert_eq!(put(&bridge, "lock", "c", Some("1")).0, 412, "a stale generation");
    assert_eq!(put(&bridge, "lock", "d", Some(&generation)).0, 200);
    assert_eq!(curl(&[&format!("{bridge}/reg/lock")]).2, "d");
    let copy = |generation: &str| {
        let condition = format!("x-goog-if-generation-match: {generation}");
        let url = format!("{bridge}/reg/copy");
        curl(&["-X", "PUT", "-H", "x-goog-copy-source: reg/lock", "-H", &condition, &url]).0
    };
    assert_eq!((copy("0"), copy("0")), (200, 412));
    assert_eq!(curl(&[&format!("{bridge}/reg/copy")]).2, "d");

    for i in 0..5 {
        gcs.put("reg", &format!("k/{i}"), b"k");
    }
    let keys = |xml: &str| -> Vec<String> {
        xml.split("<Key>").skip(1).map(|k| k.split("</Key>").next().unwrap().to_string()).collect()
    };
    let (mut seen, mut token) = (Vec::new(), String::new());
    loop {
        let (_, _, xml) = curl(&[&format!("{bridge}/reg?list-type=2&prefix=k/&max-keys=2&continuation-token={token}")]);
        seen.extend(keys(&xml));
        match xml.split("<NextContinuationToken>").nth(1) {
            Some(t) => token = t.split('<').next().unwrap().to_string(),
            None => break,
        }
    }
    assert_eq!(seen, ["k/0", "k/1", "k/2", "k/3", "k/4"]);
    let (_, _, xml) = curl(&[&format!("{bridge}/reg?list-type=2&prefix=k/&start-after=k/2")]);
    assert_eq!(keys(&xml), ["k/3", "k/4"]);
    let (_, _, xml) = curl(&[&format!("{direct}/reg?list-type=2&prefix=k/&max-keys=2&start-after=k/2")]);
    assert_eq!(keys(&xml).len(), 5, "fake-gcs-server alone pages nothing");
}

/// With [`Bridge`]'s options, fake-gcs-server takes S3's multi-object delete and shows a
/// soft-delete policy; without them (the default), neither.
#[test]
fn fake_gcs_bridge_takes_multi_object_deletes_and_shows_soft_delete_when_asked() {
    use common::gcs::Bridge;
    let plain = FakeGcs::start();
    plain.create_bucket("reg");
    let url = |g: &FakeGcs, path: &str| format!("http://127.0.0.1:{}{path}", g.bridge);
    let body = "<Delete><Object><Key>a</Key></Object><Object><Key>gone</Key></Object></Delete>";
    plain.put("reg", "a", b"a");
    assert_eq!(curl(&["-X", "POST", "--data-binary", body, &url(&plain, "/reg?delete")]).0, 404);
    assert!(!curl(&[&url(&plain, "/storage/v1/b/reg?fields=softDeletePolicy")]).2.contains("softDeletePolicy"));

    let gcs = FakeGcs::start_with(Bridge { multi_delete: true, soft_delete: Some(604_800), ..Bridge::default() });
    gcs.create_bucket("reg");
    for k in ["a", "b", "c"] {
        gcs.put("reg", k, b"x");
    }
    let (status, _, xml) = curl(&["-X", "POST", "--data-binary", body, &url(&gcs, "/reg?delete")]);
    assert_eq!(status, 200);
    assert_eq!(xml.matches("<Deleted>").count(), 2, "a missing key is deleted, as S3 says: {xml}");
    let quiet = "<Delete><Quiet>true</Quiet><Object><Key>b</Key></Object></Delete>";
    let (_, _, xml) = curl(&["-X", "POST", "--data-binary", quiet, &url(&gcs, "/reg?delete")]);
    assert!(!xml.contains("<Deleted>"), "{xml}");
    assert_eq!(gcs.keys("reg"), ["c"]);
    let (_, _, json) = curl(&[&url(&gcs, "/storage/v1/b/reg?fields=softDeletePolicy")]);
    let meta: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(meta["softDeletePolicy"]["retentionDurationSeconds"], "604800");
}

/// The throttling proxy answers each request's first try 503 as each service does, then
/// passes it on (curl's own retry stands for a client's).
#[test]
fn the_throttle_proxy_answers_busy_once_per_request() {
    use common::emu::{AZURE_BUSY, GCS_BUSY, throttle_proxy};
    let gcs = FakeGcs::start();
    gcs.create_bucket("reg");
    gcs.put("reg", "a", b"a");
    let proxy = throttle_proxy(gcs.bridge, GCS_BUSY);
    let url = format!("http://127.0.0.1:{proxy}/reg/a");
    assert_eq!(curl(&[&url]).0, 503);
    let (status, _, body) = curl(&[&url]);
    assert_eq!((status, body.as_str()), (200, "a"));
    let env: BTreeMap<_, _> = gcs.env_via(proxy).into_iter().collect();
    assert_eq!(env["GOOGLE_BASE_URL"], format!("http://127.0.0.1:{proxy}"));

    let az = Azurite::start();
    let proxy = throttle_proxy(az.port, AZURE_BUSY);
    let url = format!("http://127.0.0.1:{proxy}/devstoreaccount1/reg?restype=container");
    let (status, head, body) = curl(&[&url]);
    assert_eq!(status, 503);
    assert!(head.contains("x-ms-error-code: serverbusy") && body.contains("<Code>ServerBusy</Code>"), "{head}{body}");
    assert!(curl(&[&url]).1.contains("server: azurite-blob"), "the second try reaches Azurite");
    let env: BTreeMap<_, _> = az.env_via(proxy).into_iter().collect();
    assert_eq!(env["AZURITE_BLOB_STORAGE_URL"], format!("http://127.0.0.1:{proxy}"));
}
