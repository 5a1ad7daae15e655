//! contrib/kubernetes, checked without a cluster: each kustomization builds with `kubectl
//! kustomize`, the result validates against the Kubernetes schemas (`kubernetes-validate`,
//! offline, 1.37 by default) and passes `checkov` with every skipped check explained; the pods
//! are locked down (non-root, read-only root, no escalation, no capability, requests and
//! limits); the image is the one contrib/container/build.sh names and its command lines are ones
//! regsweep accepts; the initContainer lists only what its ClusterRole may read; and the
//! registry's notifications stanza names the listener's Service. kubernetes-validate and checkov
//! are in target/s3venv (tests/run.sh installs them); kubectl where it is installed.

use crate::common;

use std::path::PathBuf;
use std::process::Command;

use common::*;
use serde::Deserialize;
use serde_json::Value;

const KUSTOMIZATIONS: [&str; 2] = ["base", "filesystem"];

fn contrib() -> PathBuf {
    top().join("contrib/kubernetes")
}

/// A tool of tests/run.sh's virtual environment.
fn venv_tool(name: &str) -> PathBuf {
    let tool = top().join("target/s3venv/bin").join(name);
    assert!(tool.exists(), "{} (tests/run.sh installs it)", tool.display());
    tool
}

/// kubectl on the PATH, else the one tests/run.sh may have put in its virtual environment.
fn kubectl() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("kubectl"))
        .find(|k| k.is_file());
    on_path.or_else(|| Some(top().join("target/s3venv/bin/kubectl")).filter(|k| k.is_file()))
}

