//! The 32-byte SHA-256 digest that links entries into a chain, with hex text and serde forms.

use std::fmt;
use std::str::FromStr;

use subtle::ConstantTimeEq;

/// A SHA-256 digest: an entry's hash, or the hash of the entry before it.
///
/// Its text form (`Display`, `FromStr`, serde) is exactly 64 lowercase hex digits. Equality is
/// constant-time, because verification compares attacker-supplied hashes with computed ones.
#[derive(Clone, Copy)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    /// The `prev_hash` of the first entry (seq 1): 32 zero bytes.
    pub const ZERO: Hash = Hash([0; 32]);

    /// The hash as 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        String::from(self.hex_buf().as_str())
    }

    /// Returns the raw digest bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    fn hex_buf(&self) -> HexBuf {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut buf = [0u8; 64];
        for (i, b) in self.0.iter().enumerate() {
            buf[2 * i] = DIGITS[usize::from(b >> 4)];
            buf[2 * i + 1] = DIGITS[usize::from(b & 0x0f)];
        }
        HexBuf(buf)
    }
}

/// Hex digits on the stack, so `Display` and serialization do not allocate.
struct HexBuf([u8; 64]);

impl HexBuf {
    fn as_str(&self) -> &str {
        // Every byte is an ASCII hex digit, so this never fails; the fallback keeps it panic-free.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl PartialEq for Hash {
    fn eq(&self, other: &Self) -> bool {
        // Every byte's difference is folded into one word with no branch, and only that word
        // goes through `subtle`: as constant-time as `ct_eq` on the 32 bytes, which would put
        // each byte through its own optimization barrier (the verifier compares two hashes
        // per entry).
        let (ours, _) = self.0.as_chunks::<8>();
        let (theirs, _) = other.0.as_chunks::<8>();
        let mut diff = 0u64;
        for (a, b) in ours.iter().zip(theirs) {
            diff |= u64::from_ne_bytes(*a) ^ u64::from_ne_bytes(*b);
        }
        diff.ct_eq(&0).into()
    }
}

impl Eq for Hash {}

impl std::hash::Hash for Hash {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.hex_buf().as_str())
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({self})")
    }
}

/// Why a string is not a [`Hash`](struct@Hash).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashParseError {
    /// The text is not 64 characters long.
    #[error("a hash is 64 lowercase hex digits, found {0} characters")]
    Length(usize),
    /// The text holds something other than `0-9a-f`, such as an uppercase digit.
    #[error("a hash is 64 lowercase hex digits (0-9, a-f); found {0:?}")]
    Digit(char),
}

impl FromStr for Hash {
    type Err = HashParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = s.as_bytes();
        if bytes.len() != 64 {
            return Err(HashParseError::Length(s.chars().count()));
        }
        let mut out = [0u8; 32];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            out[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
        }
        Ok(Hash(out))
    }
}

/// One lowercase hex digit; uppercase is refused so every hash has exactly one text form.
fn nibble(c: u8) -> Result<u8, HashParseError> {
    match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        _ => Err(HashParseError::Digit(char::from(c))),
    }
}

impl serde::Serialize for Hash {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.hex_buf().as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Hash {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct HexVisitor;

        impl serde::de::Visitor<'_> for HexVisitor {
            type Value = Hash;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string of 64 lowercase hex digits")
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Hash, E> {
                v.parse().map_err(E::custom)
            }
        }

        deserializer.deserialize_str(HexVisitor)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let mut bytes = [0u8; 32];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(37);
        }
        let h = Hash(bytes);
        assert_eq!(h.to_hex(), hex::encode(bytes));
        assert_eq!(h.to_string(), h.to_hex());
        assert_eq!(h.to_hex().parse::<Hash>(), Ok(h));
        assert_eq!(Hash::ZERO.to_hex(), "0".repeat(64));
    }

    #[test]
    fn rejects_non_canonical_text() {
        let upper = "AB".repeat(32);
        assert_eq!(upper.parse::<Hash>(), Err(HashParseError::Digit('A')));
        assert_eq!("ab".parse::<Hash>(), Err(HashParseError::Length(2)));
        assert_eq!(
            "g".repeat(64).parse::<Hash>(),
            Err(HashParseError::Digit('g'))
        );
        // Multi-byte characters must be rejected, never sliced mid-character.
        let s = format!("{}é", "a".repeat(62));
        assert!(s.parse::<Hash>().is_err());
    }

    #[test]
    fn equality_sees_every_bit() {
        let base = Hash([0x5a; 32]);
        assert_eq!(base, Hash([0x5a; 32]));
        for i in 0..32 {
            for bit in 0..8 {
                let mut other = base;
                other.0[i] ^= 1 << bit;
                assert_ne!(base, other, "byte {i} bit {bit}");
            }
        }
    }

    #[test]
    fn serde_is_hex_string() {
        let h = Hash([0xab; 32]);
        let json = serde_json::to_string(&h).unwrap();
        assert_eq!(json, format!("\"{}\"", "ab".repeat(32)));
        assert_eq!(serde_json::from_str::<Hash>(&json).unwrap(), h);
        assert!(serde_json::from_str::<Hash>("12").is_err());
    }
}
