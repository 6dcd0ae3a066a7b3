//! The three recovery formats end to end in memory: a kit that verifies and refuses every
//! edit, shares re-encrypted to the recoverer and refused from another kit, and a spool whose
//! edits, reorders, truncations, extensions and foreign signatures are each refused.

#![allow(clippy::unwrap_used)]

use breakglass_audit::AuditKey;
use breakglass_custody::{CustodianKey, ExposeSecret, Identity, Secret, keygen, seal};
use breakglass_recovery::{
    Kit, KitCustodian, KitError, KitSeal, RecoverError, SpoolError, SpoolWriter, make_share_file,
    open_shares, verify_spool,
};
use serde_json::json;

struct Fixture {
    kit_text: String,
    kit: Kit,
    identities: Vec<Identity>,
}

fn age_identity() -> (Identity, CustodianKey) {
    let (text, key) = keygen();
    (Identity::parse(text.expose_secret()).unwrap(), key)
}

fn ssh_identity() -> Identity {
    let key =
        ssh_key::PrivateKey::random(&mut rand::rngs::OsRng, ssh_key::Algorithm::Ed25519).unwrap();
    Identity::parse(&key.to_openssh(ssh_key::LineEnding::LF).unwrap()).unwrap()
}

fn fixture(id: &str, secret: &str) -> Fixture {
    let mut identities = Vec::new();
    let mut custodians = Vec::new();
    let mut yaml = format!("id: {id}\ndescription: test\ntarget:\n  kind: secret\ncustodians:\n");
    for name in ["alice", "bob", "carol"] {
        let (identity, key) = age_identity();
        yaml.push_str(&format!("  - name: {name}\n    key: {}\n", key.canonical()));
        custodians.push((name.to_owned(), key));
        identities.push(identity);
    }
    yaml.push_str("quorum: 2\nmax_grant: 15m\n");
    let sealed = seal(&Secret::new(secret.as_bytes().to_vec()), 2, &custodians).unwrap();
    let kit_custodians: Vec<KitCustodian> = custodians
        .iter()
        .enumerate()
        .map(|(i, (name, key))| KitCustodian {
            name: name.clone(),
            key: key.clone(),
            commitment: sealed.commitments[i].clone(),
            share: sealed.shares[i].age_file.clone(),
        })
        .collect();
    let audit = AuditKey::from_seed([9; 32]);
    let seal = KitSeal {
        procedure_id: id,
        procedure_yaml: &yaml,
        seal_id: &sealed.seal_id,
        threshold: 2,
        ciphertext: &sealed.ciphertext,
        sealed_at_ms: 1_700_000_000_000,
        custodians: &kit_custodians,
    };
    let (kit_text, kit_id) = Kit::export(&seal, &audit, 1_700_000_100_000).unwrap();
    let kit = Kit::parse(&kit_text, Some(&audit.public())).unwrap();
    assert_eq!(kit.kit_id, kit_id);
    // The id depends on the seal only: the server recomputes it without the export time.
    let again = Kit::id_for(&seal, &audit.public()).unwrap();
    assert_eq!(again, kit_id);
    Fixture {
        kit_text,
        kit,
        identities,
    }
}

#[test]
fn a_kit_refuses_every_one_byte_edit_and_another_key() {
    let f = fixture("vault", "s3cret");
    let bytes = f.kit_text.as_bytes();
    for i in 0..200 {
        let at = (bytes.len() - 1) * i / 199;
        let mut edited = bytes.to_vec();
        edited[at] = if edited[at] == b'a' { b'b' } else { b'a' };
        let Ok(text) = String::from_utf8(edited) else {
            continue;
        };
        assert!(
            Kit::parse(&text, None).is_err(),
            "edit at byte {at} accepted"
        );
    }
    let other = AuditKey::from_seed([1; 32]).public();
    assert!(matches!(
        Kit::parse(&f.kit_text, Some(&other)),
        Err(KitError::WrongKey { .. })
    ));
    assert!(matches!(Kit::parse("{}", None), Err(KitError::Format(_))));
    assert!(matches!(
        Kit::parse("not json", None),
        Err(KitError::Format(_))
    ));
}

