//! End-to-end tests of the public API: seal, open, verify, unseal, and the named errors.

#![allow(clippy::unwrap_used)]

use breakglass_custody::*;
use rand::rngs::OsRng;

fn ssh_identity() -> Identity {
    let key = ssh_key::PrivateKey::random(&mut OsRng, ssh_key::Algorithm::Ed25519).unwrap();
    let pem = key.to_openssh(ssh_key::LineEnding::LF).unwrap();
    Identity::parse(&pem).unwrap()
}

fn age_identity() -> Identity {
    let (file, _) = keygen();
    Identity::parse(file.expose_secret()).unwrap()
}

struct Setup {
    identities: Vec<(String, Identity)>,
    sealed: Sealed,
}

fn setup(threshold: u8) -> Setup {
    let identities = vec![
        ("alice".to_owned(), age_identity()),
        ("bob".to_owned(), ssh_identity()),
        ("carol".to_owned(), age_identity()),
    ];
    let custodians: Vec<(String, CustodianKey)> = identities
        .iter()
        .map(|(n, id)| (n.clone(), id.public()))
        .collect();
    let secret = Secret::new(b"postgres://root:correct horse@db".to_vec());
    let sealed = seal(&secret, threshold, &custodians).unwrap();
    Setup { identities, sealed }
}

impl Setup {
    fn open(&self, i: usize) -> PlainShare {
        decrypt_share(&self.sealed.shares[i].age_file, &self.identities[i].1).unwrap()
    }

    fn verified(&self, i: usize) -> VerifiedShare {
        let share = PlainShare::decode(&self.open(i).encode()).unwrap();
        verify_share(
            share,
            &self.sealed.seal_id,
            &self.identities[i].0,
            &self.sealed.commitments,
        )
        .unwrap()
    }

    fn unseal(&self, shares: &[VerifiedShare]) -> Result<Secret, UnsealError> {
        unseal(
            &self.sealed.seal_id,
            &self.sealed.ciphertext,
            self.sealed.threshold,
            shares,
        )
    }
}

#[test]
fn any_threshold_of_shares_unseals() {
    let s = setup(2);
    assert!(s.sealed.seal_id.starts_with("seal_"));
    assert_eq!(s.sealed.seal_id.len(), 21);
    assert_eq!(s.sealed.shares.len(), 3);
    for (i, share) in s.sealed.shares.iter().enumerate() {
        assert_eq!(share.index as usize, i + 1);
        assert_eq!(s.sealed.commitments[i].index as usize, i + 1);
        assert!(
            share
                .age_file
                .starts_with(b"-----BEGIN AGE ENCRYPTED FILE-----")
        );
    }
    for subset in [
        vec![0, 1],
        vec![0, 2],
        vec![1, 2],
        vec![2, 0],
        vec![0, 1, 2],
    ] {
        let shares: Vec<_> = subset.iter().map(|&i| s.verified(i)).collect();
        let secret = s.unseal(&shares).unwrap();
        assert_eq!(secret.expose_secret(), b"postgres://root:correct horse@db");
    }
}

#[test]
fn fewer_than_threshold_or_duplicates_fail() {
    let s = setup(3);
    let two = [s.verified(0), s.verified(2)];
    assert!(matches!(
        s.unseal(&two),
        Err(UnsealError::NotEnoughShares { have: 2, need: 3 })
    ));
    let dup = [s.verified(0), s.verified(1), s.verified(0)];
    assert!(matches!(
        s.unseal(&dup),
        Err(UnsealError::DuplicateShare { index: 1 })
    ));
    assert!(matches!(
        s.unseal(&[]),
        Err(UnsealError::NotEnoughShares { .. })
    ));
}

#[test]
fn tampered_ciphertext_or_foreign_share_fails_unseal() {
    let s = setup(2);
    let shares = [s.verified(0), s.verified(1)];
    let mut ct = s.sealed.ciphertext.clone();
    let last = ct.len() - 1;
    ct[last] ^= 1;
    assert!(matches!(
        unseal(&s.sealed.seal_id, &ct, 2, &shares),
        Err(UnsealError::Decrypt)
    ));
    assert!(matches!(
        unseal(&s.sealed.seal_id, &ct[..10], 2, &shares),
        Err(UnsealError::MalformedCiphertext)
    ));
    assert!(matches!(
        unseal(&s.sealed.seal_id, &s.sealed.ciphertext, 1, &shares),
        Err(UnsealError::InvalidThreshold { threshold: 1 })
    ));

    let other = setup(2);
    let mixed = [s.verified(0), other.verified(1)];
    assert!(matches!(
        s.unseal(&mixed),
        Err(UnsealError::ForeignShare { .. })
    ));
}

