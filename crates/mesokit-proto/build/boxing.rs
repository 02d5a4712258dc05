//! Chooses which optional message fields prost should box.
//!
//! prost stores an optional sub-message inline (`Option<T>`), so a `Resource` would carry a
//! whole `DiskInfo` (and its `Volume`, `Image`, …) even when it has none: over a kilobyte per
//! resource, initialised and moved on every decode. Boxing the optional fields whose type is
//! large keeps the common messages small; the rare large parts cost one allocation when present.

use std::collections::HashMap;

use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FileDescriptorSet};

/// Optional message fields whose type is estimated above this many bytes get boxed.
const BOX_ABOVE: usize = 256;

/// Optional message fields boxed whatever their size: each sits in a message that comes in
/// long lists on hot paths and is nearly always absent there, so inline room for it is paid
/// by every element:
/// - a secret in a task's environment: tasks carry several variables, almost never a secret
///   (`Variable` goes from 144 to 64 bytes);
/// - a task's service-discovery info, which a few frameworks set and launches of thousands
///   of tasks, as well as the masters' and agents' task lists, otherwise pay for;
/// - a resource's pre-refinement `reservation`: Mesos sends it only to frameworks without the
///   RESERVATION_REFINEMENT capability (the others get `reservations`), and only on reserved
///   resources, while every offer and task carries several resources (`Resource` goes from
///   280 to 208 bytes).
const RARELY_PRESENT: &[&str] = &[
    ".mesos.v1.Environment.Variable.secret",
    ".mesos.v1.Resource.reservation",
    ".mesos.v1.Task.discovery",
    ".mesos.v1.TaskInfo.discovery",
];

/// Full proto paths (".pkg.Message.field") of the fields to box.
pub(crate) fn fields_to_box(fds: &FileDescriptorSet) -> Vec<String> {
    let mut messages = HashMap::new();
    for file in &fds.file {
        for m in &file.message_type {
            collect(&mut messages, &format!(".{}", file.package()), m);
        }
    }
    let mut sizes = HashMap::new();
    let mut boxed: Vec<String> = RARELY_PRESENT.iter().map(|f| f.to_string()).collect();
    let mut names: Vec<&String> = messages.keys().collect();
    names.sort();
    for name in names {
        size_of(name, &messages, &mut sizes, &mut boxed, &mut Vec::new());
    }
    boxed.sort();
    boxed.dedup();
    boxed
}

fn collect<'a>(
    out: &mut HashMap<String, &'a DescriptorProto>,
    scope: &str,
    m: &'a DescriptorProto,
) {
    let full = format!("{scope}.{}", m.name());
    for n in &m.nested_type {
        collect(out, &full, n);
    }
    out.insert(full, m);
}

/// Rough `size_of` of prost's struct for a message, deciding boxing bottom-up.
fn size_of(
    name: &str,
    messages: &HashMap<String, &DescriptorProto>,
    sizes: &mut HashMap<String, usize>,
    boxed: &mut Vec<String>,
    stack: &mut Vec<String>,
) -> usize {
    if let Some(&s) = sizes.get(name) {
        return s;
    }
    if stack.iter().any(|s| s == name) {
        return 8; // recursion: prost boxes it itself
    }
    stack.push(name.to_owned());
    let m = messages[name];
    let mut total = 0;
    for f in &m.field {
        let optional = f.label() == Label::Optional;
        total += match (f.label(), f.r#type()) {
            (Label::Repeated, _) => 24,
            (_, Type::String) => 24,
            (_, Type::Bytes) => 32,
            (
                _,
                Type::Double
                | Type::Int64
                | Type::Uint64
                | Type::Sint64
                | Type::Fixed64
                | Type::Sfixed64,
            ) => 8 + 8 * usize::from(optional),
            (_, Type::Message) if stack.iter().any(|s| s == f.type_name()) => {
                // A recursive field (ContainerID.parent): it must be boxed.
                boxed.push(format!("{name}.{}", f.name()));
                8
            }
            (_, Type::Message) => {
                let inner = size_of(f.type_name(), messages, sizes, boxed, stack);
                let path = format!("{name}.{}", f.name());
                if optional && RARELY_PRESENT.contains(&path.as_str()) {
                    8
                } else if optional && inner > BOX_ABOVE {
                    boxed.push(path);
                    8
                } else {
                    inner + 8
                }
            }
            _ => 8,
        };
    }
    stack.pop();
    sizes.insert(name.to_owned(), total);
    total
}
