//! The registry's access log, for a backfill (`pulls import`): a manifest `GET` (or `HEAD`)
//! answered 200 is a pull. Registry 2.8.2 prints each request twice, both read here:
//!
//! - on stdout, the combined log format:
//!   `127.0.0.1 - - [03/Dec/2026:07:30:53 +0000] "GET /v2/team/app/manifests/latest HTTP/1.1" 200 499 "" "skopeo/1.9.3"`
//! - on stderr, its "response completed" line, in the text formatter
//!   (`time="..." level=info msg="response completed" ... http.request.method=GET
//!   http.request.uri=/v2/... http.request.useragent=... http.response.status=200`) or the
//!   JSON one (the same keys).
//!
//! Neither names the digest a tag resolved to: [`Resolver`] reads it from the store when the
//! tag's link is older than the pull (it pointed there then); otherwise the tag alone is known.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::events::Filter;
use super::record::Record;
use super::{Pull, is_digest, parse_rfc3339};

/// Pulls stored per transaction while importing: a large log does not hold the record's write
/// lock (and the listener) for its whole length.
const IMPORT_BATCH: usize = 10_000;

/// What an import read.
#[derive(Debug, Default, serde::Serialize)]
pub struct Imported {
    pub lines: u64,
    pub pulls: u64,
    /// Tag pulls whose digest the store could not tell (no `--root`, or a tag pushed since).
    pub tags_without_digest: u64,
}

/// Opens every log first: a missing one is an error before anything is stored.
pub fn open_logs(logs: &[PathBuf]) -> Result<Vec<std::fs::File>> {
    logs.iter().map(|p| std::fs::File::open(p).with_context(|| format!("cannot open {}", p.display()))).collect()
}

/// Reads log files (opened by [`open_logs`]) into a record; the record's start moves back to
/// the earliest pull read.
pub fn import(
    record: &mut Record,
    logs: &[PathBuf],
    files: Vec<std::fs::File>,
    filter: &Filter,
    resolver: Option<&Resolver>,
) -> Result<Imported> {
    let mut out = Imported::default();
    let mut batch = Vec::with_capacity(IMPORT_BATCH);
    let mut earliest = None::<i64>;
    for (path, file) in logs.iter().zip(files) {
        let mut reader = std::io::BufReader::new(file);
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = reader.read_until(b'\n', &mut line).with_context(|| format!("cannot read {}", path.display()))?;
            if n == 0 {
                break;
            }
            out.lines += 1;
            let Some(p) = pull(&String::from_utf8_lossy(&line), filter, resolver) else { continue };
            out.pulls += 1;
            out.tags_without_digest += u64::from(p.tag.is_some() && p.digest.is_none());
            earliest = Some(earliest.map_or(p.at, |e| e.min(p.at)));
            batch.push(p);
            if batch.len() == IMPORT_BATCH {
                record.store(&batch)?;
                batch.clear();
            }
        }
    }
    record.store(&batch)?;
    if let Some(e) = earliest {
        record.began_at_most(e)?;
    }
    Ok(out)
}

/// What one log line says, when it is a request.
#[derive(Debug, PartialEq, Eq)]
struct Request {
    at: i64,
    method: String,
    uri: String,
    status: u16,
    agent: String,
}

/// The pull a log line records, if it records one that counts.
pub fn pull(line: &str, filter: &Filter, resolver: Option<&Resolver>) -> Option<Pull> {
    let line = line.trim();
    let r = if line.starts_with('{') {
        json_line(line)
    } else if line.starts_with("time=") {
        text_line(line)
    } else {
        combined_line(line)
    }?;
    if r.status != 200 || !filter.counts(&r.method, &r.agent) {
        return None;
    }
    let path = r.uri.split(['?', '#']).next()?;
    let (repository, reference) = path.strip_prefix("/v2/")?.rsplit_once("/manifests/")?;
    let reference = reference.replace("%3A", ":").replace("%3a", ":");
    if repository.is_empty() || reference.is_empty() {
        return None;
    }
    let repository = repository.to_string();
    let mut pull = if reference.contains(':') {
        Pull { repository, tag: None, digest: Some(reference), at: r.at }
    } else {
        Pull { repository, tag: Some(reference), digest: None, at: r.at }
    };
    // Names the registry's grammar refuses are no pull it answered; and the resolver builds a
    // path of the store from them.
    if pull.fault().is_some() {
        return None;
    }
    if let (Some(tag), Some(resolver)) = (&pull.tag, resolver) {
        pull.digest = resolver.digest(&pull.repository, tag, r.at);
    }
    Some(pull)
}

