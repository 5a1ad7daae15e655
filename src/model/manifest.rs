//! Manifests as the collector needs them: which blobs one needs, which manifests it lists
//! (children), which manifest it is about (subject). Dispatch is on `schemaVersion` and
//! `mediaType`, as the registry does; unknown or malformed input is an error, never a guess.

use std::borrow::Cow;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::model::digest::Digest;

pub const DOCKER_V2: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_V1: &str = "application/vnd.docker.distribution.manifest.v1+json";
pub const DOCKER_V1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// The short-lived OCI 1.1 release-candidate artifact manifest: `blobs` instead of `layers`.
pub const OCI_ARTIFACT: &str = "application/vnd.oci.artifact.manifest.v1+json";

/// Which of the manifest formats a manifest is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Schema1,
    DockerV2,
    DockerList,
    OciManifest,
    OciIndex,
    OciArtifact,
}

/// What regsweep knows of one manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    pub kind: Kind,
    /// The config blob of an image manifest.
    pub config: Option<Digest>,
    /// Every blob it needs: config and layers (schema1: `fsLayers`; artifact: `blobs`).
    pub blobs: Box<[Digest]>,
    /// The manifests an index or manifest list names.
    pub children: Box<[Digest]>,
    /// The manifest this one refers to (OCI `subject`): it lives and dies with it.
    pub subject: Option<Digest>,
    /// Schema1 only: the `created` time of its top history entry, as written.
    pub created: Option<Box<str>>,
}

impl Manifest {
    /// True for an index or manifest list.
    pub fn is_index(&self) -> bool {
        matches!(self.kind, Kind::DockerList | Kind::OciIndex)
    }

    /// Registry 3.x serves it. 3.x unmarshals only `schemaVersion: 2` (its `manifeststore.go`
    /// has no schema 1 handler): a Docker schema 1 manifest, signed or not, whatever its
    /// `mediaType`, answers HTTP 500 (`unrecognized manifest schema version 1`) to every GET and
    /// HEAD, by tag or digest, and stops 3.x's `garbage-collect`; 2.8 serves it.
    pub fn served_by_v3(&self) -> bool {
        self.kind != Kind::Schema1
    }
}

/// The first manifest that registry 3.x will not serve among `d` and what it reaches over an
/// index's children (a pull of that platform fails there), as `manifest` finds them; `None`
/// when 3.x serves all of it (or what is not found, which is another verdict's).
pub fn refused_by_v3<'a>(d: &Digest, manifest: impl Fn(&Digest) -> Option<&'a Manifest>) -> Option<Digest> {
    let mut todo = vec![*d];
    let mut seen = crate::model::digest::DigestSet::default();
    while let Some(x) = todo.pop() {
        if !seen.insert(x) {
            continue;
        }
        let Some(m) = manifest(&x) else { continue };
        if !m.served_by_v3() {
            return Some(x);
        }
        todo.extend(m.children.iter().copied());
    }
    None
}

/// A JSON string, borrowed from the bytes where it has no escape: no allocation per digest for
/// the tens of thousands of manifests of a store.
#[derive(Deserialize)]
struct Str<'a>(#[serde(borrow)] Cow<'a, str>);

impl std::ops::Deref for Str<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