#[test]
fn shares_open_the_secret_with_a_quorum_and_not_from_another_kit() {
    let f = fixture("vault", "s3cret");
    let recoverer = ssh_identity();
    let to = recoverer.public();
    let a = make_share_file(&f.kit, &f.identities[0], &to).unwrap();
    let b = make_share_file(&f.kit, &f.identities[1], &to).unwrap();
    assert!(a.contains(&f.kit.kit_id));

    let (secret, who) = open_shares(
        &f.kit,
        &[("a".into(), a.clone()), ("b".into(), b.clone())],
        &recoverer,
    )
    .unwrap();
    assert_eq!(secret.expose_secret(), b"s3cret");
    assert_eq!(
        who.iter().map(|c| c.custodian.as_str()).collect::<Vec<_>>(),
        ["alice", "bob"]
    );

    let one = open_shares(&f.kit, &[("a".into(), a.clone())], &recoverer);
    assert!(matches!(
        one,
        Err(RecoverError::BelowQuorum {
            have: 1,
            need: 2,
            ..
        })
    ));
    let twice = open_shares(
        &f.kit,
        &[("a".into(), a.clone()), ("a2".into(), a.clone())],
        &recoverer,
    );
    assert!(matches!(twice, Err(RecoverError::Duplicate { .. })));

    // Another kit (another seal, the same custodian names).
    let g = fixture("vault", "s3cret");
    let foreign = make_share_file(&g.kit, &g.identities[0], &to).unwrap();
    let e = open_shares(
        &f.kit,
        &[("x".into(), foreign.clone()), ("b".into(), b.clone())],
        &recoverer,
    )
    .unwrap_err();
    assert!(matches!(e, RecoverError::OtherKit { .. }), "{e}");
    // Relabelled to this kit outside: the kit id inside the encryption still refuses it.
    let relabelled = foreign.replace(&g.kit.kit_id, &f.kit.kit_id);
    let e = open_shares(
        &f.kit,
        &[("x".into(), relabelled), ("b".into(), b.clone())],
        &recoverer,
    )
    .unwrap_err();
    assert!(matches!(e, RecoverError::OtherKit { .. }), "{e}");

    // Not a custodian; a share for someone else.
    let stranger = age_identity().0;
    assert!(matches!(
        make_share_file(&f.kit, &stranger, &to),
        Err(RecoverError::NotACustodian { .. })
    ));
    let e = open_shares(&f.kit, &[("a".into(), a), ("b".into(), b)], &ssh_identity()).unwrap_err();
    assert!(matches!(e, RecoverError::NotForYou { .. }), "{e}");
}

fn spool_text(signer: &Identity) -> String {
    let mut w = SpoolWriter::open(
        signer,
        &"ab".repeat(32),
        "vault",
        "seal_0123456789abcdef",
        "rita",
        &signer.public(),
        "fire",
        "INC-7",
        1_000,
    )
    .unwrap();
    w.push("share.accepted", json!({"custodian": "alice"}), 1_001)
        .unwrap();
    w.push("share.accepted", json!({"custodian": "bob"}), 1_002)
        .unwrap();
    w.push("break.granted", json!({"kind": "secret"}), 1_003)
        .unwrap();
    w.close("opened", 1_004).unwrap()
}

#[test]
fn a_spool_verifies_and_every_tampering_is_refused_naming_the_line() {
    let signer = ssh_identity();
    let text = spool_text(&signer);
    let v = verify_spool(&text).unwrap();
    assert_eq!(v.entries.len(), 5);
    assert_eq!(v.procedure, "vault");
    assert_eq!(v.ticket, "INC-7");
    let lines: Vec<&str> = text.lines().collect();

    let line_of = |e: SpoolError| match e {
        SpoolError::Line { line, .. } => line,
        other => panic!("expected a line error, got {other}"),
    };
    // Edited content.
    let edited = text.replacen("bob", "eve", 1);
    assert_eq!(line_of(verify_spool(&edited).unwrap_err()), 3);
    // Reordered.
    let mut swapped = lines.clone();
    swapped.swap(2, 3);
    assert_eq!(line_of(verify_spool(&swapped.join("\n")).unwrap_err()), 3);
    // A line removed from the middle.
    let mut cut = lines.clone();
    cut.remove(2);
    assert_eq!(line_of(verify_spool(&cut.join("\n")).unwrap_err()), 3);
    // Cut short at the end.
    assert!(matches!(
        verify_spool(&lines[..4].join("\n")).unwrap_err(),
        SpoolError::Truncated { lines: 4 }
    ));
    // Extended after the close.
    let extended = format!("{text}{}\n", lines[1]);
    assert_eq!(line_of(verify_spool(&extended).unwrap_err()), 6);
    // Re-signed by another key: the first line names the signer, so the whole spool must
    // be rewritten, and then it is another spool with another signer.
    let other = spool_text(&ssh_identity());
    let mut mixed: Vec<&str> = other.lines().collect();
    mixed[2] = lines[2];
    assert_eq!(line_of(verify_spool(&mixed.join("\n")).unwrap_err()), 3);
    // Garbage.
    assert!(verify_spool("").is_err());
    assert!(verify_spool("{\"seq\":0}").is_err());
    assert!(verify_spool("not json\n").is_err());
    // Age keys cannot sign a spool.
    let (age, _) = age_identity();
    assert!(SpoolWriter::open(&age, "k", "p", "s", "r", &age.public(), "x", "y", 0).is_err());
}
