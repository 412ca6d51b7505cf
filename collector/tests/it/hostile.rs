//! Hostile bodies: each is answered with a 4xx naming the problem, never a crash, and the server
//! keeps serving afterwards.

use crate::harness::*;

fn envelope(events: &str) -> String {
    format!(
        r#"{{"site":"shop","batch":"{}","sent_at":{},"events":{events}}}"#,
        batch_id(),
        now_ms()
    )
}

#[test]
fn hostile_envelopes_get_a_named_4xx() {
    let s = Server::start_with(|c| c.max_body_bytes = 4 * 1024 * 1024);
    let now = now_ms();
    let ten_thousand = envelope(&format!("[{}]", vec![pageview(now, "/"); 10_000].join(",")));
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let cases: Vec<(String, u16, &str)> = vec![
        (envelope("[").chars().take(40).collect(), 400, "body"),
        (envelope(&format!("[{}]", pageview(now, "/")))[..60].to_string(), 400, "body"),
        (envelope("42"), 400, "events"),
        (envelope("[]").replace(r#""site":"shop""#, r#""site":17"#), 400, "site"),
        (envelope("[]").replace(r#""site":"shop""#, &format!(r#""site":"{}""#, "s".repeat(100_000))), 400, "site"),
        (ten_thousand, 400, "events"),
        (envelope(&deep), 400, "body"),
        (format!("{}{}", "{\"a\":".repeat(5_000), "}".repeat(5_000)), 400, "body"),
        (r#"{"site":"shop","batch":"0123456789abcdef","sent_at":NaN,"events":[]}"#.into(), 400, "body"),
        (r#"{"site":"shop","batch":"0123456789abcdef","sent_at":Infinity,"events":[]}"#.into(), 400, "body"),
        (r#"{"site":"shop","batch":"0123456789abcdef","sent_at":1e999,"events":[]}"#.into(), 400, "body"),
        (r#"{"site":"shop","batch":"0123456789abcdef","sent_at":99999999999999999999999,"events":[]}"#.into(), 400, "sent_at"),
        (r#"{"site":"shop","batch":"0123456789abcdef","sent_at":-5,"events":[]}"#.into(), 400, "sent_at"),
        ("null".into(), 400, "body"),
        (String::new(), 400, "body"),
    ];
    for (b, status, field) in cases {
        let r = post(&s, &b);
        let shown: String = b.chars().take(80).collect();
        assert_eq!(r.status, status, "{shown}: {}", r.body);
        assert_eq!(r.json()["field"], field, "{shown}: {}", r.body);
    }
    // Invalid UTF-8 cannot go through a &str body: send raw bytes.
    let r = reply(
        agent()
            .post(&s.url("/v1/batch"))
            .header("content-type", "application/json")
            .send(&b"{\"site\":\"sh\xffop\"}"[..]),
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["field"], "body");
    // Still serving.
    assert_eq!(
        post(&s, &envelope(&format!("[{}]", pageview(now, "/")))).status,
        202
    );
}

#[test]
fn hostile_events_are_rejected_one_by_one() {
    let s = Server::start();
    let now = now_ms();
    let ok = pageview(now, "/");
    let events = [
        ok.clone(),
        r#"{"type":"pageview","at":1e400,"pv":"pv000001","url":"https://shop.example/"}"#.into(),
        r#"{"type":"pageview","at":17,"pv":"pv000001","url":"https://shop.example/"}"#.into(),
        format!(
            r#"{{"type":"pageview","at":{now},"pv":"pv000001","url":"https://shop.example/{}"}}"#,
            "x".repeat(3000)
        ),
        format!(
            r#"{{"type":"custom","at":{now},"pv":"pv000001","url":"https://shop.example/","name":"{}"}}"#,
            "n".repeat(65)
        ),
        format!(
            r#"{{"type":"engagement","at":{now},"pv":"pv000001","url":"https://shop.example/","scroll":-1,"engaged_ms":5}}"#
        ),
        format!(
            r#"{{"type":"cart","at":{now},"pv":"pv000001","url":"https://shop.example/","action":"add","items":[{{"id":"a","price":1}}]}}"#
        ),
        format!(
            r#"{{"type":"custom","at":{now},"pv":"pv000001","url":"https://shop.example/","name":"x","props":{{"deep":{{"a":1}}}}}}"#
        ),
        r#"[1,2,3]"#.into(),
        r#"{"type":"pageview"}"#.into(),
        ok,
    ];
    let r = post(&s, &body(&batch_id(), now, &events));
    assert_eq!(r.status, 202, "{}", r.body);
    let j = r.json();
    assert_eq!(j["accepted"], 2);
    let rejected = j["rejected"].as_array().unwrap();
    let idx: Vec<u64> = rejected
        .iter()
        .map(|x| x["index"].as_u64().unwrap())
        .collect();
    assert_eq!(idx, (1..=9).collect::<Vec<_>>());
    let errors: Vec<&str> = rejected
        .iter()
        .map(|x| x["error"].as_str().unwrap())
        .collect();
    assert!(errors[0].starts_with("at:"), "{errors:?}");
    assert!(errors[1].starts_with("at: stale"), "{errors:?}");
    assert!(errors[2].starts_with("url:"), "{errors:?}");
    assert!(errors[3].starts_with("name:"), "{errors:?}");
    assert!(errors[4].starts_with("scroll:"), "{errors:?}");
    assert!(errors[5].starts_with("currency:"), "{errors:?}");
    assert!(errors[6].starts_with("props"), "{errors:?}");
    assert!(errors.iter().all(|e| !e.is_empty()));
    assert_eq!(s.count("SELECT count(*) FROM events"), 2);
}