/// Reads the struct `$name<'a>` from a JSON object as Go's `encoding/json` reads one into the
/// registry's types: unknown keys are skipped and, of duplicate keys, the last wins (serde's
/// derive refuses duplicates, so the registry would serve what regsweep cannot read). The
/// `optional` fields are `Option`s (absent or null: `None`); a `required` one missing is an
/// error. `$expecting` names it in errors, as the derive would.
macro_rules! last_key_wins {
    ($name:ident, $expecting:literal,
     optional { $($opt:ident: $oty:ty = $okey:literal),* $(,)? }
     required { $($req:ident: $rty:ty = $rkey:literal),* $(,)? }) => {
        impl<'de: 'a, 'a> Deserialize<'de> for $name<'a> {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct Visitor<'a>(std::marker::PhantomData<$name<'a>>);
                impl<'de: 'a, 'a> serde::de::Visitor<'de> for Visitor<'a> {
                    type Value = $name<'a>;
                    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<$name<'a>, A::Error> {
                        $(let mut $opt: Option<$oty> = None;)*
                        $(let mut $req: Option<$rty> = None;)*
                        while let Some(key) = map.next_key::<Str<'de>>()? {
                            match &*key {
                                $($okey => $opt = map.next_value()?,)*
                                $($rkey => $req = Some(map.next_value()?),)*
                                _ => {
                                    map.next_value::<serde::de::IgnoredAny>()?;
                                }
                            }
                        }
                        $(let $req = $req.ok_or_else(|| serde::de::Error::missing_field($rkey))?;)*
                        Ok($name { $($opt,)* $($req,)* })
                    }
                }
                d.deserialize_map(Visitor(std::marker::PhantomData))
            }
        }
    };
}

struct Raw<'a> {
    schema_version: Option<i64>,
    media_type: Option<Str<'a>>,
    config: Option<Descriptor<'a>>,
    layers: Option<Vec<Descriptor<'a>>>,
    manifests: Option<Vec<Descriptor<'a>>>,
    blobs: Option<Vec<Descriptor<'a>>>,
    subject: Option<Descriptor<'a>>,
    fs_layers: Option<Vec<FsLayer<'a>>>,
    history: Option<Vec<V1History<'a>>>,
}

last_key_wins!(Raw, "struct Raw",
    optional {
        schema_version: i64 = "schemaVersion",
        media_type: Str<'a> = "mediaType",
        config: Descriptor<'a> = "config",
        layers: Vec<Descriptor<'a>> = "layers",
        manifests: Vec<Descriptor<'a>> = "manifests",
        blobs: Vec<Descriptor<'a>> = "blobs",
        subject: Descriptor<'a> = "subject",
        fs_layers: Vec<FsLayer<'a>> = "fsLayers",
        history: Vec<V1History<'a>> = "history",
    }
    required {}
);

struct Descriptor<'a> {
    digest: Str<'a>,
    size: Option<u64>,
}

