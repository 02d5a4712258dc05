//! A protobuf wire reader for the borrowed views: varints, fixed-width values and
//! length-delimited slices of the input, with bounds and nesting checked. It never allocates.

use std::fmt;

/// Deepest message nesting accepted.
const MAX_DEPTH: u32 = 100;

/// Whether every byte is ASCII, eight bytes at a time.
#[inline(always)]
fn is_ascii(b: &[u8]) -> bool {
    let mut chunks = b.chunks_exact(8);
    let mut acc = 0u64;
    for c in &mut chunks {
        acc |= u64::from_le_bytes(c.try_into().expect("8-byte chunk"));
    }
    let mut tail = 0u8;
    for &c in chunks.remainder() {
        tail |= c;
    }
    acc & 0x8080_8080_8080_8080 == 0 && tail < 0x80
}

/// Malformed protobuf input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PbError {
    what: &'static str,
    offset: usize,
}

impl PbError {
    /// What was wrong.
    pub fn reason(&self) -> &'static str {
        self.what
    }
}

impl fmt::Display for PbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid protobuf: {} (at byte {})",
            self.what, self.offset
        )
    }
}

impl std::error::Error for PbError {}

type R<T> = Result<T, PbError>;

/// Reader over the bytes of one message.
#[derive(Debug)]
pub struct PbReader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Offset of `buf` in the whole input, for error messages.
    base: usize,
    depth: u32,
}

impl<'a> PbReader<'a> {
    /// A reader over a whole top-level message.
    pub fn new(buf: &'a [u8]) -> Self {
        PbReader {
            buf,
            pos: 0,
            base: 0,
            depth: 0,
        }
    }

    #[cold]
    fn err(&self, what: &'static str) -> PbError {
        PbError {
            what,
            offset: self.base + self.pos,
        }
    }

    #[inline(always)]
    fn varint(&mut self) -> R<u64> {
        // Most varints on the Mesos wire (keys, lengths, small numbers) are one byte.
        if let Some(&byte) = self.buf.get(self.pos) {
            if byte < 0x80 {
                self.pos += 1;
                return Ok(u64::from(byte));
            }
        }
        self.varint_slow()
    }

