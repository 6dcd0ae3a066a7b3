//! Slack, PagerDuty and signed webhooks against a real HTTP receiver on loopback: payload
//! shapes, signature verification as a receiver does it, status mapping, and errors that
//! carry neither URLs nor secrets.

#![allow(clippy::unwrap_used)] // Tests unwrap to fail loudly.

mod common;

use std::sync::Arc;

use breakglass_alerts::{
    PagerDutyChannel, PagerDutyConfig, SignatureError, SlackChannel, SlackConfig, WebhookChannel,
    WebhookConfig, verify_signature,
};
use breakglass_domain::Timestamp;
use breakglass_engine::ports::{Channel, ChannelError, ManualClock};
use common::{Receiver, alert, closed_port};
use hmac::{Hmac, Mac};
use secrecy::SecretString;
use sha2::Sha256;

const ROUTING_KEY: &str = "R0UT1NGKEY-very-secret-0123456789";
const HOOK_SECRET: &str = "whsec_super-secret-signing-key";
const SLACK_TOKEN: &str = "T000/B000/XXXXXXXXSECRETXXXXXXXX";

fn slack(url: String) -> SlackChannel {
    let config = SlackConfig {
        webhook_url: SecretString::from(url),
    };
    SlackChannel::new("ops-slack", &config, Some("https://bg.example.com")).unwrap()
}

fn pagerduty(events_url: String) -> PagerDutyChannel {
    let config = PagerDutyConfig {
        routing_key: SecretString::from(ROUTING_KEY),
        events_url,
    };
    PagerDutyChannel::new("pd", &config, Some("https://bg.example.com")).unwrap()
}

/// Clock at 2026-11-28T23:59:01Z, i.e. Unix 1795910341.
const NOW_S: i64 = 1_795_910_341;

fn webhook(url: String) -> WebhookChannel {
    let config = WebhookConfig {
        url: SecretString::from(url),
        secret: SecretString::from(HOOK_SECRET),
    };
    let clock = Arc::new(ManualClock::new(Timestamp(NOW_S * 1000 + 500)));
    WebhookChannel::new("hook", &config, None, clock).unwrap()
}

#[tokio::test]
async fn slack_posts_block_kit_with_fields_and_ack_button() {
    let rx = Receiver::start().await;
    let channel = slack(format!("{}/services/{SLACK_TOKEN}", rx.base));
    let mut drill = alert();
    drill.drill = true;
    drill.title = format!("[DRILL] {}", drill.title);
    let receipt = channel.send(&drill).await.unwrap();
    assert_eq!(receipt.status, "HTTP 200");
    assert!(receipt.latency_ms >= 0);

    let got = rx.requests();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].path, format!("/services/{SLACK_TOKEN}"));
    assert_eq!(got[0].header("content-type"), "application/json");
    let v = got[0].json();
    assert!(
        v["text"]
            .as_str()
            .unwrap()
            .contains("Break requested: root-db by dave")
    );
    let blocks = v["blocks"].as_array().unwrap();
    assert_eq!(blocks[0]["type"], "header");
    assert_eq!(blocks[0]["text"]["type"], "plain_text");
    assert_eq!(blocks[0]["text"]["text"], drill.title);
    let section = blocks.iter().find(|b| b["type"] == "section").unwrap();
    assert!(
        blocks.iter().any(|b| b["text"]["text"]
            == "*Approvers*\nalice &lt;alice@example.com&gt;, bob &lt;@bob on Slack&gt;"),
        "{blocks:?}"
    );
    let fields: Vec<&str> = section["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            assert_eq!(f["type"], "mrkdwn");
            f["text"].as_str().unwrap()
        })
        .collect();
    for (label, value) in [
        ("Procedure", "root-db"),
        ("Requester", "dave"),
        ("Reason", "primary is down"),
        ("Ticket", "INC-42"),
        ("Status", "requested"),
        ("When", "2026-11-28T23:59:01.123Z"),
    ] {
        assert!(
            fields.contains(&format!("*{label}*\n{value}").as_str()),
            "{label} in {fields:?}"
        );
    }
    let all = v.to_string();
    assert!(all.contains("DRILL"), "drill marker");
    let actions = blocks.iter().find(|b| b["type"] == "actions").unwrap();
    assert_eq!(actions["elements"][0]["type"], "button");
    assert_eq!(
        actions["elements"][0]["url"],
        "https://bg.example.com/acks/tok123"
    );
    let context = blocks.iter().rfind(|b| b["type"] == "context").unwrap();
    let text = context["elements"][0]["text"].as_str().unwrap();
    assert!(
        text.contains("<https://bg.example.com/breaks/brk-7|Break>"),
        "{text}"
    );
}

