//! The module graph points one way (issue 13): `model` imports nothing of the crate; `core` only
//! `model`; `store` and `online` only `core` and `model` (never each other); the top (`lib.rs`,
//! `main.rs`, `cli.rs`) anything. Inside `store` (issue 23), the backends `store::fs` and
//! `store::bucket` never import each other, and what they share imports neither (but
//! `store::location` and `store::config`, which open them). And no two modules import each
//! other, directly or around a cycle, a parent and its child included. Read from the sources,
//! so a new upward import fails the test command.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The layer a module path (`core::plan`) or file belongs to, lowest first; `None` for the top.
fn layer(module: &str) -> Option<(usize, &'static str)> {
    match module.split("::").next()? {
        "model" => Some((0, "model")),
        "core" => Some((1, "core")),
        "store" => Some((2, "store")),
        "online" => Some((2, "online")),
        _ => None,
    }
}

/// The storage backend a module belongs to (`store::fs`, `store::bucket`), if any.
fn backend(module: &str) -> Option<&'static str> {
    ["store::fs", "store::bucket"].into_iter().find(|b| module == *b || module.starts_with(&format!("{b}::")))
}

/// Of `store`, the modules that open the backends: they may import them.
const OPENERS: [&str; 2] = ["store::location", "store::config"];

/// `src/core/plan.rs` -> `core::plan`; `src/store/mod.rs` -> `store`.
fn module_of(rel: &str) -> String {
    let trimmed = rel.trim_end_matches(".rs").trim_end_matches("/mod");
    trimmed.replace('/', "::")
}

/// The crate modules a source refers to: `crate::a::b` (down to the module a known file
/// defines), and `super::x` inside a folder; comments skipped.
fn references(module: &str, source: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in source.lines() {
        let code = line.split("//").next().unwrap_or("");
        for (prefix, base) in [("crate::", String::new()), ("super::", parent(module))] {
            let mut rest = code;
            while let Some(i) = rest.find(prefix) {
                let path: String = rest[i + prefix.len()..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
                    .collect();
                let mut parts: Vec<&str> = base.split("::").filter(|p| !p.is_empty()).collect();
                let mut best = None;
                for p in path.split("::").filter(|p| !p.is_empty()) {
                    parts.push(p);
                    let candidate = parts.join("::");
                    if modules.contains(&candidate) {
                        best = Some(candidate);
                    }
                }
                if let Some(b) = best.filter(|b| b != module) {
                    out.insert(b);
                }
                rest = &rest[i + prefix.len()..];
            }
        }
    }
    out
}

fn parent(module: &str) -> String {
    module.rsplit_once("::").map(|(p, _)| p.to_string()).unwrap_or_default()
}

/// Every violation in a tree of (path under `src/`, source) pairs.
fn violations(files: &[(String, String)]) -> Vec<String> {
    let modules: BTreeSet<String> = files.iter().map(|(rel, _)| module_of(rel)).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut out = Vec::new();
    for (rel, source) in files {
        let from = module_of(rel);
        let refs = references(&from, source, &modules);
        if let Some((rank, name)) = layer(&from) {
            for to in &refs {
                match layer(to) {
                    Some((r, n)) if n == name || r < rank => {}
                    Some((_, n)) => out.push(format!("{from} ({name}) imports {to} ({n}): upward or sideways")),
                    None => out.push(format!("{from} ({name}) imports {to} (the top)")),
                }
            }
        }
        if layer(&from).is_some_and(|(_, n)| n == "store") && !OPENERS.contains(&from.as_str()) {
            for to in &refs {
                match (backend(&from), backend(to)) {
                    (Some(a), Some(b)) if a != b => out.push(format!("{from} imports {to}: another backend")),
                    (None, Some(b)) => out.push(format!("{from} (shared by the backends) imports {to} ({b})")),
                    _ => {}
                }
            }
        }
        graph.insert(from, refs);
    }
    // Cycles, by depth-first search.
    fn visit(
        n: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
        out: &mut Vec<String>,
    ) {
        if let Some(i) = stack.iter().position(|s| s == n) {
            out.push(format!("a cycle: {} -> {n}", stack[i..].join(" -> ")));
            return;
        }
        if !done.insert(n.to_string()) {
            return;
        }
        stack.push(n.to_string());
        for m in graph.get(n).into_iter().flatten() {
            visit(m, graph, stack, done, out);
        }
        stack.pop();
    }
    let mut done = BTreeSet::new();
    for n in graph.keys() {
        visit(n, &graph, &mut Vec::new(), &mut done, &mut out);
    }
    out
}

fn sources(dir: &Path, root: &Path, out: &mut Vec<(String, String)>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            sources(&p, root, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            out.push((rel, std::fs::read_to_string(&p).unwrap()));
        }
    }
}

