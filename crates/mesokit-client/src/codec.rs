//! The two encodings Mesos speaks on its v1 HTTP APIs, chosen per request through
//! `Content-Type` / `Accept`: Mesos JSON (`application/json`) and binary protobuf
//! (`application/x-protobuf`).

use std::fmt;

use mesokit_proto::json::{self, JsonError, MesosJson};

/// A message that can travel in either encoding: every generated Mesos v1 type.
pub trait WireMessage: mesokit_proto::Message + MesosJson + Default {}

impl<T: mesokit_proto::Message + MesosJson + Default> WireMessage for T {}

/// The media type of request and response bodies.
///
/// Mesos compares `Content-Type` as an exact string (no parameters, case-sensitive), so these
/// are the only two values a client ever sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ContentType {
    /// `application/json`, the Mesos (stout) JSON mapping.
    #[default]
    Json,
    /// `application/x-protobuf`, proto2 binary.
    Protobuf,
}

/// A body that could not be decoded in the expected encoding.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Invalid Mesos JSON.
    #[error("invalid Mesos JSON: {0}")]
    Json(#[from] JsonError),
    /// Invalid protobuf.
    #[error("invalid protobuf: {0}")]
    Protobuf(#[from] prost::DecodeError),
}

impl ContentType {
    /// The exact media type string: `application/json` or `application/x-protobuf`.
    pub const fn media_type(self) -> &'static str {
        match self {
            ContentType::Json => "application/json",
            ContentType::Protobuf => "application/x-protobuf",
        }
    }

    /// Recognises a `Content-Type` header value. Parameters (`; charset=utf-8`) and case are
    /// tolerated on input, since a response is ours to interpret leniently.
    pub fn from_media_type(value: &str) -> Option<ContentType> {
        let essence = value.split(';').next().unwrap_or("").trim();
        if essence.eq_ignore_ascii_case("application/json") {
            Some(ContentType::Json)
        } else if essence.eq_ignore_ascii_case("application/x-protobuf") {
            Some(ContentType::Protobuf)
        } else {
            None
        }
    }

    /// Encodes a message in this encoding.
    pub fn encode<M: WireMessage>(self, msg: &M) -> Vec<u8> {
        match self {
            ContentType::Json => json::encode(msg),
            ContentType::Protobuf => msg.encode_to_vec(),
        }
    }

    /// Decodes a message from a complete body in this encoding.
    pub fn decode<M: WireMessage>(self, body: &[u8]) -> Result<M, DecodeError> {
        match self {
            ContentType::Json => Ok(json::decode(body)?),
            ContentType::Protobuf => Ok(M::decode(body)?),
        }
    }
}

impl fmt::Display for ContentType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.media_type())
    }
}

impl std::str::FromStr for ContentType {
    type Err = String;

    /// Accepts the media types and the short names `json` / `protobuf`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "json" => Ok(ContentType::Json),
            "protobuf" | "proto" => Ok(ContentType::Protobuf),
            other => ContentType::from_media_type(other).ok_or_else(|| {
                format!(
                    "unknown content type '{other}': use application/json or application/x-protobuf"
                )
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesokit_proto::v1::scheduler::{Event, event};

    fn heartbeat() -> Event {
        Event {
            r#type: Some(event::Type::Heartbeat as i32),
            ..Default::default()
        }
    }

    #[test]
    fn media_types_are_exact() {
        assert_eq!(ContentType::Json.media_type(), "application/json");
        assert_eq!(ContentType::Protobuf.media_type(), "application/x-protobuf");
        assert_eq!(
            ContentType::from_media_type("application/json; charset=utf-8"),
            Some(ContentType::Json)
        );
        assert_eq!(ContentType::from_media_type("text/plain"), None);
        assert_eq!("protobuf".parse::<ContentType>(), Ok(ContentType::Protobuf));
        assert!(
            "xml"
                .parse::<ContentType>()
                .unwrap_err()
                .contains("application/json")
        );
    }

    #[test]
    fn both_encodings_round_trip() {
        assert_eq!(
            ContentType::Json.encode(&heartbeat()),
            br#"{"type":"HEARTBEAT"}"#
        );
        assert_eq!(ContentType::Protobuf.encode(&heartbeat()), [0x08, 0x08]);
        for ct in [ContentType::Json, ContentType::Protobuf] {
            let back: Event = ct.decode(&ct.encode(&heartbeat())).unwrap();
            assert_eq!(back, heartbeat());
        }
        assert!(matches!(
            ContentType::Json.decode::<Event>(b"{"),
            Err(DecodeError::Json(_))
        ));
        assert!(matches!(
            ContentType::Protobuf.decode::<Event>(&[0x08]),
            Err(DecodeError::Protobuf(_))
        ));
    }
}
