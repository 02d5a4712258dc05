//! RecordIO, the framing of Mesos's streaming responses: `<decimal length>\n<bytes>`, repeated.
//!
//! The [`Decoder`] is incremental and independent of how the stream is chunked: feed it bytes as
//! they arrive and take whole records out. It never allocates a size read from the stream before
//! checking it against the configured maximum.

use bytes::{Buf, Bytes, BytesMut};

/// Default largest record accepted: 64 MiB (an OFFERS event for thousands of agents fits).
pub const DEFAULT_MAX_RECORD: usize = 64 << 20;

/// Appends one record (`len\n` + data) to `out`.
pub fn encode(record: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(record.len().to_string().as_bytes());
    out.push(b'\n');
    out.extend_from_slice(record);
}

/// Frames one record into a fresh buffer.
pub fn frame(record: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(record.len() + 12);
    encode(record, &mut out);
    out
}

/// What was wrong with a RecordIO stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordIoError {
    /// A record header contained something other than decimal digits.
    #[error(
        "invalid RecordIO header: expected a decimal length, found byte 0x{byte:02x} at offset {offset}"
    )]
    InvalidHeader { byte: u8, offset: u64 },
    /// A record header longer than any length we could accept.
    #[error("invalid RecordIO header: length has more than 20 digits (offset {offset})")]
    HeaderTooLong { offset: u64 },
    /// A record larger than the configured maximum.
    #[error("RecordIO record of {size} bytes exceeds the limit of {max} bytes")]
    RecordTooLarge { size: u64, max: usize },
    /// The stream ended inside a record or its header.
    #[error("RecordIO stream truncated: {0}")]
    Truncated(String),
}

#[derive(Debug, Clone, Copy)]
enum State {
    /// Reading the decimal length; `digits` read so far.
    Header { len: u64, digits: u8 },
    /// Waiting for `len` bytes of record data.
    Body { len: usize },
}

/// Incremental RecordIO decoder.
///
/// Bytes given with [`Decoder::feed_bytes`] are not copied when they hold whole records: the
/// records returned are slices of the chunk. Only a record split across chunks is assembled in
/// an internal buffer.
#[derive(Debug)]
pub struct Decoder {
    /// Input being assembled across chunks (read first).
    buf: BytesMut,
    /// A chunk handed over whole; read only while `buf` is empty.
    pending: Bytes,
    state: State,
    max: usize,
    /// Bytes consumed so far, for error offsets.
    consumed: u64,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new(DEFAULT_MAX_RECORD)
    }
}

impl Decoder {
    /// A decoder accepting records of at most `max_record_size` bytes.
    pub fn new(max_record_size: usize) -> Self {
        Decoder {
            buf: BytesMut::new(),
            pending: Bytes::new(),
            state: State::Header { len: 0, digits: 0 },
            max: max_record_size,
            consumed: 0,
        }
    }

    /// Appends bytes received from the stream (copied).
    pub fn feed(&mut self, chunk: &[u8]) {
        self.spill();
        self.buf.extend_from_slice(chunk);
    }

    /// Appends a chunk received from the stream, without copying it where possible.
    pub fn feed_bytes(&mut self, chunk: Bytes) {
        if self.buf.is_empty() && self.pending.is_empty() {
            self.pending = chunk;
            return;
        }
        if let (State::Body { len }, true) = (self.state, self.pending.is_empty()) {
            // `buf` holds the start of one record's data: copy only the rest of that record
            // and keep the remainder of the chunk, where the next records are, uncopied.
            let need = len.saturating_sub(self.buf.len());
            if need > 0 && chunk.len() > need {
                self.buf.extend_from_slice(&chunk[..need]);
                self.pending = chunk.slice(need..);
                return;
            }
        }
        self.spill();
        self.buf.extend_from_slice(&chunk);
    }

    /// Moves the pending chunk into the assembly buffer.
    fn spill(&mut self) {
        if !self.pending.is_empty() {
            self.buf.extend_from_slice(&self.pending);
            self.pending = Bytes::new();
        }
    }