/// `ADDR - USER [DATE] "METHOD URI PROTO" STATUS SIZE "REFERER" "AGENT"`.
fn combined_line(line: &str) -> Option<Request> {
    let (_, rest) = line.split_once(" [")?;
    let (date, rest) = rest.split_once("] \"")?;
    let at = chrono::DateTime::parse_from_str(date, "%d/%b/%Y:%H:%M:%S %z").ok()?.timestamp_nanos_opt()?;
    let (request, rest) = rest.split_once('"')?;
    let mut req = request.split(' ');
    let (method, uri) = (req.next()?.to_string(), req.next()?.to_string());
    let status = rest.split_whitespace().next()?.parse().ok()?;
    // The agent is the last quoted field.
    let agent = rest.trim_end().strip_suffix('"')?.rsplit_once('"')?.1.to_string();
    Some(Request { at, method, uri, status, agent })
}

/// logrus's text formatter: `key=value` or `key="quoted \"value\""`, separated by spaces.
fn text_line(line: &str) -> Option<Request> {
    let mut fields = std::collections::HashMap::new();
    let mut rest = line;
    while let Some((key, after)) = rest.trim_start().split_once('=') {
        let (value, next) = if let Some(q) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = q.char_indices();
            let mut end = q.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next().map(|(_, c)| c)),
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => value.push(c),
                }
            }
            (value, &q[end..])
        } else {
            let end = after.find(' ').unwrap_or(after.len());
            (after[..end].to_string(), &after[end..])
        };
        fields.insert(key.to_string(), value);
        rest = next;
    }
    request_of(|k| fields.get(k).cloned())
}

/// logrus's JSON formatter: the same keys as the text one; the status is a number.
fn json_line(line: &str) -> Option<Request> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    request_of(|k| match v.get(k)? {
        serde_json::Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    })
}

fn request_of(field: impl Fn(&str) -> Option<String>) -> Option<Request> {
    if !field("msg")?.starts_with("response completed") {
        return None;
    }
    Some(Request {
        at: parse_rfc3339(&field("time")?)?,
        method: field("http.request.method")?,
        uri: field("http.request.uri")?,
        status: field("http.response.status")?.parse().ok()?,
        agent: field("http.request.useragent").unwrap_or_default(),
    })
}

/// Reads what a tag pointed to at a pull from a store on disk (`--root`).
#[derive(Debug)]
pub struct Resolver {
    repositories: PathBuf,
}

impl Resolver {
    /// The store under `root` (the folder holding `docker/registry/v2`).
    pub fn new(root: &Path) -> Result<Resolver, String> {
        let repositories = root.join("docker/registry/v2/repositories");
        if !repositories.is_dir() {
            return Err(format!("{} is not a registry store: no {}", root.display(), repositories.display()));
        }
        Ok(Resolver { repositories })
    }

