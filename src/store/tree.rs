//! The registry's storage tree (docs/DESIGN.md section 1), named once for every backend: each
//! place is a path relative to `docker/registry/v2/`, with `/` between its parts, which a
//! folder joins to its root and a bucket prefixes with its `rootdirectory`. [`Inside`] reads a
//! key inside a repository's folder back into what it is. No I/O here.

use crate::model::digest::Digest;

/// Every repository's folder.
pub const REPOSITORIES: &str = "repositories";
/// The blobs' folder: its 256 two-hex-digit prefix folders hold the blob folders.
pub const BLOBS: &str = "blobs/sha256";
/// The lock that keeps two real runs off one store.
pub const LOCK: &str = ".regsweep.lock";
/// The intent journal of an unfinished run (docs/DESIGN.md section 4).
pub const JOURNAL: &str = ".regsweep-journal.json";

/// The file of a link folder (`sha256:<hex>`), of a blob folder (the content), of an upload
/// (when it began).
pub const LINK: &str = "link";
pub const DATA: &str = "data";
pub const STARTED: &str = "startedat";

/// Names of the folders inside a repository folder that are the registry's, not sub-repositories.
pub const REPO_INTERNALS: [&str; 3] = ["_layers", "_manifests", "_uploads"];

/// `blobs/sha256/<xx>`: the prefix folder of the blobs whose digest's first byte is `b`.
pub fn blob_prefix(b: u8) -> String {
    format!("{BLOBS}/{b:02x}")
}

/// `blobs/sha256/<xx>/<hex>`: everything the registry keeps of one blob.
pub fn blob_dir(d: &Digest) -> String {
    format!("{}/{}", blob_prefix(d.0[0]), d.hex())
}

/// `blobs/sha256/<xx>/<hex>/data`: the content.
pub fn blob_data(d: &Digest) -> String {
    format!("{}/data", blob_dir(d))
}

/// `<xx>/<hex>/data`, relative to [`BLOBS`].
pub fn blob_data_in_blobs(d: &Digest) -> String {
    let hex = d.hex();
    format!("{}/{hex}/data", &hex[..2])
}

/// `repositories/<name>`.
pub fn repo(name: &str) -> String {
    format!("{REPOSITORIES}/{name}")
}

/// A place inside a repository's folder, relative to it.
pub mod inside {
    use crate::model::digest::Digest;

    /// `_layers/sha256`.
    pub const LAYERS: &str = "_layers/sha256";
    /// `_manifests/revisions/sha256`.
    pub const REVISIONS: &str = "_manifests/revisions/sha256";
    /// `_manifests/tags`.
    pub const TAGS: &str = "_manifests/tags";
    /// `_uploads`.
    pub const UPLOADS: &str = "_uploads";

    /// `_layers/sha256/<hex>`: the link folder that lets the repository serve blob `d`.
    pub fn layer_dir(d: &Digest) -> String {
        format!("{LAYERS}/{}", d.hex())
    }

    pub fn layer_link(d: &Digest) -> String {
        format!("{}/link", layer_dir(d))
    }

    /// `_manifests/revisions/sha256/<hex>`: "manifest `d` exists in this repository".
    pub fn revision_dir(d: &Digest) -> String {
        format!("{REVISIONS}/{}", d.hex())
    }

    pub fn revision_link(d: &Digest) -> String {
        format!("{REVISIONS}/{}", revision_link_in_revisions(d))
    }

    /// `<hex>/link`, relative to [`REVISIONS`].
    pub fn revision_link_in_revisions(d: &Digest) -> String {
        link_in_hashes(d)
    }

    /// `<hex>/link`, relative to the `sha256` folder that holds it (of revisions, of layer
    /// links, of a tag's history).
    pub fn link_in_hashes(d: &Digest) -> String {
        format!("{}/{}", d.hex(), super::LINK)
    }

