//! Decode throughput of scheduler event streams: RecordIO framing plus event decoding, in JSON
//! and protobuf, into prost's owned types and into the borrowed views.
//!
//! The streams are built here with the same shape as `bench/mkstream.py` (OFFERS events of 100
//! offers, UPDATE events as executors send them), so `cargo bench` needs nothing else.
//! `bench/decode_vs_pymesos.sh` compares the same decoders with pymesos on one stream file.

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mesokit_proto::helpers::{cpus, disk, mem, new_uuid};
use mesokit_proto::v1::{self, scheduler};
use mesokit_proto::{Message, borrowed, json, recordio};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn id<T: Default>(f: impl FnOnce(&mut T)) -> T {
    let mut t = T::default();
    f(&mut t);
    t
}

#[allow(deprecated)] // Resource.role: Mesos still sends it to non-refinement frameworks
fn offer(i: usize) -> v1::Offer {
    let alloc = Some(v1::resource::AllocationInfo {
        role: Some("dev".into()),
    });
    let mut res = vec![cpus(4.0 + (i % 4) as f64), mem(7808.0), disk(51200.0)];
    res.push(mesokit_proto::helpers::ranges(
        "ports",
        &[(31000, 31999 - (i % 7) as u64)],
    ));
    for r in &mut res {
        r.role = Some("*".into());
        r.allocation_info = alloc.clone();
    }
    v1::Offer {
        id: v1::OfferId {
            value: format!("ebb8992f-1d02-458f-8abb-792ae133eb4a-O{i}"),
        },
        framework_id: v1::FrameworkId {
            value: "ebb8992f-1d02-458f-8abb-792ae133eb4a-0000".into(),
        },
        agent_id: v1::AgentId {
            value: format!("ebb8992f-1d02-458f-8abb-792ae133eb4a-S{i}"),
        },
        hostname: format!("agent-{i}.example.com"),
        url: Some(v1::Url {
            scheme: "http".into(),
            address: v1::Address {
                hostname: Some(format!("agent-{i}.example.com")),
                ip: Some(format!("10.0.{}.{}", i / 250, i % 250)),
                port: 5051,
            },
            path: Some("/slave(1)".into()),
            ..Default::default()
        }),
        resources: res,
        attributes: vec![
            id(|a: &mut v1::Attribute| {
                a.name = "rack".into();
                a.r#type = v1::value::Type::Text as i32;
                a.text = Some(v1::value::Text {
                    value: format!("r{}", i % 16),
                });
            }),
            id(|a: &mut v1::Attribute| {
                a.name = "slots".into();
                a.r#type = v1::value::Type::Scalar as i32;
                a.scalar = Some(v1::value::Scalar { value: 4.0 });
            }),
        ],
        allocation_info: alloc,
        ..Default::default()
    }
}

fn offers_event(n: usize) -> scheduler::Event {
    scheduler::Event {
        r#type: Some(scheduler::event::Type::Offers as i32),
        offers: Some(scheduler::event::Offers {
            offers: (0..n).map(offer).collect(),
        }),
        ..Default::default()
    }
}

fn update_event(i: usize) -> scheduler::Event {
    let task = format!("worker.{i:08}-8fd9-476a-9647-062548589334");
    let status = v1::TaskStatus {
        task_id: v1::TaskId {
            value: task.clone(),
        },
        state: v1::TaskState::TaskRunning as i32,
        source: Some(v1::task_status::Source::Executor as i32),
        data: Some(Bytes::from_static(
            b"{\"seq\":0,\"progress\":0.792,\"phase\":\"serve\"}",
        )),
        agent_id: Some(v1::AgentId {
            value: format!("ebb8992f-1d02-458f-8abb-792ae133eb4a-S{}", i % 1000),
        }),
        executor_id: Some(v1::ExecutorId { value: task }),
        timestamp: Some(1724458502.000306 + i as f64),
        uuid: Some(new_uuid()),
        container_status: Some(v1::ContainerStatus {
            container_id: Some(v1::ContainerId {
                value: "82753058-42e3-43cb-8307-6c93d838c774".into(),
                parent: None,
            }),
            network_infos: vec![v1::NetworkInfo {
                ip_addresses: vec![v1::network_info::IpAddress {
                    protocol: Some(v1::network_info::Protocol::IPv4 as i32),
                    ip_address: Some(format!("172.21.{}.{}", i % 200, i % 250)),
                }],
                ..Default::default()
            }],
            executor_pid: Some(3_616_231),
            ..Default::default()
        }),
        ..Default::default()
    };
    scheduler::Event {
        r#type: Some(scheduler::event::Type::Update as i32),
        update: Some(Box::new(scheduler::event::Update { status })),
        ..Default::default()
    }
}

fn stream(events: &[scheduler::Event], protobuf: bool) -> Bytes {
    let mut out = Vec::new();
    for e in events {
        let body = if protobuf {
            e.encode_to_vec()
        } else {
            json::encode(e)
        };
        recordio::encode(&body, &mut out);
    }
    Bytes::from(out)
}

fn each_record(stream: &Bytes, mut f: impl FnMut(Bytes)) {
    let mut dec = recordio::Decoder::new(usize::MAX);
    let mut at = 0;
    while at < stream.len() {
        let end = (at + 64 * 1024).min(stream.len());
        dec.feed_bytes(stream.slice(at..end));
        at = end;
        while let Some(rec) = dec.next_record().unwrap() {
            f(rec);
        }
    }
}

fn bench(c: &mut Criterion) {
    let kinds: [(&str, Vec<scheduler::Event>); 2] = [
        ("offers", (0..20).map(|_| offers_event(100)).collect()),
        ("updates", (0..20_000).map(update_event).collect()),
    ];
    for (kind, events) in &kinds {
        let mut g = c.benchmark_group(format!("decode/{kind}"));
        for protobuf in [false, true] {
            let s = stream(events, protobuf);
            let fmt = if protobuf { "protobuf" } else { "json" };
            g.throughput(Throughput::Bytes(s.len() as u64));
            g.bench_function(format!("{fmt}/owned"), |b| {
                b.iter(|| {
                    each_record(&s, |rec| {
                        let ev: scheduler::Event = if protobuf {
                            scheduler::Event::decode(rec).unwrap()
                        } else {
                            json::decode(&rec).unwrap()
                        };
                        std::hint::black_box(ev);
                    })
                })
            });
            // One arena for the stream, reset for each event, as an event loop would use it.
            let mut arena = borrowed::Arena::new();
            g.bench_function(format!("{fmt}/borrowed"), |b| {
                b.iter(|| {
                    each_record(&s, |rec| {
                        arena.reset();
                        let ev: borrowed::v1::scheduler::Event<'_> = if protobuf {
                            borrowed::decode_protobuf(&rec, &arena).unwrap()
                        } else {
                            borrowed::decode_json(&rec, &arena).unwrap()
                        };
                        std::hint::black_box(ev);
                    })
                })
            });
        }
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
