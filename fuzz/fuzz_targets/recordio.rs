//! RecordIO decoding of untrusted bytes split at an arbitrary point: never panics, never
//! buffers beyond the limit, and the split does not change the records.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mesokit_proto::recordio::Decoder;

fuzz_target!(|data: &[u8]| {
    let run = |cut: usize| {
        let mut d = Decoder::new(4096);
        let mut out = Vec::new();
        for part in [&data[..cut], &data[cut..]] {
            d.feed(part);
            loop {
                match d.next_record() {
                    Ok(Some(r)) => out.push(r),
                    Ok(None) => break,
                    Err(_) => return None,
                }
            }
        }
        Some(out)
    };
    let cut = data.first().map_or(0, |&b| usize::from(b) % (data.len() + 1));
    assert_eq!(run(cut), run(0));
});