#[tokio::test]
async fn pagerduty_trigger_then_resolve_share_the_dedup_key() {
    let rx = Receiver::start().await;
    let channel = pagerduty(format!("{}/pd/v2/enqueue", rx.base));
    let trigger = alert();
    let receipt = channel.send(&trigger).await.unwrap();
    assert_eq!(receipt.status, "HTTP 202");
    assert_eq!(receipt.remote_id.as_deref(), Some("breakglass/brk-7"));

    let mut end = alert();
    end.id = "bg-43".into();
    end.event = "break.closed".into();
    end.resolve = true;
    let receipt = channel.send(&end).await.unwrap();
    assert_eq!(receipt.remote_id.as_deref(), Some("breakglass/brk-7"));

    let got = rx.requests();
    let t = got[0].json();
    assert_eq!(t["routing_key"], ROUTING_KEY);
    assert_eq!(t["event_action"], "trigger");
    assert_eq!(t["dedup_key"], "breakglass/brk-7");
    let p = &t["payload"];
    assert_eq!(p["summary"], trigger.title);
    assert_eq!(p["source"], "breakglass");
    assert_eq!(p["severity"], "critical");
    assert_eq!(p["timestamp"], "2026-11-28T23:59:01.123Z");
    assert_eq!(p["component"], "root-db");
    assert_eq!(p["group"], "breakglass");
    assert_eq!(p["class"], "break.requested");
    assert_eq!(p["custom_details"]["requester"], "dave");
    assert_eq!(p["custom_details"]["ticket"], "INC-42");
    let links = t["links"].as_array().unwrap();
    assert!(
        links
            .iter()
            .any(|l| l["href"] == "https://bg.example.com/acks/tok123" && l["text"].is_string())
    );

    let r = got[1].json();
    assert_eq!(r["event_action"], "resolve");
    assert_eq!(r["dedup_key"], t["dedup_key"]);
    assert_eq!(r["routing_key"], ROUTING_KEY);
    assert!(r.get("payload").is_none(), "resolve carries no payload");
}

#[tokio::test]
async fn webhook_signature_verifies_like_a_receiver_would() {
    let rx = Receiver::start().await;
    let channel = webhook(format!("{}/hooks/in?token=abc123", rx.base));
    let a = alert();
    let receipt = channel.send(&a).await.unwrap();
    assert_eq!(receipt.status, "HTTP 200");

    let got = &rx.requests()[0];
    assert_eq!(got.header("x-breakglass-id"), "bg-42");
    assert_eq!(got.header("idempotency-key"), "bg-42");
    let ts = got.header("x-breakglass-timestamp");
    assert_eq!(ts, NOW_S.to_string());
    let sig = got.header("x-breakglass-signature");

    // The reference check, one second later.
    verify_signature(HOOK_SECRET.as_bytes(), &ts, &got.body, &sig, NOW_S + 1, 300).unwrap();

    // An independent recomputation with the hmac crate.
    let mut mac = Hmac::<Sha256>::new_from_slice(HOOK_SECRET.as_bytes()).unwrap();
    mac.update(format!("{ts}.").as_bytes());
    mac.update(&got.body);
    assert_eq!(
        sig,
        format!("v1={}", hex::encode(mac.finalize().into_bytes()))
    );

    // The body holds every field of the alert.
    let v = got.json();
    assert_eq!(v["id"], "bg-42");
    assert_eq!(v["event"], "break.requested");
    assert_eq!(v["procedure"], "root-db");
    assert_eq!(v["break_id"], "brk-7");
    assert_eq!(v["reason"], "primary is down");
    assert_eq!(v["people"][0]["name"], "alice");
    assert_eq!(v["people"][0]["contact"], "alice@example.com");
    assert_eq!(v["people"][1]["contact"], "@bob on Slack");
    assert_eq!(v["people"][1]["role"], "approver");
    assert_eq!(v["dedup_key"], "breakglass/brk-7");
    assert_eq!(v["severity"], "critical");
    assert_eq!(v["at"], "2026-11-28T23:59:01.123Z");
    assert_eq!(v["drill"], false);
    assert_eq!(v["detail"]["approvals_needed"], 2);

    // A replay ten minutes later is refused.
    assert!(matches!(
        verify_signature(
            HOOK_SECRET.as_bytes(),
            &ts,
            &got.body,
            &sig,
            NOW_S + 600,
            300
        ),
        Err(SignatureError::OutsideTolerance { .. })
    ));
    // A tampered body is refused.
    let mut tampered = got.body.clone();
    let i = tampered.iter().position(|&b| b == b'4').unwrap();
    tampered[i] = b'5';
    assert_eq!(
        verify_signature(HOOK_SECRET.as_bytes(), &ts, &tampered, &sig, NOW_S, 300),
        Err(SignatureError::Mismatch)
    );
    // A moved timestamp is refused.
    assert_eq!(
        verify_signature(
            HOOK_SECRET.as_bytes(),
            &(NOW_S + 5).to_string(),
            &got.body,
            &sig,
            NOW_S,
            300
        ),
        Err(SignatureError::Mismatch)
    );
    // The wrong secret is refused.
    assert_eq!(
        verify_signature(b"other", &ts, &got.body, &sig, NOW_S, 300),
        Err(SignatureError::Mismatch)
    );
}

