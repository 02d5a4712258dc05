//! Helpers shared by the CLI's integration tests.

#![allow(dead_code, unreachable_pub)]

/// The fake agent lives with the executor runtime's tests; one copy serves both crates.
#[path = "../../../mesokit-executor/tests/support/fake_agent.rs"]
pub mod fake_agent;

use std::process::{Child, Command, Stdio};

/// A child process killed (and reaped) on drop, so a failing test leaves nothing running.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A port free on 127.0.0.1 right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `mesokit local` with its master on `port`, agents on free ports, a 50 ms offer cycle, and
/// `extra` arguments; output discarded.
pub fn local_cluster(port: u16, extra: &[&str]) -> Proc {
    Proc(
        Command::new(env!("CARGO_BIN_EXE_mesokit"))
            .args([
                "local",
                "--agent-port",
                "0",
                "--allocation-interval-ms",
                "50",
            ])
            .args(["--port", &port.to_string()])
            .args(extra)
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// A field of a JSON event line as `mesokit run --json` writes them (flat objects): the text
/// of a string, or the literal of a number or boolean.
pub fn json_field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let pat = format!("\"{key}\":");
    let rest = &line[line.find(&pat)? + pat.len()..];
    if let Some(s) = rest.strip_prefix('"') {
        Some(&s[..s.find('"')?])
    } else {
        Some(&rest[..rest.find([',', '}'])?])
    }
}
