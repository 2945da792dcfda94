//! The state loader on arbitrary bytes, as a daemon reads `state.json` at
//! start: decoding gives a state or a typed error; a decoded state is checked
//! ([`plexus::model::State::check`]); a consistent one rebuilds its address
//! pools and host ports without a panic, and a state that serializes again
//! decodes to itself.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use plexus::model::State;

fuzz_target!(|data: &[u8]| {
    let Ok(state) = plexus::store::decode::<State>(Path::new("state.json"), data) else {
        return;
    };
    if state.check().is_err() {
        return;
    }
    let _ = state.derive();
    let text = serde_json::to_vec(&serde_json::json!({"version": 1, "state": state})).unwrap();
    let again: State = plexus::store::decode(Path::new("state.json"), &text).expect("re-encoded state decodes");
    assert_eq!(again, state);
});