fn message(e: &ChannelError) -> String {
    e.to_string()
}

fn assert_clean(msg: &str, secrets: &[&str]) {
    assert!(!msg.contains("http://"), "URL in error: {msg}");
    assert!(!msg.contains("127.0.0.1"), "address in error: {msg}");
    for s in secrets {
        assert!(!msg.contains(s), "secret in error: {msg}");
    }
}

#[tokio::test]
async fn server_errors_are_unavailable_and_client_errors_rejected() {
    let rx = Receiver::start().await;
    let a = alert();

    for (code, unavailable) in [
        (500, true),
        (503, true),
        (429, true),
        (400, false),
        (404, false),
    ] {
        let url = format!("{}/status/{code}/{SLACK_TOKEN}", rx.base);
        let e = slack(url).send(&a).await.unwrap_err();
        match (&e, unavailable) {
            (ChannelError::Unavailable(m), true) | (ChannelError::Rejected(m), false) => {
                assert!(m.starts_with(&format!("HTTP {code}")), "{m}");
            }
            _ => panic!("HTTP {code} gave {e:?}"),
        }
        assert_clean(&message(&e), &[SLACK_TOKEN]);
    }

    // The receiver echoes the event, routing key included: the error must not.
    let e = pagerduty(format!("{}/status/400", rx.base))
        .send(&a)
        .await
        .unwrap_err();
    assert!(matches!(e, ChannelError::Rejected(_)), "{e:?}");
    let m = message(&e);
    assert!(m.contains("HTTP 400"), "{m}");
    assert_clean(&m, &[ROUTING_KEY, &ROUTING_KEY[..10]]);

    let e = webhook(format!("{}/status/500?token=abc123", rx.base))
        .send(&a)
        .await
        .unwrap_err();
    assert!(matches!(e, ChannelError::Unavailable(_)), "{e:?}");
    assert_clean(&message(&e), &[HOOK_SECRET, "abc123"]);
}

#[tokio::test]
async fn a_receiver_that_is_down_is_unavailable() {
    let port = closed_port();
    let a = alert();
    let e = slack(format!("http://127.0.0.1:{port}/services/{SLACK_TOKEN}"))
        .send(&a)
        .await
        .unwrap_err();
    assert!(matches!(e, ChannelError::Unavailable(_)), "{e:?}");
    let m = message(&e);
    assert!(m.contains("could not connect"), "{m}");
    assert_clean(&m, &[SLACK_TOKEN]);

    let e = pagerduty(format!("http://127.0.0.1:{port}/v2/enqueue"))
        .send(&a)
        .await
        .unwrap_err();
    assert!(matches!(e, ChannelError::Unavailable(_)), "{e:?}");
    assert_clean(&message(&e), &[ROUTING_KEY]);

    let e = webhook(format!("http://127.0.0.1:{port}/hook?token=abc123"))
        .send(&a)
        .await
        .unwrap_err();
    assert!(matches!(e, ChannelError::Unavailable(_)), "{e:?}");
    assert_clean(&message(&e), &[HOOK_SECRET, "abc123"]);
}

#[tokio::test]
async fn https_client_builds_with_ring_and_debug_shows_no_secret() {
    // Building installs the ring provider; a TLS URL must not panic for lack of a provider.
    let channel = slack(format!(
        "https://127.0.0.1:{}/services/{SLACK_TOKEN}",
        closed_port()
    ));
    let e = channel.send(&alert()).await.unwrap_err();
    assert!(matches!(e, ChannelError::Unavailable(_)), "{e:?}");
    assert_clean(&message(&e), &[SLACK_TOKEN]);

    let dbg = format!(
        "{channel:?} {:?} {:?}",
        pagerduty("http://x/".into()),
        webhook("http://y/?token=abc123".into())
    );
    for s in [SLACK_TOKEN, ROUTING_KEY, HOOK_SECRET, "abc123"] {
        assert!(!dbg.contains(s), "secret in Debug: {dbg}");
    }
}
