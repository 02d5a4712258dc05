//! Errors of the JSON codec: what was wrong, where (byte offset) and in which field.

use std::fmt;

/// What went wrong while decoding JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum JsonErrorKind {
    /// The input is not UTF-8.
    InvalidUtf8,
    /// The input ended in the middle of a value.
    UnexpectedEnd,
    /// A byte that cannot start or continue the expected token.
    Unexpected {
        expected: &'static str,
        found: String,
    },
    /// Bytes after the end of the top-level value.
    TrailingData,
    /// A bad escape sequence in a string.
    BadEscape,
    /// A number that does not fit the field's type.
    BadNumber { ty: &'static str, text: String },
    /// An enum name that the field's enum does not have (required fields only).
    UnknownEnum { name: String },
    /// A JSON number given for an enum field (Mesos accepts names only).
    EnumNumber,
    /// Invalid base64 in a `bytes` field.
    BadBase64,
    /// A JSON array given for a field that is not repeated.
    ArrayForSingular,
    /// Required fields absent from an object.
    MissingRequired(Vec<&'static str>),
    /// Objects or arrays nested deeper than the parser allows.
    TooDeep,
}

/// A JSON decoding error: the kind, the byte offset and the field path leading to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError {
    kind: JsonErrorKind,
    offset: usize,
    /// Field path, innermost first (it is built while the error travels outwards).
    path: Vec<PathSeg>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PathSeg {
    Field(&'static str),
    Index(usize),
    Key(String),
}

impl JsonError {
    pub(crate) fn new(kind: JsonErrorKind, offset: usize) -> Self {
        JsonError {
            kind,
            offset,
            path: Vec::new(),
        }
    }

    /// What went wrong.
    pub fn kind(&self) -> &JsonErrorKind {
        &self.kind
    }

    /// Byte offset in the input where the problem was found.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// The field path, e.g. `offers.offers[3].resources[0].type`.
    pub fn path(&self) -> String {
        let mut s = String::new();
        for seg in self.path.iter().rev() {
            match seg {
                PathSeg::Field(f) => {
                    if !s.is_empty() {
                        s.push('.');
                    }
                    s.push_str(f);
                }
                PathSeg::Index(i) => {
                    s.push('[');
                    s.push_str(&i.to_string());
                    s.push(']');
                }
                PathSeg::Key(k) => {
                    s.push('[');
                    s.push_str(&format!("{k:?}"));
                    s.push(']');
                }
            }
        }
        s
    }

    /// Adds the name of the field this error occurred in (used by generated code).
    #[doc(hidden)]
    #[cold]
    pub fn in_field(mut self, field: &'static str) -> Self {
        self.path.push(PathSeg::Field(field));
        self
    }

    #[cold]
    pub(crate) fn in_index(mut self, index: usize) -> Self {
        self.path.push(PathSeg::Index(index));
        self
    }

    #[cold]
    pub(crate) fn in_key(mut self, key: &str) -> Self {
        self.path.push(PathSeg::Key(key.to_owned()));
        self
    }
}

impl fmt::Display for JsonErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JsonErrorKind::InvalidUtf8 => f.write_str("input is not valid UTF-8"),
            JsonErrorKind::UnexpectedEnd => f.write_str("unexpected end of input"),
            JsonErrorKind::Unexpected { expected, found } => {
                write!(f, "expected {expected}, found {found}")
            }
            JsonErrorKind::TrailingData => f.write_str("unexpected data after the JSON value"),
            JsonErrorKind::BadEscape => f.write_str("invalid escape sequence in string"),
            JsonErrorKind::BadNumber { ty, text } => write!(f, "'{text}' is not a valid {ty}"),
            JsonErrorKind::UnknownEnum { name } => write!(f, "unknown enum value '{name}'"),
            JsonErrorKind::EnumNumber => {
                f.write_str("not expecting a JSON number for an enum field (use the value's name)")
            }
            JsonErrorKind::BadBase64 => f.write_str("invalid base64 in a bytes field"),
            JsonErrorKind::ArrayForSingular => {
                f.write_str("not expecting a JSON array for a non-repeated field")
            }
            JsonErrorKind::MissingRequired(fields) => {
                write!(f, "missing required fields: {}", fields.join(", "))
            }
            JsonErrorKind::TooDeep => f.write_str("JSON nested too deeply"),
        }
    }
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path();
        if path.is_empty() {
            write!(f, "{} (at byte {})", self.kind, self.offset)
        } else {
            write!(f, "field '{path}': {} (at byte {})", self.kind, self.offset)
        }
    }
}

impl std::error::Error for JsonError {}