    /// Takes the next complete record, if the bytes fed so far hold one.
    pub fn next_record(&mut self) -> Result<Option<Bytes>, RecordIoError> {
        if self.buf.is_empty() && !self.pending.is_empty() {
            let mut src = std::mem::take(&mut self.pending);
            let r = self.next_from(&mut src);
            if matches!(r, Ok(None)) && !src.is_empty() {
                // An incomplete record at the end of the chunk: assemble it in `buf`.
                self.buf.extend_from_slice(&src);
            } else {
                self.pending = src;
            }
            return r;
        }
        let mut src = std::mem::take(&mut self.buf);
        let r = self.next_from(&mut src);
        self.buf = src;
        r
    }

    fn next_from<S: Source>(&mut self, src: &mut S) -> Result<Option<Bytes>, RecordIoError> {
        loop {
            match self.state {
                State::Header {
                    mut len,
                    mut digits,
                } => {
                    let mut used = 0;
                    let mut done = false;
                    for &c in src.bytes() {
                        used += 1;
                        match c {
                            b'0'..=b'9' => {
                                if digits >= 20 {
                                    return Err(RecordIoError::HeaderTooLong {
                                        offset: self.consumed,
                                    });
                                }
                                digits += 1;
                                len = len.saturating_mul(10).saturating_add(u64::from(c - b'0'));
                            }
                            // Blank lines between records are tolerated, as the Mesos docs'
                            // reference decoder does.
                            b'\n' if digits == 0 => {}
                            b'\n' => {
                                done = true;
                                break;
                            }
                            _ => {
                                return Err(RecordIoError::InvalidHeader {
                                    byte: c,
                                    offset: self.consumed + used as u64 - 1,
                                });
                            }
                        }
                    }
                    src.skip(used);
                    self.consumed += used as u64;
                    if !done {
                        self.state = State::Header { len, digits };
                        return Ok(None);
                    }
                    if len > self.max as u64 {
                        return Err(RecordIoError::RecordTooLarge {
                            size: len,
                            max: self.max,
                        });
                    }
                    self.state = State::Body { len: len as usize };
                }
                State::Body { len } => {
                    if src.bytes().len() < len {
                        src.reserve_for(len);
                        return Ok(None);
                    }
                    let record = src.take(len);
                    self.consumed += len as u64;
                    self.state = State::Header { len: 0, digits: 0 };
                    return Ok(Some(record));
                }
            }
        }
    }

    /// Checks, at the end of the stream, that it did not stop inside a record.
    pub fn finish(&self) -> Result<(), RecordIoError> {
        match self.state {
            State::Header { digits: 0, .. } if self.buffered() == 0 => Ok(()),
            State::Header { digits, .. } => Err(RecordIoError::Truncated(format!(
                "stream ended inside a record header ({digits} digits read)"
            ))),
            State::Body { len } => Err(RecordIoError::Truncated(format!(
                "stream ended after {} of {len} record bytes",
                self.buffered()
            ))),
        }
    }

    /// Bytes buffered but not yet returned as records.
    pub fn buffered(&self) -> usize {
        self.buf.len() + self.pending.len()
    }
}

/// Where the decoder reads from: the assembly buffer or a whole chunk.
trait Source {
    fn bytes(&self) -> &[u8];
    fn skip(&mut self, n: usize);
    fn take(&mut self, n: usize) -> Bytes;
    fn reserve_for(&mut self, record_len: usize);
}

impl Source for BytesMut {
    fn bytes(&self) -> &[u8] {
        self
    }
    fn skip(&mut self, n: usize) {
        self.advance(n);
    }
    fn take(&mut self, n: usize) -> Bytes {
        self.split_to(n).freeze()
    }
    fn reserve_for(&mut self, record_len: usize) {
        // The size was checked against the limit: reserve it now so that a large record is not
        // reallocated on every chunk.
        self.reserve(record_len - self.len());
    }
}

impl Source for Bytes {
    fn bytes(&self) -> &[u8] {
        self
    }
    fn skip(&mut self, n: usize) {
        self.advance(n);
    }
    fn take(&mut self, n: usize) -> Bytes {
        self.split_to(n)
    }
    fn reserve_for(&mut self, _record_len: usize) {}
}

