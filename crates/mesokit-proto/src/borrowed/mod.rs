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

/// Appends a default element to a repeated message field's list and returns it, for the
/// decoder to merge the element into. A list starts with room for what `count_ahead` finds
/// (at least four, as `Vec` starts), allocated directly rather than through `Vec`'s growth
/// path. The default is written in place: `push` builds it on the stack and copies it, and
/// `resize_with` is a call per element.
#[inline(always)]
fn push_default<T: Default>(list: &mut Vec<T>, count_ahead: impl FnOnce() -> usize) -> &mut T {
    if list.len() == list.capacity() {
        if list.capacity() == 0 {
            *list = Vec::with_capacity(count_ahead().max(4));
        } else {
            list.reserve(1);
        }
    }
    let n = list.len();
    list.spare_capacity_mut()[0].write(T::default());
    // SAFETY: the element at `n`, within the capacity, was initialised on the line above.
    #[allow(unsafe_code)]
    unsafe {
        list.set_len(n + 1)
    };
    &mut list[n]
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

#[cfg(test)]
mod tests {
    use prost::Message;

    use crate::json::testing::{Random, Rng};
    use crate::v1;

    fn varint(b: &[u8], at: &mut usize) -> u64 {
        let mut v = 0;
        for shift in (0..64).step_by(7) {
            let c = b[*at];
            *at += 1;
            v |= u64::from(c & 0x7f) << shift;
            if c < 0x80 {
                break;
            }
        }
        v
    }

    /// The top-level fields of an encoded message, each with its key.
    fn fields(b: &[u8]) -> Vec<&[u8]> {
        let mut out = Vec::new();
        let mut at = 0;
        while at < b.len() {
            let start = at;
            let key = varint(b, &mut at);
            match key & 7 {
                0 => drop(varint(b, &mut at)),
                1 => at += 8,
                2 => at += varint(b, &mut at) as usize,
                5 => at += 4,
                wt => panic!("wire type {wt}"),
            }
            out.push(&b[start..at]);
        }
        out
    }

    fn view_of_event(b: &[u8]) -> v1::scheduler::Event {
        super::decode_protobuf::<super::v1::scheduler::Event<'_>>(b)
            .expect("valid protobuf")
            .to_owned_message()
    }

    /// The decoders try fields in ascending order; any other order must give the same message,
    /// as must repeated occurrences of a singular field (merged, as protobuf says).
    #[test]
    fn field_order_and_repetition_do_not_change_the_result() {
        for seed in 0..200 {
            let mut r = Rng::new(seed);
            let (a, b) = (
                v1::scheduler::Event::random(&mut r, 5),
                v1::scheduler::Event::random(&mut r, 5),
            );
            let (ea, eb) = (a.encode_to_vec(), b.encode_to_vec());
            let mut reversed: Vec<u8> = Vec::new();
            for f in fields(&ea).iter().rev() {
                reversed.extend_from_slice(f);
            }
            // (Reversed, the elements of a repeated field come in reverse order too.)
            let expected =
                v1::scheduler::Event::decode(reversed.as_slice()).expect("prost decodes");
            assert_eq!(
                view_of_event(&reversed),
                expected,
                "seed {seed}: reversed fields"
            );
            let both = [ea.as_slice(), eb.as_slice()].concat();
            let merged = v1::scheduler::Event::decode(both.as_slice()).expect("prost decodes");
            assert_eq!(
                view_of_event(&both),
                merged,
                "seed {seed}: two messages merged"
            );
        }
        // Inside nested messages too: an Offer with its fields reversed.
        for seed in 0..100 {
            let mut r = Rng::new(seed);
            let offer = v1::Offer::random(&mut r, 5);
            let enc = offer.encode_to_vec();
            let reversed: Vec<u8> = fields(&enc)
                .iter()
                .rev()
                .flat_map(|f| f.iter().copied())
                .collect();
            let view = super::decode_protobuf::<super::v1::Offer<'_>>(&reversed).expect("valid");
            let expected = v1::Offer::decode(reversed.as_slice()).expect("prost decodes");
            assert_eq!(view.to_owned_message(), expected, "seed {seed}");
        }
    }

    /// Lists of every short length, and a list whose elements come in two runs with another
    /// field between them (the second run appends to a list already allocated, and grows it
    /// past its first capacity), decode to what prost decodes.
    #[test]
    fn short_lists_and_lists_in_two_runs_decode_whole() {
        for n in 0..10u32 {
            let resources: Vec<v1::Resource> = (0..n)
                .map(|i| crate::helpers::scalar(&format!("r{i}"), f64::from(i)))
                .collect();
            let offer = v1::Offer {
                resources,
                hostname: "h".into(),
                ..Default::default()
            };
            let enc = offer.encode_to_vec();
            let view = super::decode_protobuf::<super::v1::Offer<'_>>(&enc).expect("valid");
            assert_eq!(view.resources.len(), n as usize);
            assert_eq!(view.to_owned_message(), offer, "{n} resources");
            // The same message twice: the second resources run appends to the first.
            let twice = [enc.as_slice(), enc.as_slice()].concat();
            let view = super::decode_protobuf::<super::v1::Offer<'_>>(&twice).expect("valid");
            let expected = v1::Offer::decode(twice.as_slice()).expect("prost decodes");
            assert_eq!(view.resources.len(), 2 * n as usize);
            assert_eq!(view.to_owned_message(), expected, "{n} resources, twice");
        }
    }

    /// A long list is sized by counting its elements ahead; the count must not change what is
    /// decoded, also when other fields and unknown fields sit between the elements.
    #[test]
    fn long_lists_decode_whole_with_other_fields_between_elements() {
        let mut r = Rng::new(7);
        let offers: Vec<v1::Offer> = (0..60).map(|_| v1::Offer::random(&mut r, 3)).collect();
        let ev = v1::scheduler::event::Offers { offers };
        let enc = ev.encode_to_vec();
        assert!(
            enc.len() > 4096,
            "long enough to be counted ({} bytes)",
            enc.len()
        );
        let view =
            super::decode_protobuf::<super::v1::scheduler::event::Offers<'_>>(&enc).expect("valid");
        assert_eq!(view.offers.len(), 60);
        assert_eq!(view.to_owned_message(), ev);
        // Unknown fields (number 1000, varint and bytes) between the offers are skipped.
        let mut mixed = Vec::new();
        for f in fields(&enc) {
            mixed.extend_from_slice(f);
            mixed.extend_from_slice(&[0xc0, 0x3e, 0x05, 0xc2, 0x3e, 0x02, b'h', b'i']);
        }
        let view = super::decode_protobuf::<super::v1::scheduler::event::Offers<'_>>(&mixed)
            .expect("valid");
        assert_eq!(view.to_owned_message(), ev);
        // Cut short inside the list: an error, not a panic or a partial list.
        assert!(
            super::decode_protobuf::<super::v1::scheduler::event::Offers<'_>>(
                &enc[..enc.len() - 3]
            )
            .is_err()
        );
    }
}
