//! A break on an SSH procedure through the server's engine, against a real `sshd` and the real
//! `ssh` client: the requester (with an ssh-ed25519 key) receives a certificate signed by the
//! sealed CA, logs in with it, and an early close writes the revocation that makes sshd refuse
//! it; the CA key itself is re-sealed under a new data key and never leaves the server.

#![allow(clippy::unwrap_used)] // Tests unwrap to fail loudly.

use std::process::Command;
use std::time::Duration;

use breakglass_custody::{ExposeSecret, Identity, Secret, decrypt_share, decrypt_with, keygen};
use breakglass_domain::{Actor, Break, Role};
use breakglass_server::{ServerConfig, build};
use breakglass_testkit::sshd::{Sshd, current_user};

fn ssh_keygen(path: &std::path::Path) -> String {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "test", "-f"])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read_to_string(path.with_extension("pub"))
        .unwrap()
        .trim()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_break_issues_a_certificate_that_logs_in_until_closed() {
    let test = "server::ssh_target::ssh_break_issues_a_certificate_that_logs_in_until_closed";
    let dir = tempfile::tempdir().unwrap();
    let ca_pub = ssh_keygen(&dir.path().join("ca"));
    let ca_private = std::fs::read(dir.path().join("ca")).unwrap();
    let user = current_user();
    let Some(sshd) = Sshd::start(test, &ca_pub, &[(&user, &["bg-root"])]) else {
        return;
    };
    let dave_pub = ssh_keygen(&dir.path().join("dave"));
    let dave_id =
        Identity::parse(&std::fs::read_to_string(dir.path().join("dave")).unwrap()).unwrap();

    let data = dir.path().join("data");
    let engine = build(ServerConfig::new(&data))
        .await
        .unwrap()
        .state
        .engine
        .clone();
    let admin = Actor {
        name: "admin".into(),
        roles: vec![Role::Admin],
        key: None,
    };
    let mut ids = Vec::new();
    let mut custodians = String::new();
    for name in ["alice", "bob", "carol"] {
        let (id, key) = keygen();
        ids.push(Identity::parse(id.expose_secret()).unwrap());
        custodians.push_str(&format!("  - name: {name}\n    key: {}\n", key.canonical()));
    }
    let yaml = format!(
        "id: hosts\ntarget:\n  kind: ssh\n  details:\n    principals: bg-root\n    hosts: {}\n    krl_path: {}\n    ca_public_key: {ca_pub}\ncustodians:\n{custodians}quorum: 2\nmax_grant: 1h\n",
        sshd.address(),
        sshd.krl_path().display()
    );
    engine
        .apply(&admin, &[("hosts.yaml".into(), yaml)])
        .await
        .unwrap();
    engine
        .enroll(
            &admin,
            "dave",
            &[Role::Requester],
            Some(&dave_pub),
            "",
            false,
        )
        .await
        .unwrap();
    let first_seal = engine
        .seal(&admin, "hosts", Secret::new(ca_private))
        .await
        .unwrap()
        .seal_id;

    // The health check sees the host's banner without unsealing.
    let check = engine.check_target(&admin, "hosts").await.unwrap();
    assert!(check.ok, "{:?}", check.checks);

    let dave = Actor {
        name: "dave".into(),
        roles: vec![Role::Requester],
        key: Some(breakglass_custody::CustodianKey::parse(&dave_pub).unwrap()),
    };
    let id = engine
        .open_break(
            &dave,
            "hosts",
            "host down",
            "INC-9",
            Some(Duration::from_secs(600)),
        )
        .await
        .unwrap()
        .info
        .id
        .0;
    for (i, name) in ["alice", "bob"].iter().enumerate() {
        let c = Actor {
            name: (*name).into(),
            roles: vec![Role::Custodian],
            key: None,
        };
        let share = engine.share_for(&c, &id).await.unwrap();
        let plain = decrypt_share(&share.age_file, &ids[i]).unwrap();
        engine.approve(&c, &id, &plain.encode()).await.unwrap();
    }
    assert!(matches!(
        engine.break_(&admin, &id).await.unwrap(),
        Break::Granted(_)
    ));
    let revealed = engine.reveal(&dave, &id).await.unwrap();
    let cert =
        String::from_utf8(decrypt_with(&dave_id, &revealed.age_file).unwrap().to_vec()).unwrap();
    assert!(
        cert.starts_with("ssh-ed25519-cert-v01@openssh.com "),
        "a certificate"
    );
    assert!(!cert.contains("PRIVATE KEY"));
    let cert_path = dir.path().join("dave-cert.pub");
    std::fs::write(&cert_path, format!("{cert}\n")).unwrap();
    let listed = Command::new("ssh-keygen")
        .arg("-L")
        .arg("-f")
        .arg(&cert_path)
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.contains(&format!("breakglass:{id}:dave")),
        "{listed}"
    );
    assert!(listed.contains("bg-root"), "{listed}");

    let key_path = dir.path().join("dave");
    let ok = sshd.login(&user, &key_path, &cert_path);
    assert!(
        ok.status.success(),
        "login inside the window: {}",
        String::from_utf8_lossy(&ok.stderr)
    );

    // The CA key was re-sealed under a new data key; it was never revealed, so no taint stays.
    engine.settle().await;
    let status = engine.procedure(&admin, "hosts").await.unwrap();
    assert_ne!(status.stored.seal_id.as_deref(), Some(first_seal.as_str()));
    assert!(status.stored.taint.is_none(), "{:?}", status.stored.taint);

    // Early close: revoked on the hosts at once.
    engine.close(&dave, &id).await.unwrap();
    let g = engine.grant_record(&admin, &id).await.unwrap().unwrap();
    assert!(g.ended_at.is_some(), "{g:?}");
    let refused = sshd.login(&user, &key_path, &cert_path);
    assert!(!refused.status.success(), "login after the close must fail");
    assert!(sshd.log().contains("revoked"), "{}", sshd.log());
}
