//! The output half of the codec: appends Mesos-style JSON to a byte buffer.
//!
//! Numbers are printed as stout/rapidjson prints them: integers as plain JSON numbers (also
//! 64-bit ones), doubles in shortest round-trip form with a `.0` on whole numbers and bare
//! `Infinity`/`-Infinity`/`NaN` for non-finite values, exactly as Mesos emits them.

use base64::Engine as _;

use super::parse::BASE64;

/// Appends JSON to a `Vec<u8>`. Separators are derived from the last byte written, so the
/// generated code needs no bookkeeping of its own.
#[derive(Debug)]
pub struct Writer<'o> {
    out: &'o mut Vec<u8>,
    /// Where this writer's output starts; bytes before it belong to the caller.
    start: usize,
}

impl<'o> Writer<'o> {
    /// A writer appending to `out`.
    pub fn new(out: &'o mut Vec<u8>) -> Self {
        let start = out.len();
        Writer { out, start }
    }

    #[inline(always)]
    fn sep(&mut self) {
        if self.out.len() > self.start {
            match self.out.last() {
                Some(b'{' | b'[' | b':') | None => {}
                _ => self.out.push(b','),
            }
        }
    }

    /// `{`
    #[inline]
    pub fn begin_object(&mut self) {
        self.sep();
        self.out.push(b'{');
    }

    /// `}`
    #[inline]
    pub fn end_object(&mut self) {
        self.out.push(b'}');
    }

    /// `[`
    #[inline]
    pub fn begin_array(&mut self) {
        self.sep();
        self.out.push(b'[');
    }

    /// `]`
    #[inline]
    pub fn end_array(&mut self) {
        self.out.push(b']');
    }