/// Every document of a multi-document YAML text.
fn documents(text: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(text)
        .map(|d| Value::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

/// The pod spec of a workload, if it has one.
fn pod_spec(doc: &Value) -> Option<&Value> {
    match doc["kind"].as_str()? {
        "CronJob" => Some(&doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]),
        "Deployment" | "StatefulSet" | "DaemonSet" | "Job" => Some(&doc["spec"]["template"]["spec"]),
        _ => None,
    }
}

fn containers(spec: &Value) -> impl Iterator<Item = &Value> {
    ["initContainers", "containers"].into_iter().flat_map(|k| spec[k].as_array().into_iter().flatten())
}

/// The name contrib/container/build.sh gives the image: regsweep:<version of Cargo.toml>.
fn image_name() -> String {
    let cargo = std::fs::read_to_string(top().join("Cargo.toml")).unwrap();
    let version = cargo.lines().find_map(|l| l.strip_prefix("version = \"")).unwrap().trim_end_matches('"');
    let build = std::fs::read_to_string(top().join("contrib/container/build.sh")).unwrap();
    assert!(build.contains("name=${2:-regsweep:$version}"), "build.sh's default name changed: change this test");
    assert!(build.contains(r#""Entrypoint":["/usr/local/bin/regsweep"]"#), "build.sh's entrypoint changed");
    format!("regsweep:{version}")
}

/// What a built kustomization must hold, whatever checkov thinks of it.
fn check_built(name: &str, docs: &[Value]) {
    let image = image_name();
    let mut regsweep_containers = 0;
    for doc in docs {
        let Some(spec) = pod_spec(doc) else { continue };
        let what = format!("{name}: {} {}", doc["kind"], doc["metadata"]["name"]);
        assert_eq!(spec["securityContext"]["runAsNonRoot"], true, "{what}");
        assert_eq!(spec["securityContext"]["seccompProfile"]["type"], "RuntimeDefault", "{what}");
        assert_eq!(spec["automountServiceAccountToken"], false, "{what}: the token only where a container needs it");
        for c in containers(spec) {
            let what = format!("{what} {}", c["name"]);
            let sc = &c["securityContext"];
            assert_eq!(sc["allowPrivilegeEscalation"], false, "{what}");
            assert_eq!(sc["readOnlyRootFilesystem"], true, "{what}");
            assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]), "{what}");
            for (kind, resource) in
                [("requests", "cpu"), ("requests", "memory"), ("limits", "cpu"), ("limits", "memory")]
            {
                assert!(c["resources"][kind][resource].is_string(), "{what}: resources.{kind}.{resource}");
            }
            if c["image"].as_str().is_some_and(|i| i.starts_with("regsweep")) {
                regsweep_containers += 1;
                assert_eq!(c["image"], image.as_str(), "{what}: the image contrib/container/build.sh makes");
                assert!(c.get("command").is_none(), "{what}: the image's entrypoint runs");
                // The arguments are ones regsweep accepts (--help appended: nothing runs).
                let mut args: Vec<&str> = c["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
                args.push("--help");
                let out = regsweep(&args);
                assert!(out.status.success(), "{what}: {args:?}: {}", String::from_utf8_lossy(&out.stderr));
            }
        }
        if doc["kind"] == "CronJob" {
            assert_eq!(doc["spec"]["concurrencyPolicy"], "Forbid", "{what}");
            let backoff = doc["spec"]["jobTemplate"]["spec"]["backoffLimit"].as_u64().unwrap();
            assert!(backoff <= 2, "{what}: backoffLimit {backoff} hammers a failing bucket");
            in_use_is_allowed(docs, spec, &what);
        }
    }
    assert_eq!(regsweep_containers, 2, "{name}: the prune and the listener");
    notifications_reach_the_listener(docs);
}

/// The initContainer lists (`kubectl get A,B -A`) exactly what the ClusterRole bound to the
/// pod's service account may get and list (read only), and the prune reads the file it writes.
fn in_use_is_allowed(docs: &[Value], spec: &Value, what: &str) {
    let init = &spec["initContainers"][0];
    let script = init["command"].as_array().unwrap().last().unwrap().as_str().unwrap();
    let listed = script.split_whitespace().skip_while(|w| *w != "get").nth(1).unwrap();
    let file = script.rsplit_once('>').unwrap().1.trim();
    let prune = &spec["containers"][0]["args"];
    assert!(prune.as_array().unwrap().iter().any(|a| a == file), "{what}: the prune reads {file}");
    let account = spec["serviceAccountName"].as_str().unwrap();
    let binding = docs
        .iter()
        .find(|d| d["kind"] == "ClusterRoleBinding" && d["subjects"][0]["name"] == account)
        .unwrap_or_else(|| panic!("{what}: no ClusterRoleBinding for {account}"));
    let account_doc = docs.iter().find(|d| d["kind"] == "ServiceAccount" && d["metadata"]["name"] == account).unwrap();
    assert_eq!(binding["subjects"][0]["namespace"], account_doc["metadata"]["namespace"], "{what}");
    let role = docs
        .iter()
        .find(|d| d["kind"] == "ClusterRole" && d["metadata"]["name"] == binding["roleRef"]["name"])
        .unwrap();
    for resource in listed.split(',') {
        let allowed = role["rules"].as_array().unwrap().iter().any(|r| {
            let has = |k: &str, v: &str| r[k].as_array().unwrap().iter().any(|x| x == v);
            has("resources", resource) && has("verbs", "get") && has("verbs", "list")
        });
        assert!(allowed, "{what}: the ClusterRole does not let it list {resource}");
    }
    for rule in role["rules"].as_array().unwrap() {
        for verb in rule["verbs"].as_array().unwrap() {
            assert!(verb == "get" || verb == "list", "{what}: read only, not {verb}");
        }
        for resource in rule["resources"].as_array().unwrap() {
            let r = resource.as_str().unwrap();
            assert!(listed.split(',').any(|l| l == r), "{what}: the ClusterRole reads {r}, which nothing lists");
        }
    }
}

/// contrib/kubernetes/registry-notifications.yml posts to the listener's Service and port.
fn notifications_reach_the_listener(docs: &[Value]) {
    let text = std::fs::read_to_string(contrib().join("registry-notifications.yml")).unwrap();
    let stanza: Value = serde_norway::from_str(&text).unwrap();
    let endpoint = &stanza["notifications"]["endpoints"][0];
    let service = docs.iter().find(|d| d["kind"] == "Service" && d["metadata"]["name"] == "regsweep-listen").unwrap();
    let host = format!(
        "http://{}.{}.svc:{}/",
        service["metadata"]["name"].as_str().unwrap(),
        service["metadata"]["namespace"].as_str().unwrap(),
        service["spec"]["ports"][0]["port"]
    );
    assert!(endpoint["url"].as_str().unwrap().starts_with(&host), "{} is not {host}", endpoint["url"]);
    assert!(endpoint["headers"]["Authorization"][0].as_str().unwrap().starts_with("Bearer "));
}

/// kubernetes-validate, strict (an unknown field is an error), against its default version.
fn validate(files: &[PathBuf]) {
    let out = Command::new(venv_tool("kubernetes-validate")).arg("--strict").args(files).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "kubernetes-validate:\n{text}");
    assert!(!text.contains("ERROR") && !text.contains("WARN"), "{text}");
}