#[test]
fn verify_names_what_is_wrong() {
    let s = setup(2);
    let other = setup(2);
    let id = &s.sealed.seal_id;
    let commitments = &s.sealed.commitments;

    // A share of another seal.
    let err = verify_share(other.open(0), id, "alice", commitments).unwrap_err();
    assert_eq!(
        err,
        ShareError::ForeignSeal {
            expected: id.clone(),
            found: other.sealed.seal_id.clone()
        }
    );

    // Alice's share submitted by bob.
    let err = verify_share(s.open(0), id, "bob", commitments).unwrap_err();
    assert_eq!(
        err,
        ShareError::WrongCustodian {
            expected: "bob".into(),
            found: "alice".into()
        }
    );

    // Someone who holds no share.
    let err = verify_share(s.open(0), id, "mallory", commitments).unwrap_err();
    assert_eq!(
        err,
        ShareError::UnknownCustodian {
            custodian: "mallory".into()
        }
    );

    // A flipped bit in the share value, and a changed index.
    let text = s.open(0).encode();
    let mut bytes = base64_decode(&text);
    for position in [bytes.len() - 1, bytes.len() - 34] {
        let mut altered = bytes.clone();
        altered[position] ^= 0x02;
        let share = PlainShare::decode(&base64_encode(&altered)).unwrap();
        let err = verify_share(share, id, "alice", commitments).unwrap_err();
        assert_eq!(
            err,
            ShareError::Corrupted {
                custodian: "alice".into()
            }
        );
    }
    bytes.truncate(bytes.len() - 5);
    assert!(matches!(
        PlainShare::decode(&base64_encode(&bytes)),
        Err(ShareError::Malformed(_))
    ));
}

#[test]
fn opening_with_the_wrong_key_is_named() {
    let s = setup(2);
    let err = decrypt_share(&s.sealed.shares[0].age_file, &s.identities[1].1).unwrap_err();
    assert_eq!(err, ShareError::NotForThisKey);
    assert!(matches!(
        decrypt_share(b"not an age file", &s.identities[0].1),
        Err(ShareError::Decrypt(_))
    ));
    let huge = vec![b'a'; MAX_SHARE_FILE_LEN + 1];
    assert!(matches!(
        decrypt_share(&huge, &s.identities[0].1),
        Err(ShareError::Malformed(_))
    ));
}

#[test]
fn seal_rejects_bad_policies() {
    let a = age_identity().public();
    let b = ssh_identity().public();
    let secret = Secret::new(b"s".to_vec());
    let two = vec![("a".to_owned(), a.clone()), ("b".to_owned(), b.clone())];
    assert!(matches!(
        seal(&secret, 1, &two),
        Err(SealError::ThresholdTooLow { threshold: 1 })
    ));
    assert!(matches!(
        seal(&secret, 3, &two),
        Err(SealError::ThresholdTooHigh {
            threshold: 3,
            custodians: 2
        })
    ));
    assert!(matches!(
        seal(&Secret::new(Vec::new()), 2, &two),
        Err(SealError::EmptySecret)
    ));
    let dup_name = vec![("a".to_owned(), a.clone()), ("a".to_owned(), b.clone())];
    assert!(matches!(
        seal(&secret, 2, &dup_name),
        Err(SealError::DuplicateCustodian { name }) if name == "a"
    ));
    // The same key with a different comment is still the same key.
    let with_comment = CustodianKey::parse(&format!("{} laptop", b.canonical())).unwrap();
    let dup_key = vec![("a".to_owned(), b.clone()), ("b".to_owned(), with_comment)];
    assert!(matches!(
        seal(&secret, 2, &dup_key),
        Err(SealError::DuplicateKey { first, second, .. }) if first == "a" && second == "b"
    ));
    let bad_name = vec![("a".to_owned(), a.clone()), ("".to_owned(), b.clone())];
    assert!(matches!(
        seal(&secret, 2, &bad_name),
        Err(SealError::InvalidCustodianName { .. })
    ));
    let many: Vec<_> = (0..256).map(|i| (format!("c{i}"), keygen().1)).collect();
    assert!(matches!(
        seal(&secret, 2, &many),
        Err(SealError::TooManyCustodians { count: 256 })
    ));
}

