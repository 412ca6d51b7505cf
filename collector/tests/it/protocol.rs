//! Every row of PROTOCOL.md's response table, over real HTTP.

use crate::harness::*;

#[test]
fn accepted_with_rejections_and_valid_events_kept() {
    let s = Server::start();
    let now = now_ms();
    let bad = format!(
        r#"{{"type":"cart","at":{now},"pv":"pv000001","url":"https://shop.example/p","action":"add","currency":"EUR","items":[{{"id":"sku","price":-3}}]}}"#
    );
    let events = [
        pageview(now - 2000, "/"),
        bad,
        pageview(now - 1000, "/products/mug"),
    ];
    let r = post(&s, &body(&batch_id(), now, &events));
    assert_eq!(r.status, 202, "{}", r.body);
    let j = r.json();
    assert_eq!(j["accepted"], 2);
    assert_eq!(j["duplicate"], false);
    assert_eq!(j["rejected"][0]["index"], 1);
    assert_eq!(j["rejected"][0]["error"], "items[0].price: must be >= 0");
    assert_eq!(r.header("access-control-allow-origin"), Some(ORIGIN));
    assert_eq!(r.header("content-type"), Some("application/json"));
    // Acknowledged means stored: visible to a fresh connection right after the answer.
    assert_eq!(s.count("SELECT count(*) FROM events"), 2);
    assert_eq!(s.count("SELECT count(*) FROM sessions"), 1);
    assert_eq!(s.count("SELECT pageviews FROM sessions"), 2);
    assert_eq!(
        s.count("SELECT sum(count) FROM dropped WHERE reason = 'rejected'"),
        1
    );
}

#[test]
fn retried_batch_is_a_duplicate_and_counted_once_also_across_restart() {
    let dir = data_dir();
    let now = now_ms();
    let id = batch_id();
    let b = body(&id, now, &[pageview(now - 10, "/")]);
    {
        let s = Server::start_in(dir.path(), |_| {});
        assert_eq!(post(&s, &b).json()["duplicate"], false);
        let again = post(&s, &b);
        assert_eq!(again.status, 202);
        assert_eq!(
            again.json(),
            serde_json::json!({"accepted": 0, "rejected": [], "duplicate": true})
        );
    }
    let s = Server::start_in(dir.path(), |_| {});
    assert_eq!(post(&s, &b).json()["duplicate"], true);
    assert_eq!(s.count("SELECT count(*) FROM events"), 1);
    assert_eq!(s.count("SELECT pageviews FROM sessions"), 1);
}

#[test]
fn text_plain_beacons_are_accepted() {
    let s = Server::start();
    let now = now_ms();
    let r = post_as(
        &s,
        &body(&batch_id(), now, &[pageview(now, "/")]),
        "text/plain;charset=UTF-8",
        Some(ORIGIN),
        UA,
    );
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(r.json()["accepted"], 1);
}

#[test]
fn derived_time_ignores_a_wrong_client_clock() {
    let s = Server::start();
    let now = now_ms();
    // The client clock is two days behind; the event happened 5 s before sending.
    let skew = -2 * 86_400_000;
    let r = post(
        &s,
        &body(&batch_id(), now + skew, &[pageview(now + skew - 5000, "/")]),
    );
    assert_eq!(r.json()["accepted"], 1);
    let ts = s.count("SELECT ts FROM events");
    assert!(
        (ts - (now - 5000)).abs() < 5_000,
        "derived {ts}, expected about {}",
        now - 5000
    );
    // An event "after" its own sending is stale.
    let r = post(&s, &body(&batch_id(), now, &[pageview(now + 60_000, "/")]));
    assert_eq!(r.json()["accepted"], 0);
    assert!(r.json()["rejected"][0]["error"]
        .as_str()
        .unwrap()
        .starts_with("at: stale"));
}

