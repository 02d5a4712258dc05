//! Golden tests: byte strings from the Mesos reference (`shared/reference/mesos-v1-api.md`
//! §1.3, §2.3, §2.4) decoded and, where Mesos produced them, re-encoded byte for byte.

use mesokit_proto::json::{self, JsonErrorKind};
use mesokit_proto::v1::{self, executor, scheduler};
use mesokit_proto::{Message, recordio};

/// Removes the layout whitespace the reference uses for readability (outside strings).
fn compact(s: &str) -> String {
    let mut out = String::new();
    let mut in_str = false;
    let mut esc = false;
    for c in s.chars() {
        if in_str {
            out.push(c);
            if esc {
                esc = false;
            } else if c == '\\' {
                esc = true;
            } else if c == '"' {
                in_str = false;
            }
        } else if c == '"' {
            in_str = true;
            out.push(c);
        } else if !c.is_whitespace() {
            out.push(c);
        }
    }
    out
}

/// Decodes Mesos-produced JSON and checks that encoding gives the very same bytes.
fn round_trip<T: json::MesosJson + std::fmt::Debug>(mesos: &str) -> T {
    let mesos = compact(mesos);
    let msg: T = json::decode(mesos.as_bytes()).unwrap_or_else(|e| panic!("{e}\n{mesos}"));
    assert_eq!(
        json::encode_string(&msg),
        mesos,
        "re-encoding differs from Mesos's bytes"
    );
    msg
}

#[test]
fn recordio_example_frames_subscribed_and_heartbeat() {
    // §1.3: the bytes on the wire after HTTP de-chunking.
    let wire = "107\n{\"type\":\"SUBSCRIBED\",\"subscribed\":{\"framework_id\":{\"value\":\"a1b2-0000\"},\"heartbeat_interval_seconds\":15.0}}20\n{\"type\":\"HEARTBEAT\"}";
    let records = recordio::decode_all(wire.as_bytes(), 1 << 20).unwrap();
    assert_eq!(records.len(), 2);
    let sub: scheduler::Event = json::decode(&records[0]).unwrap();
    assert_eq!(sub.r#type, Some(scheduler::event::Type::Subscribed as i32));
    let s = sub.subscribed.as_ref().unwrap();
    assert_eq!(s.framework_id.value, "a1b2-0000");
    assert_eq!(s.heartbeat_interval_seconds, Some(15.0));
    // Our encoder frames the same events into the same bytes.
    let mut out = Vec::new();
    for ev in [
        &sub,
        &json::decode::<scheduler::Event>(&records[1]).unwrap(),
    ] {
        recordio::encode(&json::encode(ev), &mut out);
    }
    assert_eq!(String::from_utf8(out).unwrap(), wire);
}

#[test]
fn protobuf_heartbeat_is_08_08() {
    let hb = scheduler::Event {
        r#type: Some(scheduler::event::Type::Heartbeat as i32),
        ..Default::default()
    };
    assert_eq!(hb.encode_to_vec(), vec![0x08, 0x08]);
    assert_eq!(recordio::frame(&hb.encode_to_vec()), b"2\n\x08\x08");
}

const SUBSCRIBED: &str = r#"{"type":"SUBSCRIBED","subscribed":{"framework_id":{"value":"7f3e-0000"},
  "heartbeat_interval_seconds":15.0,
  "master_info":{"id":"7f3e","ip":16777343,"port":5050,"pid":"master@127.0.0.1:5050",
    "hostname":"localhost","version":"1.12.0",
    "address":{"hostname":"localhost","ip":"127.0.0.1","port":5050}}}}"#;

#[test]
fn subscribed_event_round_trips() {
    let ev: scheduler::Event = round_trip(SUBSCRIBED);
    let mi = ev.subscribed.unwrap().master_info.unwrap();
    assert_eq!(mi.ip, 16777343);
    assert_eq!(mi.address.unwrap().ip.as_deref(), Some("127.0.0.1"));
}

const OFFERS: &str = r#"{"type":"OFFERS","offers":{"offers":[{
  "id":{"value":"7f3e…-O3"},"framework_id":{"value":"7f3e…-0000"},"agent_id":{"value":"7f3e…-S0"},
  "hostname":"localhost",
  "url":{"scheme":"http","address":{"hostname":"localhost","ip":"127.0.0.1","port":5051},"path":"/slave(1)"},
  "resources":[
    {"name":"cpus","type":"SCALAR","scalar":{"value":4.0},"role":"*","allocation_info":{"role":"dev"}},
    {"name":"mem","type":"SCALAR","scalar":{"value":7808.0},"role":"*","allocation_info":{"role":"dev"}},
    {"name":"disk","type":"SCALAR","scalar":{"value":51200.0},"role":"*","allocation_info":{"role":"dev"}},
    {"name":"ports","type":"RANGES","ranges":{"range":[{"begin":31000,"end":32000}]},"role":"*",
     "allocation_info":{"role":"dev"}}],
  "attributes":[{"name":"rack","type":"TEXT","text":{"value":"r1"}}],
  "executor_ids":[{"value":"my-exec"}],
  "allocation_info":{"role":"dev"}}]}}"#;

