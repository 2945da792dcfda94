//! The daemon's request parser on arbitrary bytes: a request line either
//! fails to parse (the daemon answers `BadRequest`) or parses into a request
//! that serializes and parses back to itself. The same for responses, which
//! the CLI parses from the daemon.

#![no_main]

use libfuzzer_sys::fuzz_target;
use plexus::api::{Request, Response};

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = serde_json::from_slice::<Request>(data) {
        let _ = req.op();
        let text = serde_json::to_vec(&req).expect("a parsed request serializes");
        let again: Request = serde_json::from_slice(&text).expect("a serialized request parses");
        assert_eq!(
            serde_json::to_value(&again).unwrap(),
            serde_json::to_value(&req).unwrap(),
            "round trip changed the request"
        );
    }
    if let Ok(resp) = serde_json::from_slice::<Response>(data) {
        let _ = serde_json::to_vec(&resp).expect("a parsed response serializes");
    }
});
