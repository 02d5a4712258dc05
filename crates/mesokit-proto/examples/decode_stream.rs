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
//!
//! Environment: `DECODE_ONLY=mesokit|mesokit-owned` runs one decoder; `DECODE_RUNS=N` makes
//! exactly N runs (for instruction counts under `valgrind --tool=cachegrind`);
//! `DECODE_SAVE_PROTOBUF=PATH` writes the transcoded protobuf stream there. A FILE whose first
//! record is not a JSON object is taken as a protobuf stream already and not transcoded.

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
        "protobuf" if !first_record_is_json(&raw) => raw,
        "protobuf" => {
            let mut out = Vec::new();
            for rec in recordio::decode_all(&raw, usize::MAX).expect("valid RecordIO") {
                let ev: Event = json::decode(&rec).expect("valid JSON event");
                recordio::encode(&ev.encode_to_vec(), &mut out);
            }
            if let Ok(path) = std::env::var("DECODE_SAVE_PROTOBUF") {
                std::fs::write(&path, &out).unwrap_or_else(|e| panic!("cannot write {path}: {e}"));
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
    // One arena for the stream, reset for each event, as an event loop would use it.
    let arena = std::cell::RefCell::new(borrowed::Arena::new());
    let borrowed = |rec: bytes::Bytes| {
        let mut arena = arena.borrow_mut();
        arena.reset();
        let ev: borrowed::v1::scheduler::Event<'_> = if proto {
            borrowed::decode_protobuf(&rec, &arena).expect("valid protobuf event")
        } else {
            borrowed::decode_json(&rec, &arena).expect("valid JSON event")
        };
        std::hint::black_box(&ev);
    };
    let only = std::env::var("DECODE_ONLY").ok();
    let fixed_runs: Option<usize> = std::env::var("DECODE_RUNS")
        .ok()
        .map(|n| n.parse().expect("DECODE_RUNS is a number"));
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
        while match fixed_runs {
            Some(n) => runs < n,
            None => runs < 3 || start.elapsed() < Duration::from_secs(2),
        } {
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

/// Whether the stream's first record starts with `{` (a JSON event).
fn first_record_is_json(raw: &[u8]) -> bool {
    let mut dec = recordio::Decoder::new(usize::MAX);
    dec.feed_bytes(bytes::Bytes::copy_from_slice(raw));
    matches!(dec.next_record(), Ok(Some(rec)) if rec.first() == Some(&b'{'))
}
