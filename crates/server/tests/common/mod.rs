//! Helpers the server's integration tests share. Each test file is a crate of its own and
//! includes this module (`mod common;`), and not every file uses every helper.

#![allow(dead_code)]

use breakglass_custody::{ExposeSecret, Identity, keygen};
use breakglass_domain::{Actor, Role};
use breakglass_engine::Engine;

/// The administrator the tests act as.
pub(crate) fn admin() -> Actor {
    Actor {
        name: "admin".into(),
        roles: vec![Role::Admin],
        key: None,
    }
}

/// Enrols `name` as a requester with a fresh age key (no API token): its identity, to open
/// what a grant reveals to it, and the actor.
pub(crate) async fn requester(engine: &Engine, name: &str) -> (Identity, Actor) {
    let (secret, key) = keygen();
    let identity = Identity::parse(secret.expose_secret()).unwrap();
    engine
        .enroll(
            &admin(),
            name,
            &[Role::Requester],
            Some(&key.canonical()),
            "",
            false,
        )
        .await
        .unwrap();
    let actor = Actor {
        name: name.into(),
        roles: vec![Role::Requester],
        key: Some(key),
    };
    (identity, actor)
}