/// Decodes a complete stream held in memory.
pub fn decode_all(stream: &[u8], max_record_size: usize) -> Result<Vec<Bytes>, RecordIoError> {
    let mut d = Decoder::new(max_record_size);
    d.feed(stream);
    let mut out = Vec::new();
    while let Some(r) = d.next_record()? {
        out.push(r);
    }
    d.finish()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn decodes_the_reference_example() {
        let stream = b"20\n{\"type\":\"HEARTBEAT\"}2\n\x08\x08";
        let recs = decode_all(stream, 1024).unwrap();
        assert_eq!(
            recs,
            vec![
                Bytes::from_static(b"{\"type\":\"HEARTBEAT\"}"),
                Bytes::from_static(b"\x08\x08")
            ]
        );
    }

    #[test]
    fn rejects_non_numeric_header() {
        let err = decode_all(b"12x\nabc", 1024).unwrap_err();
        assert_eq!(
            err,
            RecordIoError::InvalidHeader {
                byte: b'x',
                offset: 2
            }
        );
        assert!(err.to_string().contains("0x78"));
    }

    #[test]
    fn rejects_oversize_before_buffering() {
        let mut d = Decoder::new(10);
        d.feed(b"99999999999999999\n");
        assert_eq!(
            d.next_record().unwrap_err(),
            RecordIoError::RecordTooLarge {
                size: 99_999_999_999_999_999,
                max: 10
            }
        );
        assert!(d.buffered() < 64);
        let mut d = Decoder::new(10);
        d.feed(b"123456789012345678901\n");
        assert!(matches!(
            d.next_record(),
            Err(RecordIoError::HeaderTooLong { .. })
        ));
    }

    #[test]
    fn reports_truncation() {
        let mut d = Decoder::new(100);
        d.feed(b"5\nab");
        assert_eq!(d.next_record().unwrap(), None);
        assert!(d.finish().unwrap_err().to_string().contains("2 of 5"));
        let mut d = Decoder::new(100);
        d.feed(b"5\nabcde12");
        assert!(d.next_record().unwrap().is_some());
        assert_eq!(d.next_record().unwrap(), None);
        assert!(d.finish().unwrap_err().to_string().contains("header"));
        assert!(decode_all(b"", 10).unwrap().is_empty());
    }

    #[test]
    fn tolerates_blank_lines_between_records() {
        let recs = decode_all(b"1\na\n\n1\nb", 10).unwrap();
        assert_eq!(recs.len(), 2);
    }

    proptest! {
        #[test]
        fn any_split_decodes_the_same(
            records in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..300), 0..20),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..30),
        ) {
            let mut stream = Vec::new();
            for r in &records { encode(r, &mut stream); }
            let mut points: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
            points.push(0);
            points.push(stream.len());
            points.sort_unstable();
            let mut d = Decoder::new(1024);
            let mut got = Vec::new();
            let shared = Bytes::from(stream.clone());
            for (i, w) in points.windows(2).enumerate() {
                if i % 2 == 0 {
                    d.feed_bytes(shared.slice(w[0]..w[1]));
                } else {
                    d.feed(&stream[w[0]..w[1]]);
                }
                while let Some(r) = d.next_record().unwrap() { got.push(r.to_vec()); }
            }
            d.finish().unwrap();
            prop_assert_eq!(got, records);
        }

        /// Zero-copy chunks only, taken out only after some of the chunks: the part of a
        /// chunk after a record it completes must stay in order behind it.
        #[test]
        fn any_split_of_shared_chunks_decodes_the_same(
            records in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..300), 0..20),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..30),
            drain_every in 1usize..4,
        ) {
            let mut stream = Vec::new();
            for r in &records { encode(r, &mut stream); }
            let mut points: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
            points.push(0);
            points.push(stream.len());
            points.sort_unstable();
            let mut d = Decoder::new(1024);
            let mut got = Vec::new();
            let shared = Bytes::from(stream);
            for (i, w) in points.windows(2).enumerate() {
                d.feed_bytes(shared.slice(w[0]..w[1]));
                if i % drain_every == 0 {
                    while let Some(r) = d.next_record().unwrap() { got.push(r.to_vec()); }
                }
            }
            while let Some(r) = d.next_record().unwrap() { got.push(r.to_vec()); }
            d.finish().unwrap();
            prop_assert_eq!(got, records);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_all(&bytes, 64);
        }
    }
}
