//! `--config`: the registry's own config.yml read as the registry reads it, against real servers.
//! Registry 3.1.1 writes to Azurite through its azure driver (`serviceurl`, `credentials:
//! {type: shared_key}`), and regsweep prunes with the exact file it served from; 2.8.2 and 3.1.1
//! each write to moto through their s3 driver and regsweep prunes with each one's file; `gs://`
//! reaches fake-gcs-server by `STORAGE_EMULATOR_HOST` alone, as Google's libraries do.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::common::azure::{ACCOUNT, Azurite, KEY};
use crate::common::emu::Emulator;
use crate::common::gcs::FakeGcs;
use crate::common::s3::S3Server;
use crate::common::{Registry, Setup, VERSIONS, Version, assert_same, fixture, store_files, tags_by_push};

/// The same prune on the bucket and on its filesystem copy: by name, so that the bucket's
/// times (to the second) decide nothing.
const PRUNE: [&str; 9] = ["prune", "--keep", "2", "--order", "name", "--grace", "0s", "--upload-age", "0s"];

/// regsweep with no cloud settings in its environment but `env`: what the config says is all
/// it has.
fn regsweep_clean(env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_regsweep"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", "/nonexistent")
        .env("REGSWEEP_CACHE", "off")
        // No instance metadata service to probe for (an S3 bucket without keys would).
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .envs(env.iter().copied())
        .args(args)
        .stdin(Stdio::null());
    cmd.output().unwrap()
}

fn json(out: &Output, what: &str) -> Value {
    assert!(out.status.success(), "{what} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{what}: bad JSON ({e})"))
}

