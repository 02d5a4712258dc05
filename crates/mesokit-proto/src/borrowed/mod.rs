//! Borrowed views of every Mesos message: decode without copying strings and bytes.
//!
//! `borrowed::v1::scheduler::Event<'a>` mirrors `v1::scheduler::Event` field for field, but its
//! strings are `Cow<'a, str>` and its bytes `Cow<'a, [u8]>` pointing into the input buffer, and
//! map fields are `Vec<(key, value)>`. Decoding a large OFFERS event this way allocates once per
//! repeated field instead of once per string, which is what makes a scheduler's event loop fast.
//! Every view converts to its prost type with `to_owned_message()`.
//!
//! ```
//! use mesokit_proto::borrowed;
//! let input = br#"{"type":"RESCIND","rescind":{"offer_id":{"value":"a1b2-O7"}}}"#;
//! let ev: borrowed::v1::scheduler::Event<'_> = borrowed::decode_json(input).unwrap();
//! assert_eq!(ev.rescind.as_ref().unwrap().offer_id.value, "a1b2-O7");
//! let owned = ev.to_owned_message();
//! assert_eq!(owned.rescind.unwrap().offer_id.value, "a1b2-O7");
//! ```

mod pb;

pub use pb::{PbError, PbReader};

use crate::json::{JsonError, Parser};

/// A borrowed view decodable from Mesos JSON (implemented for every generated view).
pub trait BorrowedJson<'a>: Default {
    /// Merges one JSON object from `p` into `self`.
    fn merge_json(&mut self, p: &mut Parser<'a>) -> Result<(), JsonError>;
}

/// A borrowed view decodable from protobuf (implemented for every generated view).
pub trait BorrowedProto<'a>: Default {
    /// Merges the fields read from `r` (one message's bytes) into `self`.
    fn merge_pb(&mut self, r: &mut PbReader<'a>) -> Result<(), PbError>;
}

/// Decodes a view from a complete Mesos JSON document.
pub fn decode_json<'a, T: BorrowedJson<'a>>(input: &'a [u8]) -> Result<T, JsonError> {
    let mut msg = T::default();
    let mut p = Parser::new(input)?;
    msg.merge_json(&mut p)?;
    p.finish()?;
    Ok(msg)
}

/// Decodes a view from protobuf bytes.
pub fn decode_protobuf<'a, T: BorrowedProto<'a>>(input: &'a [u8]) -> Result<T, PbError> {
    let mut msg = T::default();
    msg.merge_pb(&mut PbReader::new(input))?;
    Ok(msg)
}

#[allow(
    missing_docs,
    missing_debug_implementations,
    clippy::all,
    unreachable_pub,
    unused_parens,
    deprecated,
    dead_code
)]
mod generated {
    include!(concat!(env!("OUT_DIR"), "/mesos_borrowed.rs"));
}

pub use generated::mesos;
/// Views of the `mesos.v1` packages (`v1::TaskInfo<'a>`, `v1::scheduler::Event<'a>`, …).
pub use generated::mesos::v1;
