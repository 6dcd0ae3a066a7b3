//! Who is asking: key-based sign-in for humans (a signature for ssh-ed25519 keys, proof of
//! decrypting a challenge for age keys, which cannot sign), API tokens for machines, and the
//! enrolment of actors. No identity provider is on this path.

use breakglass_custody::{CustodianKey, KeyKind};
use breakglass_domain::{Action, Actor, Role, Timestamp};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::events::Record;
use crate::ports::StoredActor;
use crate::{Engine, EngineError, new_id};

/// SSHSIG namespace of sign-in signatures, so a login signature is useless anywhere else.
pub const LOGIN_NAMESPACE: &str = "breakglass-login";
/// How long a challenge may be answered.
const CHALLENGE_TTL_MS: i64 = 120_000;
/// Prefix of session tokens.
const SESSION_PREFIX: &str = "bgs_";
/// Prefix of API tokens.
const TOKEN_PREFIX: &str = "bgt_";

/// What the actor must do to prove they hold their key.
#[derive(Debug, Clone)]
pub enum ChallengeKind {
    /// Sign `message` with the ssh-ed25519 key, SSHSIG namespace `namespace`.
    Sign {
        /// The exact bytes to sign (UTF-8).
        message: String,
        /// SSHSIG namespace.
        namespace: &'static str,
    },
    /// Decrypt this age file with the age identity and send back its content.
    Decrypt {
        /// The age file.
        age_file: Vec<u8>,
    },
}

/// A sign-in challenge.
#[derive(Debug, Clone)]
pub struct Challenge {
    /// Identifier to answer with.
    pub id: String,
    /// Actor it was issued to.
    pub actor: String,
    /// What to do.
    pub kind: ChallengeKind,
    /// Answer before this instant.
    pub expires_at: Timestamp,
}

/// How an actor signed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginMethod {
    /// ssh-ed25519 signature.
    Signature,
    /// age challenge decrypted.
    Decryption,
}

/// A sign-in session.
#[derive(Debug)]
pub struct Session {
    /// Bearer token (shown once to the client).
    pub token: SecretString,
    /// Actor.
    pub actor: String,
    /// Expiry.
    pub expires_at: Timestamp,
}

/// What answers a challenge: the message the key must sign, or the SHA-256 of the plaintext
/// the key must decrypt (challenges are stored, so any server can take the answer).
enum Expected {
    Signature(String),
    Plaintext(String),
}

fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn random_hex(bytes: usize) -> String {
    use rand::RngCore;
    let mut buf = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buf);
    hex::encode(buf)
}

impl Engine {
    /// Issues a sign-in challenge for an actor with an enrolled key.
    pub async fn challenge(&self, actor: &str) -> Result<Challenge, EngineError> {
        let mut tx = self.store().read().await?;
        let stored = tx
            .actor(actor)
            .await?
            .ok_or_else(|| EngineError::Unauthenticated(format!("unknown actor `{actor}`")))?;
        let key = stored.actor.key.ok_or_else(|| {
            EngineError::Unauthenticated(format!("`{actor}` has no enrolled key; use an API token"))
        })?;
        let id = new_id("chl_");
        let nonce = random_hex(32);
        let expires_at = self
            .now()
            .plus(std::time::Duration::from_millis(CHALLENGE_TTL_MS as u64));
        let (kind, expected) = match key.kind() {
            KeyKind::SshEd25519 => {
                let message = format!("breakglass-login-v1\n{id}\n{actor}\n{nonce}");
                (
                    ChallengeKind::Sign {
                        message: message.clone(),
                        namespace: LOGIN_NAMESPACE,
                    },
                    Expected::Signature(message),
                )
            }
            KeyKind::AgePlugin => {
                return Err(EngineError::Unauthenticated(format!(
                    "`{actor}`'s key is a hardware key through an age plugin, which the server cannot encrypt a challenge to; sign in with an API token"
                )));
            }
            KeyKind::AgeX25519 => {
                let age_file =
                    breakglass_custody::encrypt_to(&key, nonce.as_bytes()).map_err(|e| {
                        EngineError::Invalid(format!(
                            "cannot encrypt a challenge to `{actor}`: {e}"
                        ))
                    })?;
                (
                    ChallengeKind::Decrypt { age_file },
                    Expected::Plaintext(token_hash(&nonce)),
                )
            }
        };
        let (kind_name, expected) = match expected {
            Expected::Signature(m) => ("signature", m),
            Expected::Plaintext(h) => ("decrypt", h),
        };
        let now = self.now();
        let mut tx = self.store().begin().await?;
        tx.put_challenge(&id, actor, kind_name, &expected, expires_at, now)
            .await?;
        tx.commit_bookkeeping().await?;
        Ok(Challenge {
            id,
            actor: actor.to_owned(),
            kind,
            expires_at,
        })
    }

