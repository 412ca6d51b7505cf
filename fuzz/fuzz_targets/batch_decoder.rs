//! Fuzzes the batch decoder: any bytes must give a decoded batch or a named 400, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match waymark_collector::ingest::decode(data) {
        Ok(d) => {
            assert!(d.events.len() <= 100, "at most 100 events pass");
        }
        Err(e) => {
            let status = e.status().as_u16();
            assert!((400..500).contains(&status), "decode errors are client errors");
            assert!(e.body()["error"].is_string());
        }
    }
});