    /// `_manifests/tags/<tag>`: removing it is deleting the tag.
    pub fn tag_dir(tag: &str) -> String {
        format!("{TAGS}/{tag}")
    }

    /// `_manifests/tags/<tag>/current/link`: the digest the tag points to now.
    pub fn tag_current(tag: &str) -> String {
        format!("{TAGS}/{}", tag_current_in_tags(tag))
    }

    /// `<tag>/current/link`, relative to [`TAGS`].
    pub fn tag_current_in_tags(tag: &str) -> String {
        format!("{}/link", tag_current_dir_in_tags(tag))
    }

    /// `<tag>/current`, relative to [`TAGS`].
    pub fn tag_current_dir_in_tags(tag: &str) -> String {
        format!("{tag}/current")
    }

    /// `<tag>/index`, relative to [`TAGS`]: the tag's history.
    pub fn tag_history_in_tags(tag: &str) -> String {
        format!("{tag}/index")
    }

    /// `<tag>/index/sha256`, relative to [`TAGS`].
    pub fn tag_index_in_tags(tag: &str) -> String {
        format!("{}/sha256", tag_history_in_tags(tag))
    }

    /// `<tag>/index/sha256/<hex>`, relative to [`TAGS`].
    pub fn tag_index_entry_in_tags(tag: &str, d: &Digest) -> String {
        format!("{}/{}", tag_index_in_tags(tag), d.hex())
    }

    /// `_manifests/tags/<tag>/index/sha256`: every digest the tag ever pointed to.
    pub fn tag_index(tag: &str) -> String {
        format!("{TAGS}/{}", tag_index_in_tags(tag))
    }

    /// `_manifests/tags/<tag>/index/sha256/<hex>`.
    pub fn tag_index_entry(tag: &str, d: &Digest) -> String {
        format!("{TAGS}/{}", tag_index_entry_in_tags(tag, d))
    }

    pub fn tag_index_link(tag: &str, d: &Digest) -> String {
        format!("{}/link", tag_index_entry(tag, d))
    }

    /// `_uploads/<id>`: one upload in progress.
    pub fn upload_dir(id: &str) -> String {
        format!("{UPLOADS}/{id}")
    }

    /// `_uploads/<id>/startedat`: when it began.
    pub fn upload_started(id: &str) -> String {
        format!("{}/{}", upload_dir(id), super::STARTED)
    }
}

/// `repositories/<name>/<place>`, a place [`inside`] it.
pub fn in_repo(name: &str, place: &str) -> String {
    format!("{}/{place}", repo(name))
}

/// What a key inside a repository's folder is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inside<'a> {
    /// `_manifests/tags/<tag>/current/link`.
    TagCurrent(&'a str),
    /// `_manifests/tags/<tag>/index/sha256/<hex>/link`.
    TagHistory(&'a str, Digest),
    /// Anything else under `_manifests/tags/<tag>/`.
    TagOther(&'a str),
    /// `_manifests/revisions/sha256/<hex>/link`.
    RevisionLink(Digest),
    /// Anything else under `_manifests/revisions/sha256/<hex>/`.
    RevisionOther(Digest),
    /// `_layers/sha256/<hex>/link`.
    LayerLink(Digest),
    /// Anything else under `_layers/sha256/<hex>/`.
    LayerOther(Digest),
    /// `_uploads/<id>/<file>` (`file` may hold slashes, or be empty).
    Upload(&'a str, &'a str),
    /// Not the registry's.
    Other,
}

impl Inside<'_> {
    /// Reads a key relative to a repository's folder.
    pub fn of(key: &str) -> Inside<'_> {
        let parts: Vec<&str> = key.split('/').collect();
        let digest = |hex: &str| Digest::from_hex(hex);
        match parts.as_slice() {
            ["_manifests", "tags", tag, "current", "link"] => Inside::TagCurrent(tag),
            ["_manifests", "tags", tag, "index", "sha256", hex, "link"] => {
                digest(hex).map_or(Inside::TagOther(tag), |d| Inside::TagHistory(tag, d))
            }
            ["_manifests", "tags", tag, ..] => Inside::TagOther(tag),
            ["_manifests", "revisions", "sha256", hex, rest @ ..] => match (digest(hex), rest) {
                (Some(d), ["link"]) => Inside::RevisionLink(d),
                (Some(d), _) => Inside::RevisionOther(d),
                (None, _) => Inside::Other,
            },
            ["_layers", "sha256", hex, rest @ ..] => match (digest(hex), rest) {
                (Some(d), ["link"]) => Inside::LayerLink(d),
                (Some(d), _) => Inside::LayerOther(d),
                (None, _) => Inside::Other,
            },
            ["_uploads", id, ..] => Inside::Upload(id, key.get("_uploads/".len() + id.len() + 1..).unwrap_or("")),
            _ => Inside::Other,
        }
    }
}