    /// The digest of `repository:tag` at `at`: its current link, when that was last written no
    /// later than the pull (a tag pushed again since may have pointed elsewhere then). The link
    /// is opened without following a final symbolic link and without blocking (a FIFO planted
    /// there would hang the import for ever); anything but a regular file names no digest.
    fn digest(&self, repository: &str, tag: &str, at: i64) -> Option<String> {
        use std::io::Read;
        use std::os::unix::fs::OpenOptionsExt;
        if repository.split('/').any(|s| s.is_empty() || s == "." || s == "..") || tag.contains('/') || tag == ".." {
            return None;
        }
        let link = self.repositories.join(repository).join("_manifests/tags").join(tag).join("current/link");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&link)
            .ok()?;
        let meta = file.metadata().ok().filter(|m| m.is_file())?;
        let written = super::nanos(meta.modified().ok()?);
        let mut digest = String::new();
        file.take(1024).read_to_string(&mut digest).ok()?;
        (written <= at && is_digest(&digest)).then_some(digest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:80108610a7cd2ca22809d9a68462a343851728f8c08feec59e1f49efa2940c05";

    #[test]
    fn a_tag_link_is_read_only_as_a_regular_file_never_through_a_link_nor_a_fifo() {
        let t = tempfile::tempdir().unwrap();
        let tags = t.path().join("docker/registry/v2/repositories/team/app/_manifests/tags");
        let link = |tag: &str| tags.join(tag).join("current/link");
        for tag in ["plain", "linked", "fifo"] {
            std::fs::create_dir_all(link(tag).parent().unwrap()).unwrap();
        }
        std::fs::write(link("plain"), D).unwrap();
        std::os::unix::fs::symlink(link("plain"), link("linked")).unwrap();
        assert!(std::process::Command::new("mkfifo").arg(link("fifo")).status().unwrap().success());
        let resolver = Resolver::new(t.path()).unwrap();
        let later = i64::MAX;
        assert_eq!(resolver.digest("team/app", "plain", later).as_deref(), Some(D));
        assert_eq!(resolver.digest("team/app", "linked", later), None, "a symbolic link is never followed");
        // On another thread: reading a FIFO without O_NONBLOCK would wait for a writer for ever.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(resolver.digest("team/app", "fifo", later)).unwrap());
        let got = rx.recv_timeout(std::time::Duration::from_secs(10)).expect("reading a FIFO blocked");
        assert_eq!(got, None, "a FIFO names no digest");
    }

    #[test]
    fn the_three_formats_of_registry_2_8_2() {
        let f = Filter::default();
        let combined = r#"127.0.0.1 - - [03/Dec/2026:07:30:53 +0000] "GET /v2/team/app/manifests/latest HTTP/1.1" 200 499 "" "skopeo/1.9.3""#;
        let p = pull(combined, &f, None).unwrap();
        assert_eq!((p.repository.as_str(), p.tag.as_deref(), p.digest), ("team/app", Some("latest"), None));
        let text = format!(
            r#"time="2026-12-03T07:30:53.548036464Z" level=info msg="response completed" go.version=go1.19.8 http.request.host="127.0.0.1:5071" http.request.method=GET http.request.uri="/v2/team/app/manifests/{D}" http.request.useragent=skopeo/1.9.3 http.response.contenttype=application/vnd.oci.image.manifest.v1+json http.response.status=200"#
        );
        let p = pull(&text, &f, None).unwrap();
        assert_eq!((p.tag, p.digest.as_deref(), p.at), (None, Some(D), 1_796_283_053_548_036_464));
        let json = r#"{"http.request.method":"GET","http.request.uri":"/v2/a/b/c/manifests/v1","http.request.useragent":"skopeo/1.9.3","http.response.status":200,"level":"info","msg":"response completed","time":"2026-12-03T07:31:09.183866302Z"}"#;
        assert_eq!(pull(json, &f, None).unwrap().repository, "a/b/c");
    }

    #[test]
    fn what_is_not_a_manifest_pull() {
        let f = Filter::default();
        for line in [
            r#"127.0.0.1 - - [03/Dec/2026:07:30:53 +0000] "GET /v2/team/app/blobs/sha256:72fb HTTP/1.1" 200 248 "" "skopeo/1.9.3""#,
            r#"127.0.0.1 - - [03/Dec/2026:07:30:53 +0000] "HEAD /v2/team/app/manifests/v1 HTTP/1.1" 200 122 "" "curl/7.88.1""#,
            r#"127.0.0.1 - - [03/Dec/2026:07:30:53 +0000] "GET /v2/team/app/manifests/v1 HTTP/1.1" 404 122 "" "curl/7.88.1""#,
            r#"time="2026-12-03T07:30:51Z" level=info msg="listening on 127.0.0.1:5071" go.version=go1.19.8"#,
            "garbage",
            "",
        ] {
            assert_eq!(pull(line, &f, None), None, "{line}");
        }
    }
}