/// checkov over files (one run: it takes seconds to start): no failed check, and each skipped
/// one explained where it is skipped (a `checkov.io/skip` annotation with a reason).
fn checkov(files: &[PathBuf], skip: &[&str]) {
    let mut cmd = Command::new(venv_tool("checkov"));
    cmd.args(["--framework", "kubernetes", "--quiet", "--compact", "--skip-download", "-o", "json"]);
    if !skip.is_empty() {
        cmd.arg("--skip-check").arg(skip.join(","));
    }
    for f in files {
        cmd.arg("-f").arg(f);
    }
    let out = cmd.output().unwrap();
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("checkov: {e}: {}", String::from_utf8_lossy(&out.stderr)));
    let results = &report["results"];
    let failed: Vec<String> = results["failed_checks"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| format!("{} {} ({})", c["check_id"], c["check_name"], c["resource"]))
        .collect();
    assert!(failed.is_empty(), "checkov failed checks:\n{}", failed.join("\n"));
    assert!(report["summary"]["passed"].as_u64().unwrap() > 100, "{}", report["summary"]);
    for skipped in results["skipped_checks"].as_array().into_iter().flatten() {
        let why = skipped["check_result"]["suppress_comment"].as_str().unwrap_or("");
        assert!(why.len() > 20, "{} skipped without a reason: {why:?}", skipped["check_id"]);
    }
}

#[test]
fn the_kubernetes_manifests_build_validate_and_pass_checkov() {
    let out_dir = tempfile::tempdir().unwrap();
    let Some(kubectl) = kubectl() else {
        // kubectl is not installable from Debian's packages (kubernetes-client is an old one
        // that conflicts with it): then the resources are checked as written.
        eprintln!("skipped the kustomize build of contrib/kubernetes: kubectl is not installed");
        let files: Vec<PathBuf> =
            ["rbac.yaml", "prune.yaml", "listen.yaml"].iter().map(|f| contrib().join("base").join(f)).collect();
        validate(&files);
        // What kustomize adds: the namespace (CKV_K8S_21) and the image's tag (CKV_K8S_14).
        checkov(&files, &["CKV_K8S_21", "CKV_K8S_14"]);
        return;
    };
    let mut built = Vec::new();
    for name in KUSTOMIZATIONS {
        let out = Command::new(&kubectl).arg("kustomize").arg(contrib().join(name)).output().unwrap();
        assert!(out.status.success(), "kubectl kustomize {name}: {}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8(out.stdout).unwrap();
        check_built(name, &documents(&text));
        let file = out_dir.path().join(format!("{name}.yaml"));
        std::fs::write(&file, text).unwrap();
        built.push(file);
    }
    validate(&built);
    checkov(&built, &[]);
}
