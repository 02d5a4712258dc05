//! Borrowed views of every Mesos message: decode without copying strings and bytes.
//!
//! `borrowed::v1::scheduler::Event<'a>` mirrors `v1::scheduler::Event` field for field, but its
//! strings are `&'a str` and its bytes `&'a [u8]` pointing into the input buffer, its repeated
//! fields are [`List`]s and its boxed fields `&'a mut` references, both allocated in an
//! [`Arena`] that the caller passes to the decoder; map fields are lists of `(key, value)`.
//! A view owns nothing, so dropping it costs nothing: a whole decode is freed at once when its
//! arena is reset or dropped. Decoding a large OFFERS event this way makes a few bump
//! allocations in all, which is what makes a scheduler's event loop fast. Every view converts to
//! its prost type with `to_owned_message()`.
//!
//! A JSON string with escapes, and any base64 `bytes` value, is decoded into the arena.
//!
//! ```
//! use mesokit_proto::borrowed;
//! let input = br#"{"type":"RESCIND","rescind":{"offer_id":{"value":"a1b2-O7"}}}"#;
//! let arena = borrowed::Arena::new();
//! let ev: borrowed::v1::scheduler::Event<'_> = borrowed::decode_json(input, &arena).unwrap();
//! assert_eq!(ev.rescind.as_ref().unwrap().offer_id.value, "a1b2-O7");
//! let owned = ev.to_owned_message();
//! assert_eq!(owned.rescind.unwrap().offer_id.value, "a1b2-O7");
//! ```
//!
//! An event loop keeps one arena and resets it for each event (`Arena::reset` needs the views
//! of the previous event gone, which the borrow checker makes sure of); after the first few
//! events the arena has a chunk large enough and decoding allocates nothing.

mod pb;

use std::fmt;
use std::ops::{Deref, DerefMut};

pub use pb::{PbError, PbReader};

use crate::json::{JsonError, Parser};

/// The memory of one decode: lists, boxed sub-messages and the strings JSON had to unescape.
/// (A bump allocator: allocating is a pointer increment, and everything is freed at once.)
pub type Arena = bumpalo::Bump;

/// A borrowed view decodable from Mesos JSON (implemented for every generated view).
pub trait BorrowedJson<'a>: Default {
    /// Merges one JSON object from `p` into `self`, allocating in `arena`.
    fn merge_json(&mut self, p: &mut Parser<'a>, arena: &'a Arena) -> Result<(), JsonError>;
}

/// A borrowed view decodable from protobuf (implemented for every generated view).
pub trait BorrowedProto<'a>: Default {
    /// Merges the fields read from `r` (one message's bytes) into `self`, allocating in `arena`.
    fn merge_pb(&mut self, r: &mut PbReader<'a>, arena: &'a Arena) -> Result<(), PbError>;
}

/// Decodes a view from a complete Mesos JSON document.
pub fn decode_json<'a, T: BorrowedJson<'a>>(
    input: &'a [u8],
    arena: &'a Arena,
) -> Result<T, JsonError> {
    let mut msg = T::default();
    let mut p = Parser::new(input)?;
    msg.merge_json(&mut p, arena)?;
    p.finish()?;
    Ok(msg)
}

/// Decodes a view from protobuf bytes.
pub fn decode_protobuf<'a, T: BorrowedProto<'a>>(
    input: &'a [u8],
    arena: &'a Arena,
) -> Result<T, PbError> {
    let mut msg = T::default();
    msg.merge_pb(&mut PbReader::new(input), arena)?;
    Ok(msg)
}

/// A repeated field of a view: a list whose elements live in the decode's [`Arena`]. It reads
/// as a slice (`Deref<Target = [T]>`).
///
/// Its elements are never dropped (the arena frees their memory), so a list only holds types
/// without drop glue, which every view is: the views then have none either.
pub struct List<'a, T> {
    /// The allocation; its first `len` elements are the list, the rest room to grow.
    buf: &'a mut [T],
    len: usize,
}

impl<T> Default for List<'_, T> {
    fn default() -> Self {
        List {
            buf: &mut [],
            len: 0,
        }
    }
}

