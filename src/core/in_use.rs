//! `--keep-in-use`: the images something runs, which no retention rule may delete. Read from
//! what operators already have: the JSON of `kubectl get pods,deployments,... -o json` (every
//! container's `image`, init and ephemeral ones too, image volumes' `reference`, and the
//! `image` and `imageID` of pod statuses), a compose file's `services.*.image`, or a plain list,
//! one reference a line. Pure: it is handed each file's text and this registry's hosts; the
//! policy asks it which tags are in use, the plan which manifests are roots.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

use crate::model::UsageError;
use crate::model::digest::{Digest, DigestSet};
use crate::model::inventory::Repo;
use crate::model::name::printable;
use crate::model::reference::{Pinned, Reference};
use crate::model::warning::{Warning, WarningKind};

/// What a file is, told by its content.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Shape {
    /// Kubernetes objects (`kubectl get ... -o json`, or `-o yaml`): a reference without a host
    /// is Docker Hub's, as the runtime reads it.
    Kubernetes,
    /// A compose file: likewise Docker Hub's.
    Compose,
    /// One reference a line (`#` starts a comment): without a host, this registry's.
    List,
}

/// Docker Hub's names: a reference to it is never this registry's.
const DOCKER_HUB: [&str; 3] = ["docker.io", "index.docker.io", "registry-1.docker.io"];

/// A registry host as compared: lowercase, without a scheme, a trailing `/` or the port 443
/// (`https://reg.example.com:443/` is `reg.example.com`).
pub fn host_key(h: &str) -> String {
    let h = h.trim();
    let h = h.split_once("://").map_or(h, |(_, rest)| rest);
    let h = h.trim_end_matches('/').to_ascii_lowercase();
    h.strip_suffix(":443").map_or(h.clone(), str::to_string)
}

/// The references one file names, as written, before they are sorted by host.
#[derive(Debug)]
pub struct Read {
    pub shape: Shape,
    /// Each reference and where it was (a line, or a JSON path).
    pub refs: Vec<(Reference, String)>,
    /// Values that are no reference by distribution's grammar, with where they were: a
    /// runtime cannot pull them either (Kubernetes only; elsewhere they are errors).
    pub invalid: Vec<(String, String)>,
    /// `imageID`s that are an image's local ID (`docker://sha256:...`): they name no repository.
    pub local_ids: usize,
}

/// Reads one file's text (`shown` names it in errors).
pub fn read(text: &str, shown: &str) -> Result<Read> {
    // `kubectl get pods -o json > f` with the API down leaves f empty (the shell truncates it
    // before kubectl fails): that is no "nothing runs", and every pinned tag would go.
    if text.trim().is_empty() {
        bail!(
            "--keep-in-use {shown} is empty: did the command that writes it (kubectl, docker compose config) fail? \
             Nothing was done; a file that means nothing runs holds at least a comment line"
        );
    }
    // kubectl's JSON is one object (a list line never starts so; an IPv6 host starts with `[`).
    if text.trim_start().starts_with('{') {
        let doc: serde_json::Value =
            serde_json::from_str(text).map_err(|e| anyhow::anyhow!("--keep-in-use {shown}: not valid JSON: {e}"))?;
        return Ok(kubernetes(&doc));
    }
    // YAML: compose, or Kubernetes objects (`-o yaml`, or manifests with `---` between them);
    // anything else is a list. A plain list may well parse as YAML (`app:v1` is a mapping):
    // only these keys make it a document.
    let docs: Option<Vec<serde_json::Value>> =
        serde_norway::Deserializer::from_str(text).map(|d| serde_json::Value::deserialize(d).ok()).collect();
    if let Some(docs) = docs {
        if let [doc] = docs.as_slice()
            && let Some(services) = doc.get("services").and_then(|s| s.as_object())
        {
            return compose(services, shown);
        }
        if docs.iter().any(|d| d.get("apiVersion").is_some() || d.get("kind").is_some()) {
            return Ok(kubernetes(&serde_json::Value::Array(docs)));
        }
    }
    list(text, shown)
}

fn list(text: &str, shown: &str) -> Result<Read> {
    let mut refs = Vec::new();
    for (n, line) in (1..).zip(text.lines()) {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        match Reference::parse(line) {
            Some(r) => refs.push((r, format!("line {n}"))),
            None => bail!(
                "--keep-in-use {shown}: line {n}: {line:?} is not an image reference \
                 (host[:port]/path[:tag][@sha256:digest], one a line)"
            ),
        }
    }
    Ok(Read { shape: Shape::List, refs, invalid: Vec::new(), local_ids: 0 })
}