    #[inline(never)]
    fn varint_slow(&mut self) -> R<u64> {
        let b = self.buf;
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let Some(&byte) = b.get(self.pos) else {
                return Err(self.err("truncated varint"));
            };
            self.pos += 1;
            v |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Ok(v);
            }
        }
        Err(self.err("varint longer than 10 bytes"))
    }

    /// The next field's number and wire type, or `None` at the end of the message.
    #[inline(always)]
    pub fn key(&mut self) -> R<Option<(u32, u8)>> {
        match self.buf.get(self.pos) {
            None => return Ok(None),
            // Fields 1..=15: the key is one byte.
            Some(&b) if (8..0x80).contains(&b) => {
                self.pos += 1;
                return Ok(Some((u32::from(b >> 3), b & 7)));
            }
            Some(_) => {}
        }
        let k = self.varint()?;
        let num = (k >> 3) as u32;
        if num == 0 || k >> 3 > u64::from(u32::MAX >> 3) {
            return Err(self.err("invalid field number"));
        }
        Ok(Some((num, (k & 7) as u8)))
    }

    #[inline(always)]
    fn expect(&self, wt: u8, want: u8) -> R<()> {
        if wt == want {
            Ok(())
        } else {
            Err(self.err("unexpected wire type for field"))
        }
    }

    #[inline(always)]
    fn take(&mut self, n: usize) -> R<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        match end {
            Some(end) => {
                let s = &self.buf[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(self.err("length runs past the end of the message")),
        }
    }

    /// A length-delimited value.
    #[inline(always)]
    pub fn bytes(&mut self, wt: u8) -> R<&'a [u8]> {
        self.expect(wt, 2)?;
        let n = self.varint()?;
        let n = usize::try_from(n).map_err(|_| self.err("length too large"))?;
        self.take(n)
    }

    /// A `string` value (UTF-8 checked).
    #[inline(always)]
    pub fn str(&mut self, wt: u8) -> R<&'a str> {
        let at = self.pos;
        let b = self.bytes(wt)?;
        if is_ascii(b) {
            // SAFETY: every byte is below 0x80, so the slice is ASCII and therefore UTF-8.
            // (Short Mesos strings are almost always ASCII; this skips `from_utf8`'s call and
            // setup, which dominate for them.)
            #[allow(unsafe_code)]
            return Ok(unsafe { std::str::from_utf8_unchecked(b) });
        }
        std::str::from_utf8(b).map_err(|_| PbError {
            what: "string is not UTF-8",
            offset: self.base + at,
        })
    }

    /// A reader over an embedded message's bytes.
    #[inline(always)]
    pub fn sub(&mut self, wt: u8) -> R<PbReader<'a>> {
        let base = self.base + self.pos;
        let buf = self.bytes(wt)?;
        if self.depth >= MAX_DEPTH {
            return Err(self.err("messages nested too deeply"));
        }
        // `base` pointed at the length prefix; the payload starts at its end.
        let base = base + (self.pos - (base - self.base)) - buf.len();
        Ok(PbReader {
            buf,
            pos: 0,
            base,
            depth: self.depth + 1,
        })
    }

    /// Merges an embedded message into `into`.
    #[inline(always)]
    pub fn message<T: super::BorrowedProto<'a>>(&mut self, wt: u8, into: &mut T) -> R<()> {
        let mut sub = self.sub(wt)?;
        into.merge_pb(&mut sub)
    }

    /// A repeated scalar field: one value, or a packed run of them.
    #[inline]
    pub fn packed(&mut self, wt: u8, mut each: impl FnMut(&mut Self, u8) -> R<()>) -> R<()> {
        if wt != 2 {
            return each(self, wt);
        }
        let mut sub = self.sub(wt)?;
        while sub.pos < sub.buf.len() {
            // Packed values carry no keys; their wire type follows from the field's type, which
            // `each` knows; pass the type the caller's reader accepts.
            each(&mut sub, u8::MAX)?;
        }
        Ok(())
    }

    #[inline]
    fn varint_wt(&mut self, wt: u8) -> R<u64> {
        if wt != u8::MAX {
            self.expect(wt, 0)?;
        }
        self.varint()
    }

    #[inline]
    fn fixed<const N: usize>(&mut self, wt: u8, want: u8) -> R<[u8; N]> {
        if wt != u8::MAX {
            self.expect(wt, want)?;
        }
        let s = self.take(N)?;
        Ok(s.try_into().expect("N bytes"))
    }

    /// `int32` (and enums): a varint, sign-extended from 64 bits.
    #[inline]
    pub fn int32(&mut self, wt: u8) -> R<i32> {
        Ok(self.varint_wt(wt)? as i32)
    }
    /// `int64`.
    #[inline]
    pub fn int64(&mut self, wt: u8) -> R<i64> {
        Ok(self.varint_wt(wt)? as i64)
    }
    /// `uint32`.
    #[inline]
    pub fn uint32(&mut self, wt: u8) -> R<u32> {
        Ok(self.varint_wt(wt)? as u32)
    }
    /// `uint64`.
    #[inline]
    pub fn uint64(&mut self, wt: u8) -> R<u64> {
        self.varint_wt(wt)
    }
    /// `sint32` (zigzag).
    #[inline]
    pub fn sint32(&mut self, wt: u8) -> R<i32> {
        let v = self.varint_wt(wt)? as u32;
        Ok(((v >> 1) as i32) ^ -((v & 1) as i32))
    }
    /// `sint64` (zigzag).
    #[inline]
    pub fn sint64(&mut self, wt: u8) -> R<i64> {
        let v = self.varint_wt(wt)?;
        Ok(((v >> 1) as i64) ^ -((v & 1) as i64))
    }
    /// `bool`.
    #[inline]
    pub fn bool(&mut self, wt: u8) -> R<bool> {
        Ok(self.varint_wt(wt)? != 0)
    }
    /// `double`.
    #[inline]
    pub fn double(&mut self, wt: u8) -> R<f64> {
        Ok(f64::from_le_bytes(self.fixed(wt, 1)?))
    }
    /// `float`.
    #[inline]
    pub fn float(&mut self, wt: u8) -> R<f32> {
        Ok(f32::from_le_bytes(self.fixed(wt, 5)?))
    }
    /// `fixed32`.
    #[inline]
    pub fn fixed32(&mut self, wt: u8) -> R<u32> {
        Ok(u32::from_le_bytes(self.fixed(wt, 5)?))
    }
    /// `fixed64`.
    #[inline]
    pub fn fixed64(&mut self, wt: u8) -> R<u64> {
        Ok(u64::from_le_bytes(self.fixed(wt, 1)?))
    }
    /// `sfixed32`.
    #[inline]
    pub fn sfixed32(&mut self, wt: u8) -> R<i32> {
        Ok(i32::from_le_bytes(self.fixed(wt, 5)?))
    }
    /// `sfixed64`.
    #[inline]
    pub fn sfixed64(&mut self, wt: u8) -> R<i64> {
        Ok(i64::from_le_bytes(self.fixed(wt, 1)?))
    }

    /// Skips a field of an unknown number.
    pub fn skip(&mut self, wt: u8) -> R<()> {
        match wt {
            0 => self.varint().map(drop),
            1 => self.take(8).map(drop),
            2 => self.bytes(2).map(drop),
            5 => self.take(4).map(drop),
            _ => Err(self.err("unsupported wire type (groups are not used by Mesos)")),
        }
    }
}
