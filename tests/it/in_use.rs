//! `--keep-in-use`: images something runs survive a prune, read from each shape operators have
//! (a Kubernetes pods JSON, a compose file, a plain list), and pull whole through the real
//! registry afterwards; the same run without the file deletes them (so each test fails without
//! the feature). Online too. The combinatorics (gc --delete-untagged, a bucket) are in
//! `memory.rs`.

use crate::common;

use std::path::Path;

use common::*;
use serde_json::Value;

/// The demo's digests these tests name.
const MULTI_2026_1: &str = "sha256:4ca5413b048400fd1d8de958d10f926dfc94baa280cba9a9823f2856cc1ba3a8";
const TOOLS_1_1_0: &str = "sha256:0d0a92dc01ee24854509e7cc8cbd1acc1f2f636b6ed4e37589b00a43bcafb8f6";

fn json(args: &[&str]) -> Value {
    let out = regsweep(args);
    assert!(out.status.success(), "regsweep {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

/// A tag's entry in a report.
fn tag<'a>(report: &'a Value, repo: &str, tag: &str) -> &'a Value {
    let r = report["repos"].as_array().unwrap().iter().find(|r| r["name"] == repo).unwrap();
    r["tags"].as_array().unwrap().iter().find(|t| t["name"] == tag).unwrap_or_else(|| panic!("{repo}:{tag}"))
}

fn kinds(report: &Value, kind: &str) -> Vec<String> {
    let w = report["warnings"].as_array().unwrap().iter().filter(|w| w["kind"] == kind);
    w.map(|w| w["message"].as_str().unwrap().to_string()).collect()
}

fn tag_exists(root: &Path, repo: &str, tag: &str) -> bool {
    v2(root).join(format!("repositories/{repo}/_manifests/tags/{tag}/current/link")).exists()
}

fn revision_exists(root: &Path, repo: &str, digest: &str) -> bool {
    let hex = digest.strip_prefix("sha256:").unwrap();
    v2(root).join(format!("repositories/{repo}/_manifests/revisions/sha256/{hex}/link")).exists()
}

/// `kubectl get pods,... -A -o json` as the API returns it: containers, init containers,
/// statuses with Docker's `docker-pullable://` image IDs; images of Docker Hub and of another
/// registry beside this one's, and one this store does not hold.
fn pods_json() -> String {
    format!(
        r#"{{"apiVersion": "v1", "kind": "List", "items": [
  {{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "web-7d4b9", "namespace": "shop"}},
   "spec": {{"initContainers": [{{"name": "migrate", "image": "registry.example.com:5000/team/app/tools:1.0.0"}}],
            "containers": [{{"name": "web", "image": "registry.example.com:5000/team/app:v2"}},
                           {{"name": "proxy", "image": "nginx:1.27"}},
                           {{"name": "metrics", "image": "other.example.com/team/app:v3"}},
                           {{"name": "typo", "image": "registry.example.com:5000/team/app:v99"}}]}},
   "status": {{"initContainerStatuses": [{{"name": "migrate", "image": "registry.example.com:5000/team/app/tools:1.0.0",
               "imageID": "docker-pullable://registry.example.com:5000/team/app/tools@{tools}"}}],
              "containerStatuses": [
                {{"name": "web", "image": "registry.example.com:5000/team/multi@{multi}",
                  "imageID": "docker-pullable://registry.example.com:5000/team/multi@{multi}"}},
                {{"name": "proxy", "image": "docker.io/library/nginx:1.27",
                  "imageID": "docker-pullable://nginx@sha256:{hub}"}}]}}}}
]}}"#,
        tools = "sha256:84080f2ec1bc4c38f3163ecc90dc58ae75ac1a294e33e035630168a63dd4e42c",
        multi = MULTI_2026_1,
        hub = "ab".repeat(32),
    )
}

