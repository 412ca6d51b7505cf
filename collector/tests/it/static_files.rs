//! The built SDK served under /sdk/: content types, compression, caching.

use crate::harness::*;

#[test]
fn sdk_files_are_served_compressed_with_caching_headers() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("waymark.js"), "console.log('waymark')").unwrap();
    std::fs::write(dir.path().join("waymark.js.br"), b"BROTLI").unwrap();
    std::fs::write(dir.path().join("waymark.js.gz"), b"GZIP").unwrap();
    std::fs::write(dir.path().join("waymark_bg.wasm"), b"\0asm\x01\0\0\0").unwrap();
    let sdk = dir.path().to_path_buf();
    let s = Server::start_with(move |c| c.sdk_dir = Some(sdk));
    let get = |path: &str, enc: Option<&str>, etag: Option<&str>| {
        let mut r = agent().get(&s.url(path));
        if let Some(e) = enc {
            r = r.header("accept-encoding", e);
        }
        if let Some(t) = etag {
            r = r.header("if-none-match", t);
        }
        reply(r.call())
    };
    let plain = get("/sdk/waymark.js", Some("identity"), None);
    assert_eq!(plain.status, 200);
    assert_eq!(
        plain.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert_eq!(plain.body, "console.log('waymark')");
    assert!(plain.header("cache-control").unwrap().contains("max-age"));
    assert_eq!(plain.header("access-control-allow-origin"), Some("*"));
    let br = get("/sdk/waymark.js", Some("gzip, deflate, br"), None);
    assert_eq!(
        (br.header("content-encoding"), br.body.as_str()),
        (Some("br"), "BROTLI")
    );
    let gz = get("/sdk/waymark.js", Some("gzip"), None);
    assert_eq!(
        (gz.header("content-encoding"), gz.body.as_str()),
        (Some("gzip"), "GZIP")
    );
    let etag = plain.header("etag").unwrap().to_string();
    assert_eq!(get("/sdk/waymark.js", None, Some(&etag)).status, 304);
    let wasm = get("/sdk/waymark_bg.wasm", None, None);
    assert_eq!(wasm.header("content-type"), Some("application/wasm"));
    assert_eq!(get("/sdk/../Cargo.toml", None, None).status, 404);
    assert_eq!(get("/sdk/nothing.js", None, None).status, 404);
}

#[test]
fn demo_mode_serves_the_shop_and_registers_its_site() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("products")).unwrap();
    std::fs::create_dir_all(dir.path().join("app")).unwrap();
    std::fs::write(dir.path().join("index.html"), "<h1>home</h1>").unwrap();
    std::fs::write(dir.path().join("products/mug.html"), "<h1>mug</h1>").unwrap();
    std::fs::write(dir.path().join("app/index.html"), "<h1>spa</h1>").unwrap();
    let demo = dir.path().to_path_buf();
    let s = Server::start_with(move |c| c.demo_dir = Some(demo));
    let get = |p: &str| reply(agent().get(&s.url(p)).call());
    assert_eq!(get("/").body, "<h1>home</h1>");
    assert_eq!(
        get("/").header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(get("/products/mug.html").body, "<h1>mug</h1>");
    assert_eq!(
        get("/app/gifts/under-25").body,
        "<h1>spa</h1>",
        "SPA fallback"
    );
    assert_eq!(get("/missing.html").status, 404);
    // The shop's own origin may send for demo-shop.
    let origin = format!("http://{}", s.addr);
    let now = now_ms();
    let b = body(&batch_id(), now, &[pageview(now, "/")]).replace("\"shop\"", "\"demo-shop\"");
    let r = post_as(&s, &b, "application/json", Some(&origin), UA);
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some(origin.as_str())
    );
}

/// The dashboard's files with the security headers its page relies on.
fn assert_dashboard_headers(r: &Reply) {
    let csp = r.header("content-security-policy").expect("a CSP");
    for directive in [
        "default-src 'self'",
        "script-src 'self';",
        "connect-src 'self'",
        "img-src 'self' data:",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "{directive} in {csp}");
    }
    assert!(!csp.contains("unsafe-eval"), "{csp}");
    assert_eq!(r.header("x-frame-options"), Some("DENY"));
    assert_eq!(r.header("referrer-policy"), Some("no-referrer"));
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(r.header("access-control-allow-origin"), None);
}

fn dashboard_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("assets")).unwrap();
    std::fs::write(dir.path().join("index.html"), "<h1>dashboard</h1>").unwrap();
    std::fs::write(dir.path().join("assets/index-abc.js"), "export {}").unwrap();
    dir
}

#[test]
fn dashboard_is_served_with_security_headers() {
    let dash = dashboard_dir();
    let demo = tempfile::tempdir().unwrap();
    std::fs::write(demo.path().join("index.html"), "<h1>shop</h1>").unwrap();
    let (d, shop) = (dash.path().to_path_buf(), demo.path().to_path_buf());
    let s = Server::start_with(move |c| {
        c.dashboard_dir = Some(d);
        c.demo_dir = Some(shop);
    });
    let get = |p: &str| reply(agent().get(&s.url(p)).call());
    let index = get("/dashboard/?site=demo-shop&from=2025-01-01");
    assert_eq!(index.status, 200);
    assert_eq!(index.body, "<h1>dashboard</h1>");
    assert_eq!(
        index.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(index.header("cache-control"), Some("no-cache"));
    assert_dashboard_headers(&index);
    let js = get("/dashboard/assets/index-abc.js");
    assert_eq!(js.status, 200);
    assert!(js.header("cache-control").unwrap().contains("immutable"));
    assert_dashboard_headers(&js);
    assert_eq!(get("/dashboard/missing.js").status, 404);
    assert_eq!(get("/dashboard/../Cargo.toml").status, 404);
    // In demo mode the shop keeps `/`.
    assert_eq!(get("/").body, "<h1>shop</h1>");
    assert_eq!(get("/").header("content-security-policy"), None);
    // `/dashboard` (no slash) redirects, keeping the query, so relative asset paths resolve.
    let no_follow: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into();
    let r = reply(no_follow.get(&s.url("/dashboard?site=x")).call());
    assert_eq!(r.status, 308);
    assert_eq!(r.header("location"), Some("/dashboard/?site=x"));
}

#[test]
fn without_the_demo_the_dashboard_is_the_home_page() {
    let dash = dashboard_dir();
    let d = dash.path().to_path_buf();
    let s = Server::start_with(move |c| c.dashboard_dir = Some(d));
    let get = |p: &str| reply(agent().get(&s.url(p)).call());
    let home = get("/");
    assert_eq!(
        (home.status, home.body.as_str()),
        (200, "<h1>dashboard</h1>")
    );
    assert_dashboard_headers(&home);
    assert_dashboard_headers(&get("/assets/index-abc.js"));
    assert_eq!(get("/dashboard/").body, "<h1>dashboard</h1>");
    // The API and the other routes are untouched.
    assert_eq!(get("/healthz").status, 200);
    assert_eq!(get("/api/v1/sites/x/overview").status, 401);
}