impl<'a, T: Default> List<'a, T> {
    /// Appends a default element and returns it, for the decoder to merge the element into.
    /// When the list is full, `more` says how many elements are about to come (0 if unknown):
    /// a list is then sized once, and the elements are written in place, never moved.
    #[inline(always)]
    pub(crate) fn push_default(
        &mut self,
        arena: &'a Arena,
        more: impl FnOnce() -> usize,
    ) -> &mut T {
        const {
            assert!(
                !std::mem::needs_drop::<T>(),
                "list elements are never dropped"
            )
        };
        if self.len == self.buf.len() {
            if self.len == 0 {
                self.buf = first(arena, more());
            } else {
                self.grow(arena, more());
            }
        }
        let n = self.len;
        self.len += 1;
        &mut self.buf[n]
    }

    /// Appends `value`.
    #[inline(always)]
    pub(crate) fn push(&mut self, arena: &'a Arena, value: T) {
        *self.push_default(arena, || 0) = value;
    }

    /// Makes room for `more` elements (at least one), at least doubling the allocation, so
    /// that a list arriving in many runs still costs amortised constant time per element.
    #[inline(never)]
    fn grow(&mut self, arena: &'a Arena, more: usize) {
        let len = self.len;
        let cap = (len + more).max(2 * len);
        let old = std::mem::take(&mut self.buf);
        self.buf = arena.alloc_slice_fill_with(cap, |i| match old.get_mut(i) {
            Some(e) => std::mem::take(e),
            None => T::default(),
        });
    }
}

/// A list's first allocation: `n` elements, or four (as `Vec` starts) if `n` is 0 (unknown).
#[inline(never)]
fn first<T: Default>(arena: &Arena, n: usize) -> &mut [T] {
    arena.alloc_slice_fill_default(if n == 0 { 4 } else { n })
}

impl<T> Deref for List<'_, T> {
    type Target = [T];
    #[inline]
    fn deref(&self) -> &[T] {
        &self.buf[..self.len]
    }
}

impl<T> DerefMut for List<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut [T] {
        &mut self.buf[..self.len]
    }
}

