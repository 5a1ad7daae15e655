//! The registry's blob cache kept true (issue 34): a real registry (2.8.2 and 3.1.1) with
//! `storage.cache.blobdescriptor: redis` on a real redis-server serves the store while regsweep
//! prunes it; then what the prune deleted is pushed again (the image under a new tag, a layer
//! mounted into another repository, a manifest by digest) and must pull whole. Without the
//! eviction each of those pushes is answered from the stale cache and pulls broken
//! (distribution#1803).

use crate::common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use common::redis::{Redis, RedisSetup};
use common::s3::{S3Server, demo_bucket};
use common::*;
use serde_json::Value;

/// The registry's `redis:` section for `version` (2.8: `addr`; 3.x: `addrs`, and `tls` with the
/// CA where the server speaks TLS).
fn redis_section(version: Version, redis: &Redis, db: u32) -> String {
    let pw = redis.setup.password.as_ref().map(|p| format!(", password: {p}")).unwrap_or_default();
    match version {
        Version::V2 => format!("redis: {{addr: '127.0.0.1:{}', db: {db}{pw}}}", redis.port),
        Version::V3 => {
            let (cert, key) = redis.client_cert();
            let tls = match (redis.setup.tls, redis.setup.client_certs) {
                (false, _) => String::new(),
                (true, false) => format!(", tls: {{rootcas: ['{}']}}", redis.ca().display()),
                (true, true) => format!(
                    ", tls: {{certificate: '{}', key: '{}', rootcas: ['{}']}}",
                    cert.display(),
                    key.display(),
                    redis.ca().display()
                ),
            };
            format!("redis: {{addrs: ['127.0.0.1:{}'], db: {db}{pw}{tls}}}", redis.port)
        }
    }
}

/// A registry setup whose blob cache is `redis` (database `db`), with `driver` its storage line
/// (the filesystem at `root` when `None`).
fn cached(version: Version, root: &Path, driver: Option<String>, redis: &Redis, db: u32) -> Setup {
    let driver = driver.unwrap_or_else(|| format!("  filesystem: {{rootdirectory: {}}}", root.display()));
    Setup {
        version,
        storage: Some(format!("{driver}\n  cache: {{blobdescriptor: redis}}")),
        extra: redis_section(version, redis, db),
        ..Setup::default()
    }
}

/// skopeo copy from the demo's own registry (the images as they were) into the registry under
/// test; Ok or skopeo's message.
fn push(src: &Registry, dst: u16, from: &str, to: &str) -> Result<(), String> {
    let out = Command::new("skopeo")
        .args(["--insecure-policy", "copy", "--all", "--preserve-digests", "-q"])
        .args(["--src-tls-verify=false", "--dest-tls-verify=false"])
        .arg(format!("docker://127.0.0.1:{}/{from}", src.port))
        .arg(format!("docker://127.0.0.1:{dst}/{to}"))
        .output()
        .unwrap();
    if out.status.success() { Ok(()) } else { Err(String::from_utf8_lossy(&out.stderr).into_owned()) }
}