#[test]
fn bad_envelope_is_400_naming_the_field() {
    let s = Server::start();
    for (b, field) in [
        ("{", "body"),
        (r#"{"site":"shop","sent_at":1,"events":[]}"#, "batch"),
        (
            r#"{"site":"shop","batch":"0123456789abcdef","sent_at":"x","events":[]}"#,
            "sent_at",
        ),
        (
            r#"{"site":"shop","batch":"0123456789abcdef","sent_at":1,"events":"no"}"#,
            "events",
        ),
    ] {
        let r = post(&s, b);
        assert_eq!(r.status, 400, "{b}");
        assert_eq!(r.json()["field"], field, "{b}: {}", r.body);
        assert!(r.json()["error"].as_str().is_some_and(|e| !e.is_empty()));
    }
}

#[test]
fn unknown_site_and_foreign_origin_are_403() {
    let s = Server::start();
    let now = now_ms();
    let other = body(&batch_id(), now, &[pageview(now, "/")]).replace("\"shop\"", "\"nosuchsite\"");
    let r = post(&s, &other);
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (403, Some("unknown site"))
    );
    let r = post_as(
        &s,
        &body(&batch_id(), now, &[pageview(now, "/")]),
        "application/json",
        Some("https://evil.example"),
        UA,
    );
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (403, Some("origin not allowed"))
    );
    assert!(r.header("access-control-allow-origin").is_none());
    assert_eq!(s.count("SELECT count(*) FROM events"), 0);
}

#[test]
fn cors_preflight_only_for_registered_origins() {
    let s = Server::start();
    let pre = |origin: &str| {
        reply(
            agent()
                .options(&s.url("/v1/batch"))
                .header("origin", origin)
                .header("access-control-request-method", "POST")
                .header("access-control-request-headers", "content-type")
                .call(),
        )
    };
    let ok = pre(ORIGIN);
    assert_eq!(ok.status, 204);
    assert_eq!(ok.header("access-control-allow-origin"), Some(ORIGIN));
    assert!(ok.header("access-control-allow-credentials").is_none());
    let no = pre("https://evil.example");
    assert_eq!(no.status, 403);
    assert!(no.header("access-control-allow-origin").is_none());
}

#[test]
fn too_large_is_413_and_wrong_type_is_415() {
    let s = Server::start();
    let now = now_ms();
    let huge = body(
        &batch_id(),
        now,
        &[pageview(now, &format!("/{}", "a".repeat(70_000)))],
    );
    let r = post(&s, &huge);
    assert_eq!(r.status, 413);
    assert!(r.json()["error"].as_str().unwrap().contains("65536"));
    let r = post_as(
        &s,
        &body(&batch_id(), now, &[pageview(now, "/")]),
        "application/x-www-form-urlencoded",
        Some(ORIGIN),
        UA,
    );
    assert_eq!(r.status, 415);
    assert!(r.json()["error"].as_str().is_some());
}

