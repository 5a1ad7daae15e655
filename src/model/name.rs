//! The names the registry accepts, by distribution's reference grammar
//! (`distribution/reference/regexp.go`, the same in 2.8 and 3.x): a repository, a tag, a
//! digest. One place for what online mode takes from the API and what the pull record takes
//! from the registry's events and logs; and how a name that came from elsewhere is printed.

use std::borrow::Cow;

use crate::model::digest::Digest;

/// The longest repository name the registry takes (`RepositoryNameTotalLengthMax`).
pub const REPOSITORY_MAX: usize = 255;

/// The longest tag (`[\w][\w.-]{0,127}`).
pub const TAG_MAX: usize = 128;

/// A repository name: path components `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*` joined by `/`, at most
/// 255 bytes in all. Safe in a URL path and in a store's path as it is.
pub fn is_repository(name: &str) -> bool {
    !name.is_empty() && name.len() <= REPOSITORY_MAX && name.split('/').all(|c| is_component(c.as_bytes()))
}

/// One path component: runs of `[a-z0-9]`, each two separated by `.`, `_`, `__` or dashes.
fn is_component(c: &[u8]) -> bool {
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let mut i = 0;
    loop {
        let run = c[i..].iter().take_while(|b| alnum(b)).count();
        if run == 0 {
            return false;
        }
        i += run;
        if i == c.len() {
            return true;
        }
        let sep = &c[i..i + c[i..].iter().take_while(|b| !alnum(b)).count()];
        if !(sep == b"." || sep == b"_" || sep == b"__" || sep.iter().all(|&b| b == b'-')) {
            return false;
        }
        i += sep.len();
    }
}

/// A tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub fn is_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    !b.is_empty()
        && b.len() <= TAG_MAX
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || b"._-".contains(c))
}

/// A manifest digest as the registry names one (`go-digest`'s `algo:hex`): `sha256`, `sha384`
/// and `sha512` with their exact length of lowercase hex; another algorithm
/// (`[a-z0-9]+([.+_-][a-z0-9]+)*`) with 32 to 128 hex digits.
pub fn is_digest(s: &str) -> bool {
    let Some((algo, hex)) = s.split_once(':') else { return false };
    let hex_ok = |len: usize| hex.len() == len;
    let length = match algo {
        "sha256" => hex_ok(64),
        "sha384" => hex_ok(96),
        "sha512" => hex_ok(128),
        _ => {
            let parts_ok = algo
                .split(['.', '+', '_', '-'])
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
            parts_ok && algo.len() <= 32 && (32..=128).contains(&hex.len())
        }
    };
    length && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The subject of an attachment tag (cosign's and oras's scheme): `sha256-<64 hex>` optionally
/// followed by `.<word>` (`.sig`, `.att`, `.sbom`).
pub fn attachment_subject(tag: &str) -> Option<Digest> {
    let rest = tag.strip_prefix("sha256-")?;
    let (hex, suffix) = rest.split_at_checked(64)?;
    if !suffix.is_empty() {
        let word = suffix.strip_prefix('.')?;
        if word.is_empty() || !word.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
            return None;
        }
    }
    Digest::from_hex(hex)
}

/// How many characters of a name [`printable`] shows; the rest is counted, not printed.
const SHOWN: usize = 200;

/// A name from outside (a posted event, a record written by another version) made safe for a
/// terminal or a log line: control characters (C0, DEL, C1: an escape sequence would reach the
/// terminal) and the bidirectional overrides (text that reads other than it is) as `\u{..}`, a
/// backslash as `\\`, and past 200 characters `...` and how many more. A name the grammar allows
/// comes back as it is.
pub fn printable(s: &str) -> Cow<'_, str> {
    let unsafe_char =
        |c: char| c.is_control() || c == '\\' || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
    let long = s.chars().nth(SHOWN).is_some();
    if !long && !s.chars().any(unsafe_char) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len().min(4 * SHOWN));
    for c in s.chars().take(SHOWN) {
        match c {
            '\\' => out.push_str("\\\\"),
            c if unsafe_char(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    if long {
        out.push_str(&format!("... ({} more characters)", s.chars().count() - SHOWN));
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories_by_the_reference_grammar() {
        for ok in ["a", "team/app", "team/app/tools", "a.b", "a_b", "a__b", "a-b", "a---b", "0x/9", "a.b-c_d__e"] {
            assert!(is_repository(ok), "{ok}");
        }
        let long_ok = ["a"; 128].join("/"); // 255 bytes
        assert!(is_repository(&long_ok));
        for bad in [
            "",
            "/a",
            "a/",
            "a//b",
            "A",
            "team/App",
            "a..b",
            "a._b",
            "a___b",
            ".a",
            "a.",
            "-a",
            "a-",
            "_a",
            "a b",
            "a\0b",
            "a\x1b[2J",
            "r'; DROP TABLE tag_pulls; --",
            "é",
            "localhost:5000/a",
        ] {
            assert!(!is_repository(bad), "{bad:?}");
        }
        assert!(!is_repository(&format!("{long_ok}a")), "256 bytes");
    }

    #[test]
    fn tags_by_the_reference_grammar() {
        for ok in ["v1", "latest", "_x", "1.2.3-rc.1_b", "V", &"a".repeat(128)] {
            assert!(is_tag(ok), "{ok}");
        }
        for bad in ["", ".x", "-x", "a/b", "a:b", "a\0", "a\x1b]0;x\x07", "é", &"a".repeat(129), &"a".repeat(100_000)]
        {
            assert!(!is_tag(bad), "{bad:?}");
        }
    }

    #[test]
    fn digests_as_the_registry_names_them() {
        let hex = "80108610a7cd2ca22809d9a68462a343851728f8c08feec59e1f49efa2940c05";
        assert!(is_digest(&format!("sha256:{hex}")));
        assert!(is_digest(&format!("sha512:{hex}{hex}")));
        assert!(is_digest(&format!("blake3:{hex}")));
        for bad in [
            format!("sha256:{}", &hex[1..]),
            format!("sha256:{}", hex.to_uppercase()),
            format!("sha256:{hex}\n"),
            format!(":{hex}"),
            format!("Sha256:{hex}"),
            format!("x..y:{hex}"),
            format!("x:{}", "a".repeat(129)),
            "sha256".into(),
        ] {
            assert!(!is_digest(&bad), "{bad:?}");
        }
    }

    #[test]
    fn names_are_printed_safely() {
        assert!(matches!(printable("team/app"), Cow::Borrowed("team/app")));
        assert_eq!(printable("a\x1b[2Jb\0c\u{9b}d"), "a\\u{1b}[2Jb\\u{0}c\\u{9b}d");
        assert_eq!(printable("x\u{202e}y\\"), "x\\u{202e}y\\\\");
        let name = "a".repeat(100_000);
        assert_eq!(printable(&name), format!("{}... (99800 more characters)", "a".repeat(200)));
    }
}
