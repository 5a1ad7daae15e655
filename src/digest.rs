//! A sha256 content digest, validated once where it enters (a folder name, a link, a manifest).
//! Nothing else in regsweep handles digest strings, and no path is built from unvalidated text.

use std::fmt;

use anyhow::{Result, bail};
use serde::{Serialize, Serializer};

/// A sha256 digest as 32 bytes; shown as `sha256:<64 lowercase hex>`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// Parses exactly 64 lowercase hex characters (the registry writes no other form).
    pub fn from_hex(hex_str: &str) -> Option<Digest> {
        if hex_str.len() != 64 || !hex_str.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return None;
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(hex_str, &mut out).ok()?;
        Some(Digest(out))
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
        hex::encode(self.0)
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