#[test]
fn every_import_points_down_and_no_module_is_in_a_cycle() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &root, &mut files);
    files.sort();
    assert!(files.iter().any(|(r, _)| r == "core/plan/mod.rs"), "the layers are folders");
    let v = violations(&files);
    assert!(v.is_empty(), "the module graph does not point one way:\n{}", v.join("\n"));
}

#[test]
fn an_upward_import_and_a_cycle_are_caught() {
    let tree = |extra: &[(&str, &str)]| -> Vec<(String, String)> {
        let mut t: Vec<(String, String)> = [
            ("model/mod.rs", "pub mod digest;"),
            ("model/digest.rs", ""),
            ("core/mod.rs", "pub mod plan;\npub mod report;"),
            ("core/plan.rs", "use crate::model::digest::Digest;"),
            ("core/report.rs", "use crate::core::plan::Plan;"),
            ("store/mod.rs", "pub mod scan;"),
            ("store/scan.rs", "use crate::core::plan::Plan;\n// use crate::online::x; (a comment)"),
            ("online/mod.rs", ""),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        for (rel, src) in extra {
            t.retain(|(r, _)| r != rel);
            t.push((rel.to_string(), src.to_string()));
        }
        t
    };
    assert_eq!(violations(&tree(&[])), Vec::<String>::new());
    let up = violations(&tree(&[("core/plan.rs", "use crate::store::scan::Dir;")]));
    assert!(up.iter().any(|v| v.contains("core::plan (core) imports store::scan")), "{up:?}");
    let sideways = violations(&tree(&[("online/mod.rs", "use crate::store::scan;")]));
    assert!(!sideways.is_empty(), "online must not import store");
    let cycle = violations(&tree(&[("core/plan.rs", "use crate::core::report::Report;")]));
    assert!(cycle.iter().any(|v| v.starts_with("a cycle")), "{cycle:?}");
    // The backends, and what they share.
    let backends = |extra: &[(&str, &str)]| {
        let mut t = vec![
            ("store/mod.rs", "pub mod fs;\npub mod bucket;\npub mod apply;"),
            ("store/apply.rs", "use crate::store::Store;"),
            ("store/fs/mod.rs", "use crate::store::Store;"),
            ("store/bucket/mod.rs", "use crate::store::Store;"),
            ("store/location.rs", "use crate::store::fs::FsStore;\nuse crate::store::bucket::S3Store;"),
        ];
        t.extend_from_slice(extra);
        violations(&tree(&t))
    };
    assert_eq!(backends(&[]), Vec::<String>::new());
    let across = backends(&[("store/bucket/check.rs", "use crate::store::fs::MalformedLink;")]);
    assert!(across.iter().any(|v| v.contains("another backend")), "{across:?}");
    let shared = backends(&[("store/stage.rs", "use crate::store::fs::Dir;")]);
    assert!(shared.iter().any(|v| v.contains("shared by the backends")), "{shared:?}");
    let tie = backends(&[("store/mod.rs", "use crate::store::bucket::S3Store;")]);
    assert!(tie.iter().any(|v| v.starts_with("a cycle")), "a parent and its child: {tie:?}");
}