#[test]
fn debug_never_shows_secret_material() {
    let s = setup(2);
    let secret = Secret::new(b"TOPSECRETVALUE".to_vec());
    assert!(!format!("{secret:?}").contains("TOPSECRET"));

    let share = s.open(0);
    let encoded = share.encode();
    let bytes = base64_decode(&encoded);
    let y_hex = hex_lower(&bytes[bytes.len() - 32..]);
    let shown = format!("{share:?} {:?}", s.verified(0));
    assert!(!shown.contains(encoded.as_str()));
    assert!(!shown.contains(&y_hex));
    assert!(!shown.contains(&format!("{:?}", &bytes[bytes.len() - 32..])));

    let (file, _) = keygen();
    let identity = Identity::parse(file.expose_secret()).unwrap();
    let secret_line = file.expose_secret().lines().last().unwrap().to_owned();
    assert!(!format!("{identity:?}").contains(&secret_line));
    assert!(!format!("{file:?}").contains(&secret_line));

    let key = ssh_key::PrivateKey::random(&mut OsRng, ssh_key::Algorithm::Ed25519).unwrap();
    let pem = key.to_openssh(ssh_key::LineEnding::LF).unwrap();
    let identity = Identity::parse(&pem).unwrap();
    let shown = format!("{identity:?}");
    assert!(shown.contains("REDACTED"));
    let seed = key.key_data().ed25519().unwrap().private.to_bytes();
    assert!(!shown.contains(&hex_lower(&seed)));
    for line in pem.lines().filter(|l| !l.starts_with("-----")) {
        assert!(!shown.contains(line));
    }
}

#[test]
fn ssh_keys_sign_and_verify() {
    let identity = ssh_identity();
    let key = identity.public();
    assert_eq!(key.kind(), KeyKind::SshEd25519);
    let sig = sign(&identity, "breakglass-challenge", b"nonce-123").unwrap();
    assert!(sig.starts_with("-----BEGIN SSH SIGNATURE-----"));
    verify_signature(&key, "breakglass-challenge", b"nonce-123", &sig).unwrap();

    assert!(matches!(
        verify_signature(&key, "breakglass-challenge", b"nonce-124", &sig),
        Err(SignError::Invalid)
    ));
    assert!(matches!(
        verify_signature(&key, "other", b"nonce-123", &sig),
        Err(SignError::WrongNamespace { .. })
    ));
    let stranger = ssh_identity().public();
    assert!(matches!(
        verify_signature(&stranger, "breakglass-challenge", b"nonce-123", &sig),
        Err(SignError::WrongKey)
    ));
    assert!(matches!(
        verify_signature(&key, "breakglass-challenge", b"nonce-123", "garbage"),
        Err(SignError::Malformed(_))
    ));
    assert!(matches!(
        sign(&identity, "", b"x"),
        Err(SignError::EmptyNamespace)
    ));

    let age = age_identity();
    let err = sign(&age, "breakglass-challenge", b"x").unwrap_err();
    assert_eq!(
        err.to_string(),
        "age keys cannot sign; answer the challenge instead"
    );
    assert!(matches!(
        verify_signature(&age.public(), "n", b"x", &sig),
        Err(SignError::AgeKeyCannotSign)
    ));
}

#[test]
fn challenges_round_trip_for_both_key_kinds() {
    for identity in [age_identity(), ssh_identity()] {
        let file = encrypt_to(&identity.public(), b"challenge-abc").unwrap();
        let plain = decrypt_with(&identity, &file).unwrap();
        assert!(ct_eq(&plain, b"challenge-abc"));
        assert!(!ct_eq(&plain, b"challenge-abd"));
        assert!(!ct_eq(&plain, b"challenge-ab"));
        let other = age_identity();
        assert!(matches!(
            decrypt_with(&other, &file),
            Err(DecryptError::NotForThisKey)
        ));
    }
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn hex_lower(bytes: &[u8]) -> String {
    hex::encode(bytes)
}