fn compose(services: &serde_json::Map<String, serde_json::Value>, shown: &str) -> Result<Read> {
    let mut refs = Vec::new();
    for (name, service) in services {
        let name = printable(name);
        let Some(image) = service.get("image").and_then(|i| i.as_str()) else { continue };
        match Reference::parse(image) {
            Some(r) => refs.push((r, format!("services.{name}.image"))),
            // `${REGISTRY}/app:${TAG}`: compose expands it; regsweep cannot know to what.
            None => bail!(
                "--keep-in-use {shown}: services.{name}.image {image:?} is not an image reference \
                 (variables unexpanded? give the output of `docker compose config` instead)"
            ),
        }
    }
    Ok(Read { shape: Shape::Compose, refs, invalid: Vec::new(), local_ids: 0 })
}

/// Every image a Kubernetes document names, wherever objects nest (a List's `items`, a
/// Deployment's `spec.template.spec`, a CronJob's `spec.jobTemplate.spec.template.spec`).
fn kubernetes(doc: &serde_json::Value) -> Read {
    let mut out = Read { shape: Shape::Kubernetes, refs: Vec::new(), invalid: Vec::new(), local_ids: 0 };
    walk(doc, "", &mut out);
    out
}

fn walk(v: &serde_json::Value, at: &str, out: &mut Read) {
    use serde_json::Value;
    match v {
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                walk(item, &format!("{at}[{i}]"), out);
            }
        }
        Value::Object(map) => {
            for (key, value) in map {
                let here = if at.is_empty() { key.clone() } else { format!("{at}.{key}") };
                let items = value.as_array().map(Vec::as_slice).unwrap_or_default();
                let fields: &[&str] = match key.as_str() {
                    "containers" | "initContainers" | "ephemeralContainers" => &["image"],
                    "containerStatuses" | "initContainerStatuses" | "ephemeralContainerStatuses" => {
                        &["image", "imageID"]
                    }
                    // An image volume (Kubernetes 1.31+): `volumes[].image.reference`.
                    "volumes" => {
                        for (i, vol) in items.iter().enumerate() {
                            if let Some(r) = vol.pointer("/image/reference").and_then(Value::as_str) {
                                take(r, format!("{here}[{i}].image.reference"), out);
                            }
                        }
                        continue;
                    }
                    // Annotations and labels hold no image a runtime pulls.
                    "metadata" => continue,
                    _ => {
                        walk(value, &here, out);
                        continue;
                    }
                };
                for (i, item) in items.iter().enumerate() {
                    for field in fields {
                        if let Some(s) = item.get(*field).and_then(Value::as_str) {
                            take(s, format!("{here}[{i}].{field}"), out);
                        }
                    }
                }
            }
        }
        _ => {}
    }
}

/// One `image` or `imageID` value: `docker-pullable://host/repo@sha256:...` as Docker's
/// runtime reports it, `host/repo@sha256:...` as containerd's and CRI-O's do; an image's local
/// ID (`docker://sha256:...`, `sha256:...`) names no repository.
fn take(value: &str, at: String, out: &mut Read) {
    // The place is made of the file's keys, which warnings print: escaped (`model::name`).
    let at = printable(&at).into_owned();
    let s = value.split_once("://").map_or(value, |(_, rest)| rest);
    if s.is_empty() {
        return;
    }
    if s.starts_with("sha256:") && !s.contains('/') {
        out.local_ids += 1;
        return;
    }
    match Reference::parse(s) {
        Some(r) => out.refs.push((r, at)),
        None => out.invalid.push((value.to_string(), at)),
    }
}

/// What a run read, for the report.
#[derive(Clone, Debug, Default, Serialize)]
pub struct InUseSummary {
    /// The files read, each with its shape.
    pub files: Vec<(String, Shape)>,
    /// This registry's hosts, as compared.
    pub hosts: Vec<String>,
    /// Distinct references to this registry.
    pub references: usize,
    /// Distinct references to other registries (Docker Hub's among them): ignored.
    pub other_hosts: usize,
    /// Of `references`, those that name nothing in the store (a warning each).
    pub not_found: usize,
    /// Values that are no image reference (Kubernetes): a warning each.
    pub invalid: usize,
}

