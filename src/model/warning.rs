//! What a run tells the operator without failing: each warning has a kind a script can branch
//! on, and the message a person reads.

use std::fmt;

use serde::Serialize;

/// What a warning is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WarningKind {
    /// A `--repo` or `--exclude-repo` pattern that matches no repository.
    UnmatchedFilter,
    /// Every ranked tag of a repository has one push time: push order means nothing there, every
    /// tag is kept.
    UniformPushTimes,
    /// A kept tag whose manifest has no blob: it cannot be pulled (it was broken before the run).
    ManifestMissing,
    /// A kept tag that points to no manifest of its repository.
    ForeignManifest,
    /// Online: a repository or tag name the API listed that is not a valid name: left alone.
    InvalidName,
    /// Online: the registry refused to delete a tag alone (distribution 2.8): the tag stays.
    UntagRefused,
    /// `--keep-pulled-within` reaches back before the pull record began: the tags it cannot
    /// judge are kept.
    PullRecordTooShort,
    /// Kept tags of a repository that registry 3.x will not serve, though 2.8 does (Docker
    /// schema 1, or an index with a schema 1 child): one warning per repository.
    V3Unservable,
    /// `--config`: a key of the registry's config.yml (or a variable beside it) that regsweep
    /// does not honour, named in the message: what regsweep does instead.
    ConfigNotHonoured,
    /// `--keep-in-use`: a reference to this registry that names nothing in the store (no such
    /// repository, tag or manifest): a typo, or an image of another registry. Once each.
    InUseNotFound,
    /// `--keep-in-use`: a value of a Kubernetes document that is no image reference (a runtime
    /// cannot pull it either): ignored.
    InUseInvalid,
    /// `check --repair` left links pointing to nothing because they were written since the
    /// check began (on a bucket, within its clock's second): run it again in a second or two.
    RepairLeftYoung,
    /// The store's tags seem to live elsewhere (untagged manifests pushed after its newest tag,
    /// or no tag at all: Harbor 2.15 keeps its tags in its database): what `--delete-untagged`
    /// refuses, said where it runs anyway (`--allow-tagless`), and by `prune` (the tags it ranks
    /// may be stale) and `du`.
    TagsElsewhere,
}

/// One warning: in the JSON report `{"kind": ..., "message": ...}`; on stderr its message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Warning {
    pub kind: WarningKind,
    pub message: String,
    /// The repository it is about, where it is about one: the text report lists that
    /// repository (not in the JSON, whose warnings name it in their message).
    #[serde(skip)]
    pub repo: Option<String>,
}

impl Warning {
    pub fn new(kind: WarningKind, message: impl Into<String>) -> Warning {
        Warning { kind, message: message.into(), repo: None }
    }

    /// The same, about repository `repo`.
    pub fn about(self, repo: &str) -> Warning {
        Warning { repo: Some(repo.to_string()), ..self }
    }
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}