last_key_wins!(Descriptor, "struct Descriptor", optional { size: u64 = "size" } required { digest: Str<'a> = "digest" });

struct FsLayer<'a> {
    blob_sum: Str<'a>,
}

last_key_wins!(FsLayer, "struct FsLayer", optional {} required { blob_sum: Str<'a> = "blobSum" });

struct V1History<'a> {
    v1_compatibility: Str<'a>,
}

last_key_wins!(V1History, "struct V1History", optional {} required { v1_compatibility: Str<'a> = "v1Compatibility" });

struct Created<'a> {
    created: Option<Str<'a>>,
}

last_key_wins!(Created, "struct Created", optional { created: Str<'a> = "created" } required {});

fn digests<'a>(what: &str, items: impl IntoIterator<Item = &'a str>) -> Result<Vec<Digest>> {
    let mut out = Vec::new();
    for s in items {
        if let Some(d) = Digest::parse_reference(s).with_context(|| format!("in {what}"))? {
            out.push(d);
        }
    }
    Ok(out)
}

fn descriptors(what: &str, list: &Option<Vec<Descriptor>>) -> Result<Vec<Digest>> {
    digests(what, list.iter().flatten().map(|d| d.digest.as_ref()))
}

/// Parses a manifest's bytes.
pub fn parse(bytes: &[u8]) -> Result<Manifest> {
    // Of duplicate keys the last wins, as in the registry (Go's encoding/json) and the clients
    // that pull from it ([`last_key_wins`]).
    parse_raw(serde_json::from_slice::<Raw>(bytes).context("not a valid manifest")?)
}

fn parse_raw(raw: Raw) -> Result<Manifest> {
    let media_type = raw.media_type.as_deref().unwrap_or("");
    let kind = match (raw.schema_version, media_type) {
        // 2.8 reads any schemaVersion 1 as schema 1, whatever its mediaType says (and serves it).
        (Some(1), _) => Kind::Schema1,
        (_, OCI_ARTIFACT) => Kind::OciArtifact,
        (Some(2), DOCKER_V2) => Kind::DockerV2,
        (Some(2), DOCKER_LIST) => Kind::DockerList,
        (Some(2), OCI_MANIFEST) => Kind::OciManifest,
        (Some(2), OCI_INDEX) => Kind::OciIndex,
        // OCI content may omit mediaType: an index when it lists manifests (as the registry decides).
        (Some(2), "") if raw.manifests.is_some() => Kind::OciIndex,
        (Some(2), "") => Kind::OciManifest,
        (Some(v), "") => bail!("unsupported schemaVersion {v}"),
        (None, "") => bail!("no schemaVersion and no mediaType: not a manifest"),
        (_, other) => bail!("unknown manifest media type {other:?}"),
    };
    let subject = match &raw.subject {
        Some(s) => Digest::parse_reference(&s.digest).context("in subject")?,
        None => None,
    };
    let (mut config, mut blobs, mut children, mut created) = (None, Vec::new(), Vec::new(), None);
    match kind {
        Kind::Schema1 => {
            let layers = raw.fs_layers.as_ref().context("schema1 manifest without fsLayers")?;
            blobs = digests("fsLayers", layers.iter().map(|l| l.blob_sum.as_ref()))?;
            blobs.sort_unstable();
            blobs.dedup();
            // The top history entry holds the image's own v1 config, with its `created`.
            if let Some(h) = raw.history.as_ref().and_then(|h| h.first()) {
                created = parse_created(h.v1_compatibility.as_bytes());
            }
        }
        Kind::DockerV2 | Kind::OciManifest => {
            let c = raw.config.as_ref().context("image manifest without config")?;
            config = Digest::parse_reference(&c.digest).context("in config")?;
            blobs.extend(config);
            blobs.extend(descriptors("layers", &raw.layers)?);
        }
        Kind::DockerList | Kind::OciIndex => {
            if raw.manifests.is_none() {
                bail!("index without manifests");
            }
            children = descriptors("manifests", &raw.manifests)?;
        }
        Kind::OciArtifact => blobs = descriptors("blobs", &raw.blobs)?,
    }
    Ok(Manifest {
        kind,
        config,
        blobs: blobs.into_boxed_slice(),
        children: children.into_boxed_slice(),
        subject,
        created: created.map(String::into_boxed_str),
    })
}

/// The layers a manifest lists with `urls`: foreign layers that a store need not hold.
pub fn foreign_layers(bytes: &[u8]) -> Vec<Digest> {
    struct Layer<'a> {
        digest: Str<'a>,
        urls: Option<serde::de::IgnoredAny>,
    }
    last_key_wins!(Layer, "struct Layer", optional { urls: serde::de::IgnoredAny = "urls" } required { digest: Str<'a> = "digest" });
    struct Layers<'a> {
        layers: Option<Vec<Layer<'a>>>,
    }
    last_key_wins!(Layers, "struct Layers", optional { layers: Vec<Layer<'a>> = "layers" } required {});
    let Ok(l) = serde_json::from_slice::<Layers>(bytes) else { return Vec::new() };
    l.layers.into_iter().flatten().filter(|l| l.urls.is_some()).filter_map(|l| Digest::parse(&l.digest)).collect()
}

/// The sizes a manifest's descriptors give (config, layers, blobs, children): what `du` through
/// the API knows of a blob's size without asking for it. Schema1 layers have none.
pub fn descriptor_sizes(bytes: &[u8]) -> Vec<(Digest, u64)> {
    let Ok(m) = serde_json::from_slice::<Raw>(bytes) else { return Vec::new() };
    let lists = [m.layers, m.manifests, m.blobs].into_iter().flatten().flatten();
    m.config.into_iter().chain(lists).filter_map(|s| Some((Digest::parse(&s.digest)?, s.size?))).collect()
}

/// The payload of a signed schema1 manifest as the registry serves it (JWS, signed on the fly):
/// the bytes its digest is of, and which the store holds, without the `signatures`. `None`
/// when it is not one.
pub fn schema1_payload(bytes: &[u8]) -> Option<Vec<u8>> {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    #[derive(Deserialize)]
    struct Signed {
        signatures: Vec<Signature>,
    }
    #[derive(Deserialize)]
    struct Signature {
        protected: String,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Protected {
        format_length: usize,
        format_tail: String,
    }
    let decode = |s: &str| URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).ok();
    let signed: Signed = serde_json::from_slice(bytes).ok()?;
    let protected: Protected = serde_json::from_slice(&decode(&signed.signatures.first()?.protected)?).ok()?;
    let mut payload = bytes.get(..protected.format_length)?.to_vec();
    payload.extend(decode(&protected.format_tail)?);
    Some(payload)
}

/// Reads `created` from an image config blob (or a schema1 `v1Compatibility` entry).
pub fn parse_created(bytes: &[u8]) -> Option<String> {
    Some(serde_json::from_slice::<Created>(bytes).ok()?.created?.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    #[test]
    fn duplicate_keys_take_the_last_as_go_does() {
        let m = parse(
            format!(
                r#"{{"schemaVersion":2,"layers":[],"mediaType":"{DOCKER_V2}","config":{{"digest":"{}","digest":"{}"}},"layers":[{{"digest":"{}"}}]}}"#,
                d('a'),
                d('b'),
                d('c')
            )
            .as_bytes(),
        )
        .unwrap();
        assert_eq!(m.kind, Kind::DockerV2);
        assert_eq!(m.config, Digest::parse(&d('b')));
        assert_eq!(&*m.blobs, [Digest::parse(&d('b')).unwrap(), Digest::parse(&d('c')).unwrap()]);
    }

    #[test]
    fn duplicate_keys_take_the_last_at_every_level() {
        // The last mediaType and manifests: an index of one child, whatever came first.
        let index = format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_V2}","manifests":[{{"digest":"{}"}}],"mediaType":"{OCI_INDEX}","manifests":[{{"digest":"{}","size":1,"digest":"{}"}}]}}"#,
            d('a'),
            d('b'),
            d('c')
        );
        let m = parse(index.as_bytes()).unwrap();
        assert_eq!((m.kind, &*m.children), (Kind::OciIndex, &[Digest::parse(&d('c')).unwrap()][..]));
        // An escaped key is the same key.
        let m = parse(
            format!(r#"{{"schemaVersion":1,"schema\u0056ersion":2,"mediaType":"{OCI_INDEX}","manifests":[]}}"#)
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(m.kind, Kind::OciIndex);
        // Schema1: the last blobSum of a layer, the last created of the top history entry.
        let v1 = format!(
            r#"{{"schemaVersion":1,"fsLayers":[{{"blobSum":"{}","blobSum":"{}"}}],"history":[{{"v1Compatibility":"{{\"created\":\"2020\",\"created\":\"2021\"}}"}}]}}"#,
            d('a'),
            d('b')
        );
        let m = parse(v1.as_bytes()).unwrap();
        assert_eq!((&*m.blobs, m.created.as_deref()), (&[Digest::parse(&d('b')).unwrap()][..], Some("2021")));
        // A foreign layer's descriptor read likewise; a required key missing stays an error.
        let foreign = format!(r#"{{"layers":[{{"digest":"{}","urls":["x"],"digest":"{}"}}]}}"#, d('a'), d('b'));
        assert_eq!(foreign_layers(foreign.as_bytes()), [Digest::parse(&d('b')).unwrap()]);
        let e =
            parse(format!(r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{{"size":1}}]}}"#).as_bytes());
        assert!(format!("{:#}", e.unwrap_err()).contains("missing field `digest`"));
    }

    #[test]
    fn parses_each_format() {
        let cases: Vec<(String, Kind, usize, usize)> = vec![
            (
                format!(
                    r#"{{"schemaVersion":2,"mediaType":"{DOCKER_V2}","config":{{"digest":"{}"}},"layers":[{{"digest":"{}"}}]}}"#,
                    d('a'),
                    d('b')
                ),
                Kind::DockerV2,
                2,
                0,
            ),
            (
                format!(r#"{{"schemaVersion":2,"config":{{"digest":"{}"}},"layers":[]}}"#, d('a')),
                Kind::OciManifest,
                1,
                0,
            ),
            (
                format!(r#"{{"schemaVersion":2,"manifests":[{{"digest":"{}"}},{{"digest":"{}"}}]}}"#, d('a'), d('b')),
                Kind::OciIndex,
                0,
                2,
            ),
            (
                format!(r#"{{"schemaVersion":2,"mediaType":"{DOCKER_LIST}","manifests":[{{"digest":"{}"}}]}}"#, d('c')),
                Kind::DockerList,
                0,
                1,
            ),
            (
                format!(
                    r#"{{"schemaVersion":1,"name":"x","tag":"t","fsLayers":[{{"blobSum":"{}"}},{{"blobSum":"{}"}}],
                  "history":[{{"v1Compatibility":"{{\"created\":\"2026-01-02T03:04:05Z\"}}"}}],"signatures":[{{"header":{{}}}}]}}"#,
                    d('a'),
                    d('a')
                ),
                Kind::Schema1,
                1,
                0,
            ),
            (
                format!(
                    r#"{{"mediaType":"{OCI_ARTIFACT}","artifactType":"x","blobs":[{{"digest":"{}"}}],"subject":{{"digest":"{}"}}}}"#,
                    d('a'),
                    d('f')
                ),
                Kind::OciArtifact,
                1,
                0,
            ),
        ];
        for (json, kind, blobs, children) in cases {
            let m = parse(json.as_bytes()).unwrap_or_else(|e| panic!("{json}: {e:#}"));
            assert_eq!((m.kind, m.blobs.len(), m.children.len()), (kind, blobs, children), "{json}");
        }
    }

    #[test]
    fn registry_3_refuses_schema1_and_indexes_that_reach_one() {
        let [a, b, c, e] = ['a', 'b', 'c', 'e'].map(|x| Digest::parse(&d(x)).unwrap());
        let s1 = format!(r#"{{"schemaVersion":1,"fsLayers":[{{"blobSum":"{}"}}]}}"#, d('f'));
        let s1_typed = format!(r#"{{"schemaVersion":1,"mediaType":"{DOCKER_V1_SIGNED}","fsLayers":[]}}"#);
        let image = format!(r#"{{"schemaVersion":2,"mediaType":"{DOCKER_V2}","config":{{"digest":"{}"}}}}"#, d('f'));
        let list =
            |c: &str| format!(r#"{{"schemaVersion":2,"mediaType":"{DOCKER_LIST}","manifests":[{{"digest":"{c}"}}]}}"#);
        let mut all = crate::model::digest::DigestMap::default();
        // a: an index of an index (b) of a schema 1 image (c); e: an image 3.x serves.
        for (k, json) in [(a, list(&d('b'))), (b, list(&d('c'))), (c, s1), (e, image)] {
            all.insert(k, parse(json.as_bytes()).unwrap());
        }
        let find = |x: &Digest| all.get(x);
        assert_eq!(refused_by_v3(&c, find), Some(c));
        assert_eq!(refused_by_v3(&a, find), Some(c));
        assert_eq!(refused_by_v3(&e, find), None);
        assert!(!parse(s1_typed.as_bytes()).unwrap().served_by_v3());
        // Whatever its mediaType says: 2.8 serves it as schema 1 (measured), 3.x answers 500.
        let s1_oci = format!(r#"{{"schemaVersion":1,"mediaType":"{OCI_MANIFEST}","fsLayers":[]}}"#);
        assert_eq!(parse(s1_oci.as_bytes()).unwrap().kind, Kind::Schema1);
        // What is not there is no verdict of this rule.
        assert_eq!(refused_by_v3(&Digest([9; 32]), find), None);
    }

    #[test]
    fn subject_and_schema1_created_are_read() {
        let m = parse(format!(r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","artifactType":"application/spdx+json","config":{{"digest":"{}"}},"layers":[],"subject":{{"digest":"{}"}}}}"#, d('a'), d('e')).as_bytes()).unwrap();
        assert_eq!(m.subject.unwrap().to_string(), d('e'));
        let s1 = r#"{"schemaVersion":1,"fsLayers":[],"history":[{"v1Compatibility":"{\"created\":\"2026-01-02T03:04:05Z\"}"}]}"#.to_string();
        assert_eq!(parse(s1.as_bytes()).unwrap().created.as_deref(), Some("2026-01-02T03:04:05Z"));
    }

    #[test]
    fn bad_manifests_are_errors_not_panics() {
        for bad in [
            "".to_string(),
            "{".to_string(),
            "[]".to_string(),
            r#"{"schemaVersion":2,"manifests":{}}"#.to_string(),
            r#"{"schemaVersion":2,"mediaType":"application/x-unknown"}"#.to_string(),
            r#"{"schemaVersion":3}"#.to_string(),
            r#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json"}"#.to_string(),
            r#"{"schemaVersion":2,"config":{"digest":"sha256:ABC"},"layers":[]}"#.to_string(),
            format!(r#"{{"schemaVersion":2,"config":{{"digest":"{}"}},"layers":[{{"digest":"../../etc"}}]}}"#, d('a')),
            r#"{"schemaVersion":1}"#.to_string(),
        ] {
            assert!(parse(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    /// A bounded mutation fuzz run in the test suite (the cargo-fuzz targets in fuzz/ run the
    /// same parsers unbounded): no input may panic any parser.
    #[test]
    fn mutated_manifests_never_panic() {
        let seeds: Vec<String> = vec![
            format!(
                r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":1,"platform":{{"architecture":"amd64","os":"linux"}}}}]}}"#,
                d('a')
            ),
            format!(
                r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","artifactType":"x","config":{{"digest":"{}"}},"layers":[{{"digest":"{}","urls":["http://x"]}}],"subject":{{"digest":"{}"}}}}"#,
                d('a'),
                d('b'),
                d('c')
            ),
            format!(
                r#"{{"schemaVersion":1,"fsLayers":[{{"blobSum":"{}"}}],"history":[{{"v1Compatibility":"{{\"created\":\"2026-01-02T03:04:05Z\"}}"}}],"signatures":[]}}"#,
                d('e')
            ),
            format!(r#"{{"mediaType":"{OCI_ARTIFACT}","blobs":[{{"digest":"{}"}}]}}"#, d('f')),
        ];
        let tokens: [&[u8]; 10] = [b"{", b"}", b"[", b"]", b"\"", b":", b",", b"null", b"\\u0000", b"sha256:"];
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for i in 0..30_000 {
            let mut b = seeds[i % seeds.len()].clone().into_bytes();
            for _ in 0..=next() % 4 {
                let at = (next() as usize) % (b.len() + 1);
                match next() % 5 {
                    0 if at < b.len() => b[at] ^= 1 << (next() % 8),
                    1 => b.truncate(at),
                    2 => b.splice(at..at, tokens[(next() % 10) as usize].iter().copied()).for_each(drop),
                    3 if at < b.len() => drop(b.remove(at)),
                    _ => {
                        let (from, len) = ((next() as usize) % b.len().max(1), (next() % 64) as usize);
                        let piece: Vec<u8> = b.iter().skip(from).take(len).copied().collect();
                        b.splice(at..at, piece).for_each(drop);
                    }
                }
            }
            let _ = parse(&b);
            let _ = foreign_layers(&b);
            let _ = parse_created(&b);
            let text = String::from_utf8_lossy(&b);
            let _ = Digest::parse(&text);
            let _ = Digest::parse_reference(&text);
        }
    }
}