impl<'l, T> IntoIterator for &'l List<'_, T> {
    type Item = &'l T;
    type IntoIter = std::slice::Iter<'l, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<T: fmt::Debug> fmt::Debug for List<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<T: PartialEq> PartialEq for List<'_, T> {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

/// A JSON string in the arena if it had to be unescaped (generated code).
#[inline(always)]
fn str_in<'a>(arena: &'a Arena, s: std::borrow::Cow<'a, str>) -> &'a str {
    match s {
        std::borrow::Cow::Borrowed(s) => s,
        std::borrow::Cow::Owned(s) => arena.alloc_str(&s),
    }
}

/// Decoded base64 bytes, moved into the arena (generated code).
fn bytes_in(arena: &Arena, b: bytes::Bytes) -> &[u8] {
    arena.alloc_slice_copy(&b)
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
        let arena = super::Arena::new();
        super::decode_protobuf::<super::v1::scheduler::Event<'_>>(b, &arena)
            .expect("valid protobuf")
            .to_owned_message()
    }

    /// Fields are matched on their whole key: a packable list takes both its wire types, a
    /// known field with another wire type is an error (as in prost), an unknown one is skipped.
    #[test]
    fn keys_with_unexpected_wire_types() {
        use super::v1::health_check::HttpCheckInfo as View;
        use v1::health_check::HttpCheckInfo;
        let arena = super::Arena::new();
        // port = 80; statuses [200, 1] packed, then unpacked; an unknown field 6 (varint).
        let cases: [&[u8]; 3] = [
            b"\x08\x50\x22\x03\xc8\x01\x01",
            b"\x08\x50\x20\xc8\x01\x20\x01",
            b"\x08\x50\x30\x07\x22\x03\xc8\x01\x01",
        ];
        for b in cases {
            let view = super::decode_protobuf::<View<'_>>(b, &arena).expect("valid");
            let prost = HttpCheckInfo::decode(b).expect("prost decodes");
            assert_eq!(view.to_owned_message(), prost, "{b:x?}");
            assert_eq!(&*view.statuses, &[200, 1]);
        }
        // path (a string) as a varint, scheme (a string) as fixed32: errors in both decoders.
        for b in [
            &b"\x08\x50\x10\x05"[..],
            &b"\x08\x50\x1d\x00\x00\x00\x00"[..],
        ] {
            let e = super::decode_protobuf::<View<'_>>(b, &arena).unwrap_err();
            assert_eq!(e.reason(), "unexpected wire type for field", "{b:x?}");
            assert_eq!(
                e.to_string(),
                "invalid protobuf: unexpected wire type for field (at byte 3)"
            );
            assert!(HttpCheckInfo::decode(b).is_err());
        }
    }

    /// A view owns nothing: dropping one does no work (its memory is the arena's).
    #[test]
    fn views_have_no_drop_glue() {
        use std::mem::needs_drop;
        assert!(!needs_drop::<super::v1::scheduler::Event<'static>>());
        assert!(!needs_drop::<super::v1::scheduler::Call<'static>>());
        assert!(!needs_drop::<super::v1::Offer<'static>>());
        assert!(!needs_drop::<super::v1::TaskInfo<'static>>());
    }

    /// JSON strings with escapes are unescaped into the arena; plain ones borrow the input.
    #[test]
    fn json_escapes_are_unescaped_into_the_arena() {
        let arena = super::Arena::new();
        let input = br#"{"type":"ERROR","error":{"message":"a \"quoted\" \u00e9 word"}}"#;
        let ev: super::v1::scheduler::Event<'_> = super::decode_json(input, &arena).expect("valid");
        assert_eq!(
            ev.error.as_ref().expect("error").message,
            "a \"quoted\" \u{e9} word"
        );
        assert!(arena.allocated_bytes() > 0);
    }

    /// The decoders try fields in ascending order; any other order must give the same message,
    /// as must repeated occurrences of a singular field (merged, as protobuf says).
    #[test]
    fn field_order_and_repetition_do_not_change_the_result() {
        let arena = super::Arena::new();
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
            let view =
                super::decode_protobuf::<super::v1::Offer<'_>>(&reversed, &arena).expect("valid");
            let expected = v1::Offer::decode(reversed.as_slice()).expect("prost decodes");
            assert_eq!(view.to_owned_message(), expected, "seed {seed}");
        }
    }

    /// Lists of every short length, and a list whose elements come in two runs with another
    /// field between them (the second run appends to a list already allocated, and grows it
    /// past its first capacity), decode to what prost decodes.
    #[test]
    fn short_lists_and_lists_in_two_runs_decode_whole() {
        let arena = super::Arena::new();
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
            let view = super::decode_protobuf::<super::v1::Offer<'_>>(&enc, &arena).expect("valid");
            assert_eq!(view.resources.len(), n as usize);
            assert_eq!(view.to_owned_message(), offer, "{n} resources");
            // The same message twice: the second resources run appends to the first.
            let twice = [enc.as_slice(), enc.as_slice()].concat();
            let view =
                super::decode_protobuf::<super::v1::Offer<'_>>(&twice, &arena).expect("valid");
            let expected = v1::Offer::decode(twice.as_slice()).expect("prost decodes");
            assert_eq!(view.resources.len(), 2 * n as usize);
            assert_eq!(view.to_owned_message(), expected, "{n} resources, twice");
        }
    }

    /// A long list is sized by counting its elements ahead; the count must not change what is
    /// decoded, also when other fields and unknown fields sit between the elements.
    #[test]
    fn long_lists_decode_whole_with_other_fields_between_elements() {
        let arena = super::Arena::new();
        let mut r = Rng::new(7);
        let offers: Vec<v1::Offer> = (0..60).map(|_| v1::Offer::random(&mut r, 3)).collect();
        let ev = v1::scheduler::event::Offers { offers };
        let enc = ev.encode_to_vec();
        assert!(
            enc.len() > 4096,
            "long enough to be counted ({} bytes)",
            enc.len()
        );
        let view = super::decode_protobuf::<super::v1::scheduler::event::Offers<'_>>(&enc, &arena)
            .expect("valid");
        assert_eq!(view.offers.len(), 60);
        assert_eq!(view.to_owned_message(), ev);
        // Unknown fields (number 1000, varint and bytes) between the offers are skipped.
        let mut mixed = Vec::new();
        for f in fields(&enc) {
            mixed.extend_from_slice(f);
            mixed.extend_from_slice(&[0xc0, 0x3e, 0x05, 0xc2, 0x3e, 0x02, b'h', b'i']);
        }
        let view =
            super::decode_protobuf::<super::v1::scheduler::event::Offers<'_>>(&mixed, &arena)
                .expect("valid");
        assert_eq!(view.to_owned_message(), ev);
        // Cut short inside the list: an error, not a panic or a partial list.
        assert!(
            super::decode_protobuf::<super::v1::scheduler::event::Offers<'_>>(
                &enc[..enc.len() - 3],
                &arena
            )
            .is_err()
        );
    }
}