#[test]
fn rate_limit_is_429_with_retry_after() {
    let s = Server::start_with(|c| c.rate_limit_per_second = 1);
    let now = now_ms();
    let statuses: Vec<u16> = (0..15)
        .map(|_| post(&s, &body(&batch_id(), now, &[pageview(now, "/")])).status)
        .collect();
    assert!(statuses.contains(&202));
    let limited = post(&s, &body(&batch_id(), now, &[pageview(now, "/")]));
    assert_eq!(limited.status, 429, "{statuses:?}");
    assert!(
        limited
            .header("retry-after")
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
    assert!(limited.json()["error"].as_str().is_some());
}

#[test]
fn full_queue_is_503_with_retry_after_and_loses_nothing_acknowledged() {
    let s = Server::start_with(|c| c.queue_capacity = 1);
    // Hold the database's write lock so the writer blocks on its first commit.
    let blocker = s.db();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let now = now_ms();
    let send = |i: i64| {
        let b = body(&batch_id(), now, &[pageview(now - i, "/")]);
        let addr = s.url("/v1/batch");
        std::thread::spawn(move || {
            reply(
                agent()
                    .post(&addr)
                    .header("content-type", "application/json")
                    .header("origin", ORIGIN)
                    .send(&b),
            )
        })
    };
    let first = send(1); // taken by the writer, which waits for the lock
    std::thread::sleep(std::time::Duration::from_millis(500));
    let second = send(2); // fills the one queue slot
    std::thread::sleep(std::time::Duration::from_millis(500));
    let third = post(&s, &body(&batch_id(), now, &[pageview(now - 3, "/")]));
    assert_eq!(third.status, 503, "{}", third.body);
    assert!(third.header("retry-after").unwrap().parse::<u64>().unwrap() >= 1);
    assert_eq!(
        third.header("access-control-expose-headers"),
        Some("Retry-After")
    );
    blocker.execute_batch("COMMIT").unwrap();
    assert_eq!(first.join().unwrap().status, 202);
    assert_eq!(second.join().unwrap().status, 202);
    assert_eq!(s.count("SELECT count(*) FROM events"), 2);
}

#[test]
fn health_and_metrics() {
    let s = Server::start();
    let now = now_ms();
    post(&s, &body(&batch_id(), now, &[pageview(now, "/")]));
    let h = reply(agent().get(&s.url("/healthz")).call());
    assert_eq!((h.status, h.json()["status"].as_str()), (200, Some("ok")));
    let m = reply(agent().get(&s.url("/metrics")).call());
    assert_eq!(m.status, 200);
    for name in [
        "waymark_requests_total",
        "waymark_events_total",
        "waymark_commit_seconds",
    ] {
        assert!(
            m.body.contains(name),
            "{name} missing from /metrics:\n{}",
            m.body
        );
    }
    assert!(m.body.contains(r#"status="202""#));
    let nf = reply(agent().get(&s.url("/nope")).call());
    assert_eq!(nf.status, 404);
    assert_eq!(nf.json()["error"], "not found");
}

#[test]
fn a_visitor_gets_one_session_and_restart_resumes_it() {
    let dir = data_dir();
    let now = now_ms();
    let first_session;
    {
        let s = Server::start_in(dir.path(), |_| {});
        post(&s, &body(&batch_id(), now, &[pageview(now - 60_000, "/")]));
        post(
            &s,
            &body(&batch_id(), now, &[pageview(now - 30_000, "/products/mug")]),
        );
        assert_eq!(s.count("SELECT count(*) FROM sessions"), 1);
        first_session = s.count("SELECT id FROM sessions");
        // Another browser is another visitor.
        post_as(
            &s,
            &body(&batch_id(), now, &[pageview(now, "/")]),
            "application/json",
            Some(ORIGIN),
            "Mozilla/5.0 (Macintosh) Safari/605.1.15",
        );
        assert_eq!(s.count("SELECT count(DISTINCT visitor) FROM sessions"), 2);
    }
    let s = Server::start_in(dir.path(), |_| {});
    post(
        &s,
        &body(&batch_id(), now_ms(), &[pageview(now_ms(), "/cart")]),
    );
    let id: i64 = s
        .db()
        .query_row(
            "SELECT session_id FROM events WHERE path = '/cart'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        id, first_session,
        "the open session was resumed after the restart"
    );
    assert_eq!(s.count("SELECT pageviews FROM sessions WHERE id = (SELECT session_id FROM events WHERE path = '/cart')"), 3);
}

#[test]
fn a_beacon_waits_for_room_instead_of_503_because_nobody_could_retry_it() {
    let s = Server::start_with(|c| c.queue_capacity = 1);
    let blocker = s.db();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let now = now_ms();
    // `retries`: how often a 503 is retried (as the SDK's fetch does), 100 ms apart. On a busy
    // machine the writer may not have taken the first batch yet when the second arrives.
    let send = |i: i64, content_type: &'static str, retries: u32| {
        let b = body(&batch_id(), now, &[pageview(now - i, &format!("/p{i}"))]);
        let addr = s.url("/v1/batch");
        std::thread::spawn(move || {
            let mut left = retries;
            loop {
                let r = reply(
                    agent()
                        .post(&addr)
                        .header("content-type", content_type)
                        .header("origin", ORIGIN)
                        .send(&b),
                );
                if r.status != 503 || left == 0 {
                    return r;
                }
                left -= 1;
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        })
    };
    let pause = || std::thread::sleep(std::time::Duration::from_millis(1000));
    let first = send(1, "application/json", 50); // taken by the writer, which waits for the lock
    pause();
    let second = send(2, "application/json", 50); // fills the queue
    pause();
    let beacon = send(3, "text/plain;charset=UTF-8", 0); // the queue is full: it waits
    pause();
    // A fetch client in the same situation is told to come back.
    let json = post(&s, &body(&batch_id(), now, &[pageview(now - 4, "/p4")]));
    assert_eq!(json.status, 503);
    assert!(
        !beacon.is_finished(),
        "the beacon is still waiting, not refused"
    );
    blocker.execute_batch("COMMIT").unwrap();
    for r in [first, second, beacon] {
        let r = r.join().unwrap();
        assert_eq!(r.status, 202, "{}", r.body);
    }
    assert_eq!(s.count("SELECT count(*) FROM events"), 3);
    assert_eq!(s.count("SELECT count(*) FROM events WHERE path = '/p3'"), 1);
}
