//! An image reference as clients write it (`host[:port]/path[:tag][@digest]`), parsed by
//! distribution's grammar (`reference/regexp.go`, `normalize.go`): the first path component is
//! a registry host when it holds a `.` or a `:`, is `localhost`, or has an uppercase letter;
//! otherwise the reference has no host. Whose registry a reference without a host means is the
//! caller's to say (Docker Hub's for a runtime; this registry's in a plain list).

use std::fmt;

use crate::model::digest::Digest;

/// The longest name distribution accepts (host and path).
const NAME_MAX: usize = 255;

/// The digest a reference pins.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Pinned {
    Sha256(Digest),
    /// A well-formed digest of another algorithm (`sha512:...`): a registry store names none.
    Other(String),
}

/// An image reference.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Reference {
    /// `host[:port]`, as written.
    pub host: Option<String>,
    /// The repository path (`team/app`).
    pub path: String,
    pub tag: Option<String>,
    pub digest: Option<Pinned>,
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(h) = &self.host {
            write!(f, "{h}/")?;
        }
        f.write_str(&self.path)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        match &self.digest {
            Some(Pinned::Sha256(d)) => write!(f, "@{d}"),
            Some(Pinned::Other(d)) => write!(f, "@{d}"),
            None => Ok(()),
        }
    }
}

/// `[a-z0-9]+` joined by `.`, `_`, `__` or runs of `-`.
fn path_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let run = b[i..].iter().take_while(|c| !alnum(**c)).count();
        let sep = &b[i..i + run];
        let ok = sep == b"." || sep == b"_" || sep == b"__" || sep.iter().all(|c| *c == b'-');
        if !ok {
            return false;
        }
        i += run;
    }
    true
}

fn alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// `host[:port]`: DNS labels (letters, digits, `-` inside) joined by `.`, or `[IPv6]`, then an
/// optional numeric port.
fn valid_host(h: &str) -> bool {
    let port_ok = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    if let Some(rest) = h.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else { return false };
        let v6_ok = !v6.is_empty() && v6.bytes().all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
        return v6_ok && (after.is_empty() || after.strip_prefix(':').is_some_and(port_ok));
    }
    let (name, port) = match h.rsplit_once(':') {
        Some((n, p)) => (n, Some(p)),
        None => (h, None),
    };
    let label = |l: &str| {
        let b = l.as_bytes();
        !b.is_empty()
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
    };
    name.split('.').all(label) && port.is_none_or(port_ok)
}

/// `[\w][\w.-]{0,127}`.
fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    !b.is_empty() && b.len() <= 128 && word(b[0]) && b.iter().all(|c| word(*c) || *c == b'.' || *c == b'-')
}

/// `algorithm:hex` with distribution's algorithm grammar and at least 32 hex digits.
fn pinned(s: &str) -> Option<Pinned> {
    let (alg, hex) = s.split_once(':')?;
    let alg_ok = alg.split(['-', '_', '+', '.']).all(|part| {
        let b = part.as_bytes();
        !b.is_empty() && b[0].is_ascii_alphabetic() && b.iter().all(u8::is_ascii_alphanumeric)
    });
    if !alg_ok || hex.len() < 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    if alg == "sha256" {
        // Distribution compares digests as written; a registry stores lowercase hex only.
        return Some(Digest::from_hex(hex).map_or_else(|| Pinned::Other(s.to_string()), Pinned::Sha256));
    }
    Some(Pinned::Other(s.to_string()))
}

impl Reference {
    /// Parses a reference; `None` when it is not one by distribution's grammar (a name with an
    /// uppercase letter outside its host, a bad tag or digest, a variable left unexpanded, ...).
    pub fn parse(s: &str) -> Option<Reference> {
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => (r, Some(pinned(d)?)),
            None => (s, None),
        };
        // A tag's `:` comes after the last `/` (a port's comes before it).
        let (name, tag) = match rest.rfind(':') {
            Some(i) if !rest[i..].contains('/') => (&rest[..i], Some(rest[i + 1..].to_string())),
            _ => (rest, None),
        };
        if tag.as_deref().is_some_and(|t| !valid_tag(t)) || name.is_empty() || name.len() > NAME_MAX {
            return None;
        }
        let (host, path) = match name.split_once('/') {
            Some((first, path))
                if first.contains(['.', ':'])
                    || first == "localhost"
                    || first.bytes().any(|b| b.is_ascii_uppercase()) =>
            {
                (Some(first), path)
            }
            _ => (None, name),
        };
        if host.is_some_and(|h| !valid_host(h)) || !path.split('/').all(path_component) {
            return None;
        }
        Some(Reference { host: host.map(str::to_string), path: path.to_string(), tag, digest })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Parts = (Option<String>, String, Option<String>, Option<Pinned>);

    fn parts(s: &str) -> Option<Parts> {
        Reference::parse(s).map(|r| (r.host, r.path, r.tag, r.digest))
    }

    #[test]
    fn distributions_grammar() {
        let hex = "ab".repeat(32);
        let d = Digest::from_hex(&hex).unwrap();
        let s = |x: &str| Some(x.to_string());
        let cases: Vec<(String, Option<Parts>)> = vec![
            ("nginx".into(), Some((None, "nginx".into(), None, None))),
            ("team/app:v1".into(), Some((None, "team/app".into(), s("v1"), None))),
            ("localhost/app".into(), Some((s("localhost"), "app".into(), None, None))),
            ("localhost:5000/a/b:1.0".into(), Some((s("localhost:5000"), "a/b".into(), s("1.0"), None))),
            ("reg.example.com/team/app".into(), Some((s("reg.example.com"), "team/app".into(), None, None))),
            ("Registry/app".into(), Some((s("Registry"), "app".into(), None, None))),
            (
                format!("127.0.0.1:5000/app:v2@sha256:{hex}"),
                Some((s("127.0.0.1:5000"), "app".into(), s("v2"), Some(Pinned::Sha256(d)))),
            ),
            (
                format!("[::1]:5000/app@sha256:{hex}"),
                Some((s("[::1]:5000"), "app".into(), None, Some(Pinned::Sha256(d)))),
            ),
            (
                format!("r.io/app@sha512:{}", "cd".repeat(64)),
                Some((s("r.io"), "app".into(), None, Some(Pinned::Other(format!("sha512:{}", "cd".repeat(64)))))),
            ),
            ("a__b/c-d--e/f.g:t_1".into(), Some((None, "a__b/c-d--e/f.g".into(), s("t_1"), None))),
            ("team/App:v1".into(), None),
            ("app:".into(), None),
            ("app:-x".into(), None),
            ("app@sha256:abc".into(), None),
            ("${REGISTRY}/app:${TAG}".into(), None),
            ("a..b/c".into(), None),
            ("host:port/app".into(), None),
            ("".into(), None),
            ("r.io/".into(), None),
            (format!("app:{}", "t".repeat(129)), None),
        ];
        for (text, want) in cases {
            assert_eq!(parts(&text), want, "{text}");
        }
        let r = Reference::parse(&format!("localhost:5000/a/b:1@sha256:{hex}")).unwrap();
        assert_eq!(r.to_string(), format!("localhost:5000/a/b:1@sha256:{hex}"));
    }
}