/// One reference to this registry.
#[derive(Debug)]
struct Entry {
    reference: Reference,
    /// The first file and place it was read at.
    from: String,
}

/// What one repository's references ask to keep.
#[derive(Debug, Default)]
struct Wanted {
    tags: HashMap<String, Vec<usize>>,
    digests: HashMap<Digest, Vec<usize>>,
    /// References of a digest no store holds (`sha512:...`, uppercase hex).
    other: Vec<usize>,
}

/// The references to this registry, by repository.
#[derive(Debug, Default)]
pub struct InUse {
    entries: Vec<Entry>,
    repos: BTreeMap<String, Wanted>,
    pub summary: InUseSummary,
    invalid: Vec<Warning>,
}

impl InUse {
    /// From the files read (`(shown, read)`), with this registry's `hosts` (`--registry-host`,
    /// the config's `http.host`, online the URL's). A reference naming a host when no host of
    /// this registry is known is a usage error: it could not be matched, and the images would
    /// go unprotected.
    pub fn new(files: Vec<(String, Read)>, hosts: &[String]) -> Result<InUse> {
        let hosts: BTreeSet<String> = hosts.iter().map(|h| host_key(h)).collect();
        let mut me = InUse::default();
        let mut seen: BTreeSet<Reference> = BTreeSet::new();
        let mut others: BTreeSet<Reference> = BTreeSet::new();
        for (shown, read) in files {
            me.summary.files.push((shown.clone(), read.shape));
            for (value, at) in read.invalid {
                let message = format!(
                    "--keep-in-use {shown}: {at}: {value:?} is not an image reference (a runtime cannot pull it \
                     either): ignored"
                );
                me.invalid.push(Warning::new(WarningKind::InUseInvalid, message));
            }
            for (r, at) in read.refs {
                let ours =
                    match r.host.as_deref().map(host_key) {
                        None => read.shape == Shape::List,
                        Some(h) if DOCKER_HUB.contains(&h.as_str()) => false,
                        Some(h) if hosts.is_empty() => return Err(UsageError(format!(
                            "--keep-in-use {shown}: {at} names the registry {h} ({r}), and this registry's hosts are \
                         not known: give --registry-host HOST (as clients name this registry in their image \
                         references), or --config with http.host"
                        ))
                        .into()),
                        Some(h) => hosts.contains(&h),
                    };
                if !ours {
                    others.insert(r);
                    continue;
                }
                let key = Reference { host: None, ..r };
                if !seen.insert(key.clone()) {
                    continue;
                }
                let i = me.entries.len();
                let wanted = me.repos.entry(key.path.clone()).or_default();
                if let Some(t) = &key.tag {
                    wanted.tags.entry(t.clone()).or_default().push(i);
                }
                match &key.digest {
                    Some(Pinned::Sha256(d)) => wanted.digests.entry(*d).or_default().push(i),
                    Some(Pinned::Other(_)) => wanted.other.push(i),
                    None => {}
                }
                // A reference with neither is the tag `latest`, as every client reads it.
                if key.tag.is_none() && key.digest.is_none() {
                    wanted.tags.entry("latest".into()).or_default().push(i);
                }
                me.entries.push(Entry { reference: key, from: format!("{shown}: {at}") });
            }
        }
        me.summary.hosts = hosts.into_iter().collect();
        me.summary.references = me.entries.len();
        me.summary.other_hosts = others.len();
        me.summary.invalid = me.invalid.len();
        Ok(me)
    }

    /// True when a tag of a repository is in use.
    pub fn tag(&self, repo: &str, tag: &str) -> bool {
        self.repos.get(repo).is_some_and(|w| w.tags.contains_key(tag))
    }

