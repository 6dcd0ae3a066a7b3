//! Smoke test of the browser harness: a real headless Chromium loads a page, the harness waits
//! for its text, and a screenshot lands on disk as a PNG.

use std::time::Duration;

use breakglass_testkit::browser::browser;

#[tokio::test]
async fn browser_loads_a_page_and_takes_a_screenshot() {
    let Some(b) = browser("testkit::browser_smoke").await else {
        return;
    };
    b.client()
        .goto("data:text/html,<!doctype html><title>smoke</title><h1 id=t>hello</h1>")
        .await
        .expect("navigate to the data: page");
    b.wait_for_text("#t", "hello", Duration::from_secs(10))
        .await;
    b.set_size(390, 844).await;
    let path = b.screenshot("testkit-smoke").await;
    assert_eq!(
        path.file_name().and_then(|n| n.to_str()),
        Some("testkit-smoke.png")
    );
    let png = std::fs::read(&path).expect("read the screenshot back");
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is not a PNG ({} bytes)",
        path.display(),
        png.len()
    );
    b.close().await;
}
