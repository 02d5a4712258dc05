//! A protobuf wire reader for the borrowed views: varints, fixed-width values and
//! length-delimited slices of the input, with bounds and nesting checked. It never allocates.

use std::fmt;

/// Deepest message nesting accepted.
const MAX_DEPTH: u32 = 100;

/// Whether every byte is ASCII. Strings of 4 to 16 bytes (most names and values on the
/// Mesos wire) are checked with two overlapping loads, longer ones 16 bytes per step with the
/// last 16 bytes loaded apart (overlapping the steps): no loop over the remainder, few branches.
#[inline(always)]
fn is_ascii(b: &[u8]) -> bool {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let n = b.len();
    let word = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
    let half = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"));
    if n >= 16 {
        let mut acc = word(n - 16) | word(n - 8);
        let mut i = 0;
        while i + 16 < n {
            acc |= word(i) | word(i + 8);
            i += 16;
        }
        acc & HIGH == 0
    } else if n >= 8 {
        (word(0) | word(n - 8)) & HIGH == 0
    } else if n >= 4 {
        (half(0) | half(n - 4)) & 0x8080_8080 == 0
    } else if n > 0 {
        (b[0] | b[n / 2] | b[n - 1]) < 0x80
    } else {
        true
    }
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
///
/// It is `Copy` so that a decoder can work on a local copy: kept in registers, its position
/// does not go through memory between one field and the next (no method lets the reader's
/// address escape into a call that is not inlined).
#[derive(Debug, Clone, Copy)]
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

    #[inline(always)]
    fn err(&self, what: &'static str) -> PbError {
        error_at(what, self.base + self.pos)
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

    #[inline(always)]
    fn varint_slow(&mut self) -> R<u64> {
        match varint_from(self.buf, self.pos) {
            (_, 0) => Err(varint_error(self.buf, self.pos, self.base)),
            (v, end) => {
                self.pos = end;
                Ok(v)
            }
        }
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

    /// The next field's whole key (number << 3 | wire type), or `None` at the end of the
    /// message. The number is checked as by [`PbReader::key`].
    #[inline(always)]
    pub fn tag(&mut self) -> R<Option<u32>> {
        match self.buf.get(self.pos) {
            None => return Ok(None),
            // Fields 1..=15: the key is one byte.
            Some(&b) if (8..0x80).contains(&b) => {
                self.pos += 1;
                return Ok(Some(u32::from(b)));
            }
            Some(_) => {}
        }
        let k = self.varint()?;
        if k >> 3 == 0 || k >> 3 > u64::from(u32::MAX >> 3) {
            return Err(self.err("invalid field number"));
        }
        Ok(Some(k as u32))
    }

    /// The error for a known field read with a wire type its type does not have.
    #[cold]
    pub(crate) fn wire_type_error(&self) -> PbError {
        self.err("unexpected wire type for field")
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

    /// Moves this reader to where `copy`, a copy of it that read on, stands.
    #[inline(always)]
    pub(crate) fn advance_to(&mut self, copy: &PbReader<'a>) {
        debug_assert!(self.buf.as_ptr() == copy.buf.as_ptr() && self.base == copy.base);
        self.pos = copy.pos;
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
        let buf = self.bytes(wt)?;
        if self.depth >= MAX_DEPTH {
            return Err(self.err("messages nested too deeply"));
        }
        // The payload ends where the reader now stands.
        let base = self.base + self.pos - buf.len();
        Ok(PbReader {
            buf,
            pos: 0,
            base,
            depth: self.depth + 1,
        })
    }

    /// Merges an embedded message into `into`, allocating in `arena`.
    #[inline(always)]
    pub fn message<T: super::BorrowedProto<'a>>(
        &mut self,
        wt: u8,
        into: &mut T,
        arena: &'a super::Arena,
    ) -> R<()> {
        let mut sub = self.sub(wt)?;
        into.merge_pb(&mut sub, arena)
    }

    /// A repeated scalar field: one value, or a packed run of them.
    #[inline(always)]
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

    /// How many length-delimited fields numbered `num` follow one another from here, counting
    /// the one whose key was just read: the elements of a repeated field that an encoder wrote
    /// together, a sizing hint for its list (0: not counted). Counts only when the rest of the
    /// message is long (short lists are cheaper to start at four elements than to count), and
    /// stops at the first other or malformed key: the decoder itself reports errors.
    #[inline(always)]
    pub fn count_run(&self, num: u32) -> usize {
        if self.buf.len() - self.pos < 2048 {
            return 0;
        }
        count_run(*self, num)
    }

    /// Skips a field of an unknown number.
    #[inline(always)]
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

/// The counting loop of [`PbReader::count_run`], out of line.
#[inline(never)]
fn count_run(mut s: PbReader<'_>, num: u32) -> usize {
    if s.bytes(2).is_err() {
        return 0;
    }
    let mut n = 1;
    while let Ok(Some((k, 2))) = s.key() {
        if k != num || s.bytes(2).is_err() {
            break;
        }
        n += 1;
    }
    n
}

#[cold]
#[inline(never)]
fn error_at(what: &'static str, offset: usize) -> PbError {
    PbError { what, offset }
}

/// A varint at `pos` (of any length; called for those of two bytes or more): its value and
/// where it ends, or an end of 0 if it is malformed (see [`varint_error`]). Two words, so
/// they come back in registers.
#[inline(never)]
fn varint_from(b: &[u8], mut pos: usize) -> (u64, usize) {
    // Two- and three-byte varints (lengths of 128 bytes to 2 MiB, ports) are the common case
    // here; a port range's varints sit at the very end of their small message, so they cannot
    // be read a word at a time.
    if let (Some(&b0), Some(&b1)) = (b.get(pos), b.get(pos + 1)) {
        if b0 >= 0x80 {
            let v = u64::from(b0 & 0x7f) | u64::from(b1 & 0x7f) << 7;
            if b1 < 0x80 {
                return (v, pos + 2);
            }
            if let Some(&b2) = b.get(pos + 2) {
                if b2 < 0x80 {
                    return (v | u64::from(b2) << 14, pos + 3);
                }
            }
        }
    }
    // With eight bytes at hand, a longer varint of up to eight bytes (ids, times) is decoded
    // without a loop: its last byte is the first one with the high bit clear, and its 7-bit
    // groups are packed together in three steps.
    if let Some(word) = b.get(pos..pos + 8) {
        let w = u64::from_le_bytes(word.try_into().expect("8 bytes"));
        let ends = !w & 0x8080_8080_8080_8080;
        if ends != 0 {
            let len = ends.trailing_zeros() as usize / 8 + 1;
            let x = w & (u64::MAX >> (64 - 8 * len)) & 0x7f7f_7f7f_7f7f_7f7f;
            let x = (x & 0x007f_007f_007f_007f) | (x & 0x7f00_7f00_7f00_7f00) >> 1;
            let x = (x & 0x0000_3fff_0000_3fff) | (x & 0x3fff_0000_3fff_0000) >> 2;
            let x = (x & 0x0000_0000_0fff_ffff) | (x & 0x0fff_ffff_0000_0000) >> 4;
            return (x, pos + len);
        }
    }
    let mut v: u64 = 0;
    for shift in (0..64).step_by(7) {
        let Some(&byte) = b.get(pos) else {
            return (0, 0);
        };
        pos += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return (v, pos);
        }
    }
    (0, 0)
}

/// The error for the malformed varint at `pos`, and where it was found (the first byte the
/// decoder could not use).
#[cold]
#[inline(never)]
fn varint_error(b: &[u8], pos: usize, base: usize) -> PbError {
    let run = b[pos.min(b.len())..]
        .iter()
        .take_while(|&&c| c >= 0x80)
        .count();
    if run >= 10 {
        error_at("varint longer than 10 bytes", base + pos + 10)
    } else {
        error_at("truncated varint", base + b.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_ascii_agrees_with_std_at_every_length_and_position() {
        for n in 0..40 {
            let clean = vec![b'a'; n];
            assert!(is_ascii(&clean), "{n} ASCII bytes");
            for at in 0..n {
                let mut b = clean.clone();
                b[at] = 0x80 | (at as u8);
                assert_eq!(is_ascii(&b), b.is_ascii(), "length {n}, high byte at {at}");
                assert!(!is_ascii(&b), "length {n}, high byte at {at}");
            }
        }
    }

    #[test]
    fn varints_of_every_length_decode_and_malformed_ones_are_errors() {
        for v in [
            0u64,
            1,
            127,
            128,
            300,
            16_383,
            16_384,
            31_000,
            (1 << 21) - 1,
            1 << 21,
            1 << 35,
            (1 << 49) - 1,
            1 << 49,
            (1 << 56) - 1,
            1 << 56,
            1 << 63,
            u64::MAX,
        ] {
            let mut b = Vec::new();
            let mut x = v;
            while x >= 0x80 {
                b.push((x as u8) | 0x80);
                x >>= 7;
            }
            b.push(x as u8);
            let mut r = PbReader::new(&b);
            assert_eq!(r.uint64(0), Ok(v), "{v}");
            assert_eq!(r.key(), Ok(None), "{v}: whole varint consumed");
            // Followed by more bytes (read a word at a time): same value, same end.
            for filler in [0x00, 0x7f, 0x80, 0xff] {
                let mut padded = b.clone();
                padded.extend_from_slice(&[filler; 9]);
                let mut r = PbReader::new(&padded);
                assert_eq!(r.uint64(0), Ok(v), "{v} followed by {filler:#x}");
                assert_eq!(
                    r.pos,
                    b.len(),
                    "{v} followed by {filler:#x}: its own bytes only"
                );
            }
            // Cut anywhere before its last byte: truncated, reported at the end of the input.
            for cut in 0..b.len() - 1 {
                let e = PbReader::new(&b[..cut + 1]).uint64(0).unwrap_err();
                if cut + 1 < b.len() {
                    assert_eq!(e.reason(), "truncated varint", "{v} cut at {cut}");
                    assert_eq!(
                        e.to_string(),
                        format!("invalid protobuf: truncated varint (at byte {})", cut + 1)
                    );
                }
            }
        }
        let e = PbReader::new(&[0xff; 11]).uint64(0).unwrap_err();
        assert_eq!(e.reason(), "varint longer than 10 bytes");
        assert!(e.to_string().ends_with("(at byte 10)"), "{e}");
    }
}