/// The HTTP status of a cross-repository mount of blob `digest` from `from` into `to`.
fn mount(port: u16, digest: &str, from: &str, to: &str) -> String {
    let out = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST"])
        .arg(format!("http://127.0.0.1:{port}/v2/{to}/blobs/uploads/?mount={digest}&from={from}"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The members of a repository's set in the cache: the blobs it has listed as its own.
fn cached_in_repo(redis: &Redis, db: u32, repo: &str) -> Vec<String> {
    let out = redis.cli_db(db, &["SMEMBERS", &format!("repository::{repo}::blobs")]).unwrap_or_default();
    out.lines().map(String::from).collect()
}

/// A deleted tag of team/app and its digest, from the report.
fn deleted_tags(report: &Value) -> Vec<(String, String)> {
    repo(report, "team/app")["tags"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["action"] == "delete" && !t["name"].as_str().unwrap().starts_with("sha256-"))
        .map(|t| (t["name"].as_str().unwrap().to_string(), t["digest"].as_str().unwrap().to_string()))
        .collect()
}

/// What the prune deleted, pushed again three ways; each must pull whole (or, a mount of a
/// blob no longer stored, not be mounted). `gone(d)`: blob `d` is no longer in storage.
fn pushes_pull_whole(port: u16, report: &Value, listed: &[String], gone: &dyn Fn(&str) -> bool) {
    let demo = fixture("demo");
    let src = Registry::serve(demo.path());
    let deleted = deleted_tags(report);
    assert!(deleted.len() >= 2, "{report}");
    // A layer team/app had, now gone: the registry must look at storage and not mount it.
    let layer = listed.iter().find(|d| gone(d)).unwrap_or_else(|| panic!("no deleted blob among {listed:?}"));
    assert_eq!(mount(port, layer, "team/app", "other/mounted"), "202", "{layer} mounted though gone from storage");
    // The first deleted image again under a new tag.
    let (tag, _) = &deleted[0];
    push(&src, port, &format!("team/app:{tag}"), "team/app:again").unwrap();
    pull_from(port, "team/app", "again", None).unwrap_or_else(|e| panic!("team/app:{tag} pushed again as :again: {e}"));
    // Another deleted manifest, by digest.
    let (_, digest) = deleted.iter().find(|(_, d)| d != &deleted[0].1).unwrap();
    push(&src, port, &format!("team/app@{digest}"), &format!("team/app@{digest}")).unwrap();
    pull_from(port, "team/app", digest, None)
        .unwrap_or_else(|e| panic!("team/app@{digest} pushed again by digest: {e}"));
}

/// The prune's cache section: redis, keys removed, nothing stale, no restart asked.
fn assert_evicted(report: &Value) {
    let cache = &report["cache"];
    assert_eq!(cache["kind"], "redis", "{report}");
    assert!(cache["keys_removed"].as_u64().unwrap() > 0, "{cache}");
    assert_eq!(cache["stale_keys"], serde_json::json!([]), "{cache}");
    assert_eq!(report["restart_required"], false, "{report}");
}

#[test]
fn a_prune_while_the_registry_serves_leaves_its_redis_cache_true() {
    for version in VERSIONS {
        if version.available("a_prune_while_the_registry_serves_leaves_its_redis_cache_true").is_none() {
            continue;
        }
        let redis = Redis::start(RedisSetup::default());
        let store = copy_store(pushed_by(version));
        let reg = Registry::serve_with(store.path(), &cached(version, store.path(), None, &redis, 0));
        // Every tag of team/app pulled (the pushes below are there): the cache knows their blobs.
        for (r, t) in tags_on_disk(store.path()).into_iter().filter(|(r, _)| r == "team/app") {
            reg.pull(&r, &t).unwrap();
        }
        let listed = cached_in_repo(&redis, 0, "team/app");
        assert!(!listed.is_empty(), "registry {version} cached nothing: {:?}", redis.keys(0));
        let cfg = reg.config_path().to_str().unwrap();
        let report = regsweep_json(&["prune", "--config", cfg, "--keep", "1", "--grace", "0s"]);
        assert_evicted(&report);
        // No key of a deleted blob is left.
        let gone = |d: &str| !blob_data(store.path(), d).exists();
        let stale: Vec<String> =
            redis.keys(0).into_iter().filter(|k| k.strip_prefix("blobs::").is_some_and(gone)).collect();
        assert!(stale.is_empty(), "registry {version}: keys of deleted blobs left: {stale:?}");
        pushes_pull_whole(reg.port, &report, &listed, &gone);
    }
}

#[test]
fn a_redis_cache_with_a_password_and_another_database_or_tls() {
    // 2.8: addr, password, db 5, read from its config.
    let redis = Redis::start(RedisSetup { password: Some("s3cret".into()), ..RedisSetup::default() });
    let store = copy_store(pushed_by(Version::V2));
    let reg = Registry::serve_with(store.path(), &cached(Version::V2, store.path(), None, &redis, 5));
    reg.pull("team/app", "v1").unwrap();
    assert!(redis.keys(0).is_empty() && !redis.keys(5).is_empty(), "db 5 only: {:?}", redis.keys(0));
    let cfg = reg.config_path().to_str().unwrap();
    let report = regsweep_json(&["prune", "--config", cfg, "--keep", "1", "--grace", "0s"]);
    assert_evicted(&report);
    assert_eq!(report["cache"]["address"], format!("redis://127.0.0.1:{}/5", redis.port));
    let gone = |d: &str| !blob_data(store.path(), d).exists();
    assert!(!redis.keys(5).iter().any(|k| k.strip_prefix("blobs::").is_some_and(gone)), "{:?}", redis.keys(5));

    // 3.x: TLS with a CA the test made and a client certificate it signed (the server asks for
    // one), a password and db 2.
    let Some(_) = Version::V3.available("a_redis_cache_with_a_password_and_another_database_or_tls") else { return };
    let redis = Redis::start(RedisSetup { password: Some("s3cret".into()), tls: true, client_certs: true });
    let store = copy_store(pushed_by(Version::V3));
    let reg = Registry::serve_with(store.path(), &cached(Version::V3, store.path(), None, &redis, 2));
    reg.pull("team/app", "v1").unwrap();
    assert!(!redis.keys(2).is_empty(), "registry 3.1.1 cached nothing over TLS");
    let cfg = reg.config_path().to_str().unwrap();
    let report = regsweep_json(&["prune", "--config", cfg, "--keep", "1", "--grace", "0s"]);
    assert_evicted(&report);
    assert_eq!(report["cache"]["address"], format!("rediss://127.0.0.1:{}/2", redis.port));
    let gone = |d: &str| !blob_data(store.path(), d).exists();
    assert!(!redis.keys(2).iter().any(|k| k.strip_prefix("blobs::").is_some_and(gone)), "{:?}", redis.keys(2));
    // The URL form, without a client certificate: refused by this server, before anything.
    let root = store.path().to_str().unwrap();
    let url = format!("rediss://:s3cret@127.0.0.1:{}/2", redis.port);
    let ca = redis.ca();
    let out = regsweep(&["gc", "--root", root, "--redis-cache", &url, "--redis-ca-cert", ca.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    // On a server that asks for none, with the CA (and refused without it, before anything).
    let redis = Redis::start(RedisSetup { password: Some("s3cret".into()), tls: true, client_certs: false });
    let url = format!("rediss://:s3cret@127.0.0.1:{}/2", redis.port);
    let ca = redis.ca();
    let args = ["gc", "--root", root, "--redis-cache", &url, "--redis-ca-cert", ca.to_str().unwrap(), "--json"];
    let out = regsweep(&args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["cache"]["kind"], "redis", "{report}");
    let out = regsweep(&["gc", "--root", root, "--redis-cache", &url]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot reach the registry's redis cache") && !err.contains("s3cret"), "{err}");
}

/// A config naming a redis cache on `port` and the store at `root`.
fn config_file(root: &Path, cache: &str) -> tempfile::NamedTempFile {
    let f = tempfile::Builder::new().suffix(".yml").tempfile().unwrap();
    std::fs::write(
        f.path(),
        format!(
            "version: 0.1\nstorage:\n  filesystem: {{rootdirectory: {}}}\n  cache: {{blobdescriptor: {cache}}}\n",
            root.display()
        ),
    )
    .unwrap();
    f
}

#[test]
fn redis_down_before_the_run_stops_it_before_anything_is_deleted() {
    let store = fixture("demo");
    let before = store_files(store.path());
    let mut redis = Redis::start(RedisSetup::default());
    let port = redis.port;
    redis.kill();
    let cfg = config_file(store.path(), "redis");
    std::fs::write(
        cfg.path(),
        format!("{}redis: {{addr: '127.0.0.1:{port}'}}\n", std::fs::read_to_string(cfg.path()).unwrap()),
    )
    .unwrap();
    let out = regsweep(&["prune", "--config", cfg.path().to_str().unwrap(), "--keep", "1"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(&format!("cannot reach the registry's redis cache at redis://127.0.0.1:{port}/0")), "{err}");
    assert!(err.contains("redis.addr") && err.contains("nothing was deleted"), "{err}");
    assert_same(&before, &store_files(store.path()), "the store");

    // Sentinels: an error naming the setting, before anything.
    std::fs::write(
        cfg.path(),
        format!(
            "{}redis: {{addrs: ['127.0.0.1:{port}'], mastername: m}}\n",
            std::fs::read_to_string(config_file(store.path(), "redis").path()).unwrap()
        ),
    )
    .unwrap();
    let out = regsweep(&["prune", "--config", cfg.path().to_str().unwrap(), "--keep", "1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("redis.mastername"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_same(&before, &store_files(store.path()), "the store");

    // The in-memory cache: said precisely, with the way out.
    let cfg = config_file(store.path(), "inmemory");
    let out = regsweep(&["prune", "--config", cfg.path().to_str().unwrap(), "--keep", "1", "--grace", "0s"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("blob cache: in memory") && text.contains("--stop-container"), "{text}");
    assert!(text.contains("Restart the registry"), "{text}");
}

#[test]
fn redis_killed_in_the_middle_of_a_run_exit_3_naming_the_stale_keys() {
    let store = fixture("demo");
    let mut redis = Redis::start(RedisSetup::default());
    let cfg = config_file(store.path(), "redis");
    std::fs::write(
        cfg.path(),
        format!("{}redis: {{addr: '127.0.0.1:{}'}}\n", std::fs::read_to_string(cfg.path()).unwrap(), redis.port),
    )
    .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_regsweep"));
    cmd.args(["prune", "--config", cfg.path().to_str().unwrap(), "--keep", "1", "--grace", "0s", "--json"]);
    // Stopped before the blobs: tags, manifests and layer links went, and were evicted.
    let child = stopped_at(cmd, "blobs");
    redis.kill();
    signal(&child, "-CONT");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["blobs_deleted"].as_u64().unwrap() > 0, "the deletions went on: {report}");
    let errors = report["errors"].as_array().unwrap();
    assert!(errors.iter().any(|e| e["kind"] == "cache_stale"), "{report}");
    let cache = &report["cache"];
    assert_eq!(cache["kind"], "redis");
    assert!(cache["failures"].as_u64().unwrap() > 0, "{cache}");
    let stale: Vec<&str> = cache["stale_keys"].as_array().unwrap().iter().map(|k| k.as_str().unwrap()).collect();
    // Every deleted blob's key is named, and the layer links' keys of team/app too (the last pass).
    let blob_keys = stale.iter().filter(|k| k.starts_with("blobs::sha256:")).count();
    assert_eq!(blob_keys as u64, report["blobs_deleted"].as_u64().unwrap(), "{cache}");
    assert!(stale.iter().any(|k| k.starts_with("repository::team/app::blobs::sha256:")), "{cache}");
    assert_eq!(report["restart_required"], true);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("could not be evicted") && err.contains("FLUSHDB"), "{err}");
}

#[test]
fn a_bucket_store_with_a_redis_cache() {
    let moto = S3Server::moto();
    demo_bucket(&moto, "reg", "/store");
    let redis = Redis::start(RedisSetup::default());
    let reg = Registry::serve_with(
        Path::new("/nonexistent"),
        &cached(Version::V2, Path::new("/"), Some(moto.storage("reg", "/store")), &redis, 0),
    );
    for t in ["v1", "v2", "v3", "latest"] {
        reg.pull("team/app", t).unwrap();
    }
    let listed = cached_in_repo(&redis, 0, "team/app");
    assert!(!listed.is_empty());
    let report =
        moto.regsweep_json(&["prune", "--config", reg.config_path().to_str().unwrap(), "--keep", "1", "--grace", "0s"]);
    assert_evicted(&report);
    let keys = moto.keys("reg");
    let gone = |d: &str| !keys.iter().any(|k| k.ends_with(&format!("/{}/data", &d[7..])));
    pushes_pull_whole(reg.port, &report, &listed, &gone);
}

/// Records what the execution says each stage removed.
#[derive(Default)]
struct Recorder(std::sync::Mutex<Vec<regsweep::store::stage::Removed>>);

impl regsweep::store::stage::Evict for Recorder {
    fn removed(&self, what: &regsweep::store::stage::Removed) {
        self.0.lock().unwrap().push(what.clone());
    }
}

/// Of the files (keys) a run removed, relative to `docker/registry/v2/`: the blobs whose data
/// went, and the (repository, digest) of each revision and layer link that went.
fn went(before: &BTreeSet<String>, after: &BTreeSet<String>) -> (BTreeSet<String>, BTreeSet<(String, String)>) {
    let mut blobs = BTreeSet::new();
    let mut links = BTreeSet::new();
    for k in before.difference(after) {
        if let Some(rest) = k.strip_prefix("blobs/sha256/").and_then(|r| r.strip_suffix("/data")) {
            blobs.insert(format!("sha256:{}", &rest[3..]));
        } else if let Some(rest) = k.strip_prefix("repositories/").and_then(|r| r.strip_suffix("/link")) {
            for folder in ["/_layers/sha256/", "/_manifests/revisions/sha256/"] {
                if let Some((repo, hex)) = rest.split_once(folder) {
                    links.insert((repo.to_string(), format!("sha256:{hex}")));
                }
            }
        }
    }
    (blobs, links)
}

/// The fast tier: on disk and on a bucket in memory, the evictor is told exactly the blobs,
/// revisions and layer links the run deleted, each once.
#[test]
fn the_evictor_is_told_exactly_what_went() {
    use regsweep::store::bucket::memory::Memory;
    use regsweep::store::location::Location;
    let mode = regsweep::Mode::Prune(Box::new(regsweep::core::policy::Retention {
        keep: 1,
        order: regsweep::core::policy::Order::Push,
        keep_tags: Vec::new(),
        repos: None,
        exclude: None,
        older_than: None,
        pulled_within: None,
        pulls: None,
        in_use: None,
    }));
    let opts = regsweep::core::plan::Options {
        delete_untagged: true,
        grace: std::time::Duration::ZERO,
        allow_tagless: false,
        upload_age: std::time::Duration::ZERO,
        now: std::time::SystemTime::now(),
        list_kept_tags: true,
        orphan_attachments: false,
        bytes_left: false,
        in_use: None,
        untagged_collected: false,
    };
    let disk = fixture("demo");
    let mem = Memory::new();
    mem.copy_from(disk.path(), "store").unwrap();
    let mem_keys = || -> BTreeSet<String> {
        mem.keys().into_iter().filter_map(|k| k.strip_prefix("store/docker/registry/v2/").map(String::from)).collect()
    };
    for (at, files) in [
        (Location::Fs(disk.path().to_path_buf()), &(|| store_files(disk.path())) as &dyn Fn() -> BTreeSet<String>),
        (Location::Memory(mem.clone(), "store".into()), &mem_keys),
    ] {
        let before = files();
        let recorder = Recorder::default();
        let store = at.open().unwrap();
        let progress = regsweep::core::progress::Progress::hidden();
        let report = regsweep::run_on_with(store.as_ref(), "x", &mode, &opts, false, progress, &recorder).unwrap();
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        let (blobs, links) = went(&before, &files());
        assert!(!blobs.is_empty() && !links.is_empty());
        let told = recorder.0.into_inner().unwrap();
        assert!(told.len() >= 3, "one call a stage that removed something: {told:?}");
        let told_blobs: Vec<String> = told.iter().flat_map(|r| &r.blobs).map(|d| d.to_string()).collect();
        let told_links: Vec<(String, String)> =
            told.iter().flat_map(|r| &r.links).map(|(r, d)| (r.clone(), d.to_string())).collect();
        assert_eq!(told_blobs.len(), blobs.len(), "each blob once");
        assert_eq!(told_blobs.into_iter().collect::<BTreeSet<_>>(), blobs);
        assert_eq!(told_links.len(), links.len(), "each link once");
        assert_eq!(told_links.into_iter().collect::<BTreeSet<_>>(), links);
    }
}

/// Online mode with its container step (podman, the real registry 2.8.2 in a container on the
/// host's network, its cache in redis through the registry's environment): after the collector,
/// every key of the cache goes, and what the collector deleted, pushed again, pulls whole.
#[test]
fn online_clears_the_redis_cache_after_its_container_step() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("bash").arg(top().join("tests/podman/setup.sh")).arg(dir.path()).output().unwrap();
    assert!(out.status.success(), "podman setup failed: {}", String::from_utf8_lossy(&out.stderr));
    let env = [
        ("CONTAINERS_CONF", dir.path().join("containers.conf")),
        ("CONTAINERS_STORAGE_CONF", dir.path().join("storage.conf")),
    ];
    let podman = || {
        let mut c = Command::new("podman");
        c.envs(env.clone());
        c
    };
    let redis = Redis::start(RedisSetup::default());
    let store = fixture("demo");
    let port = free_port();
    let name = "regsweep-cache-test-registry";
    let out = podman()
        .args(["run", "-d", "--name", name, "--network", "host"])
        .arg(format!("--env=REGISTRY_HTTP_ADDR=127.0.0.1:{port}"))
        .arg("--env=REGISTRY_STORAGE_CACHE_BLOBDESCRIPTOR=redis")
        .arg(format!("--env=REGISTRY_REDIS_ADDR=127.0.0.1:{}", redis.port))
        .arg(format!("--volume={}:/var/lib/registry", store.path().display()))
        .arg("regsweep-registry")
        .output()
        .unwrap();
    assert!(out.status.success(), "podman run: {}", String::from_utf8_lossy(&out.stderr));
    struct Removed<F: Fn()>(F);
    impl<F: Fn()> Drop for Removed<F> {
        fn drop(&mut self) {
            (self.0)()
        }
    }
    let _rm = Removed(|| {
        let _ = podman().args(["rm", "-f", "-t", "0", name]).output();
    });
    let start = std::time::Instant::now();
    while pull_from(port, "team/app", "v1", None).is_err() {
        assert!(start.elapsed() < std::time::Duration::from_secs(20), "the registry in the container did not start");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    for (r, t) in tags_on_disk(store.path()) {
        pull_from(port, &r, &t, None).unwrap();
    }
    let listed = cached_in_repo(&redis, 0, "team/app");
    assert!(!listed.is_empty(), "the registry cached nothing: {:?}", redis.keys(0));
    let url = format!("redis://127.0.0.1:{}/0", redis.port);
    let out = Command::new(env!("CARGO_BIN_EXE_regsweep"))
        .args(["online", "--url", &format!("127.0.0.1:{port}"), "--keep", "1", "--json"])
        .args(["--gc-container", name, "--engine", "podman", "--redis-cache", &url])
        .envs(env.clone())
        .env("DOCKER_CONFIG", "/nonexistent")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["collector"]["exit_code"], 0, "{report}");
    assert_eq!(report["collector"]["restarted"], false);
    assert_evicted(&report);
    assert!(redis.keys(0).iter().all(|k| !k.starts_with("blobs::")), "{:?}", redis.keys(0));
    let gone = |d: &str| !blob_data(store.path(), d).exists();
    pushes_pull_whole(port, &report, &listed, &gone);
}
