//! criterion benches of the hot inner parts: manifest parsing, link reading, marking.
//! Run: cargo bench --bench hot

use std::time::{Duration, SystemTime};

use criterion::{Criterion, criterion_group, criterion_main};
use regsweep::core::plan::{self, Options, StoreView};
use regsweep::core::policy::{Reason, Verdict};
use regsweep::model::digest::Digest;
use regsweep::model::inventory::{Inventory, Parsed, Repo, Revision, Tag};
use regsweep::model::manifest::{self, Kind, Manifest};
use regsweep::store::fs::file;

fn digest(i: u64) -> Digest {
    let mut b = [0u8; 32];
    b[..8].copy_from_slice(&i.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_le_bytes());
    b[8..16].copy_from_slice(&i.to_le_bytes());
    Digest(b)
}

fn parsing(c: &mut Criterion) {
    let image = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":512}},"layers":[{}]}}"#,
        digest(1),
        (2..5)
            .map(|i| format!(
                r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{}","size":123456}}"#,
                digest(i)
            ))
            .collect::<Vec<_>>()
            .join(",")
    );
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{}]}}"#,
        (10..12).map(|i| format!(r#"{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{}","size":900,"platform":{{"architecture":"amd64","os":"linux"}}}}"#, digest(i))).collect::<Vec<_>>().join(",")
    );
    c.bench_function("parse image manifest", |b| b.iter(|| manifest::parse(image.as_bytes()).unwrap()));
    c.bench_function("parse index", |b| b.iter(|| manifest::parse(index.as_bytes()).unwrap()));
    let link = digest(7).to_string();
    c.bench_function("parse link content", |b| b.iter(|| Digest::parse(&link).unwrap()));
}

fn links(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("link");
    std::fs::write(&path, digest(3).to_string()).unwrap();
    c.bench_function("read link file", |b| b.iter(|| file::read_link(&path).unwrap().unwrap()));
}

struct OldFiles;

impl StoreView for OldFiles {
    fn stat(&self, _: plan::Object) -> anyhow::Result<Option<(u64, SystemTime)>> {
        Ok(Some((100, SystemTime::UNIX_EPOCH)))
    }
    fn tag_index(&self, _: &str, _: &str) -> anyhow::Result<Vec<Digest>> {
        Ok(Vec::new())
    }
}

/// 200 repositories of 60 images (config + 2 layers each, one shared base layer).
fn inventory() -> Inventory {
    let mut inv = Inventory::default();
    let mut n = 1_000u64;
    for r in 0..200 {
        let mut repo = Repo { name: format!("ns/app{r}"), ..Repo::default() };
        for t in 0..60 {
            let (m, cfg, layer) = (digest(n), digest(n + 1), digest(n + 2));
            n += 3;
            let blobs: Box<[Digest]> = Box::new([cfg, digest(1), layer]);
            inv.manifests.insert(
                m,
                Parsed::Ok(Manifest {
                    kind: Kind::OciManifest,
                    config: Some(cfg),
                    blobs,
                    children: Box::new([]),
                    subject: None,
                    created: None,
                }),
            );
            inv.blobs.extend([m, cfg, layer]);
            repo.revisions.push(Revision { digest: m, target: m, modified: SystemTime::UNIX_EPOCH });
            repo.tags.push(Tag {
                name: format!("1.{t}.0"),
                current: Some(m),
                pushed: SystemTime::UNIX_EPOCH + Duration::from_secs(t),
            });
            repo.layers.extend([cfg, layer]);
        }
        inv.repos.push(repo);
    }
    inv.blobs.push(digest(1));
    inv.blobs.sort_unstable();
    inv
}

fn marking(c: &mut Criterion) {
    let inv = inventory();
    let decisions: Vec<_> = inv
        .repos
        .iter()
        .map(|r| {
            r.tags
                .iter()
                .zip(0u32..)
                .map(|(_, i)| {
                    if i >= 55 {
                        Verdict::Keep(Reason::Count { rank: 60 - i })
                    } else {
                        Verdict::Delete(Reason::BeyondCount { rank: 60 - i })
                    }
                })
                .collect()
        })
        .collect();
    let opts = Options {
        delete_untagged: false,
        grace: Duration::from_secs(3600),
        allow_tagless: false,
        upload_age: Duration::from_secs(168 * 3600),
        now: SystemTime::now(),
        list_kept_tags: true,
        orphan_attachments: false,
        bytes_left: false,
        in_use: None,
        untagged_collected: false,
    };
    c.bench_function("plan 12k tags, 36k blobs (keep 5)", |b| {
        b.iter(|| plan::build(&inv, &decisions, &|_| true, &opts, &OldFiles).unwrap())
    });
}

criterion_group!(benches, parsing, links, marking);
criterion_main!(benches);
