//! `regsweep du` against the truth: reclaimable bytes equal what `prune --dry-run` frees with the
//! same options, unique bytes equal what the reference collector frees once the repository is
//! gone, totals equal the store's blob bytes.

use crate::common;

use std::path::Path;

use common::*;

fn du(root: &Path, args: &[&str]) -> serde_json::Value {
    regsweep_json(&[&["du", "--root", root.to_str().unwrap()][..], args].concat())
}

#[test]
fn reclaimable_is_what_prune_frees_and_totals_are_the_store() {
    let generated = tempfile::tempdir().unwrap();
    let out = regsweep(&["gen", "--root", generated.path().to_str().unwrap(), "--repos", "20", "--tags", "8", "-q"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (demo, legacy) = (fixture("demo"), fixture("legacy"));
    let policies: [&[&str]; 4] = [
        &["--keep", "2", "--grace", "0s"],
        &["--keep", "1", "--delete-untagged", "--grace", "0s", "--upload-age", "0s"],
        &["--keep", "0", "--order", "name", "--keep-tag", "^v1$"],
        &["--keep", "3", "--repo", "team/*", "--grace", "0s"],
    ];
    for root in [demo.path(), legacy.path(), generated.path()] {
        let r = du(root, &[]);
        assert_eq!(r["bytes_total"], blob_bytes(root), "{}", root.display());
        let referenced: u64 = r["repos"].as_array().unwrap().iter().map(|x| x["bytes_unique"].as_u64().unwrap()).sum();
        assert!(referenced <= r["bytes_total"].as_u64().unwrap());
        for policy in policies {
            let usage = du(root, policy);
            let plan = regsweep_json(&[&["prune", "--root", root.to_str().unwrap(), "--dry-run"][..], policy].concat());
            assert_eq!(usage["bytes_reclaimable"], plan["bytes_freed"], "{} {policy:?}", root.display());
            let attributed: u64 =
                usage["repos"].as_array().unwrap().iter().map(|x| x["bytes_reclaimable"].as_u64().unwrap()).sum();
            assert!(attributed <= plan["bytes_freed"].as_u64().unwrap(), "{policy:?}");
            for x in usage["repos"].as_array().unwrap() {
                let (refd, uniq, shared) = (
                    x["bytes_referenced"].as_u64().unwrap(),
                    x["bytes_unique"].as_u64().unwrap(),
                    x["bytes_shared"].as_u64().unwrap(),
                );
                assert_eq!(refd, uniq + shared, "{x}");
            }
        }
        // Without a policy: what gc frees (no uploads counted: --upload-age far away).
        let gc = regsweep_json(&[
            "gc",
            "--root",
            root.to_str().unwrap(),
            "--dry-run",
            "--grace",
            "0s",
            "--upload-age",
            "100000h",
        ]);
        assert_eq!(r["bytes_unreferenced"], gc["bytes_freed"], "{}", root.display());
    }
}

#[test]
fn unique_bytes_are_what_the_reference_frees_once_the_repository_is_gone() {
    for (fixture_name, repos) in
        [("demo", &["team/multi", "team/app/tools"][..]), ("legacy", &["legacy/list", "legacy/schema1"][..])]
    {
        let store = fixture(fixture_name);
        let usage = du(store.path(), &[]);
        for name in repos {
            let unique = repo(&usage, name)["bytes_unique"].as_u64().unwrap();
            let copy = copy_store(store.path());
            let before = blob_bytes(copy.path());
            std::fs::remove_dir_all(v2(copy.path()).join("repositories").join(name)).unwrap();
            reference_gc(copy.path(), false);
            assert_eq!(before - blob_bytes(copy.path()), unique, "{fixture_name} {name}");
            assert!(unique > 0, "{fixture_name} {name}");
        }
    }
}

/// `du --url` on a registry equals `du` on its store where the API can see everything: no
/// untagged manifest (collected first) and the referrers API (a proxy answers it from the store:
/// 2.8 lacks it). Schema1 manifests (signed as served, layer sizes by HEAD) included.
#[test]
fn through_the_api_it_equals_du_on_the_store() {
    for name in ["demo", "legacy"] {
        let store = fixture(name);
        let root = store.path().to_str().unwrap();
        assert!(regsweep(&["gc", "--root", root, "--delete-untagged", "--grace", "0s", "-q"]).status.success());
        let reg = Registry::serve(store.path());
        let url = format!("http://127.0.0.1:{}", proxy(reg.port, false, Fail::Never, Some(store.path().into())));
        let before = snapshot(store.path());
        let policies: [&[&str]; 4] = [
            &[],
            &["--keep", "1", "--order", "name"],
            &["--keep", "1", "--order", "created"],
            &["--keep", "0", "--order", "semver", "--keep-tag", "^v1$", "--exclude-repo", "*/list"],
        ];
        for policy in policies {
            let mut api = regsweep_json(&[&["du", "--url", &url][..], policy].concat());
            let disk = du(store.path(), &[policy, &["--grace", "0s"][..]].concat());
            assert_eq!(api["root"].take(), url.as_str());
            let mut disk_without_root = disk.clone();
            disk_without_root["root"].take();
            assert_eq!(api, disk_without_root, "{name} {policy:?}");
        }
        assert!(du(store.path(), &["--keep", "1", "--order", "name"])["bytes_reclaimable"].as_u64().unwrap() > 0);
        assert_eq!(snapshot(store.path()), before, "du writes nothing");
    }
    // Without the referrers API and with untagged manifests, it counts what it sees.
    let store = fixture("demo");
    let reg = Registry::serve(store.path());
    let api = regsweep_json(&["du", "--url", &reg.url, "--keep", "1", "--order", "name"]);
    let disk = du(store.path(), &["--keep", "1", "--order", "name", "--grace", "0s"]);
    assert!(api["bytes_total"].as_u64() < disk["bytes_total"].as_u64());
    assert_eq!(api["bytes_unreferenced"], 0);
    assert_eq!(api["bytes_uploads"], 0);
    let out = regsweep(&["du", "--url", &reg.url, "--keep", "1", "--order", "push"]);
    assert_eq!(out.status.code(), Some(2), "no push times over the API");
    let out = regsweep(&["du", "--url", &reg.url, "--delete-untagged"]);
    assert_eq!(out.status.code(), Some(2), "no untagged manifests over the API");
}

#[test]
fn the_table_sorts_and_cuts() {
    let store = fixture("demo");
    let root = store.path().to_str().unwrap();
    let out = regsweep(&["du", "--root", root, "--keep", "1", "--sort", "reclaimable", "--top", "2"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<&str> = text.lines().skip(1).take_while(|l| !l.is_empty()).collect();
    assert_eq!(rows.len(), 2, "{text}");
    assert!(text.contains("3 repositories") && text.contains("reclaimable"), "{text}");
    let usage = du(store.path(), &["--keep", "1", "--sort", "name"]);
    let names: Vec<&str> = usage["repos"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["team/app", "team/app/tools", "team/multi"]);
}

/// The page opens in a real browser (headless Chromium, installed by tests/run.sh): no console
/// error, one treemap rectangle per repository, a screenshot; and it asks for nothing from
/// elsewhere.
#[test]
fn the_page_renders_in_a_browser_and_loads_nothing() {
    let store = tempfile::tempdir().unwrap();
    let root = store.path().to_str().unwrap();
    assert!(regsweep(&["gen", "--root", root, "--repos", "30", "--tags", "6", "-q"]).status.success());
    let out = tempfile::tempdir().unwrap();
    let (html, svg) = (out.path().join("du.html"), out.path().join("du.svg"));
    let usage = regsweep_json(&[
        "du",
        "--root",
        root,
        "--keep",
        "2",
        "--order",
        "name",
        "--html",
        html.to_str().unwrap(),
        "--svg",
        svg.to_str().unwrap(),
    ]);
    let page = std::fs::read_to_string(&html).unwrap();
    for external in ["src=", "href=", "url(", "@import", "<link"] {
        assert!(!page.contains(external), "the page must load nothing: {external}");
    }
    assert!(std::fs::read_to_string(&svg).unwrap().starts_with("<svg xmlns="));
    let chromium = |args: &[&str]| {
        std::process::Command::new("chromium")
            .args(["--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0"])
            .args(args)
            .arg(format!("file://{}", html.display()))
            .output()
            .expect("chromium (tests/run.sh installs it)")
    };
    let dom = chromium(&["--dump-dom"]);
    let log = String::from_utf8_lossy(&dom.stderr);
    assert!(!log.lines().any(|l| l.contains("CONSOLE")), "console messages: {log}");
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert_eq!(dom.matches("class=\"repo\"").count(), usage["repositories"].as_u64().unwrap() as usize);
    assert!(dom.contains("reclaimable"));
    let png = top().join("target/du-screenshot.png");
    let _ = std::fs::remove_file(&png);
    let shot = chromium(&["--hide-scrollbars", "--window-size=1100,900", &format!("--screenshot={}", png.display())]);
    assert!(shot.status.success());
    assert!(std::fs::metadata(&png).unwrap().len() > 10_000, "a screenshot with something in it");
}
