//! `mesokit decode`: read a captured scheduler event stream and print its events.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use mesokit_proto::v1::scheduler;
use mesokit_proto::{Message, borrowed, json, recordio};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The stream file (`-` for standard input): RecordIO records of `scheduler.Event`.
    file: PathBuf,
    /// Encoding of the records.
    #[arg(long, value_enum, default_value_t = Format::Json)]
    format: Format,
    /// What to print for each event.
    #[arg(long, value_enum, default_value_t = Print::Summary)]
    print: Print,
    /// Largest record accepted, in bytes.
    #[arg(long, default_value_t = recordio::DEFAULT_MAX_RECORD)]
    max_record: usize,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Format {
    Json,
    Protobuf,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Print {
    /// One line per event: its type and what it is about.
    Summary,
    /// Each event re-encoded as Mesos JSON, one per line.
    Json,
}

pub(crate) fn run(args: Args) -> Result<ExitCode, String> {
    let mut input = Vec::new();
    if args.file.as_os_str() == "-" {
        std::io::stdin().read_to_end(&mut input)
    } else {
        std::fs::File::open(&args.file).and_then(|mut f| f.read_to_end(&mut input))
    }
    .map_err(|e| format!("cannot read {}: {e}", args.file.display()))?;

    let mut dec = recordio::Decoder::new(args.max_record);
    dec.feed_bytes(input.into());
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut n = 0usize;
    while let Some(rec) = dec
        .next_record()
        .map_err(|e| format!("record {}: {e}", n + 1))?
    {
        n += 1;
        let line = match args.print {
            Print::Summary => summary(&rec, args.format).map_err(|e| format!("record {n}: {e}"))?,
            Print::Json => {
                let ev: scheduler::Event = match args.format {
                    Format::Json => json::decode(&rec).map_err(|e| format!("record {n}: {e}"))?,
                    Format::Protobuf => scheduler::Event::decode(rec)
                        .map_err(|e| format!("record {n}: invalid protobuf: {e}"))?,
                };
                json::encode_string(&ev)
            }
        };
        if writeln!(out, "{line}").is_err() {
            return Ok(ExitCode::SUCCESS); // stdout closed (e.g. piped into `head`)
        }
    }
    dec.finish().map_err(|e| e.to_string())?;
    Ok(ExitCode::SUCCESS)
}

/// One line about an event, read through the zero-copy view.
fn summary(rec: &[u8], format: Format) -> Result<String, String> {
    let arena = borrowed::Arena::new();
    let ev: borrowed::v1::scheduler::Event<'_> = match format {
        Format::Json => borrowed::decode_json(rec, &arena).map_err(|e| e.to_string())?,
        Format::Protobuf => borrowed::decode_protobuf(rec, &arena).map_err(|e| e.to_string())?,
    };
    let ty = ev
        .r#type
        .and_then(|t| scheduler::event::Type::try_from(t).ok())
        .map_or("UNKNOWN", |t| t.as_str_name());
    let what = if let Some(o) = &ev.offers {
        let agents: std::collections::BTreeSet<&str> =
            o.offers.iter().map(|o| o.agent_id.value).collect();
        format!("{} offers from {} agents", o.offers.len(), agents.len())
    } else if let Some(u) = &ev.update {
        let s = &u.status;
        let state =
            mesokit_proto::v1::TaskState::try_from(s.state).map_or("?", |t| t.as_str_name());
        format!(
            "task {} {state}{}",
            s.task_id.value,
            s.message.map(|m| format!(": {m}")).unwrap_or_default()
        )
    } else if let Some(s) = &ev.subscribed {
        format!("framework {}", s.framework_id.value)
    } else if let Some(r) = &ev.rescind {
        format!("offer {}", r.offer_id.value)
    } else if let Some(e) = &ev.error {
        e.message.to_string()
    } else {
        String::new()
    };
    Ok(format!("{ty} {what}").trim_end().to_owned())
}