    /// Issues a sign-in challenge to whichever actor enrolled this public key.
    pub async fn challenge_for_key(&self, key: &str) -> Result<Challenge, EngineError> {
        let key = CustodianKey::parse(key.trim())
            .map_err(|e| EngineError::Unauthenticated(format!("key: {e}")))?;
        let fingerprint = key.fingerprint();
        let actors = self.store().read().await?.actors().await?;
        let actor = actors
            .into_iter()
            .find(|a| {
                a.actor
                    .key
                    .as_ref()
                    .is_some_and(|k| k.fingerprint() == fingerprint)
            })
            .ok_or_else(|| {
                EngineError::Unauthenticated(format!("no actor is enrolled with key {fingerprint}"))
            })?;
        self.challenge(&actor.actor.name).await
    }

    /// Answers a challenge; on success opens a session and audits the sign-in.
    pub async fn login(&self, challenge_id: &str, response: &str) -> Result<Session, EngineError> {
        // Taken before the answer is checked: a challenge is used once, right or wrong.
        let mut tx = self.store().begin().await?;
        let taken = tx.take_challenge(challenge_id).await?;
        tx.commit_bookkeeping().await?;
        let (actor, kind, expected, expires_at) = taken.ok_or_else(|| {
            EngineError::Unauthenticated("unknown or already used challenge".into())
        })?;
        let now = self.now();
        if now >= expires_at {
            return Err(EngineError::Unauthenticated(
                "challenge expired; ask for a new one".into(),
            ));
        }
        let method = match kind.as_str() {
            "signature" => {
                let key = self
                    .store()
                    .read()
                    .await?
                    .actor(&actor)
                    .await?
                    .and_then(|a| a.actor.key)
                    .ok_or_else(|| {
                        EngineError::Unauthenticated(format!("`{actor}` no longer has a key"))
                    })?;
                breakglass_custody::verify_signature(
                    &key,
                    LOGIN_NAMESPACE,
                    expected.as_bytes(),
                    response,
                )
                .map_err(|e| EngineError::Unauthenticated(format!("signature refused: {e}")))?;
                LoginMethod::Signature
            }
            _ => {
                let answer = token_hash(response.trim());
                if !breakglass_custody::ct_eq(expected.as_bytes(), answer.as_bytes()) {
                    return Err(EngineError::Unauthenticated(
                        "challenge answer is wrong".into(),
                    ));
                }
                LoginMethod::Decryption
            }
        };
        let pending_actor = actor;
        self.open_session(
            &pending_actor,
            match method {
                LoginMethod::Signature => "ssh-signature",
                LoginMethod::Decryption => "age-challenge",
            },
        )
        .await
    }

    /// Exchanges an API token for a session token (the web UI's sign-in with a token), so the
    /// browser holds a secret that expires with the session instead of the long-lived token.
    pub async fn session_for_token(&self, api_token: &str) -> Result<Session, EngineError> {
        if !api_token.starts_with(TOKEN_PREFIX) {
            return Err(EngineError::Unauthenticated(
                "not an API token (they start with bgt_)".into(),
            ));
        }
        let actor = self.authenticate(api_token).await?;
        self.open_session(&actor.name, "api-token").await
    }

    async fn open_session(&self, actor: &str, method: &str) -> Result<Session, EngineError> {
        let now = self.now();
        let token = format!("{SESSION_PREFIX}{}", random_hex(32));
        let expires_at = now.plus(self.config().session_ttl);
        let mut tx = self.store().begin().await?;
        tx.put_session(&token_hash(&token), actor, expires_at, now)
            .await?;
        let mut record = Record::default();
        record.event(
            now,
            actor,
            "session.opened",
            json!({"method": method, "expires_at": expires_at.to_string()}),
        );
        self.commit(tx, record).await?;
        Ok(Session {
            token: SecretString::from(token),
            actor: actor.to_owned(),
            expires_at,
        })
    }

    /// Ends a session (sign-out); an unknown or expired session is already ended. API tokens
    /// are not sessions and are left alone.
    pub async fn end_session(&self, token: &str) -> Result<(), EngineError> {
        if !token.starts_with(SESSION_PREFIX) {
            return Ok(());
        }
        let mut tx = self.store().begin().await?;
        if let Some(actor) = tx.take_session(&token_hash(token)).await? {
            let mut record = Record::default();
            record.event(self.now(), &actor, "session.closed", json!({}));
            self.commit(tx, record).await?;
        }
        Ok(())
    }

