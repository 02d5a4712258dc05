//! A view of a message that leaves out a required field must convert to what prost decodes:
//! proto2 starts a required enum at its first declared value (TaskStatus.state: TASK_STAGING,
//! 6), not at 0. Found by the `protobuf_view` fuzz target.

use mesokit_proto::{Message, borrowed, v1::scheduler};

fn same_as_prost(input: &[u8]) {
    let arena = borrowed::Arena::new();
    let view =
        borrowed::decode_protobuf::<borrowed::v1::scheduler::Event<'_>>(input, &arena).unwrap();
    let owned = scheduler::Event::decode(input).unwrap();
    assert_eq!(
        view.to_owned_message().encode_to_vec(),
        owned.encode_to_vec()
    );
}

#[test]
fn missing_required_enum_starts_at_its_first_value() {
    // UPDATE with an empty status: no task id, no state.
    same_as_prost(b"\x2a\x00");
    // UPDATE whose status has a task id but no state.
    same_as_prost(b"\x2a\x06\x0a\x04\x0a\x02\x0a\x00");
    let owned = scheduler::Event::decode(&b"\x2a\x00"[..]).unwrap();
    assert_eq!(
        owned.update.unwrap().status.state,
        6,
        "prost's proto2 default"
    );
}
