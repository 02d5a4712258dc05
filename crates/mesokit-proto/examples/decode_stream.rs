//! Decodes a RecordIO stream of scheduler events and reports throughput; the mesokit side of
//! `bench/decode_vs_pymesos.sh`.
//!
//! `decode_stream --format json|protobuf FILE`: FILE is a RecordIO stream of JSON events (as
//! `bench/mkstream.py` writes). With `--format protobuf` the stream is first transcoded to
//! protobuf, and the protobuf stream is what gets measured. Each run feeds the whole stream
//! through the incremental RecordIO decoder in 64 KiB chunks and decodes every record into a
//! `scheduler::Event`, twice: into the owned prost type (`mesokit-owned` line) and into the
//! borrowed view (`mesokit` line, the main figure). Prints the best of several runs (at least
//! 2 s in total) of each.

use std::time::{Duration, Instant};

use mesokit_proto::{Message, borrowed, json, recordio, v1::scheduler::Event};
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (format, file) = match args.as_slice() {
        [_, flag, f, file] if flag == "--format" => (f.clone(), file.clone()),
        _ => {
            eprintln!("usage: decode_stream --format json|protobuf FILE");
            std::process::exit(2);
        }
    };
    let raw = std::fs::read(&file).unwrap_or_else(|e| panic!("cannot read {file}: {e}"));
    let stream = match format.as_str() {
        "json" => raw,
        "protobuf" => {
            let mut out = Vec::new();
            for rec in recordio::decode_all(&raw, usize::MAX).expect("valid RecordIO") {
                let ev: Event = json::decode(&rec).expect("valid JSON event");
                recordio::encode(&ev.encode_to_vec(), &mut out);
            }
            out
        }
        other => {
            eprintln!("unknown format {other}");
            std::process::exit(2);
        }
    };
    let stream = bytes::Bytes::from(stream);
    let proto = format == "protobuf";
    // Owned: into prost's `scheduler::Event`. Borrowed: into the zero-copy view.
    let owned = |rec: bytes::Bytes| {
        let ev: Event = if proto {
            Event::decode(rec).expect("valid protobuf event")
        } else {
            json::decode(&rec).expect("valid JSON event")
        };
        std::hint::black_box(&ev);
    };
    let borrowed = |rec: bytes::Bytes| {
        let ev: borrowed::v1::scheduler::Event<'_> = if proto {
            borrowed::decode_protobuf(&rec).expect("valid protobuf event")
        } else {
            borrowed::decode_json(&rec).expect("valid JSON event")
        };
        std::hint::black_box(&ev);
    };
    let only = std::env::var("DECODE_ONLY").ok();
    for (label, decode) in [
        ("mesokit-owned", &owned as &dyn Fn(bytes::Bytes)),
        ("mesokit", &borrowed),
    ] {
        if only.as_deref().is_some_and(|o| o != label) {
            continue;
        }
        let run = || -> usize {
            let mut dec = recordio::Decoder::new(usize::MAX);
            let mut events = 0;
            let mut at = 0;
            while at < stream.len() {
                let end = (at + 64 * 1024).min(stream.len());
                dec.feed_bytes(stream.slice(at..end));
                at = end;
                while let Some(rec) = dec.next_record().expect("valid RecordIO") {
                    decode(rec);
                    events += 1;
                }
            }
            events
        };
        let mut best = Duration::MAX;
        let mut events = 0;
        let start = Instant::now();
        let mut runs = 0;
        while runs < 3 || start.elapsed() < Duration::from_secs(2) {
            let t = Instant::now();
            events = run();
            best = best.min(t.elapsed());
            runs += 1;
        }
        let secs = best.as_secs_f64();
        println!(
            "{label} kind={format} bytes={} events={events} secs={secs:.6} MBps={:.1} events_per_s={:.0}",
            stream.len(),
            stream.len() as f64 / secs / 1e6,
            events as f64 / secs
        );
    }
}