#[test]
fn a_pods_json_keeps_every_image_the_cluster_runs_and_they_pull_whole() {
    let files = tempfile::tempdir().unwrap();
    let pods = write(files.path(), "pods.json", &pods_json());
    let store = fixture("demo");
    let root = store.path().to_str().unwrap();
    let base = ["prune", "--root", root, "--keep", "1", "--json"];
    let mut args = base.to_vec();
    args.extend(["--keep-in-use", &pods, "--registry-host", "registry.example.com:5000"]);
    let report = json(&args);
    assert_eq!(tag(&report, "team/app", "v2")["reason"]["kind"], "in_use");
    assert_eq!(tag(&report, "team/app", "v2")["action"], "keep");
    assert_eq!(tag(&report, "team/app/tools", "1.0.0")["reason"]["kind"], "in_use");
    // Another registry's team/app:v3 is not this one's: it goes.
    assert_eq!(tag(&report, "team/app", "v3")["action"], "delete");
    // The pod runs team/multi by digest (2026.1, an index): its tag goes, the manifest stays.
    assert_eq!(tag(&report, "team/multi", "2026.1")["action"], "untag");
    let multi = report["repos"].as_array().unwrap().iter().find(|r| r["name"] == "team/multi").unwrap();
    assert_eq!(multi["manifests_in_use"], serde_json::json!([MULTI_2026_1]));
    let missing = kinds(&report, "in_use_not_found");
    assert_eq!(missing.len(), 1, "{missing:?}");
    assert!(missing[0].contains("team/app:v99"), "{missing:?}");
    assert_eq!(report["in_use"]["references"], 5, "{}", report["in_use"]);
    // nginx:1.27, docker.io/library/nginx:1.27, nginx@sha256:..., other.example.com/team/app:v3.
    assert_eq!(report["in_use"]["other_hosts"], 4, "{}", report["in_use"]);
    assert_eq!(report["in_use"]["not_found"], 1);

    let reg = Registry::serve(store.path());
    reg.pull("team/app", "v2").unwrap();
    reg.pull("team/app/tools", "1.0.0").unwrap();
    reg.pull("team/multi", MULTI_2026_1).unwrap();
    reg.assert_all_tags_pull(store.path());
    assert_eq!(reg.manifest_status("team/app", "v3"), 404);
    drop(reg);

    // Without the file the same prune deletes them.
    let without = fixture("demo");
    let mut args = base.to_vec();
    let root = without.path().to_str().unwrap();
    args[2] = root;
    json(&args);
    assert!(!tag_exists(without.path(), "team/app", "v2") && !tag_exists(without.path(), "team/app/tools", "1.0.0"));
    assert!(!revision_exists(without.path(), "team/multi", MULTI_2026_1));
}

#[test]
fn a_compose_file_keeps_its_images_with_the_hosts_of_the_registrys_config() {
    let files = tempfile::tempdir().unwrap();
    let compose = write(
        files.path(),
        "compose.yml",
        "services:\n  web:\n    image: registry.example.com:5000/team/app:v4\n  db:\n    image: postgres:17\n",
    );
    let store = fixture("demo");
    // The registry's own config names its host: the compose file's references are its.
    let config = format!(
        "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: :5000\n  host: \
         https://registry.example.com:5000\n",
        store.path().display()
    );
    let config = write(files.path(), "config.yml", &config);
    let report = json(&["prune", "--config", &config, "--keep", "1", "--keep-in-use", &compose, "--json"]);
    assert_eq!(tag(&report, "team/app", "v4")["reason"]["kind"], "in_use", "{}", report["in_use"]);
    assert_eq!(report["in_use"]["other_hosts"], 1, "postgres is Docker Hub's");
    assert!(kinds(&report, "in_use_not_found").is_empty());
    let reg = Registry::serve(store.path());
    reg.pull("team/app", "v4").unwrap();
    drop(reg);

    let without = fixture("demo");
    json(&["prune", "--root", without.path().to_str().unwrap(), "--keep", "1", "--json"]);
    assert!(!tag_exists(without.path(), "team/app", "v4"));
}

