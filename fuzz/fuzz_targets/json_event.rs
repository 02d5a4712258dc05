//! Mesos JSON decoding of untrusted bytes: owned and borrowed decoders must agree and never
//! panic; whatever decodes must re-encode and decode to the same message.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mesokit_proto::{borrowed, json, v1::scheduler};

fuzz_target!(|data: &[u8]| {
    let owned = json::decode::<scheduler::Call>(data);
    let arena = borrowed::Arena::new();
    let view = borrowed::decode_json::<borrowed::v1::scheduler::Call<'_>>(data, &arena);
    assert_eq!(owned.is_ok(), view.is_ok());
    if let (Ok(o), Ok(v)) = (owned, view) {
        // Through encodings: NaN != NaN would fail a field-wise comparison.
        assert_eq!(json::encode(&v.to_owned_message()), json::encode(&o));
        let again: scheduler::Call = json::decode(&json::encode(&o)).expect("own output decodes");
        assert_eq!(json::encode(&again), json::encode(&o));
    }
    let _ = json::decode::<scheduler::Event>(data);
});
