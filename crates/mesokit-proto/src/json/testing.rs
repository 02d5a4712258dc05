//! Test support: random instances of every generated message, and the round-trip property
//! checked over all of them (message -> JSON -> message, message -> protobuf -> message).

use bytes::Bytes;
use prost::Message;

use super::MesosJson;

/// A small deterministic generator (xorshift*), seeded by proptest.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed | 1)
    }
    pub(crate) fn u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub(crate) fn coin(&mut self) -> bool {
        self.u64() % 3 == 0
    }
    pub(crate) fn len(&mut self) -> usize {
        (self.u64() % 3) as usize + 1
    }
    pub(crate) fn pick(&mut self, values: &[i32]) -> i32 {
        values[(self.u64() % values.len() as u64) as usize]
    }
    pub(crate) fn f64(&mut self) -> f64 {
        match self.u64() % 8 {
            0 => f64::INFINITY,
            1 => f64::NEG_INFINITY,
            2 => (self.u64() % 100_000) as f64,
            3 => 0.0,
            _ => loop {
                let v = f64::from_bits(self.u64());
                if !v.is_nan() {
                    break v;
                }
            },
        }
    }
    #[allow(dead_code)]
    pub(crate) fn f32(&mut self) -> f32 {
        loop {
            let v = f32::from_bits(self.u64() as u32);
            if !v.is_nan() {
                break v;
            }
        }
    }
    pub(crate) fn string(&mut self) -> String {
        const ALPHABET: &[char] = &[
            'a', 'Z', '0', ' ', '"', '\\', '/', '\n', '\t', '\u{1}', '\u{7f}', 'é', '€', '😀', '-',
            ':',
        ];
        let n = (self.u64() % 12) as usize;
        (0..n)
            .map(|_| ALPHABET[(self.u64() % ALPHABET.len() as u64) as usize])
            .collect()
    }
    pub(crate) fn bytes(&mut self) -> Bytes {
        let n = (self.u64() % 20) as usize;
        (0..n).map(|_| self.u64() as u8).collect::<Vec<u8>>().into()
    }
}

/// Random instance generation, implemented for every message by the code generator.
pub(crate) trait Random {
    fn random(r: &mut Rng, depth: u32) -> Self;
}

/// Something to run for every generated message type.
pub(crate) trait Visitor {
    fn visit<T: MesosJson + Random + Message + PartialEq + std::fmt::Debug>(&mut self, name: &str);
}

struct RoundTrip {
    seed: u64,
    types: usize,
}

impl Visitor for RoundTrip {
    fn visit<T: MesosJson + Random + Message + PartialEq + std::fmt::Debug>(&mut self, name: &str) {
        let mut r = Rng::new(self.seed ^ name.len() as u64);
        let msg = T::random(&mut r, 5);
        let json = super::encode(&msg);
        let back: T = super::decode(&json).unwrap_or_else(|e| {
            panic!(
                "{name}: JSON did not decode: {e}\n{}",
                String::from_utf8_lossy(&json)
            )
        });
        assert_eq!(
            back,
            msg,
            "{name}: JSON round trip\n{}",
            String::from_utf8_lossy(&json)
        );
        assert_eq!(
            super::encode(&back),
            json,
            "{name}: JSON re-encoding differs"
        );
        let pb = msg.encode_to_vec();
        assert_eq!(
            T::decode(pb.as_slice()).unwrap(),
            msg,
            "{name}: protobuf round trip"
        );
        self.types += 1;
    }
}

/// Checks one generated view against its owned type: a random owned message encoded as
/// protobuf and as JSON decodes into a view that converts back to the same message.
macro_rules! check_borrowed {
    ($seed:expr, $owned:ty, $view:ty) => {{
        let mut r = crate::json::testing::Rng::new($seed);
        let msg = <$owned as crate::json::testing::Random>::random(&mut r, 5);
        let pb = prost::Message::encode_to_vec(&msg);
        let arena = crate::borrowed::Arena::new();
        let view: $view = crate::borrowed::decode_protobuf(&pb, &arena)
            .unwrap_or_else(|e| panic!("{}: {e}", stringify!($view)));
        assert_eq!(
            view.to_owned_message(),
            msg,
            "{} from protobuf",
            stringify!($view)
        );
        let json = crate::json::encode(&msg);
        let view: $view = crate::borrowed::decode_json(&json, &arena)
            .unwrap_or_else(|e| panic!("{}: {e}", stringify!($view)));
        assert_eq!(
            view.to_owned_message(),
            msg,
            "{} from JSON",
            stringify!($view)
        );
    }};
}
pub(crate) use check_borrowed;

mod tests {
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn every_message_round_trips_through_json_and_protobuf(seed in any::<u64>()) {
            let mut v = super::RoundTrip { seed, types: 0 };
            crate::generated_json::for_each_message_type(&mut v);
            prop_assert!(v.types > 300);
        }

        #[test]
        fn every_borrowed_view_decodes_to_the_same_message(seed in any::<u64>()) {
            crate::generated_json::check_borrowed_views(seed);
        }

        /// Decoders of untrusted bytes never panic, also on near-valid input (a valid event
        /// with bytes flipped, cut or repeated), and owned and borrowed decoders agree.
        #[test]
        fn corrupted_events_give_errors_not_panics(
            seed in any::<u64>(),
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
            cut in any::<prop::sample::Index>(),
        ) {
            use crate::v1::scheduler::Event;
            use crate::json::testing::Random;
            let mut r = super::Rng::new(seed);
            let ev = Event::random(&mut r, 4);
            for mut bytes in [crate::json::encode(&ev), prost::Message::encode_to_vec(&ev)] {
                if bytes.is_empty() { continue; }
                for (at, b) in &edits {
                    let i = at.index(bytes.len());
                    bytes[i] = *b;
                }
                bytes.truncate(cut.index(bytes.len() + 1));
                let owned = crate::json::decode::<Event>(&bytes);
                let arena = crate::borrowed::Arena::new();
                let view = crate::borrowed::decode_json::<crate::borrowed::v1::scheduler::Event<'_>>(&bytes, &arena);
                prop_assert_eq!(owned.is_ok(), view.is_ok());
                // Compared through their encodings: corrupted bytes can make a double NaN,
                // and NaN != NaN would fail a field-by-field comparison of equal messages.
                let same = |a: &Event, b: &Event| prost::Message::encode_to_vec(a) == prost::Message::encode_to_vec(b);
                if let (Ok(o), Ok(v)) = (owned, view) { prop_assert!(same(&v.to_owned_message(), &o)); }
                let view = crate::borrowed::decode_protobuf::<crate::borrowed::v1::scheduler::Event<'_>>(&bytes, &arena);
                if let (Ok(v), Ok(p)) = (view, <Event as prost::Message>::decode(bytes.as_slice())) {
                    prop_assert!(same(&v.to_owned_message(), &p));
                }
            }
        }
    }
}