/// A key under `repositories/`, split into the repository and the key inside it: the first
/// path segment that starts with `_` must be `_manifests`, `_layers` or `_uploads`.
pub fn split_repo_key(rel: &str) -> Option<(&str, &str)> {
    let mut at = 0;
    for seg in rel.split('/') {
        if seg.starts_with('_') {
            return (at > 0 && REPO_INTERNALS.contains(&seg)).then(|| (&rel[..at - 1], &rel[at..]));
        }
        at += seg.len() + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_keys_split_at_the_registry_folders() {
        assert_eq!(
            split_repo_key("team/app/_manifests/tags/v1/current/link"),
            Some(("team/app", "_manifests/tags/v1/current/link"))
        );
        assert_eq!(split_repo_key("app/_layers/sha256/x/link"), Some(("app", "_layers/sha256/x/link")));
        assert_eq!(split_repo_key("_manifests/x"), None);
        assert_eq!(split_repo_key("team/_other/x"), None);
        assert_eq!(split_repo_key("team/app"), None);
    }

    #[test]
    fn repository_keys_are_told_apart() {
        let hex = "80108610a7cd2ca22809d9a68462a343851728f8c08feec59e1f49efa2940c05";
        let d = Digest::from_hex(hex).unwrap();
        let cases = [
            ("_manifests/tags/v1/current/link".to_string(), Inside::TagCurrent("v1")),
            (format!("_manifests/tags/v1/index/sha256/{hex}/link"), Inside::TagHistory("v1", d)),
            ("_manifests/tags/v1/index/sha256/nothex/link".to_string(), Inside::TagOther("v1")),
            (format!("_manifests/revisions/sha256/{hex}/link"), Inside::RevisionLink(d)),
            (format!("_manifests/revisions/sha256/{hex}/x.tmp"), Inside::RevisionOther(d)),
            (format!("_layers/sha256/{hex}/link"), Inside::LayerLink(d)),
            (format!("_layers/sha256/{hex}/other"), Inside::LayerOther(d)),
            ("_uploads/u-1/hashstates/sha256/0".to_string(), Inside::Upload("u-1", "hashstates/sha256/0")),
            ("_uploads/u-1".to_string(), Inside::Upload("u-1", "")),
            ("_layers/sha256/nothex/link".to_string(), Inside::Other),
            ("_other/x".to_string(), Inside::Other),
        ];
        for (key, expected) in &cases {
            assert_eq!(Inside::of(key), *expected, "{key}");
        }
    }

    #[test]
    fn places_of_the_tree() {
        let d = Digest::from_hex(&"ab".repeat(32)).unwrap();
        assert_eq!(blob_data(&d), format!("blobs/sha256/ab/{}/data", d.hex()));
        assert_eq!(in_repo("a/b", &inside::tag_current("t")), "repositories/a/b/_manifests/tags/t/current/link");
        assert_eq!(Inside::of(&inside::tag_index_link("t", &d)), Inside::TagHistory("t", d));
    }
}
