//! Shamir split/combine of the 32-byte data key over GF(2^8), via vsss-rs.

use std::convert::Infallible;

use rand::RngCore;
use rand::rngs::OsRng;
use rand_core_0_10::{TryCryptoRng, TryRng};
use vsss_rs::{Gf256, IdentifierGf256};
use zeroize::{Zeroize, Zeroizing};

use crate::share::SHARE_LEN;

/// The operating system RNG, adapted to the rand_core 0.10 traits vsss-rs 6 expects.
struct SystemRng;

impl TryRng for SystemRng {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        Ok(OsRng.next_u32())
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        Ok(OsRng.next_u64())
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        OsRng.fill_bytes(dst);
        Ok(())
    }
}

impl TryCryptoRng for SystemRng {}

/// Splits `key` into `count` shares at x = 1..=count, any `threshold` of which recover it.
///
/// Returns the y-values of share x = i + 1 at position i.
pub(crate) fn split(
    key: &[u8; SHARE_LEN],
    threshold: u8,
    count: u8,
) -> Result<Zeroizing<Vec<[u8; SHARE_LEN]>>, vsss_rs::Error> {
    let ids = (1..=count).map(|x| IdentifierGf256(Gf256(x)));
    let raw = Zeroizing::new(Gf256::split_bytes_with_participant_ids_iter(
        usize::from(threshold),
        usize::from(count),
        key,
        SystemRng,
        ids,
    )?);
    let mut out = Zeroizing::new(Vec::with_capacity(raw.len()));
    for (i, share) in raw.iter().enumerate() {
        // vsss-rs lays a byte share out as the identifier followed by the y-values.
        if share.len() != SHARE_LEN + 1 || usize::from(share[0]) != i + 1 {
            return Err(vsss_rs::Error::InvalidShare);
        }
        let mut y = [0u8; SHARE_LEN];
        y.copy_from_slice(&share[1..]);
        out.push(y);
        y.zeroize();
    }
    Ok(out)
}

/// Recovers the key from `(x, y)` points; the caller has checked count and distinctness.
pub(crate) fn combine(
    points: &[(u8, &[u8; SHARE_LEN])],
) -> Result<Zeroizing<[u8; SHARE_LEN]>, vsss_rs::Error> {
    let mut raw: Zeroizing<Vec<Vec<u8>>> = Zeroizing::new(Vec::with_capacity(points.len()));
    for (x, y) in points {
        let mut share = Vec::with_capacity(SHARE_LEN + 1);
        share.push(*x);
        share.extend_from_slice(y.as_slice());
        raw.push(share);
    }
    let secret = Zeroizing::new(Gf256::combine_bytes(raw.as_slice())?);
    if secret.len() != SHARE_LEN {
        return Err(vsss_rs::Error::InvalidShare);
    }
    let mut key = Zeroizing::new([0u8; SHARE_LEN]);
    key.copy_from_slice(&secret);
    Ok(key)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn any_threshold_subset_recovers_and_fewer_do_not() {
        let key = [42u8; SHARE_LEN];
        let shares = split(&key, 3, 5).unwrap();
        assert_eq!(shares.len(), 5);
        for a in 0..5u8 {
            for b in (a + 1)..5 {
                for c in (b + 1)..5 {
                    let points = [
                        (a + 1, &shares[usize::from(a)]),
                        (b + 1, &shares[usize::from(b)]),
                        (c + 1, &shares[usize::from(c)]),
                    ];
                    assert_eq!(*combine(&points).unwrap(), key);
                }
            }
        }
        let two = [(1, &shares[0]), (2, &shares[1])];
        assert_ne!(*combine(&two).unwrap(), key);
    }
}
