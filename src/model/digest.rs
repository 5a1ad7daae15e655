//! A sha256 content digest, validated once where it enters (a folder name, a link, a manifest).
//! Nothing else in regsweep handles digest strings, and no path is built from unvalidated text.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::hash::{BuildHasherDefault, Hash, Hasher};

use anyhow::{Result, bail};
use serde::{Serialize, Serializer};

/// A sha256 digest as 32 bytes; shown as `sha256:<64 lowercase hex>`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Digest(pub [u8; 32]);

impl Hash for Digest {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let mut first = [0u8; 8];
        first.copy_from_slice(&self.0[..8]);
        state.write_u64(u64::from_le_bytes(first));
    }
}

/// Hashes a digest by its first 8 bytes: a sha256 is uniformly distributed already.
#[derive(Clone, Copy, Default)]
pub struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// A map keyed by digests.
pub type DigestMap<V> = HashMap<Digest, V, BuildHasherDefault<DigestHasher>>;
/// A set of digests.
pub type DigestSet = HashSet<Digest, BuildHasherDefault<DigestHasher>>;

impl Digest {
    /// Parses exactly 64 lowercase hex characters (the registry writes no other form).
    pub fn from_hex(hex_str: &str) -> Option<Digest> {
        let b = hex_str.as_bytes();
        if b.len() != 64 {
            return None;
        }
        // 0xff marks a byte that is no lowercase hex digit.
        const NIBBLE: [u8; 256] = {
            let mut t = [0xffu8; 256];
            let mut i = 0;
            while i < 10 {
                t[b'0' as usize + i] = i as u8;
                i += 1;
            }
            let mut i = 0;
            while i < 6 {
                t[b'a' as usize + i] = 10 + i as u8;
                i += 1;
            }
            t
        };
        let mut out = [0u8; 32];
        let mut bad = 0u8;
        for (i, o) in out.iter_mut().enumerate() {
            let (hi, lo) = (NIBBLE[usize::from(b[2 * i])], NIBBLE[usize::from(b[2 * i + 1])]);
            bad |= (hi | lo) & 0xf0;
            *o = (hi << 4) | (lo & 0x0f);
        }
        (bad == 0).then_some(Digest(out))
    }

    /// Parses `sha256:<64 lowercase hex>` exactly, with nothing before or after.
    pub fn parse(s: &str) -> Option<Digest> {
        Digest::from_hex(s.strip_prefix("sha256:")?)
    }

    /// Parses a digest found inside a manifest: `Ok(None)` for a well-formed digest of another
    /// algorithm (regsweep never sweeps those), an error for anything malformed.
    pub fn parse_reference(s: &str) -> Result<Option<Digest>> {
        if let Some(d) = Digest::parse(s) {
            return Ok(Some(d));
        }
        match s.split_once(':') {
            Some((alg, enc))
                if alg != "sha256"
                    && !alg.is_empty()
                    && alg.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+._-".contains(&b))
                    && !enc.is_empty()
                    && enc.bytes().all(|b| b.is_ascii_alphanumeric() || b"=_-".contains(&b)) =>
            {
                Ok(None)
            }
            _ => bail!("malformed digest {s:?}"),
        }
    }

    /// The 64 hex characters, as used in storage paths.
    pub fn hex(&self) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = String::with_capacity(64);
        for b in self.0 {
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 15)] as char);
        }
        out
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", &self.hex()[..12])
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Digest, D::Error> {
        let s = String::deserialize(d)?;
        Digest::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("invalid digest {s:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "1c0179cc05c9003d0c77ad5f5812768591ff65107a943176c98e72bf4704faf2";

    #[test]
    fn parses_only_the_canonical_form() {
        let d = Digest::parse(&format!("sha256:{HEX}")).unwrap();
        assert_eq!(d.to_string(), format!("sha256:{HEX}"));
        assert_eq!(d.hex(), HEX);
        for bad in [
            format!("sha256:{HEX}\n"),
            format!("sha256:{}", HEX.to_uppercase()),
            format!("sha256:{}", &HEX[1..]),
            format!("sha512:{HEX}"),
            format!(" sha256:{HEX}"),
            format!("sha256:../{}", &HEX[3..]),
            String::new(),
        ] {
            assert!(Digest::parse(&bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn references_of_other_algorithms_are_not_errors() {
        assert!(Digest::parse_reference(&format!("sha256:{HEX}")).unwrap().is_some());
        assert!(Digest::parse_reference("sha512:abcdef").unwrap().is_none());
        assert!(Digest::parse_reference("sha256:abc").is_err());
        assert!(Digest::parse_reference("../etc").is_err());
        assert!(Digest::parse_reference("").is_err());
    }
}
