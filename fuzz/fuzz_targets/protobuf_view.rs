//! Protobuf decoding of untrusted bytes into the borrowed views: never panics, and agrees with
//! prost wherever prost accepts the input.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mesokit_proto::{Message, borrowed, v1::scheduler};

fuzz_target!(|data: &[u8]| {
    let arena = borrowed::Arena::new();
    let view = borrowed::decode_protobuf::<borrowed::v1::scheduler::Event<'_>>(data, &arena);
    if let (Ok(v), Ok(p)) = (&view, scheduler::Event::decode(data)) {
        // Through encodings: NaN != NaN would fail a field-wise comparison.
        assert_eq!(v.to_owned_message().encode_to_vec(), p.encode_to_vec());
    }
});
