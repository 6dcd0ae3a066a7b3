//! The channels file: secrets from the environment, files and literals; errors with
//! file:line:column and field; no secret in `Debug` of the config or of built channels.

#![allow(clippy::unwrap_used)] // Tests unwrap to fail loudly.

use breakglass_alerts::{ChannelSettings, EmailTls, build, load};
use secrecy::ExposeSecret;

const SLACK_URL: &str = "https://hooks.slack.com/services/T000/B000/SLACKSECRETTOKEN";

fn env(var: &str) -> Option<String> {
    match var {
        "SLACK_URL" => Some(SLACK_URL.into()),
        "PD_KEY" => Some("pd-routing-key-secret".into()),
        _ => None,
    }
}

#[tokio::test]
async fn loads_every_kind_with_env_file_and_literal_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("hook.secret");
    std::fs::write(&secret_file, "file-hmac-secret\n").unwrap();
    let pw_file = dir.path().join("smtp.pw");
    std::fs::write(&pw_file, "smtp-password-secret\r\n").unwrap();
    let text = format!(
        r#"public_url: https://bg.example.com/
channels:
  - name: ops-slack
    kind: slack
    webhook_url: {{env: SLACK_URL}}
  - name: pd
    kind: pagerduty
    routing_key: {{env: PD_KEY}}
  - name: pd-local
    kind: pagerduty
    routing_key: literal-routing-key
    events_url: http://127.0.0.1:9/v2/enqueue
  - name: hook
    kind: webhook
    url: https://hooks.example.com/in?token=urltoken
    secret: {{file: {}}}
  - name: mail
    kind: email
    smtp_host: smtp.example.com
    tls: starttls
    username: breakglass
    password: {{file: {}}}
    from: Breakglass <bg@example.com>
    to: [oncall@example.com, sec@example.com]
"#,
        secret_file.display(),
        pw_file.display()
    );
    let cfg = load("channels.yaml", &text, &env).unwrap();
    assert_eq!(cfg.public_url.as_deref(), Some("https://bg.example.com"));
    let names: Vec<_> = cfg.channels.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["ops-slack", "pd", "pd-local", "hook", "mail"]);

    let ChannelSettings::Slack(s) = &cfg.channels[0].settings else {
        panic!()
    };
    assert_eq!(s.webhook_url.expose_secret(), SLACK_URL);
    let ChannelSettings::PagerDuty(p) = &cfg.channels[1].settings else {
        panic!()
    };
    assert_eq!(p.routing_key.expose_secret(), "pd-routing-key-secret");
    assert_eq!(p.events_url, "https://events.pagerduty.com/v2/enqueue");
    let ChannelSettings::PagerDuty(p) = &cfg.channels[2].settings else {
        panic!()
    };
    assert_eq!(p.routing_key.expose_secret(), "literal-routing-key");
    assert_eq!(p.events_url, "http://127.0.0.1:9/v2/enqueue");
    let ChannelSettings::Webhook(w) = &cfg.channels[3].settings else {
        panic!()
    };
    assert_eq!(
        w.secret.expose_secret(),
        "file-hmac-secret",
        "final newline dropped"
    );
    let ChannelSettings::Email(e) = &cfg.channels[4].settings else {
        panic!()
    };
    assert_eq!(
        e.password.as_ref().unwrap().expose_secret(),
        "smtp-password-secret"
    );
    assert_eq!(e.tls, EmailTls::Starttls);
    assert_eq!(e.smtp_port, 587, "default port for starttls");
    assert_eq!(e.to.len(), 2);

    let secrets = [
        "SLACKSECRETTOKEN",
        "pd-routing-key-secret",
        "literal-routing-key",
        "urltoken",
        "file-hmac-secret",
        "smtp-password-secret",
    ];
    let dbg = format!("{cfg:?}");
    for s in secrets {
        assert!(!dbg.contains(s), "{s} in Debug of the config: {dbg}");
    }

    let channels = build(&cfg).await.unwrap();
    let kinds: Vec<_> = channels.iter().map(|c| (c.name(), c.kind())).collect();
    assert_eq!(
        kinds,
        [
            ("ops-slack", "slack"),
            ("pd", "pagerduty"),
            ("pd-local", "pagerduty"),
            ("hook", "webhook"),
            ("mail", "email"),
        ]
    );
    let dbg = format!(
        "{:?} {:?} {:?} {:?}",
        breakglass_alerts::SlackChannel::new("s", s, None).unwrap(),
        breakglass_alerts::PagerDutyChannel::new("p", p, None).unwrap(),
        breakglass_alerts::WebhookChannel::new(
            "w",
            w,
            None,
            std::sync::Arc::new(breakglass_engine::ports::SystemClock)
        )
        .unwrap(),
        breakglass_alerts::EmailChannel::new("e", e, None)
            .await
            .unwrap(),
    );
    for s in secrets {
        assert!(!dbg.contains(s), "{s} in Debug of a channel: {dbg}");
    }
}