/// Copies each of `tags` from the registry on `from` to the one on `to` with skopeo.
fn push(from: u16, to: u16, tags: &[(String, String)]) {
    for (r, t) in tags {
        let out = Command::new("skopeo")
            .args(["--insecure-policy", "copy", "--all", "--preserve-digests", "-q"])
            .args(["--src-tls-verify=false", "--dest-tls-verify=false"])
            .arg(format!("docker://127.0.0.1:{from}/{r}:{t}"))
            .arg(format!("docker://127.0.0.1:{to}/{r}:{t}"))
            .output()
            .unwrap();
        assert!(out.status.success(), "skopeo copy {r}:{t}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

/// The demo's tags but team/app's (team/multi's multi-arch index, team/app/tools'), in push
/// order: enough for a prune by name to delete some, few to push.
fn some_tags(demo: &Path) -> Vec<(String, String)> {
    tags_by_push(demo).into_iter().filter(|(r, _)| r != "team/app").collect()
}

/// Waits out the bucket clock's second of the last push: a key written in the second a run
/// starts is taken for a push racing it (and a tag it deletes is written back).
fn settle() {
    std::thread::sleep(std::time::Duration::from_secs(2));
}

/// A TLS front on loopback for a plain HTTP server on `upstream` (Python's ssl module, with a
/// self-signed certificate no client trusts): its port, and the process, killed when dropped.
struct TlsFront {
    port: u16,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl TlsFront {
    fn start(upstream: u16) -> TlsFront {
        const PROXY: &str = r#"
import socket, ssl, sys, threading
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
upstream = int(sys.argv[3])
ls = socket.socket()
ls.bind(("127.0.0.1", 0))
ls.listen(128)
print(ls.getsockname()[1], flush=True)
def pipe(a, b):
    try:
        while True:
            d = a.recv(65536)
            if not d:
                break
            b.sendall(d)
    except Exception:
        pass
    for s in (a, b):
        try:
            s.close()
        except Exception:
            pass
def handle(c):
    try:
        t = ctx.wrap_socket(c, server_side=True)
    except Exception:
        c.close()
        return
    u = socket.create_connection(("127.0.0.1", upstream))
    threading.Thread(target=pipe, args=(u, t), daemon=True).start()
    pipe(t, u)
while True:
    c, _ = ls.accept()
    threading.Thread(target=handle, args=(c,), daemon=True).start()
"#;
        use std::io::BufRead;
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = crate::common::token::self_signed(dir.path(), "front", false);
        let mut child = Command::new("python3")
            .args(["-c", PROXY])
            .arg(&cert)
            .arg(&key)
            .arg(upstream.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        TlsFront { port: line.trim().parse().expect("the TLS front's port"), child, _dir: dir }
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The keys under `ROOT/docker/registry/v2/` of a bucket, relative to it.
fn under_v2(keys: Vec<String>, root: &str) -> BTreeSet<String> {
    let prefix = format!("{root}/docker/registry/v2/");
    keys.into_iter().filter_map(|k| k.strip_prefix(&prefix).map(String::from)).collect()
}

/// Every tag the report keeps pulls whole from `reg`; every other answers 404.
fn served(reg: &Registry, report: &Value) -> usize {
    let mut kept = 0;
    for r in report["repos"].as_array().unwrap() {
        for t in r["tags"].as_array().unwrap() {
            let (repo, tag) = (r["name"].as_str().unwrap(), t["name"].as_str().unwrap());
            if t["action"] == "keep" {
                reg.pull(repo, tag)
                    .unwrap_or_else(|e| panic!("{}: {repo}:{tag} was kept but does not pull: {e}", reg.version));
                kept += 1;
            } else {
                assert_eq!(
                    reg.manifest_status(repo, tag),
                    404,
                    "{}: {repo}:{tag} was removed but still answers",
                    reg.version
                );
            }
        }
    }
    kept
}

/// The counts of a report that two runs of the same plan share.
fn counts(report: &Value) -> Vec<u64> {
    ["tags_deleted", "manifests_deleted", "blobs_deleted", "layer_links_deleted"]
        .iter()
        .map(|k| report[k].as_u64().unwrap_or_else(|| panic!("no {k} in {report}")))
        .collect()
}

/// Issue 33: a 3.1.1 registry on Azurite through its own azure driver (`serviceurl`, a shared
/// key, `skipverify` over TLS); `regsweep prune --config` of the file it serves from reaches the
/// same container (it went to devstoreaccount1.blob.core.windows.net), the registry serves every
/// kept tag after, and the container ends with the keys the same prune leaves on a filesystem
/// copy.
#[test]
fn a_3_1_1_registry_on_azurite_is_pruned_through_its_own_config() {
    if Version::V3.available("a_3_1_1_registry_on_azurite_is_pruned_through_its_own_config").is_none() {
        return;
    }
    let az = Azurite::start();
    az.create_container("reg");
    // Behind TLS with a certificate nobody trusts: skipverify, which both honour.
    let front = TlsFront::start(az.port);
    let storage = format!(
        "  azure: {{accountname: {ACCOUNT}, accountkey: \"{KEY}\", container: reg, serviceurl: \
         https://127.0.0.1:{}/{ACCOUNT}, skipverify: true, credentials: {{type: shared_key}}, rootdirectory: \
         /store}}\n  redirect: {{disable: true}}",
        front.port
    );
    let reg = Registry::serve_with(
        Path::new("/nonexistent"),
        &Setup { version: Version::V3, storage: Some(storage), ..Setup::default() },
    );
    let demo = fixture("demo");
    let src = Registry::serve(demo.path());
    // Two repositories' tags (a multi-arch index among them): enough for a prune to delete, few
    // to push.
    let tags = some_tags(demo.path());
    push(src.port, reg.port, &tags);
    drop(src);
    settle();
    let copy = tempfile::tempdir().unwrap();
    az.download("reg", "store", copy.path());
    assert_same(&under_v2(az.keys("reg"), "store"), &store_files(copy.path()), "the download");
    assert!(store_files(copy.path()).iter().any(|k| k.starts_with("blobs/")), "3.1.1 wrote the store");

    // The exact file it serves from; nothing of Azure's in the environment.
    let config = reg.config_path().to_str().unwrap();
    let report = json(&regsweep_clean(&[], &[&PRUNE[..], &["--config", config, "--json"]].concat()), "prune");
    assert!(report["warnings"].as_array().unwrap().is_empty(), "{}", report["warnings"]);
    assert!(report["tags_deleted"].as_u64().unwrap() > 0 && report["blobs_deleted"].as_u64().unwrap() > 0, "{report}");
    let disk = json(
        &regsweep_clean(&[], &[&PRUNE[..], &["--root", copy.path().to_str().unwrap(), "--json"]].concat()),
        "disk",
    );
    assert_eq!(counts(&report), counts(&disk), "the same plan on the filesystem copy");
    assert_same(&under_v2(az.keys("reg"), "store"), &store_files(copy.path()), "the same keys as on disk");
    // Blob Batch at the registry's serviceurl; besides, only the lock's probe and the lock go one by one.
    let r = &report["requests"];
    assert!(r["delete_objects"].as_u64().unwrap() > 0 && r["delete"].as_u64().unwrap() <= 2, "{r}");
    assert!(served(&reg, &report) > 0);
    // gc --delete-untagged on both, as the collector after it.
    let gc = ["gc", "--delete-untagged", "--grace", "0s", "--json"];
    json(&regsweep_clean(&[], &[&gc[..], &["--config", config]].concat()), "gc");
    json(&regsweep_clean(&[], &[&gc[..], &["--root", copy.path().to_str().unwrap()]].concat()), "gc on disk");
    assert_same(&under_v2(az.keys("reg"), "store"), &store_files(copy.path()), "gc: the same keys as on disk");
    served(&reg, &report);
}

/// The s3 section of the file 2.8.2 and 3.1.1 each serve from (moto, keys in the file, none in
/// the environment): the prune reaches the registry's bucket, the registry serves what it kept.
#[test]
fn each_registrys_s3_section_is_read_by_config() {
    let demo = fixture("demo");
    let src = Registry::serve(demo.path());
    // team/app/tools' four tags: a prune by name deletes two.
    let tags: Vec<_> = tags_by_push(demo.path()).into_iter().filter(|(r, _)| r == "team/app/tools").collect();
    let moto = S3Server::moto();
    for version in VERSIONS {
        if version.available("each_registrys_s3_section_is_read_by_config").is_none() {
            continue;
        }
        let bucket = format!("reg{}", version as usize);
        moto.create_bucket(&bucket);
        let log = tempfile::NamedTempFile::new().unwrap();
        let mut setup = moto.setup(&bucket, "/store");
        setup.version = version;
        if version == Version::V3 && !setup.storage.as_deref().unwrap_or_default().contains("forcepathstyle") {
            // 3.1.1's forcepathstyle is false by default: it asks reg1.127.0.0.1, which resolves
            // nowhere (2.8 goes path-style wherever regionendpoint is given).
            setup.storage = setup.storage.map(|s| s.replace("secure: false}", "secure: false, forcepathstyle: true}"));
        }
        setup.log = Some(log.path().to_path_buf());
        let reg = Registry::serve_with(Path::new("/nonexistent"), &setup);
        if let Err(e) = std::panic::catch_unwind(|| push(src.port, reg.port, &tags)) {
            let log = std::fs::read_to_string(log.path()).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            panic!("{version}: {e:?}\n{}", tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
        }
        settle();
        let config = reg.config_path().to_str().unwrap();
        let report = json(&regsweep_clean(&[], &[&PRUNE[..], &["--config", config, "--json"]].concat()), "prune");
        assert!(report["warnings"].as_array().unwrap().is_empty(), "{version}: {}", report["warnings"]);
        assert!(report["tags_deleted"].as_u64().unwrap() > 0, "{version}: {report}");
        assert!(served(&reg, &report) > 0, "{version}");
        let keys = under_v2(moto.keys(&bucket), "store");
        assert!(keys.iter().any(|k| k.starts_with("blobs/")), "{version}: the registry's bucket: {keys:?}");
        if version != Version::V2 {
            continue;
        }
        // A key neither registry reads: named in the report's warnings and on stderr, once.
        let text = std::fs::read_to_string(config).unwrap();
        let odd = tempfile::Builder::new().suffix(".yml").tempfile().unwrap();
        std::fs::write(odd.path(), text.replace("secure: false", "secure: false, sessiontoken: x")).unwrap();
        let odd = odd.path().to_str().unwrap();
        let out = regsweep_clean(&[], &[&PRUNE[..], &["--config", odd, "--dry-run", "--json"]].concat());
        let w = &json(&out, "dry run")["warnings"];
        assert_eq!(w[0]["kind"], "config_not_honoured", "{w}");
        assert!(w[0]["message"].as_str().unwrap().starts_with("storage.s3.sessiontoken: "), "{w}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.matches("warning: storage.s3.sessiontoken").count(), 1, "{stderr}");
        let out = regsweep_clean(&[], &["check", "--config", odd]);
        assert!(String::from_utf8_lossy(&out.stderr).contains("warning: storage.s3.sessiontoken"), "check");
    }
}

/// `gs://` with `STORAGE_EMULATOR_HOST` alone (no credentials, no GOOGLE_* settings), as
/// Google's libraries take it: the prune ends with the keys of the same prune on disk. Then a
/// gcs section with `credentials` inline: the gc ends as on disk too.
#[test]
fn gs_reaches_an_emulator_by_storage_emulator_host() {
    let gcs = FakeGcs::start();
    let demo = fixture("demo");
    gcs.create("reg");
    Emulator::upload(&gcs, demo.path(), "reg", "store", false);
    let copy = tempfile::tempdir().unwrap();
    gcs.download("reg", "store", copy.path());
    settle();
    // The bridge in front of fake-gcs-server (its XML API takes no PUT): the emulator's host.
    let host = format!("127.0.0.1:{}", gcs.bridge);
    let report = json(
        &regsweep_clean(
            &[("STORAGE_EMULATOR_HOST", &host)],
            &[&PRUNE[..], &["--root", "gs://reg/store", "--json"]].concat(),
        ),
        "prune",
    );
    assert!(report["blobs_deleted"].as_u64().unwrap() > 0, "{report}");
    json(&regsweep_clean(&[], &[&PRUNE[..], &["--root", copy.path().to_str().unwrap(), "--json"]].concat()), "disk");
    assert_same(&under_v2(gcs.keys("reg"), "store"), &store_files(copy.path()), "the same keys as on disk");

    // The gcs section's inline credentials (a service account's key, key by key; this one asks
    // for no token): deletions need them, else object_store asks a metadata server for a token.
    let cfg = tempfile::Builder::new().suffix(".yml").tempfile().unwrap();
    std::fs::write(
        cfg.path(),
        "version: 0.1\nstorage:\n  gcs:\n    bucket: reg\n    rootdirectory: /store\n    credentials:\n      type: \
         service_account\n      private_key: unused\n      private_key_id: unused\n      client_email: \
         regsweep@test\n      disable_oauth: true\n",
    )
    .unwrap();
    let base = format!("http://127.0.0.1:{}", gcs.bridge);
    let env = [("GOOGLE_BASE_URL", base.as_str()), ("GOOGLE_SKIP_SIGNATURE", "true")];
    let gc = ["gc", "--delete-untagged", "--grace", "0s", "--json"];
    let report = json(&regsweep_clean(&env, &[&gc[..], &["--config", cfg.path().to_str().unwrap()]].concat()), "gc");
    assert!(report["blobs_deleted"].as_u64().unwrap() > 0, "{report}");
    let w = &report["warnings"];
    assert!(w[0]["message"].as_str().is_some_and(|m| m.starts_with("GOOGLE_BASE_URL=")), "followed, and said: {w}");
    json(&regsweep_clean(&[], &[&gc[..], &["--root", copy.path().to_str().unwrap()]].concat()), "gc on disk");
    assert_same(&under_v2(gcs.keys("reg"), "store"), &store_files(copy.path()), "gc: the same keys as on disk");
}

/// A loopback server in Entra ID's and the blob service's place: it answers a token request
/// (`POST /<tenant>/oauth2/v2.0/token`) with the token `tok`, a listing with no blobs, a write
/// with 201, and keeps each request's line, `Authorization` and body.
fn entra_and_blobs() -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let log = log.clone();
            std::thread::spawn(move || {
                let mut out = conn.try_clone().unwrap();
                let mut reader = BufReader::new(conn);
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let (mut length, mut auth) = (0usize, String::new());
                    loop {
                        let mut h = String::new();
                        if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                            break;
                        }
                        let lower = h.to_ascii_lowercase();
                        if let Some(v) = lower.strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap_or(0);
                        }
                        if lower.starts_with("authorization:") {
                            auth = format!("Authorization:{}", &h.trim()["authorization:".len()..]);
                        }
                    }
                    let mut body = vec![0; length];
                    let _ = reader.read_exact(&mut body);
                    log.lock().unwrap().push(format!("{} | {auth} | {}", line.trim(), String::from_utf8_lossy(&body)));
                    let (status, kind, text) = if line.contains("/oauth2/v2.0/token") {
                        (
                            "200 OK",
                            "application/json",
                            r#"{"access_token":"tok","expires_in":3600,"token_type":"Bearer"}"#,
                        )
                    } else if line.starts_with("GET") && line.contains("comp=list") {
                        (
                            "200 OK",
                            "application/xml",
                            r#"<?xml version="1.0" encoding="utf-8"?><EnumerationResults><Blobs></Blobs><NextMarker/></EnumerationResults>"#,
                        )
                    } else if line.starts_with("PUT") {
                        ("201 Created", "text/plain", "")
                    } else {
                        (
                            "404 Not Found",
                            "application/xml",
                            r#"<?xml version="1.0"?><Error><Code>BlobNotFound</Code><Message>no</Message></Error>"#,
                        )
                    };
                    let answer = format!(
                        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nx-ms-request-id: 1\r\n\r\n{text}",
                        text.len()
                    );
                    if out.write_all(answer.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, seen)
}

/// credentials.type client_secret, and default_credentials with a workload identity's token
/// file: the token is asked of the authority (`AZURE_AUTHORITY_HOST`, a sovereign cloud's) with
/// the config's tenant, client and secret (or the federated token), and the blob service at
/// serviceurl is asked with that token.
#[test]
fn azure_token_credentials_sign_as_the_registry_would() {
    let (port, seen) = entra_and_blobs();
    let here = format!("http://127.0.0.1:{port}");
    let cfg = tempfile::Builder::new().suffix(".yml").tempfile().unwrap();
    let section = |credentials: &str| {
        format!(
            "version: 0.1\nstorage:\n  azure:\n    accountname: acct\n    container: reg\n    serviceurl: {here}/acct\n    \
             credentials: {credentials}\n"
        )
    };
    let token = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(token.path(), "federated.jwt").unwrap();
    let token_file = token.path().to_str().unwrap();
    for (credentials, env, asked) in [
        (
            "{type: client_secret, tenantid: tid, clientid: cid, secret: sec}",
            vec![("AZURE_AUTHORITY_HOST", here.as_str())],
            vec!["POST /tid/oauth2/v2.0/token", "client_id=cid", "client_secret=sec"],
        ),
        (
            "{type: default_credentials}",
            vec![
                ("AZURE_AUTHORITY_HOST", here.as_str()),
                ("AZURE_TENANT_ID", "wtid"),
                ("AZURE_CLIENT_ID", "wcid"),
                ("AZURE_FEDERATED_TOKEN_FILE", token_file),
            ],
            vec!["POST /wtid/oauth2/v2.0/token", "client_id=wcid", "client_assertion=federated.jwt"],
        ),
    ] {
        seen.lock().unwrap().clear();
        std::fs::write(cfg.path(), section(credentials)).unwrap();
        // The container holds no store: what matters is how it was asked.
        regsweep_clean(&env, &["check", "--config", cfg.path().to_str().unwrap()]);
        let seen = seen.lock().unwrap().clone();
        let token_asked = seen.iter().find(|l| l.contains("/oauth2/v2.0/token")).unwrap_or_else(|| panic!("{seen:#?}"));
        for a in &asked {
            assert!(token_asked.contains(a), "{a} in {token_asked}");
        }
        let blobs: Vec<&String> = seen.iter().filter(|l| l.contains(" /acct/reg")).collect();
        assert!(!blobs.is_empty(), "the blob service at serviceurl was asked: {seen:#?}");
        assert!(blobs.iter().all(|l| l.contains("| Authorization: Bearer tok |")), "{blobs:#?}");
    }
}
