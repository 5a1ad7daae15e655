//! `regsweep online` against the real registry on loopback: the same plan as `prune`, deletes
//! that leave every kept tag pulling whole, and each way in (anonymous, basic, bearer tokens,
//! TLS), pages, and a registry that refuses deletes.

use crate::common;

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Output, Stdio};

use common::token::{self, Issuer};
use common::*;
use serde_json::Value;

/// Runs regsweep with environment variables and, optionally, stdin.
fn run(args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_regsweep"));
    cmd.args(args).env_remove("REGSWEEP_PASSWORD").env("DOCKER_CONFIG", "/nonexistent");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn cat<'a>(base: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
    base.iter().chain(extra).copied().collect()
}

fn json_of(out: &Output) -> Value {
    assert!(out.status.success(), "regsweep failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Every (repository, tag, action) of a report.
fn actions(report: &Value) -> BTreeSet<(String, String, String)> {
    report["repos"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| {
            r["tags"].as_array().unwrap().iter().map(move |t| {
                (
                    r["name"].as_str().unwrap().into(),
                    t["name"].as_str().unwrap().into(),
                    t["action"].as_str().unwrap().into(),
                )
            })
        })
        .collect()
}

/// The demo store served by the real registry with `setup`, and the plan of `prune --dry-run
/// --keep 2 --order name` on it: what online must match.
fn served_demo_and_prune_plan(setup: &Setup) -> (tempfile::TempDir, Registry, Value) {
    let store = fixture("demo");
    let reg = Registry::serve_with(store.path(), setup);
    let root = store.path().to_str().unwrap();
    let plan = regsweep_json(&["prune", "--root", root, "--keep", "2", "--order", "name", "--dry-run"]);
    (store, reg, plan)
}

#[test]
fn online_dry_run_plans_the_tag_deletions_of_prune_dry_run() {
    let store = fixture("demo");
    let root = store.path().to_str().unwrap();
    let reg = Registry::serve(store.path());
    // The same plan through 3.1.1's API (it pages nothing here, answers HEAD as 2.8.2 does).
    let v3 = Version::V3
        .available("online_dry_run_plans_the_tag_deletions_of_prune_dry_run")
        .map(|_| Registry::serve_version(store.path(), Version::V3));
    for order in ["name", "semver", "created"] {
        let offline = regsweep_json(&["prune", "--root", root, "--keep", "2", "--order", order, "--dry-run"]);
        for reg in std::iter::once(&reg).chain(&v3) {
            let online = regsweep_json(&["online", "--url", &reg.url, "--keep", "2", "--order", order, "--dry-run"]);
            assert_eq!(actions(&online), actions(&offline), "{}: --order {order}", reg.version);
            assert!(actions(&online).iter().any(|(_, _, a)| a == "delete"));
        }
    }
    drop(v3);
    // --order created reads the image configs over the API, and schema1 manifests, which the
    // registry signs as it serves them (their digest is of the payload without signatures).
    let legacy = fixture("legacy");
    let legacy_reg = Registry::serve(legacy.path());
    for (root, reg) in [(root, &reg), (legacy.path().to_str().unwrap(), &legacy_reg)] {
        let offline = regsweep_json(&["prune", "--root", root, "--keep", "1", "--order", "created", "--dry-run"]);
        let online = regsweep_json(&["online", "--url", &reg.url, "--keep", "1", "--dry-run"]);
        assert_eq!(actions(&online), actions(&offline), "--order created");
    }
    // 3.1.1 answers 500 for the schema 1 tags: the run stops before any delete, saying why.
    if Version::V3.available("online_dry_run_plans_the_tag_deletions_of_prune_dry_run").is_some() {
        let v3 = Registry::serve_version(legacy.path(), Version::V3);
        let out = run(&["online", "--url", &v3.url, "--keep", "1"], &[], None);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains("legacy/schema1:") && err.contains("schema 1"), "{err}");
    }
    let out = run(&["online", "--url", &reg.url, "--keep", "1", "--order", "push"], &[], None);
    assert_eq!(out.status.code(), Some(2), "a usage error");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no push times"));
}

/// On both versions: 2.8.2 refuses to delete a tag alone, so a tag sharing its digest with a kept
/// one stays (`untag_refused`); 3.1.1 deletes it by name (`untag` carried out), and the kept tag
/// still pulls. Then the version's own collector.
#[test]
fn online_deletes_and_every_kept_tag_still_pulls_before_and_after_the_collector() {
    for version in VERSIONS {
        if version.available("online_deletes_and_every_kept_tag_still_pulls_before_and_after_the_collector").is_some() {
            online_deletes_on(version);
        }
    }
}

fn online_deletes_on(version: Version) {
    let store = fixture("demo");
    let reg = Registry::serve_version(store.path(), version);
    let report = json_of(&run(&["online", "--url", &reg.url, "--keep", "2", "--order", "name", "--json"], &[], None));
    assert_eq!(report["command"], "online");
    // `latest` shares its digest with the kept v6: the API would delete both with the digest.
    let latest = repo(&report, "team/app")["tags"].as_array().unwrap().iter().find(|t| t["name"] == "latest").unwrap();
    let refused = report["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|w| w["kind"] == "untag_refused" && w["message"].as_str().unwrap().contains("team/app:latest"));
    if version == Version::V2 {
        // 2.8 cannot delete a tag alone, so it stays, and the report says why.
        assert_eq!(latest["action"], "keep");
        assert_eq!(latest["reason"]["kind"], "untag_refused");
        assert!(refused, "{}", report["warnings"]);
    } else {
        // 3.x deletes the tag by name: the tag is gone, its digest (v6's) stays.
        assert_eq!(latest["action"], "untag", "{latest}");
        assert!(!refused, "{}", report["warnings"]);
        assert_eq!(reg.manifest_status("team/app", "latest"), 404, "3.1.1 untagged latest");
        reg.pull("team/app", "v6").unwrap();
    }
    reg.assert_all_tags_pull(store.path());
    let deleted: Vec<(String, String)> =
        actions(&report).into_iter().filter(|(_, _, a)| a != "keep").map(|(r, t, _)| (r, t)).collect();
    assert!(deleted.iter().any(|(r, t)| r == "team/multi" && t == "2026.1"), "the old index goes");
    assert!(deleted.iter().any(|(_, t)| t.ends_with(".sig")), "the signature of a deleted image goes");
    for (r, t) in &deleted {
        assert_eq!(reg.manifest_status(r, t), 404, "{version}: {r}:{t}");
    }
    let kept_sig = actions(&report).into_iter().filter(|(_, t, a)| t.ends_with(".sig") && a == "keep").count();
    assert_eq!(kept_sig, 1, "the signature of a kept image stays");
    drop(reg);
    // The registry's collector after the deletes: the multi-arch index and everything kept
    // still pull whole.
    reference_gc_with(store.path(), &Setup { version, ..Setup::default() }, false);
    let reg = Registry::serve_version(store.path(), version);
    reg.assert_all_tags_pull(store.path());
    reg.pull("team/multi", "2026.3").unwrap();
}

#[test]
fn basic_auth_from_the_environment_stdin_and_docker_config() {
    let store = fixture("demo");
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    let out = Command::new("htpasswd").args(["-Bbn", "alice", "s3cret-pw"]).output().unwrap();
    assert!(out.status.success(), "htpasswd (apache2-utils) is needed");
    std::fs::write(&htpasswd, out.stdout).unwrap();
    let setup = Setup {
        extra: format!("auth:\n  htpasswd: {{realm: test, path: {}}}", htpasswd.display()),
        ..Setup::default()
    };
    let reg = Registry::serve_with(store.path(), &setup);
    let base = ["online", "--url", &reg.url, "--keep", "2", "--order", "name"];

    let out = run(&cat(&base, &["--dry-run"]), &[], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = run(&cat(&base, &["--dry-run", "--username", "alice"]), &[("REGSWEEP_PASSWORD", "wrong")], None);
    assert_eq!(out.status.code(), Some(1));
    let out = run(&cat(&base, &["--dry-run", "--username", "alice"]), &[], None);
    assert_eq!(out.status.code(), Some(1), "no password, no run");

    let out =
        run(&cat(&base, &["--dry-run", "--json", "--username", "alice", "--password-stdin"]), &[], Some("s3cret-pw\n"));
    let planned = actions(&json_of(&out));
    let out =
        run(&cat(&base, &["--dry-run", "--json", "--username", "alice"]), &[("REGSWEEP_PASSWORD", "s3cret-pw")], None);
    assert_eq!(actions(&json_of(&out)), planned);

    // Nothing given: ~/.docker/config.json (here $DOCKER_CONFIG) has it.
    let docker = dir.path().join("docker");
    std::fs::create_dir(&docker).unwrap();
    let auth = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "alice:s3cret-pw");
    std::fs::write(
        docker.join("config.json"),
        format!(r#"{{"auths":{{"127.0.0.1:{}":{{"auth":"{auth}"}}}}}}"#, reg.port),
    )
    .unwrap();
    let out = run(&cat(&base, &["--json"]), &[("DOCKER_CONFIG", docker.to_str().unwrap())], None);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!text.contains("s3cret-pw") && !text.contains(&auth), "a credential was printed");
    let report = json_of(&out);
    assert_eq!(
        actions(&report),
        planned
            .into_iter()
            .map(|(r, t, a)| {
                let a = if a == "untag" { "keep".to_string() } else { a };
                (r, t, a)
            })
            .collect()
    );
    reg.pull_as("team/app", "v6", Some("alice:s3cret-pw")).unwrap();
    reg.pull_as("team/multi", "2026.3", Some("alice:s3cret-pw")).unwrap();
    assert!(reg.pull_as("team/app", "v1", Some("alice:s3cret-pw")).is_err(), "v1 was deleted");
}

#[test]
fn tls_with_a_self_signed_certificate() {
    let store = fixture("demo");
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = token::self_signed(dir.path(), "registry", false);
    let reg = Registry::serve_with(store.path(), &Setup { tls: Some((cert.clone(), key)), ..Setup::default() });
    assert!(reg.url.starts_with("https://"));
    let base = ["online", "--url", &reg.url, "--keep", "2", "--order", "name", "--dry-run", "--json"];
    let out = run(&base, &[], None);
    assert_eq!(out.status.code(), Some(1), "an unknown issuer must be refused");
    let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(err.contains("certificate") || err.contains("issuer"), "{err}");
    let trusted = actions(&json_of(&run(&cat(&base, &["--ca-cert", cert.to_str().unwrap()]), &[], None)));
    let insecure = actions(&json_of(&run(&cat(&base, &["--insecure"]), &[], None)));
    assert_eq!(trusted, insecure);
    assert!(trusted.iter().any(|(_, _, a)| a == "delete"));

    // `openssl req -x509` without CA:FALSE: rustls refuses it as the server's own; say how to fix.
    let (cert, key) = token::self_signed(dir.path(), "ca-as-leaf", true);
    let reg = Registry::serve_with(store.path(), &Setup { tls: Some((cert.clone(), key)), ..Setup::default() });
    let args = ["online", "--url", &reg.url, "--keep", "2", "--dry-run", "--ca-cert", cert.to_str().unwrap()];
    let out = run(&args, &[], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("CA:FALSE"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn bearer_tokens_per_repository_scope_refreshed_when_expired() {
    let store = fixture("demo");
    let dir = tempfile::tempdir().unwrap();
    // Every first token of a scope comes already expired: the registry refuses it and regsweep
    // must ask again.
    let issuer = Issuer::start(dir.path(), "alice", "tok-pw", true);
    let reg = Registry::serve_with(store.path(), &Setup { extra: issuer.auth_yaml(), ..Setup::default() });
    let args = ["online", "--url", &reg.url, "--keep", "2", "--order", "name", "--json", "--username", "alice"];
    let out = run(&args, &[("REGSWEEP_PASSWORD", "wrong")], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("token server"), "{}", String::from_utf8_lossy(&out.stderr));

    // A user whose tokens do not grant `delete`: stopped at the first refusal, nothing deleted.
    let before = snapshot(store.path());
    let mut reader_args = args;
    reader_args[9] = token::READER;
    let out = run(&reader_args, &[("REGSWEEP_PASSWORD", token::READER_PASSWORD)], None);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing was deleted"));
    assert!(before == snapshot(store.path()));

    let report = json_of(&run(&args, &[("REGSWEEP_PASSWORD", "tok-pw")], None));
    assert!(report["manifests_deleted"].as_u64().unwrap() > 0);
    let issued = issuer.issued.lock().unwrap().clone();
    assert!(issued.get("registry:catalog:*").is_some_and(|n| *n >= 2), "{issued:?}");
    assert!(issued.get("repository:team/app:pull").is_some_and(|n| *n >= 2), "refreshed: {issued:?}");
    assert!(issued.contains_key("repository:team/app:delete"), "{issued:?}");
    assert!(issued.contains_key("repository:team/multi:pull"), "one scope per repository: {issued:?}");
    let creds = Some("alice:tok-pw");
    reg.pull_as("team/app", "v6", creds).unwrap();
    reg.pull_as("team/multi", "2026.3", creds).unwrap();
    assert!(reg.pull_as("team/app", "v1", creds).is_err(), "v1 was deleted");
}

#[test]
fn catalog_and_tags_are_read_page_by_page() {
    let setup = Setup { extra: "catalog: {maxentries: 1}".into(), ..Setup::default() };
    let (_store, reg, offline) = served_demo_and_prune_plan(&setup);
    // The registry pages the catalog one repository at a time; the proxy pages tags two at a time.
    let url = format!("http://127.0.0.1:{}", proxy(reg.port, true, Fail::Never, None));
    let report = regsweep_json(&["online", "--url", &url, "--keep", "2", "--order", "name", "--dry-run"]);
    let names: Vec<&str> = report["repos"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["team/app", "team/app/tools", "team/multi"]);
    assert_eq!(repo(&report, "team/app")["tags"].as_array().unwrap().len(), 11);
    assert_eq!(actions(&report), actions(&offline));
}

#[test]
fn referrers_are_found_through_the_referrers_api_where_the_registry_offers_it() {
    let (store, reg, offline) = served_demo_and_prune_plan(&Setup::default());
    let manifests = |r: &Value| -> Vec<u64> {
        r["repos"].as_array().unwrap().iter().map(|x| x["manifests_deleted"].as_u64().unwrap()).collect()
    };
    // 2.8 has no referrers API: an untagged referrer of a deleted manifest is invisible.
    let plain = regsweep_json(&["online", "--url", &reg.url, "--keep", "2", "--order", "name", "--dry-run"]);
    assert_ne!(manifests(&plain), manifests(&offline));
    // With it (a proxy answers it from the store), online deletes what prune deletes.
    let url = format!("http://127.0.0.1:{}", proxy(reg.port, false, Fail::Never, Some(store.path().to_path_buf())));
    let report = regsweep_json(&["online", "--url", &url, "--keep", "2", "--order", "name"]);
    assert_eq!(manifests(&report), manifests(&offline));
    assert_eq!(actions(&report).len(), actions(&offline).len());
    reg.assert_all_tags_pull(store.path());
    // 3.1.1 has no referrers API either (its router answers 404 "page not found"): the same as
    // 2.8, and nothing of it is taken for an error.
    if Version::V3.available("referrers_are_found_through_the_referrers_api_where_the_registry_offers_it").is_some() {
        let (store, reg, _) = served_demo_and_prune_plan(&Setup { version: Version::V3, ..Setup::default() });
        let v3 = regsweep_json(&["online", "--url", &reg.url, "--keep", "2", "--order", "name", "--dry-run"]);
        assert_eq!(manifests(&v3), manifests(&plain), "3.1.1 as 2.8.2");
        reg.assert_all_tags_pull(store.path());
    }
}

#[test]
fn too_many_requests_are_retried_and_a_registry_that_keeps_failing_is_given_up() {
    let (_store, reg, offline) = served_demo_and_prune_plan(&Setup::default());
    let flaky = format!("http://127.0.0.1:{}", proxy(reg.port, false, Fail::FirstTry, None));
    let report = regsweep_json(&["online", "--url", &flaky, "--keep", "2", "--order", "name", "--dry-run"]);
    assert_eq!(actions(&report), actions(&offline), "the first try of every request answered 429");
    let down = format!("http://127.0.0.1:{}", proxy(reg.port, false, Fail::Always, None));
    let out = run(&["online", "--url", &down, "--keep", "2", "--dry-run"], &[], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("503"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_registry_with_deletes_disabled_is_named_and_nothing_changes() {
    let store = fixture("demo");
    let reg = Registry::serve_with(store.path(), &Setup { delete: false, ..Setup::default() });
    let before = snapshot(store.path());
    let out = run(&["online", "--url", &reg.url, "--keep", "2", "--order", "name"], &[], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("storage.delete.enabled"));
    assert!(before == snapshot(store.path()), "nothing may change");
}
