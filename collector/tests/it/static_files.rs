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