    /// Resolves a bearer token (session or API token) to its actor.
    pub async fn authenticate(&self, bearer: &str) -> Result<Actor, EngineError> {
        let hash = token_hash(bearer);
        let mut tx = self.store().read().await?;
        let stored = if bearer.starts_with(SESSION_PREFIX) {
            let name = tx.session_actor(&hash, self.now()).await?;
            match name {
                Some(name) => tx.actor(&name).await?,
                None => None,
            }
        } else if bearer.starts_with(TOKEN_PREFIX) {
            tx.actor_by_token(&hash).await?
        } else {
            None
        };
        stored
            .map(|s| s.actor)
            .ok_or_else(|| EngineError::Unauthenticated("invalid or expired token".into()))
    }

    /// Creates the first admin when no actor exists yet; returns its API token (shown once).
    pub async fn bootstrap_admin(&self, name: &str) -> Result<Option<SecretString>, EngineError> {
        let mut tx = self.store().begin().await?;
        if !tx.actors().await?.is_empty() {
            return Ok(None);
        }
        let token = format!("{TOKEN_PREFIX}{}", random_hex(32));
        let actor = Actor {
            name: name.to_owned(),
            roles: vec![Role::Admin],
            key: None,
        };
        tx.put_actor(&StoredActor {
            actor,
            token_hash: Some(token_hash(&token)),
            contact: String::new(),
        })
        .await?;
        let mut record = Record::default();
        record.event(
            self.now(),
            "breakglass",
            "actor.enrolled",
            json!({"name": name, "roles": ["admin"], "token": true, "bootstrap": true}),
        );
        self.commit(tx, record).await?;
        Ok(Some(SecretString::from(token)))
    }

    /// Enrols or updates an actor. With `issue_token`, returns a new API token (shown once).
    pub async fn enroll(
        &self,
        by: &Actor,
        name: &str,
        roles: &[Role],
        key: Option<&str>,
        contact: &str,
        issue_token: bool,
    ) -> Result<Option<SecretString>, EngineError> {
        by.may(Action::ManageActors)?;
        if name.is_empty()
            || name.len() > 64
            || name.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(EngineError::Invalid(
                "actor name must be 1-64 characters without spaces".into(),
            ));
        }
        if roles.is_empty() {
            return Err(EngineError::Invalid(
                "an actor needs at least one role".into(),
            ));
        }
        let key = key
            .map(|k| CustodianKey::parse(k.trim()))
            .transpose()
            .map_err(|e| EngineError::Invalid(format!("key: {e}")))?;
        if key.is_none() && !issue_token {
            return Err(EngineError::Invalid(
                "an actor needs a key or an API token".into(),
            ));
        }
        let mut tx = self.store().begin().await?;
        let previous = tx.actor(name).await?;
        let token = issue_token.then(|| format!("{TOKEN_PREFIX}{}", random_hex(32)));
        let token_hash_value = match &token {
            Some(t) => Some(token_hash(t)),
            None => previous.as_ref().and_then(|p| p.token_hash.clone()),
        };
        let mut roles = roles.to_vec();
        roles.sort();
        roles.dedup();
        let fingerprint = key.as_ref().map(|k| k.fingerprint());
        let actor = Actor {
            name: name.to_owned(),
            roles: roles.clone(),
            key,
        };
        tx.put_actor(&StoredActor {
            actor,
            token_hash: token_hash_value,
            contact: contact.to_owned(),
        })
        .await?;
        let mut record = Record::default();
        record.event(
            self.now(),
            &by.name,
            if previous.is_some() {
                "actor.updated"
            } else {
                "actor.enrolled"
            },
            json!({
                "name": name,
                "roles": roles.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
                "key_fingerprint": fingerprint,
                "token": token.is_some(),
            }),
        );
        self.commit(tx, record).await?;
        Ok(token.map(SecretString::from))
    }

    /// Every enrolled actor.
    pub async fn actors(&self, by: &Actor) -> Result<Vec<StoredActor>, EngineError> {
        by.may(Action::Read)?;
        Ok(self.store().read().await?.actors().await?)
    }
}

/// Exposes a token for printing exactly once, at the edge.
pub fn expose_token(token: &SecretString) -> &str {
    token.expose_secret()
}
