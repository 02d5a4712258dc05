//! The version the master and agents report: the Mesos version whose APIs we speak (clients
//! such as pymesos pick features by it), and mesokit's own in `git_tag`.

use mesokit_proto::{json, v1};

/// The Mesos version mesokit local answers as.
pub const MESOS_VERSION: &str = "1.12.0";

/// `VersionInfo` for `/version` and `GET_VERSION`.
pub fn version_info() -> v1::VersionInfo {
    v1::VersionInfo {
        version: MESOS_VERSION.into(),
        build_date: Some(String::new()),
        build_time: Some(0.0),
        build_user: Some("mesokit".into()),
        git_tag: Some(format!("mesokit-{}", env!("CARGO_PKG_VERSION"))),
        ..Default::default()
    }
}

/// The `/version` endpoint's body.
pub fn version_json() -> Vec<u8> {
    json::encode(&version_info())
}