    /// A key (field names never need escaping) and its `:`.
    #[inline]
    pub fn key(&mut self, name: &str) {
        self.sep();
        self.out.push(b'"');
        self.out.extend_from_slice(name.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    /// A map key, which may need escaping.
    #[inline]
    pub fn map_key(&mut self, name: &str) {
        self.string(name);
        self.out.push(b':');
    }

    /// A JSON string with the escapes rapidjson uses (`"`, `\` and control characters).
    #[inline]
    pub fn string(&mut self, s: &str) {
        self.sep();
        self.out.push(b'"');
        let b = s.as_bytes();
        let mut start = 0;
        for (i, &c) in b.iter().enumerate() {
            let esc: &[u8] = match c {
                b'"' => b"\\\"",
                b'\\' => b"\\\\",
                b'\n' => b"\\n",
                b'\r' => b"\\r",
                b'\t' => b"\\t",
                0x08 => b"\\b",
                0x0c => b"\\f",
                0..=0x1f => {
                    self.out.extend_from_slice(&b[start..i]);
                    let hex = b"0123456789ABCDEF";
                    self.out.extend_from_slice(b"\\u00");
                    self.out.push(hex[(c >> 4) as usize]);
                    self.out.push(hex[(c & 15) as usize]);
                    start = i + 1;
                    continue;
                }
                _ => continue,
            };
            self.out.extend_from_slice(&b[start..i]);
            self.out.extend_from_slice(esc);
            start = i + 1;
        }
        self.out.extend_from_slice(&b[start..]);
        self.out.push(b'"');
    }

    /// An enum value name (plain ASCII).
    #[inline]
    pub fn enum_name(&mut self, name: &str) {
        self.sep();
        self.out.push(b'"');
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(b'"');
    }

    /// A `bytes` field: standard base64 with padding.
    pub fn bytes(&mut self, b: &[u8]) {
        self.sep();
        self.out.push(b'"');
        let at = self.out.len();
        self.out.resize(at + b.len().div_ceil(3) * 4, 0);
        let n = BASE64
            .encode_slice(b, &mut self.out[at..])
            .expect("base64 buffer sized exactly");
        self.out.truncate(at + n);
        self.out.push(b'"');
    }

    /// `true` / `false`.
    #[inline]
    pub fn bool(&mut self, v: bool) {
        self.sep();
        self.out
            .extend_from_slice(if v { b"true" } else { b"false" });
    }

    /// An unsigned integer.
    #[inline]
    pub fn u64(&mut self, v: u64) {
        self.sep();
        let mut buf = [0u8; 20];
        let mut i = buf.len();
        let mut n = v;
        loop {
            i -= 1;
            buf[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.out.extend_from_slice(&buf[i..]);
    }

    /// A signed integer.
    #[inline]
    pub fn i64(&mut self, v: i64) {
        if v < 0 {
            self.sep();
            self.out.push(b'-');
            // `u64` would add a separator after the '-' otherwise.
            let mut tmp = Vec::new();
            Writer::new(&mut tmp).u64(v.unsigned_abs());
            self.out.extend_from_slice(&tmp);
        } else {
            self.u64(v as u64);
        }
    }

    /// A `uint32`.
    #[inline]
    pub fn u32(&mut self, v: u32) {
        self.u64(u64::from(v));
    }

    /// An `int32`.
    #[inline]
    pub fn i32(&mut self, v: i32) {
        self.i64(i64::from(v));
    }

    /// A `float`, printed through its shortest `f32` form.
    pub fn f32(&mut self, v: f32) {
        // Print the f32's own shortest digits so 0.1f32 stays "0.1", as a float field should.
        match format!("{v:e}").parse::<f64>() {
            Ok(d) if v.is_finite() => self.f64(d),
            _ => self.f64(f64::from(v)),
        }
    }

    /// A `double`, formatted the way rapidjson's `Writer::Double` does.
    pub fn f64(&mut self, v: f64) {
        self.sep();
        format_double(v, self.out);
    }
}

/// rapidjson's number layout applied to Rust's shortest round-trip digits.
pub(crate) fn format_double(v: f64, out: &mut Vec<u8>) {
    if v.is_nan() {
        out.extend_from_slice(b"NaN");
        return;
    }
    if v.is_infinite() {
        out.extend_from_slice(if v > 0.0 { b"Infinity" } else { b"-Infinity" });
        return;
    }
    if v == 0.0 {
        out.extend_from_slice(if v.is_sign_negative() {
            b"-0.0"
        } else {
            b"0.0"
        });
        return;
    }
    // `{:e}` gives the shortest digits that round-trip: "d.ddde<exp>".
    let sci = format!("{:e}", v.abs());
    let (mantissa, exp) = sci.split_once('e').expect("{:e} always has an exponent");
    let exp: i32 = exp.parse().expect("{:e} exponent is an integer");
    let digits: Vec<u8> = mantissa.bytes().filter(|c| *c != b'.').collect();
    let len = digits.len() as i32;
    // value = 0.DIGITS x 10^kk
    let kk = exp + 1;
    if v < 0.0 {
        out.push(b'-');
    }
    if len <= kk && kk <= 21 {
        out.extend_from_slice(&digits);
        out.extend(std::iter::repeat_n(b'0', (kk - len) as usize));
        out.extend_from_slice(b".0");
    } else if 0 < kk && kk <= 21 {
        out.extend_from_slice(&digits[..kk as usize]);
        out.push(b'.');
        out.extend_from_slice(&digits[kk as usize..]);
    } else if -6 < kk && kk <= 0 {
        out.extend_from_slice(b"0.");
        out.extend(std::iter::repeat_n(b'0', (-kk) as usize));
        out.extend_from_slice(&digits);
    } else {
        out.push(digits[0]);
        if len > 1 {
            out.push(b'.');
            out.extend_from_slice(&digits[1..]);
        }
        out.push(b'e');
        out.extend_from_slice((kk - 1).to_string().as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::format_double;

    fn f(v: f64) -> String {
        let mut out = Vec::new();
        format_double(v, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn doubles_print_like_rapidjson() {
        assert_eq!(f(15.0), "15.0");
        assert_eq!(f(0.5), "0.5");
        assert_eq!(f(-2.25), "-2.25");
        assert_eq!(f(1724430000.123456), "1724430000.123456");
        assert_eq!(f(7808.0), "7808.0");
        assert_eq!(f(1e21), "1e21");
        assert_eq!(f(1e20), "100000000000000000000.0");
        assert_eq!(f(1.5e22), "1.5e22");
        assert_eq!(f(0.001234), "0.001234");
        assert_eq!(f(1e-7), "1e-7");
        assert_eq!(f(1.25e-7), "1.25e-7");
        assert_eq!(f(0.0), "0.0");
        assert_eq!(f(f64::INFINITY), "Infinity");
        assert_eq!(f(f64::NEG_INFINITY), "-Infinity");
        assert_eq!(f(f64::NAN), "NaN");
    }

    #[test]
    fn printed_doubles_round_trip() {
        for v in [0.1, 1.0 / 3.0, 123456.789, 5e-324, f64::MAX, 1e-6, 9.999e20] {
            assert_eq!(f(v).parse::<f64>().unwrap(), v, "{v}");
        }
    }
}