    /// The manifests of a repository in use by digest.
    pub fn digests(&self, repo: &str) -> impl Iterator<Item = Digest> + '_ {
        self.repos.get(repo).into_iter().flat_map(|w| w.digests.keys().copied())
    }

    /// The references a repository's tags and revisions name (indexes, for [`InUse::finish`]).
    pub fn found(&self, repo: &Repo) -> Vec<usize> {
        let Some(w) = self.repos.get(&repo.name) else { return Vec::new() };
        let revisions: DigestSet = repo.revisions.iter().map(|r| r.digest).collect();
        let tags = repo.tags.iter().filter(|t| t.current.is_some()).filter_map(|t| w.tags.get(&t.name));
        let digests = w.digests.iter().filter(|(d, _)| revisions.contains(d)).map(|(_, i)| i);
        tags.chain(digests).flatten().copied().collect()
    }

    /// Once every repository was looked at: a warning for each reference that named nothing
    /// (a typo, an image of another registry of the same name, one deleted before), and the
    /// invalid values. `found` holds what [`InUse::found`] gave for each repository.
    pub fn finish(&self, found: impl IntoIterator<Item = usize>) -> (Vec<Warning>, InUseSummary) {
        let mut hit = vec![false; self.entries.len()];
        let n = hit.len();
        found.into_iter().filter(|i| *i < n).for_each(|i| hit[i] = true);
        let mut warnings = self.invalid.clone();
        for (e, _) in self.entries.iter().zip(&hit).filter(|(_, h)| !**h) {
            let message = format!(
                "--keep-in-use: {} names nothing in this store (read at {}): a typo, or an image of another \
                 registry?",
                e.reference, e.from
            );
            warnings.push(Warning::new(WarningKind::InUseNotFound, message));
        }
        let summary = InUseSummary { not_found: hit.iter().filter(|h| !**h).count(), ..self.summary.clone() };
        (warnings, summary)
    }

    /// The references to repositories `pred` holds true for (online: those it does not read).
    pub fn of_repos(&self, pred: impl Fn(&str) -> bool) -> Vec<usize> {
        let wanted = self.repos.iter().filter(|(r, _)| pred(r));
        wanted.flat_map(|(_, w)| w.tags.values().chain(w.digests.values()).flatten().chain(&w.other)).copied().collect()
    }

    /// The references to this registry that name a digest, by repository, that no tag or
    /// revision of the inventory named: online, which sees only what tags reach, asks the
    /// registry for these.
    pub fn unmatched_digests(&self, found: &[usize]) -> Vec<(usize, String, Digest)> {
        let hit: BTreeSet<usize> = found.iter().copied().collect();
        let mut out = Vec::new();
        for (repo, w) in &self.repos {
            for (d, idx) in &w.digests {
                out.extend(idx.iter().filter(|i| !hit.contains(i)).map(|i| (*i, repo.clone(), *d)));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::model::inventory::{Revision, Tag};

    fn hex(n: u8) -> String {
        format!("{n:02x}").repeat(32)
    }

    fn d(n: u8) -> Digest {
        Digest([n; 32])
    }

    const PODS: &str = r#"{"apiVersion": "v1", "kind": "List", "items": [
      {"kind": "Pod", "metadata": {"name": "web", "annotations": {"image": "reg.example.com:5000/ignored:x"}},
       "spec": {"initContainers": [{"name": "init", "image": "reg.example.com:5000/team/init:1.0"}],
                "containers": [{"name": "app", "image": "reg.example.com:5000/team/app:v2"},
                               {"name": "side", "image": "nginx:1.27"}],
                "ephemeralContainers": [{"name": "debug", "image": "REG.example.com:5000/tools/debug"}],
                "volumes": [{"name": "data", "image": {"reference": "reg.example.com:5000/team/data:v1"}},
                            {"name": "tmp", "emptyDir": {}}]},
       "status": {"containerStatuses": [
          {"name": "app", "image": "reg.example.com:5000/team/app:v2",
           "imageID": "docker-pullable://reg.example.com:5000/team/app@sha256:HEX1"},
          {"name": "side", "image": "docker.io/library/nginx:1.27",
           "imageID": "docker.io/library/nginx@sha256:HEX2"}],
         "initContainerStatuses": [{"name": "init", "image": "sha256:HEX3", "imageID": "docker://sha256:HEX3"}],
         "ephemeralContainerStatuses": [{"name": "debug", "imageID": ""}]}},
      {"kind": "CronJob", "spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [
          {"name": "job", "image": "reg.example.com:5000/team/job@sha256:HEX4"},
          {"name": "bad", "image": "reg.example.com:5000/Team/Bad"}]}}}}}}
    ]}"#;

    fn pods() -> String {
        PODS.replace("HEX1", &hex(1)).replace("HEX2", &hex(2)).replace("HEX3", &hex(3)).replace("HEX4", &hex(4))
    }

    fn shown(read: &Read) -> Vec<String> {
        read.refs.iter().map(|(r, at)| format!("{r} at {at}")).collect()
    }

    #[test]
    fn a_kubernetes_list_gives_every_container_status_and_volume_image() {
        let read = read(&pods(), "pods.json").unwrap();
        assert_eq!(read.shape, Shape::Kubernetes);
        let refs = shown(&read);
        let want = [
            "reg.example.com:5000/team/init:1.0 at items[0].spec.initContainers[0].image",
            "reg.example.com:5000/team/app:v2 at items[0].spec.containers[0].image",
            "nginx:1.27 at items[0].spec.containers[1].image",
            "REG.example.com:5000/tools/debug at items[0].spec.ephemeralContainers[0].image",
            "reg.example.com:5000/team/data:v1 at items[0].spec.volumes[0].image.reference",
            "reg.example.com:5000/team/app:v2 at items[0].status.containerStatuses[0].image",
        ];
        for w in want {
            assert!(refs.iter().any(|r| r == w), "{w} in {refs:#?}");
        }
        let app_digest = format!("reg.example.com:5000/team/app@sha256:{} at ", hex(1));
        assert!(refs.iter().any(|r| r.starts_with(&app_digest) && r.ends_with("containerStatuses[0].imageID")));
        assert!(refs.iter().any(|r| r.contains(&format!("team/job@sha256:{}", hex(4)))), "{refs:#?}");
        assert!(!refs.iter().any(|r| r.contains("ignored")), "annotations are not images");
        assert_eq!(read.local_ids, 2, "docker://sha256:... and a bare image ID name no repository");
        assert_eq!(read.invalid.len(), 1, "{:?}", read.invalid);
        assert_eq!(read.refs.len(), 10, "{refs:#?}");
    }

    /// Review finding 8: the places warnings print are made of the file's keys (JSON keys,
    /// compose service names): an escape sequence there reaches the terminal escaped.
    #[test]
    fn places_made_of_keys_are_printable() {
        let k8s = r#"{"kind": "List", "items": [{"kind": "Pod", "x\u001b[2J": {"containers": [
            {"image": "reg.example.com/team/app:v1"}, {"image": "Not A Reference!"}]}}]}"#;
        let compose = "services:\n  \"web\\e[2J\":\n    image: reg.example.com/team/app:v1\n";
        for (text, shown) in [(k8s, "pods.json"), (compose, "compose.yml")] {
            let read = read(text, shown).unwrap();
            let places = read.refs.iter().map(|(_, at)| at).chain(read.invalid.iter().map(|(_, at)| at));
            for at in places {
                assert!(!at.contains('\x1b') && at.contains("\\u{1b}[2J"), "{shown}: {at:?}");
            }
            assert!(!read.refs.is_empty(), "{shown}");
        }
    }

    #[test]
    fn hosts_decide_what_is_ours_and_a_host_unknown_is_a_usage_error() {
        let files = || vec![("pods.json".to_string(), read(&pods(), "pods.json").unwrap())];
        let e = InUse::new(files(), &[]).unwrap_err();
        assert!(format!("{e:#}").contains("give --registry-host HOST"), "{e:#}");
        let u = InUse::new(files(), &["https://reg.example.com:5000/".into()]).unwrap();
        // init, app:v2, app@1, debug (latest), data, job@4; app:v2 twice counts once.
        assert_eq!(u.summary.references, 6, "{:#?}", u.entries);
        assert_eq!(u.summary.other_hosts, 3, "nginx:1.27, docker.io/library/nginx:1.27, nginx@2");
        assert_eq!(u.summary.invalid, 1);
        assert!(u.tag("team/app", "v2") && u.tag("team/init", "1.0") && u.tag("tools/debug", "latest"));
        assert!(!u.tag("team/app", "v1") && !u.tag("library/nginx", "1.27"));
        assert_eq!(u.digests("team/app").collect::<Vec<_>>(), [d(1)]);
        assert_eq!(u.digests("team/job").collect::<Vec<_>>(), [d(4)]);
        // Another host of the same path is not ours.
        let other = InUse::new(files(), &["other.example.com".into()]).unwrap();
        assert_eq!(other.summary.references, 0);
        assert!(!other.tag("team/app", "v2"));
    }

    #[test]
    fn a_compose_file_and_a_list() {
        let yaml = "services:\n  web:\n    image: localhost:5000/team/app:v1\n  db:\n    image: postgres:17\n  \
                    built:\n    build: .\n";
        let r = read(yaml, "compose.yml").unwrap();
        assert_eq!(r.shape, Shape::Compose);
        assert_eq!(shown(&r), ["postgres:17 at services.db.image", "localhost:5000/team/app:v1 at services.web.image"]);
        let u = InUse::new(vec![("c".into(), r)], &["localhost:5000".into()]).unwrap();
        assert!(u.tag("team/app", "v1") && !u.tag("library/postgres", "17"));
        assert_eq!(u.summary.other_hosts, 1);
        let e = read("services:\n  web:\n    image: ${REGISTRY}/app:${TAG}\n", "c.yml").unwrap_err();
        assert!(format!("{e:#}").contains("docker compose config"), "{e:#}");

        let text = format!("# deployed\nteam/app:v3\n\nlocalhost:5000/team/app@sha256:{}  # pinned\napp\n", hex(7));
        let r = read(&text, "list").unwrap();
        assert_eq!(r.shape, Shape::List);
        // Without a host, a list means this registry, even when its hosts are not known.
        let u = InUse::new(vec![("list".into(), read("team/app:v3\napp\n", "list").unwrap())], &[]).unwrap();
        assert!(u.tag("team/app", "v3") && u.tag("app", "latest"));
        let u = InUse::new(vec![("list".into(), r)], &["localhost:5000".into()]).unwrap();
        assert_eq!(u.digests("team/app").collect::<Vec<_>>(), [d(7)]);
        let e = read("team/app:v1\nteam/App:v2\n", "list").unwrap_err();
        assert!(format!("{e:#}").contains("list: line 2"), "{e:#}");
        // `app:v1` parses as YAML (a mapping), and is a list all the same; so is an IPv6 host.
        assert_eq!(read("app:v1\n", "l").unwrap().shape, Shape::List);
        assert_eq!(read("[::1]:5000/app:v1\n", "l").unwrap().refs.len(), 1);
        // Manifests, `---` between them.
        let yaml = "apiVersion: v1\nkind: Pod\nspec:\n  containers:\n    - image: r.io/a:1\n---\n\
                    apiVersion: apps/v1\nkind: Deployment\nspec:\n  template:\n    spec:\n      containers:\n\
                    \x20       - image: r.io/b:2\n";
        let r = read(yaml, "m.yaml").unwrap();
        assert_eq!(r.shape, Shape::Kubernetes);
        let want =
            ["r.io/a:1 at [0].spec.containers[0].image", "r.io/b:2 at [1].spec.template.spec.containers[0].image"];
        assert_eq!(shown(&r), want);
    }

    #[test]
    fn what_names_nothing_is_warned_once_each() {
        let text = format!(
            "team/app:v1\nteam/app:v1\nteam/app:gone\nteam/app@sha256:{}\nteam/app@sha256:{}\nnope/x:1\n\
             team/app@sha512:{}\n",
            hex(1),
            hex(9),
            "ab".repeat(64)
        );
        let u = InUse::new(vec![("list".into(), read(&text, "list").unwrap())], &[]).unwrap();
        let repo = Repo {
            name: "team/app".into(),
            tags: vec![Tag { name: "v1".into(), current: Some(d(1)), pushed: SystemTime::UNIX_EPOCH }],
            revisions: vec![Revision { digest: d(1), target: d(1), modified: SystemTime::UNIX_EPOCH }],
            ..Repo::default()
        };
        let found = u.found(&repo);
        assert_eq!(u.unmatched_digests(&found).len(), 1);
        let (w, summary) = u.finish(found);
        let names: Vec<&str> = w.iter().map(|w| w.message.split(' ').nth(1).unwrap()).collect();
        assert_eq!(names.len(), 4, "{w:#?}");
        assert!(w.iter().all(|w| w.kind == WarningKind::InUseNotFound));
        assert!(names.contains(&"team/app:gone") && names.contains(&"nope/x:1"), "{names:?}");
        assert_eq!(summary.not_found, 4);
        assert_eq!(summary.references, 6);
        assert_eq!(u.of_repos(|r| r == "nope/x").len(), 1);
    }

    #[test]
    fn host_keys() {
        assert_eq!(host_key("https://Reg.Example.com:443/"), "reg.example.com");
        assert_eq!(host_key("localhost:5000"), "localhost:5000");
    }
}