#[test]
fn a_list_keeps_a_tag_and_a_digest_no_tag_will_name_and_is_read_from_stdin() {
    let files = tempfile::tempdir().unwrap();
    let text = format!("# what runs\nteam/app:v5\nteam/app/tools@{TOOLS_1_1_0}\n");
    let list = write(files.path(), "list", &text);
    let store = fixture("demo");
    let root = store.path().to_str().unwrap();
    // `-` reads the list from stdin (`kubectl ... | regsweep prune --keep-in-use -`).
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_regsweep"))
        .args(["prune", "--root", root, "--keep", "1", "--keep-in-use", "-", "--dry-run", "--json"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), b"team/app:v5\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let dry_report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(dry_report["in_use"]["files"][0][0], "-");
    assert_eq!(tag(&dry_report, "team/app", "v5")["reason"]["kind"], "in_use");

    let report = json(&["prune", "--root", root, "--keep", "1", "--keep-in-use", &list, "--json"]);
    assert_eq!(tag(&report, "team/app", "v5")["reason"]["kind"], "in_use");
    assert_eq!(tag(&report, "team/app/tools", "1.1.0")["action"], "untag");
    let reg = Registry::serve(store.path());
    reg.pull("team/app", "v5").unwrap();
    reg.pull("team/app/tools", TOOLS_1_1_0).unwrap();
    assert_eq!(reg.manifest_status("team/app/tools", "1.1.0"), 404, "the tag went, the manifest stayed");
    drop(reg);

    let without = fixture("demo");
    json(&["prune", "--root", without.path().to_str().unwrap(), "--keep", "1", "--json"]);
    assert!(!tag_exists(without.path(), "team/app", "v5"));
    assert!(!revision_exists(without.path(), "team/app/tools", TOOLS_1_1_0));
}

/// Online: the registry's URL names it, so a list naming `127.0.0.1:PORT` needs no
/// --registry-host; a digest no tag reaches is asked for by HEAD, not warned about. On 2.8.2 a
/// tag on a digest in use stays (it cannot delete a tag alone); 3.1.1 deletes the tag and the
/// manifest still pulls by digest.
#[test]
fn online_keeps_what_is_in_use_through_the_api() {
    for version in VERSIONS {
        if version.available("online_keeps_what_is_in_use_through_the_api").is_some() {
            online_keeps_on(version);
        }
    }
}

fn online_keeps_on(version: Version) {
    let files = tempfile::tempdir().unwrap();
    let store = fixture("demo");
    let reg = Registry::serve_version(store.path(), version);
    let host = format!("127.0.0.1:{}", reg.port);
    let text = format!("{host}/team/app:v5\n{host}/team/app/tools@{TOOLS_1_1_0}\n{host}/team/app@{TOOLS_1_1_0}\n");
    let list = write(files.path(), "list", &text);
    let url = reg.url.clone();
    let base = ["online", "--url", &url, "--keep", "1", "--order", "name", "--json"];
    let mut args = base.to_vec();
    args.extend(["--keep-in-use", &list]);
    let report = json(&args);
    assert_eq!(tag(&report, "team/app", "v5")["reason"]["kind"], "in_use", "{version}");
    let missing = kinds(&report, "in_use_not_found");
    assert_eq!(missing.len(), 1, "{version}: team/app holds no such manifest: {missing:?}");
    let untagged = tag(&report, "team/app/tools", "1.1.0");
    if version == Version::V3 {
        assert_eq!(untagged["action"], "untag", "{version}: {untagged}");
        assert_eq!(reg.manifest_status("team/app/tools", "1.1.0"), 404, "{version}: the tag went alone");
    }
    reg.pull("team/app", "v5").unwrap();
    reg.pull("team/app/tools", TOOLS_1_1_0).unwrap();
    reg.assert_all_tags_pull(store.path());

    drop(reg);

    // Without the file, on a fresh copy (3.1.1 left 1.1.0's manifest untagged above, which the
    // API no longer shows), the same run deletes both.
    let store = fixture("demo");
    let reg = Registry::serve_version(store.path(), version);
    let mut base = base.to_vec();
    base[2] = &reg.url;
    json(&base);
    assert_eq!(reg.manifest_status("team/app", "v5"), 404, "{version}");
    assert_eq!(reg.manifest_status("team/app/tools", TOOLS_1_1_0), 404, "{version}");
}

/// Online `--gc-delete-untagged` hands the store to the registry's collector, which deletes every
/// manifest no tag names and knows nothing of `--keep-in-use`: a tag on a digest in use stays
/// (not untagged, as without the collector); an in-use digest no tag reaches refuses the run
/// before any delete (a dry run too: exit 1, `in_use_untagged`). With the tags, the run goes on
/// to its container step (here, no container: exit 5).
#[test]
fn online_gc_delete_untagged_never_hands_what_is_in_use_to_the_collector() {
    let files = tempfile::tempdir().unwrap();
    let store = fixture("demo");
    for untagged in [false, true] {
        if untagged {
            let tag = v2(store.path()).join("repositories/team/app/tools/_manifests/tags/1.1.0");
            std::fs::remove_dir_all(tag).unwrap();
        }
        let reg = Registry::serve(store.path());
        let list = write(files.path(), "list", &format!("127.0.0.1:{}/team/app/tools@{TOOLS_1_1_0}\n", reg.port));
        let args = ["online", "--url", &reg.url, "--keep", "1", "--order", "name", "--dry-run", "--json"];
        let gc = ["--keep-in-use", &list, "--gc-container", "regsweep-test-no-such-container", "--gc-delete-untagged"];
        let out = regsweep(&[&args[..], &gc].concat());
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        if untagged {
            assert_eq!((out.status.code(), &report["kind"]), (Some(1), &"in_use_untagged".into()), "{err}");
            assert!(err.contains(&format!("team/app/tools@{TOOLS_1_1_0}")), "{err}");
        } else {
            assert_eq!(out.status.code(), Some(5), "the container step, not a guard: {err}");
            let t = tag(&report, "team/app/tools", "1.1.0");
            assert_eq!((&t["action"], &t["reason"]["kind"]), (&"keep".into(), &"in_use".into()), "{t}");
        }
    }
}

/// Review finding 2: `kubectl get pods -o json > workloads.json` with the API down leaves the file
/// empty (the shell truncates it first); an empty file, or an empty stdin, is no "nothing runs":
/// refused (exit 1, naming it) before anything is deleted. A comment line says nothing runs.
#[test]
fn an_empty_keep_in_use_file_or_stdin_refuses_the_run() {
    let files = tempfile::tempdir().unwrap();
    let store = fixture("demo");
    let root = store.path().to_str().unwrap();
    let empty = write(files.path(), "workloads.json", " \n");
    // `regsweep` gives the child an empty stdin.
    for (file, shown) in [(empty.as_str(), empty.as_str()), ("-", "-")] {
        let out = regsweep(&["prune", "--root", root, "--keep", "1", "--keep-in-use", file, "--json"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains(&format!("--keep-in-use {shown} is empty")), "{err}");
        assert!(tag_exists(store.path(), "team/app", "v5"), "nothing was deleted");
    }
    let none = write(files.path(), "none", "# nothing runs here\n");
    let report = json(&["prune", "--root", root, "--keep", "1", "--keep-in-use", &none, "--dry-run", "--json"]);
    assert_eq!(tag(&report, "team/app", "v5")["action"], "delete");
}

/// Review finding 9: `online --password-stdin --keep-in-use -` would read one stdin twice (the
/// password taking the list's first line): a usage error (exit 2) before either reads.
#[test]
fn online_refuses_two_readers_of_stdin() {
    let args = ["online", "--url", "http://127.0.0.1:9", "--keep", "1", "--username", "u", "--password-stdin"];
    let out = regsweep(&[&args[..], &["--keep-in-use", "-"]].concat());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("both read stdin"), "{err}");
}