fn errors(text: &str) -> Vec<String> {
    load("channels.yaml", text, &env)
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn errors_name_file_line_column_and_field() {
    let text = "channels:
  - name: ops-slack
    kind: slack
    webhook_url: {env: MISSING_VAR}
  - name: ops-slack
    kind: pagerduty
    routing_key: {file: /nonexistent/key}
  - name: hook
    kind: webhook
    url: not a url with SECRETPART
    secret: s3cr3t
  - name: mail
    kind: email
    smtp_host: smtp.example.com
    tls: ssl
    from: nobody
    to: []
    routing_key: x
  - name: x
    kind: sms
";
    let errs = errors(text);
    let expect = [
        "channels.yaml:4:18: channels[0].webhook_url: environment variable `MISSING_VAR` is not set",
        "channels.yaml:5:11: channels[1].name: channel `ops-slack` appears twice in this file",
        "channels.yaml:7:18: channels[1].routing_key: cannot read `/nonexistent/key`",
        "channels.yaml:10:10: channels[2].url: not a valid URL",
        "channels.yaml:18:18: channels[3].routing_key: not a setting of a `email` channel",
        "channels.yaml:15:10: channels[3].tls: unknown TLS mode `ssl`",
        "channels.yaml:16:11: channels[3].from: not a valid email address",
        "channels.yaml:17:9: channels[3].to: needs at least one recipient",
        "channels.yaml:20:11: channels[4].kind: unknown kind `sms`",
    ];
    for e in expect {
        assert!(
            errs.iter().any(|got| got.starts_with(e)),
            "missing `{e}` in {errs:#?}"
        );
    }
    assert_eq!(errs.len(), expect.len(), "{errs:#?}");
    let all = errs.join("\n");
    assert!(
        !all.contains("SECRETPART") && !all.contains("s3cr3t"),
        "{all}"
    );
}

#[test]
fn missing_fields_and_syntax_errors_have_positions() {
    let errs = errors("channels:\n  - name: pd\n    kind: pagerduty\n");
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].starts_with("channels.yaml:2:")
            && errs[0].contains("channels[0].routing_key: missing"),
        "{errs:?}"
    );

    let errs = errors("channels:\n  - name: pd\n    kind: pagerduty\n    routing_kye: x\n");
    assert!(
        errs[0].starts_with("channels.yaml:4:") && errs[0].contains("routing_kye"),
        "{errs:?}"
    );

    let errs = errors("public_url: ftp://x\nchannels: []\n");
    assert!(
        errs[0].starts_with("channels.yaml:1:13: public_url:"),
        "{errs:?}"
    );

    let errs = errors(
        "channels:\n  - name: a\n    kind: webhook\n    url: https://x.example\n    secret: {env: A, file: b}\n",
    );
    assert!(errs[0].starts_with("channels.yaml:5:"), "{errs:?}");
}
