//! A pull parser over borrowed JSON bytes, driven by the generated per-message code.
//!
//! There is no token tree: the generated `merge_json` asks for an object, matches each key (a
//! borrowed slice of the input) against its field names and reads the value straight into the
//! message. Unknown keys are skipped without allocating.

use std::borrow::Cow;

use base64::Engine as _;
use bytes::Bytes;

use super::error::{JsonError, JsonErrorKind};

/// Deepest nesting of objects and arrays accepted (Mesos messages nest far less).
const MAX_DEPTH: u32 = 96;

/// Index of the first `"` or `\\` at or after `i` (or `b.len()`), eight bytes at a time.
#[inline(always)]
fn find_quote_or_backslash(b: &[u8], mut i: usize) -> usize {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    const QUOTES: u64 = LO * b'"' as u64;
    const SLASHES: u64 = LO * b'\\' as u64;
    while let Some(chunk) = b.get(i..i + 8) {
        let w = u64::from_le_bytes(chunk.try_into().expect("8-byte chunk"));
        let q = w ^ QUOTES;
        let s = w ^ SLASHES;
        // A zero byte in q or s marks a match; the lowest flagged byte is the first one.
        let hits = ((q.wrapping_sub(LO) & !q) | (s.wrapping_sub(LO) & !s)) & HI;
        if hits != 0 {
            return i + (hits.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while let Some(&c) = b.get(i) {
        if c == b'"' || c == b'\\' {
            return i;
        }
        i += 1;
    }
    b.len()
}

/// Pull parser state: the input and a cursor into it.
#[derive(Debug)]
pub struct Parser<'a> {
    src: &'a str,
    pos: usize,
    depth: u32,
}

type R<T> = Result<T, JsonError>;

pub(crate) static BASE64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);

impl<'a> Parser<'a> {
    /// A parser over `input`, which must be UTF-8.
    pub fn new(input: &'a [u8]) -> R<Self> {
        match std::str::from_utf8(input) {
            Ok(src) => Ok(Parser {
                src,
                pos: 0,
                depth: 0,
            }),
            Err(e) => Err(JsonError::new(JsonErrorKind::InvalidUtf8, e.valid_up_to())),
        }
    }

    /// Checks that nothing but whitespace follows the value just read.
    pub fn finish(&mut self) -> R<()> {
        self.ws();
        if self.pos < self.src.len() {
            return Err(self.err(JsonErrorKind::TrailingData));
        }
        Ok(())
    }

    #[inline(always)]
    fn bytes(&self) -> &'a [u8] {
        self.src.as_bytes()
    }

    #[cold]
    fn err(&self, kind: JsonErrorKind) -> JsonError {
        JsonError::new(kind, self.pos)
    }

    #[cold]
    fn unexpected(&self, expected: &'static str) -> JsonError {
        match self.src[self.pos..].chars().next() {
            None => self.err(JsonErrorKind::UnexpectedEnd),
            Some(c) => self.err(JsonErrorKind::Unexpected {
                expected,
                found: format!("{c:?}"),
            }),
        }
    }

    #[inline(always)]
    fn ws(&mut self) {
        let b = self.bytes();
        while let Some(&c) = b.get(self.pos) {
            if c == b' ' || c == b'\n' || c == b'\r' || c == b'\t' {
                self.pos += 1;
            } else {
                break;
            }
        }
    }

    #[inline(always)]
    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.bytes().get(self.pos).copied()
    }

    #[inline(always)]
    fn expect(&mut self, c: u8, what: &'static str) -> R<()> {
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.unexpected(what))
        }
    }

    fn enter(&mut self) -> R<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.err(JsonErrorKind::TooDeep));
        }
        Ok(())
    }

    /// Consumes `null` if it comes next. Generated code uses it to leave a field unset.
    #[inline]
    pub fn take_null(&mut self) -> bool {
        if self.peek() == Some(b'n') && self.src.as_bytes()[self.pos..].starts_with(b"null") {
            self.pos += 4;
            true
        } else {
            false
        }
    }

    /// Starts an object (`{`). Follow with [`Parser::next_key`] until it returns `None`.
    #[inline]
    pub fn begin_object(&mut self) -> R<()> {
        match self.peek() {
            Some(b'{') => {
                self.pos += 1;
                self.enter()
            }
            Some(b'[') => Err(self.err(JsonErrorKind::ArrayForSingular)),
            _ => Err(self.unexpected("'{'")),
        }
    }

    /// The next key of the current object, with its `:` consumed, or `None` after the `}`.
    /// `first` must start `true` for each object.
    #[inline]
    pub fn next_key(&mut self, first: &mut bool) -> R<Option<Cow<'a, str>>> {
        match self.peek() {
            Some(b'}') => {
                self.pos += 1;
                self.depth -= 1;
                return Ok(None);
            }
            Some(b',') if !*first => {
                self.pos += 1;
                self.ws();
            }
            _ if *first => {}
            _ => return Err(self.unexpected("',' or '}'")),
        }
        *first = false;
        if self.bytes().get(self.pos) != Some(&b'"') {
            return Err(self.unexpected("a string key"));
        }
        let key = self.string_body()?;
        self.expect(b':', "':'")?;
        Ok(Some(key))
    }

    /// Reads a string token (the cursor is on its opening quote).
    #[inline]
    fn string_body(&mut self) -> R<Cow<'a, str>> {
        let b = self.bytes();
        let start = self.pos + 1;
        let i = find_quote_or_backslash(b, start);
        match b.get(i) {
            Some(b'"') => {
                self.pos = i + 1;
                Ok(Cow::Borrowed(&self.src[start..i]))
            }
            Some(_) => self.string_escaped(start, i).map(Cow::Owned),
            None => {
                self.pos = b.len();
                Err(self.err(JsonErrorKind::UnexpectedEnd))
            }
        }
    }

    #[cold]
    fn string_escaped(&mut self, start: usize, first_escape: usize) -> R<String> {
        let b = self.bytes();
        let mut out = String::with_capacity(first_escape - start + 16);
        out.push_str(&self.src[start..first_escape]);
        let mut i = first_escape;
        loop {
            let Some(&c) = b.get(i) else {
                self.pos = b.len();
                return Err(self.err(JsonErrorKind::UnexpectedEnd));
            };
            match c {
                b'"' => {
                    self.pos = i + 1;
                    return Ok(out);
                }
                b'\\' => {
                    let Some(&e) = b.get(i + 1) else {
                        self.pos = b.len();
                        return Err(self.err(JsonErrorKind::UnexpectedEnd));
                    };
                    i += 2;
                    match e {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let (ch, next) = self.unicode_escape(i)?;
                            out.push(ch);
                            i = next;
                        }
                        _ => {
                            self.pos = i - 1;
                            return Err(self.err(JsonErrorKind::BadEscape));
                        }
                    }
                }
                _ => {
                    // Copy a run of plain bytes at once; it ends at an ASCII byte, so the slice
                    // boundaries are char boundaries.
                    let end = find_quote_or_backslash(b, i);
                    out.push_str(&self.src[i..end]);
                    i = end;
                }
            }
        }
    }

    fn hex4(&mut self, at: usize) -> R<u32> {
        let Some(digits) = self.src.get(at..at + 4) else {
            self.pos = at;
            return Err(self.err(JsonErrorKind::BadEscape));
        };
        u32::from_str_radix(digits, 16).map_err(|_| {
            self.pos = at;
            self.err(JsonErrorKind::BadEscape)
        })
    }

    /// Decodes `XXXX` (and a following `\uXXXX` low surrogate) starting at `at`.
    fn unicode_escape(&mut self, at: usize) -> R<(char, usize)> {
        let hi = self.hex4(at)?;
        if (0xD800..0xDC00).contains(&hi) {
            if self.src.as_bytes().get(at + 4..at + 6) == Some(b"\\u") {
                let lo = self.hex4(at + 6)?;
                if (0xDC00..0xE000).contains(&lo) {
                    let c = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                    if let Some(ch) = char::from_u32(c) {
                        return Ok((ch, at + 10));
                    }
                }
            }
            self.pos = at;
            return Err(self.err(JsonErrorKind::BadEscape));
        }
        match char::from_u32(hi) {
            Some(ch) => Ok((ch, at + 4)),
            None => {
                self.pos = at;
                Err(self.err(JsonErrorKind::BadEscape))
            }
        }
    }

    /// Reads a JSON string (or, leniently, a bare number or boolean as its text).
    #[inline]
    fn str_token(&mut self) -> R<Cow<'a, str>> {
        match self.peek() {
            Some(b'"') => self.string_body(),
            Some(b'[') => Err(self.err(JsonErrorKind::ArrayForSingular)),
            _ => Err(self.unexpected("a string")),
        }
    }

    /// Reads a `string` field.
    #[inline]
    pub fn string(&mut self) -> R<String> {
        Ok(self.str_token()?.into_owned())
    }

    /// Reads a `string` field, borrowing from the input when it has no escapes.
    #[inline]
    pub fn str_cow(&mut self) -> R<Cow<'a, str>> {
        self.str_token()
    }

    /// Reads a `bytes` field for a borrowed view (base64 always decodes into a new buffer).
    pub fn bytes_cow(&mut self) -> R<Cow<'a, [u8]>> {
        Ok(Cow::Owned(self.bytes_field()?.into()))
    }

    /// Reads a `bytes` field (base64; whitespace inside is tolerated).
    pub fn bytes_field(&mut self) -> R<Bytes> {
        let at = self.pos;
        let s = self.str_token()?;
        let decoded = match BASE64.decode(s.as_bytes()) {
            Ok(v) => v,
            Err(_) => {
                let compact: Vec<u8> = s.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
                BASE64
                    .decode(&compact)
                    .map_err(|_| JsonError::new(JsonErrorKind::BadBase64, at))?
            }
        };
        Ok(Bytes::from(decoded))
    }

    /// Reads an enum field's value name. A JSON number is an error, as in Mesos.
    #[inline]
    pub fn enum_name(&mut self) -> R<Cow<'a, str>> {
        match self.peek() {
            Some(b'"') => self.string_body(),
            Some(b'-' | b'0'..=b'9') => Err(self.err(JsonErrorKind::EnumNumber)),
            Some(b'[') => Err(self.err(JsonErrorKind::ArrayForSingular)),
            _ => Err(self.unexpected("an enum value name")),
        }
    }

    /// The error for an enum name the field's enum does not know (generated code).
    #[cold]
    pub fn unknown_enum(&self, name: &str) -> JsonError {
        self.err(JsonErrorKind::UnknownEnum {
            name: name.to_owned(),
        })
    }

    /// Reads the text of a number token, or of a string holding one (Mesos accepts both).
    #[inline]
    fn number_text(&mut self, ty: &'static str) -> R<Cow<'a, str>> {
        match self.peek() {
            Some(b'"') => self.string_body(),
            Some(b'-' | b'0'..=b'9') => {
                let b = self.bytes();
                let start = self.pos;
                let mut i = start + 1;
                while let Some(&c) = b.get(i) {
                    if c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'E' | b'+' | b'-') {
                        i += 1;
                    } else {
                        break;
                    }
                }
                self.pos = i;
                Ok(Cow::Borrowed(&self.src[start..i]))
            }
            Some(b'[') => Err(self.err(JsonErrorKind::ArrayForSingular)),
            _ => Err(self.unexpected(ty)),
        }
    }

    #[cold]
    fn bad_number(&self, ty: &'static str, text: &str, at: usize) -> JsonError {
        JsonError::new(
            JsonErrorKind::BadNumber {
                ty,
                text: text.to_owned(),
            },
            at,
        )
    }

    /// Parses an integer; an integral number written with a fraction or exponent is accepted.
    #[inline]
    fn integer<T: TryFrom<i128>>(&mut self, ty: &'static str) -> R<T> {
        self.ws();
        let at = self.pos;
        // Fast path: a plain run of at most 18 digits followed by a delimiter.
        let b = self.bytes();
        let mut i = at;
        let mut v: u64 = 0;
        while let Some(&c) = b.get(i) {
            if c.is_ascii_digit() && i - at < 18 {
                v = v * 10 + u64::from(c - b'0');
                i += 1;
            } else {
                break;
            }
        }
        if i > at
            && !matches!(
                b.get(i),
                Some(b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-')
            )
        {
            if let Ok(v) = T::try_from(i128::from(v)) {
                self.pos = i;
                return Ok(v);
            }
        }
        let text = self.number_text(ty)?;
        let t = text.trim();
        let v: Option<i128> = t.parse::<i128>().ok().or_else(|| {
            let f: f64 = t.parse().ok()?;
            (f.is_finite() && f.fract() == 0.0 && f.abs() < 1.9e19).then_some(f as i128)
        });
        match v.and_then(|v| T::try_from(v).ok()) {
            Some(v) => Ok(v),
            None => Err(self.bad_number(ty, t, at)),
        }
    }

    /// Reads an `int32`/`sint32`/`sfixed32` field.
    #[inline]
    pub fn i32(&mut self) -> R<i32> {
        self.integer("int32")
    }
    /// Reads an `int64`/`sint64`/`sfixed64` field.
    #[inline]
    pub fn i64(&mut self) -> R<i64> {
        self.integer("int64")
    }
    /// Reads a `uint32`/`fixed32` field.
    #[inline]
    pub fn u32(&mut self) -> R<u32> {
        self.integer("uint32")
    }
    /// Reads a `uint64`/`fixed64` field.
    #[inline]
    pub fn u64(&mut self) -> R<u64> {
        self.integer("uint64")
    }

    /// Reads a `double` field: a number, a numeric string, or `"Infinity"`/`"-Infinity"`/`"NaN"`
    /// (also bare, since that is what Mesos itself prints).
    #[inline]
    pub fn f64(&mut self) -> R<f64> {
        self.ws();
        let at = self.pos;
        let b = self.bytes();
        if matches!(b.get(at), Some(b'I' | b'N')) || b.get(at..at + 2) == Some(b"-I") {
            for (word, v) in [
                (&b"Infinity"[..], f64::INFINITY),
                (b"-Infinity", f64::NEG_INFINITY),
                (b"NaN", f64::NAN),
            ] {
                if b[at..].starts_with(word) {
                    self.pos += word.len();
                    return Ok(v);
                }
            }
        }
        let text = self.number_text("double")?;
        let t = text.trim();
        match t {
            "Infinity" | "inf" => return Ok(f64::INFINITY),
            "-Infinity" | "-inf" => return Ok(f64::NEG_INFINITY),
            "NaN" | "nan" => return Ok(f64::NAN),
            _ => {}
        }
        match t.parse::<f64>() {
            Ok(v) => Ok(v),
            Err(_) => Err(self.bad_number("double", t, at)),
        }
    }

    /// Reads a `float` field.
    #[inline]
    pub fn f32(&mut self) -> R<f32> {
        Ok(self.f64()? as f32)
    }

    /// Reads a `bool` field: `true`/`false` or the strings `"true"`/`"false"`.
    #[inline]
    pub fn bool(&mut self) -> R<bool> {
        let b = self.bytes();
        match self.peek() {
            Some(b't') if b[self.pos..].starts_with(b"true") => {
                self.pos += 4;
                Ok(true)
            }
            Some(b'f') if b[self.pos..].starts_with(b"false") => {
                self.pos += 5;
                Ok(false)
            }
            Some(b'"') => {
                let at = self.pos;
                match &*self.string_body()? {
                    "true" => Ok(true),
                    "false" => Ok(false),
                    other => Err(JsonError::new(
                        JsonErrorKind::Unexpected {
                            expected: "a boolean",
                            found: format!("{other:?}"),
                        },
                        at,
                    )),
                }
            }
            Some(b'[') => Err(self.err(JsonErrorKind::ArrayForSingular)),
            _ => Err(self.unexpected("a boolean")),
        }
    }

    /// Reads a repeated field: an array of values, or a single value standing for a
    /// one-element list (as stout accepts). `null` elements are skipped.
    #[inline]
    pub fn repeated(&mut self, mut each: impl FnMut(&mut Self) -> R<()>) -> R<()> {
        if self.peek() != Some(b'[') {
            return each(self).map_err(|e| e.in_index(0));
        }
        self.pos += 1;
        self.enter()?;
        let mut index = 0usize;
        loop {
            match self.peek() {
                Some(b']') => {
                    self.pos += 1;
                    self.depth -= 1;
                    return Ok(());
                }
                Some(b',') if index > 0 => {
                    self.pos += 1;
                }
                _ if index == 0 => {}
                _ => return Err(self.unexpected("',' or ']'")),
            }
            if !self.take_null() {
                each(self).map_err(|e| e.in_index(index))?;
            }
            index += 1;
        }
    }

    /// Reads a map field: a JSON object whose keys are the map keys.
    #[inline]
    pub fn map_entries(&mut self, mut each: impl FnMut(&mut Self, Cow<'a, str>) -> R<()>) -> R<()> {
        self.begin_object()?;
        let mut first = true;
        while let Some(key) = self.next_key(&mut first)? {
            if self.take_null() {
                continue;
            }
            if let Err(e) = each(self, key.clone()) {
                return Err(e.in_key(&key));
            }
        }
        Ok(())
    }

    /// Skips one value of any kind (an unknown field).
    pub fn skip_value(&mut self) -> R<()> {
        match self.peek() {
            Some(b'{') => {
                self.pos += 1;
                self.enter()?;
                let mut first = true;
                while self.next_key(&mut first)?.is_some() {
                    self.skip_value()?;
                }
                Ok(())
            }
            Some(b'[') => self.repeated(|p| p.skip_value()),
            Some(b'"') => self.string_body().map(drop),
            Some(b't') => self.bool().map(drop),
            Some(b'f') => self.bool().map(drop),
            Some(b'n') if self.take_null() => Ok(()),
            Some(b'-' | b'0'..=b'9') => self.f64().map(drop),
            Some(b'I' | b'N') => self.f64().map(drop),
            _ => Err(self.unexpected("a JSON value")),
        }
    }

    /// The error for an object missing required fields (generated code).
    #[cold]
    pub fn missing_required(&self, names: &[&'static str], seen: u64) -> JsonError {
        let missing = names
            .iter()
            .enumerate()
            .filter(|(i, _)| seen & (1 << i) == 0)
            .map(|(_, n)| *n)
            .collect();
        self.err(JsonErrorKind::MissingRequired(missing))
    }
}
