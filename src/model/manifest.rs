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
}

// Borrowed strings: no allocation per digest for the tens of thousands of manifests of a store.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw<'a> {
    schema_version: Option<i64>,
    #[serde(borrow)]
    media_type: Option<Cow<'a, str>>,
    #[serde(borrow)]
    config: Option<Descriptor<'a>>,
    #[serde(borrow)]
    layers: Option<Vec<Descriptor<'a>>>,
    #[serde(borrow)]
    manifests: Option<Vec<Descriptor<'a>>>,
    #[serde(borrow)]
    blobs: Option<Vec<Descriptor<'a>>>,
    #[serde(borrow)]
    subject: Option<Descriptor<'a>>,
    #[serde(borrow)]
    fs_layers: Option<Vec<FsLayer<'a>>>,
    history: Option<Vec<V1History>>,
}

#[derive(Deserialize)]
struct Descriptor<'a> {
    #[serde(borrow)]
    digest: Cow<'a, str>,
    size: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FsLayer<'a> {
    #[serde(borrow)]
    blob_sum: Cow<'a, str>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct V1History {
    v1_compatibility: String,
}

#[derive(Deserialize)]
struct Created {
    created: Option<String>,
}

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
    match serde_json::from_slice::<Raw>(bytes) {
        Err(e) if e.to_string().starts_with("duplicate field") => {
            // The registry (Go's encoding/json) takes the last of duplicate keys, and so do the
            // clients that pull it: so does a JSON value, which then parses as usual.
            let value: serde_json::Value = serde_json::from_slice(bytes).context("not a valid manifest")?;
            let rewritten = serde_json::to_vec(&value).context("not a valid manifest")?;
            parse_raw(serde_json::from_slice(&rewritten).context("not a valid manifest")?)
        }
        raw => parse_raw(raw.context("not a valid manifest")?),
    }
}

fn parse_raw(raw: Raw) -> Result<Manifest> {
    let media_type = raw.media_type.as_deref().unwrap_or("");
    let kind = match (raw.schema_version, media_type) {
        (_, OCI_ARTIFACT) => Kind::OciArtifact,
        (Some(1), "" | DOCKER_V1 | DOCKER_V1_SIGNED) => Kind::Schema1,
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
                created = serde_json::from_str::<Created>(&h.v1_compatibility).ok().and_then(|c| c.created);
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
    #[derive(Deserialize)]
    struct Layer<'a> {
        #[serde(borrow)]
        digest: Cow<'a, str>,
        urls: Option<serde::de::IgnoredAny>,
    }
    #[derive(Deserialize)]
    struct Layers<'a> {
        #[serde(borrow)]
        layers: Option<Vec<Layer<'a>>>,
    }
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
    serde_json::from_slice::<Created>(bytes).ok()?.created
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
