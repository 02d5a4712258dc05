//! The Mesos JSON mapping, as stout (`JSON::Protobuf` / `protobuf::parse`) does it.
//!
//! Field names are the `.proto` names, enums are written as names, 64-bit integers as JSON
//! numbers, `bytes` as base64, doubles the way rapidjson prints them (`15.0`, bare `Infinity`).
//! Output follows declaration order and writes unset fields that have an explicit
//! `[default = …]` (unless deprecated), so our output is byte-compatible with Mesos's.
//! Input is lenient where Mesos is: unknown keys are ignored, `null` means unset, numbers may be
//! numeric strings, a single value stands for a one-element list.
//!
//! The per-message code is generated at build time from the same descriptors prost uses
//! (`build/json_codegen.rs`); this module is the runtime it calls. Decoding works straight from
//! the input bytes, with no intermediate tree: keys are matched as borrowed byte slices and only
//! the values that end up in the message are allocated.

mod error;
mod parse;
mod write;

#[cfg(test)]
pub(crate) mod testing;

pub use error::{JsonError, JsonErrorKind};
pub use parse::Parser;
pub use write::Writer;

/// A message that can be read from and written as Mesos JSON.
///
/// Implemented by generated code for every type in [`crate::mesos`]; use [`decode`] and
/// [`encode`] rather than calling these methods directly.
pub trait MesosJson: Default {
    /// Merges one JSON object from `p` into `self` (proto merge semantics).
    fn merge_json(&mut self, p: &mut Parser<'_>) -> Result<(), JsonError>;
    /// Appends `self` as one JSON object.
    fn write_json(&self, w: &mut Writer<'_>);
}

/// Decodes one message from a complete JSON document.
pub fn decode<T: MesosJson>(input: &[u8]) -> Result<T, JsonError> {
    let mut msg = T::default();
    let mut p = Parser::new(input)?;
    msg.merge_json(&mut p)?;
    p.finish()?;
    Ok(msg)
}

/// Decodes one message from a JSON string.
pub fn decode_str<T: MesosJson>(input: &str) -> Result<T, JsonError> {
    decode(input.as_bytes())
}

/// Encodes a message as Mesos JSON.
pub fn encode<T: MesosJson>(msg: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    encode_into(msg, &mut out);
    out
}

/// Encodes a message as Mesos JSON, appending to `out`.
pub fn encode_into<T: MesosJson>(msg: &T, out: &mut Vec<u8>) {
    msg.write_json(&mut Writer::new(out));
}

/// Encodes a message as a Mesos JSON string.
pub fn encode_string<T: MesosJson>(msg: &T) -> String {
    // The writer only emits UTF-8: strings are copied from `String`s, everything else is ASCII.
    String::from_utf8(encode(msg)).expect("JSON writer produced invalid UTF-8")
}