#[test]
fn offers_event_round_trips_with_the_nested_offers_wrapper() {
    let ev: scheduler::Event = round_trip(OFFERS);
    let offers = ev.offers.unwrap().offers;
    assert_eq!(offers.len(), 1);
    let o = &offers[0];
    assert_eq!(o.agent_id.value, "7f3e…-S0");
    assert_eq!(o.resources[1].scalar.as_ref().unwrap().value, 7808.0);
    let range = &o.resources[3].ranges.as_ref().unwrap().range[0];
    assert_eq!((range.begin, range.end), (31000, 32000));
    assert_eq!(o.resources[0].r#type, v1::value::Type::Scalar as i32);
    assert_eq!(o.attributes[0].text.as_ref().unwrap().value, "r1");
}

#[test]
fn offers_in_the_docs_shape_are_rejected_with_the_field_named() {
    // §2.4 erratum: the docs show "offers":[…]; the real shape is "offers":{"offers":[…]}.
    let err =
        json::decode::<scheduler::Event>(br#"{"type":"OFFERS","offers":[{"id":{"value":"x"}}]}"#)
            .unwrap_err();
    assert_eq!(err.kind(), &JsonErrorKind::ArrayForSingular);
    assert_eq!(err.path(), "offers");
}

#[test]
fn accept_call_from_the_reference_decodes() {
    let call: scheduler::Call = json::decode(
        compact(
            r#"
    {"framework_id":{"value":"7f3e…-0000"},"type":"ACCEPT","accept":{
      "offer_ids":[{"value":"7f3e…-O3"}],
      "operations":[{"type":"LAUNCH","launch":{"task_infos":[{
         "name":"hello","task_id":{"value":"hello-1"},"agent_id":{"value":"7f3e…-S0"},
         "resources":[{"name":"cpus","type":"SCALAR","scalar":{"value":0.5}},
                      {"name":"mem","type":"SCALAR","scalar":{"value":64}}],
         "command":{"shell":true,"value":"echo hi && sleep 5"},
         "kill_policy":{"grace_period":{"nanoseconds":5000000000}}}]}}],
      "filters":{"refuse_seconds":10}}}"#,
        )
        .as_bytes(),
    )
    .unwrap();
    assert_eq!(call.r#type, Some(scheduler::call::Type::Accept as i32));
    let accept = call.accept.unwrap();
    assert_eq!(accept.filters.unwrap().refuse_seconds, Some(10.0));
    let op = &accept.operations[0];
    assert_eq!(op.r#type, Some(v1::offer::operation::Type::Launch as i32));
    let task = &op.launch.as_ref().unwrap().task_infos[0];
    assert_eq!(task.task_id.value, "hello-1");
    assert_eq!(task.resources[1].scalar.as_ref().unwrap().value, 64.0);
    assert_eq!(
        task.command.as_ref().unwrap().value.as_deref(),
        Some("echo hi && sleep 5")
    );
    let grace = task
        .kill_policy
        .as_ref()
        .unwrap()
        .grace_period
        .as_ref()
        .unwrap();
    assert_eq!(grace.nanoseconds, 5_000_000_000);
}

const UPDATE: &str = r#"{"type":"UPDATE","update":{"status":{
  "task_id":{"value":"hello-1"},"state":"TASK_RUNNING","source":"SOURCE_EXECUTOR",
  "agent_id":{"value":"7f3e…-S0"},"executor_id":{"value":"hello-1"},
  "timestamp":1724430000.123456,"uuid":"nwyKbi07TB6PWhssPU5fYA==",
  "container_status":{"container_id":{"value":"0c6d…"},
     "network_infos":[{"ip_addresses":[{"protocol":"IPv4","ip_address":"127.0.0.1"}]}],
     "executor_pid":4242}}}}"#;

#[test]
fn update_event_round_trips_and_its_uuid_is_16_bytes() {
    let ev: scheduler::Event = round_trip(UPDATE);
    let status = ev.update.unwrap().status;
    assert_eq!(status.state, v1::TaskState::TaskRunning as i32);
    let uuid = status.uuid.unwrap();
    assert_eq!(uuid.len(), 16);
    assert!(mesokit_proto::helpers::is_valid_uuid(&uuid));
    assert_eq!(status.timestamp, Some(1724430000.123456));
    assert_eq!(status.container_status.unwrap().executor_pid, Some(4242));
}

#[test]
fn executor_update_uses_data_not_bytes() {
    let call: executor::Call = round_trip(
        r#"{"executor_id":{"value":"my-exec"},"framework_id":{"value":"7f3e…-0000"},"type":"UPDATE",
 "update":{"status":{"task_id":{"value":"t1"},"state":"TASK_RUNNING","source":"SOURCE_EXECUTOR",
   "data":"b3B0aW9uYWwgYmxvYg==","executor_id":{"value":"my-exec"},"uuid":"nwyKbi07TB6PWhssPU5fYA=="}}}"#,
    );
    let status = call.update.unwrap().status;
    assert_eq!(&status.data.unwrap()[..], b"optional blob");
    // The docs' "bytes" key is not a field: it is ignored, as Mesos ignores unknown keys.
    let docs: v1::TaskStatus =
        json::decode(br#"{"task_id":{"value":"t1"},"state":"TASK_RUNNING","bytes":"aGk="}"#)
            .unwrap();
    assert_eq!(docs.data, None);
}

#[test]
fn executor_events_from_the_reference_decode() {
    let ack: executor::Event = round_trip(
        r#"{"type":"ACKNOWLEDGED","acknowledged":{"task_id":{"value":"t1"},"uuid":"nwyKbi07TB6PWhssPU5fYA=="}}"#,
    );
    assert_eq!(ack.acknowledged.unwrap().uuid.len(), 16);
    let kill: executor::Event = round_trip(
        r#"{"type":"KILL","kill":{"task_id":{"value":"t1"},"kill_policy":{"grace_period":{"nanoseconds":3000000000}}}}"#,
    );
    assert_eq!(kill.kill.unwrap().task_id.value, "t1");
    let msg: executor::Event = round_trip(r#"{"type":"MESSAGE","message":{"data":"aGk="}}"#);
    assert_eq!(&msg.message.unwrap().data[..], b"hi");
    let sub: executor::Call = round_trip(
        r#"{"executor_id":{"value":"my-exec"},"framework_id":{"value":"7f3e…-0000"},"type":"SUBSCRIBE","subscribe":{}}"#,
    );
    assert!(sub.subscribe.is_some());
}

#[test]
fn error_events_carry_the_message_in_a_sub_object() {
    let ev: scheduler::Event =
        round_trip(r#"{"type":"ERROR","error":{"message":"Framework has been removed"}}"#);
    assert_eq!(ev.error.unwrap().message, "Framework has been removed");
    let r: scheduler::Event =
        round_trip(r#"{"type":"RESCIND","rescind":{"offer_id":{"value":"a1b2-O7"}}}"#);
    assert_eq!(r.rescind.unwrap().offer_id.value, "a1b2-O7");
}

#[test]
fn declared_defaults_are_written_like_mesos() {
    // §2.2: failover_timeout 0.0 and checkpoint false appear; the deprecated role "*" does not.
    let fi = v1::FrameworkInfo {
        user: "alice".into(),
        name: "demo".into(),
        ..Default::default()
    };
    assert_eq!(
        json::encode_string(&fi),
        r#"{"user":"alice","name":"demo","failover_timeout":0.0,"checkpoint":false}"#
    );
    let cmd = v1::CommandInfo {
        value: Some("true".into()),
        ..Default::default()
    };
    assert_eq!(
        json::encode_string(&cmd),
        r#"{"shell":true,"value":"true"}"#
    );
    let f = v1::Filters::default();
    assert_eq!(json::encode_string(&f), r#"{"refuse_seconds":5.0}"#);
}

#[test]
fn revive_uses_repeated_roles_and_accepts_a_single_value() {
    let call: scheduler::Call =
        json::decode(br#"{"type":"REVIVE","revive":{"roles":"dev"}}"#).unwrap();
    assert_eq!(call.revive.unwrap().roles, vec!["dev"]);
}

#[test]
fn stout_input_rules() {
    // Enums are names only; a number is an error naming the field.
    let err =
        json::decode::<v1::TaskStatus>(br#"{"task_id":{"value":"t"},"state":1}"#).unwrap_err();
    assert_eq!(err.kind(), &JsonErrorKind::EnumNumber);
    assert_eq!(err.path(), "state");
    // An unknown name is an error for a required enum...
    let err =
        json::decode::<v1::TaskStatus>(br#"{"task_id":{"value":"t"},"state":"TASK_NAPPING"}"#)
            .unwrap_err();
    assert!(matches!(err.kind(), JsonErrorKind::UnknownEnum { name } if name == "TASK_NAPPING"));
    // ...and silently dropped for an optional or repeated one.
    let st: v1::TaskStatus = json::decode(
        br#"{"task_id":{"value":"t"},"state":"TASK_RUNNING","reason":"REASON_NAPPING"}"#,
    )
    .unwrap();
    assert_eq!(st.reason, None);
    // 64-bit integers as numbers or numeric strings; doubles as numbers, strings or Infinity.
    let ti: v1::TimeInfo = json::decode(br#"{"nanoseconds":"1724430000123456789"}"#).unwrap();
    assert_eq!(ti.nanoseconds, 1724430000123456789);
    let sc: v1::value::Scalar = json::decode(br#"{"value":"Infinity"}"#).unwrap();
    assert_eq!(sc.value, f64::INFINITY);
    let sc: v1::value::Scalar = json::decode(br#"{"value":"2.5"}"#).unwrap();
    assert_eq!(sc.value, 2.5);
    // Booleans as strings; null means unset; unknown keys of any shape are skipped.
    let fi: v1::FrameworkInfo = json::decode(
        br#"{"user":"u","name":"n","checkpoint":"true","hostname":null,"x":{"y":[1,{"z":null}]}}"#,
    )
    .unwrap();
    assert_eq!(fi.checkpoint, Some(true));
    assert_eq!(fi.hostname, None);
    // Missing required fields are reported with their names and path.
    let err =
        json::decode::<scheduler::Call>(br#"{"type":"KILL","kill":{"agent_id":{"value":"a"}}}"#)
            .unwrap_err();
    assert_eq!(err.kind(), &JsonErrorKind::MissingRequired(vec!["task_id"]));
    assert_eq!(err.path(), "kill");
    assert!(
        err.to_string().contains("missing required fields: task_id"),
        "{err}"
    );
    // Numbers that do not fit the field are errors, not truncation.
    let err = json::decode::<v1::Address>(br#"{"port":99999999999}"#).unwrap_err();
    assert!(
        matches!(err.kind(), JsonErrorKind::BadNumber { ty: "int32", .. }),
        "{err}"
    );
    // bytes: base64 with whitespace tolerated; garbage rejected.
    let m: scheduler::event::Message = json::decode(
        br#"{"agent_id":{"value":"a"},"executor_id":{"value":"e"},"data":"aGVs\nbG8="}"#,
    )
    .unwrap();
    assert_eq!(&m.data[..], b"hello");
    let err = json::decode::<scheduler::event::Message>(
        br#"{"agent_id":{"value":"a"},"executor_id":{"value":"e"},"data":"!!!"}"#,
    )
    .unwrap_err();
    assert_eq!(err.kind(), &JsonErrorKind::BadBase64);
}

#[test]
fn malformed_json_gives_typed_errors_with_offsets() {
    let cases: &[(&[u8], &str)] = &[
        (b"", "unexpected end"),
        (b"{", "unexpected end"),
        (br#"{"type":"HEARTBEAT""#, "unexpected end"),
        (br#"{"type":"HEARTBEAT"} x"#, "after the JSON value"),
        (br#"{"type" "HEARTBEAT"}"#, "expected ':'"),
        (br#"{"type":"HEART\qBEAT"}"#, "escape"),
        (b"[1,2]", "array"),
        (b"\xff\xfe", "UTF-8"),
        (br#"{"type":"HEARTBEAT",}"#, "string key"),
    ];
    for (input, want) in cases {
        let err = json::decode::<scheduler::Event>(input).unwrap_err();
        assert!(
            err.to_string().contains(want),
            "{:?}: {err}",
            String::from_utf8_lossy(input)
        );
    }
    // Deep nesting is refused instead of overflowing the stack.
    let deep = format!("{}{}", "{\"parent\":".repeat(10_000), "}".repeat(10_000));
    let err = json::decode::<v1::ContainerId>(deep.as_bytes()).unwrap_err();
    assert_eq!(err.kind(), &JsonErrorKind::TooDeep);
    let deep = format!("{{\"x\":{}{}}}", "[".repeat(10_000), "]".repeat(10_000));
    assert_eq!(
        json::decode::<v1::ContainerId>(deep.as_bytes())
            .unwrap_err()
            .kind(),
        &JsonErrorKind::TooDeep
    );
}

#[test]
fn strings_escape_like_rapidjson() {
    let l = v1::Label {
        key: "k\"\\\n\u{1}é/".into(),
        value: None,
    };
    assert_eq!(json::encode_string(&l), r#"{"key":"k\"\\\n\u0001é/"}"#);
    let back: v1::Label = json::decode(br#"{"key":"\u00e9\ud83d\ude00\/"}"#).unwrap();
    assert_eq!(back.key, "é😀/");
}
