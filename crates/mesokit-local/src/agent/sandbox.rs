//! Sandboxes as Mesos lays them out under the agent's work directory, and the fetcher that
//! puts `CommandInfo.uris` into them (local paths and `file://` for now; `http(s)://` is not
//! fetched yet and fails the fetch with a clear message).

use std::io;
use std::path::{Path, PathBuf};

use mesokit_proto::v1::command_info::Uri;

/// `<work_dir>/slaves/<agent>/frameworks/<fid>/executors/<eid>/runs`.
pub fn runs_dir(work_dir: &Path, agent_id: &str, framework_id: &str, executor_id: &str) -> PathBuf {
    work_dir
        .join("slaves")
        .join(agent_id)
        .join("frameworks")
        .join(framework_id)
        .join("executors")
        .join(executor_id)
        .join("runs")
}

/// Creates the sandbox `runs/<container_id>` and points `runs/latest` at it.
pub fn create(
    work_dir: &Path,
    agent_id: &str,
    framework_id: &str,
    executor_id: &str,
    container_id: &str,
) -> io::Result<PathBuf> {
    let runs = runs_dir(work_dir, agent_id, framework_id, executor_id);
    let dir = runs.join(container_id);
    std::fs::create_dir_all(&dir)?;
    let latest = runs.join("latest");
    match std::fs::remove_file(&latest) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::os::unix::fs::symlink(&dir, &latest)?;
    Ok(dir)
}

/// Why a URI could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// A scheme we do not fetch yet.
    #[error("cannot fetch '{0}': only local paths and file:// URIs are supported")]
    Unsupported(String),
    /// Copying failed.
    #[error("failed to fetch '{uri}': {source}")]
    Io {
        /// The URI.
        uri: String,
        /// The error.
        source: io::Error,
    },
    /// The extractor failed.
    #[error("failed to extract '{uri}': {message}")]
    Extract {
        /// The URI.
        uri: String,
        /// What the extractor said.
        message: String,
    },
}

fn is_archive(name: &str) -> Option<&'static str> {
    let n = name.to_ascii_lowercase();
    if n.ends_with(".zip") {
        Some("zip")
    } else if [
        ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz",
    ]
    .iter()
    .any(|e| n.ends_with(e))
    {
        Some("tar")
    } else {
        None
    }
}

/// Fetches one URI into `sandbox` (blocking: run it off the async threads).
pub fn fetch(uri: &Uri, sandbox: &Path) -> Result<(), FetchError> {
    let value = uri.value.as_str();
    let path = if let Some(p) = value.strip_prefix("file://") {
        PathBuf::from(p)
    } else if value.contains("://") {
        return Err(FetchError::Unsupported(value.to_owned()));
    } else {
        PathBuf::from(value)
    };
    let io_err = |source| FetchError::Io {
        uri: value.to_owned(),
        source,
    };
    let base = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| io_err(io::Error::new(io::ErrorKind::InvalidInput, "no file name")))?;
    let name = uri
        .output_file
        .clone()
        .filter(|s| !s.is_empty())
        .unwrap_or(base);
    let dest = sandbox.join(&name);
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent).map_err(io_err)?;
    }
    std::fs::copy(&path, &dest).map_err(io_err)?;

    if uri.executable.unwrap_or(false) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o755)).map_err(io_err)?;
    } else if uri.extract.unwrap_or(true)
        && let Some(kind) = is_archive(&name)
    {
        let mut cmd = if kind == "zip" {
            let mut c = std::process::Command::new("unzip");
            c.arg("-o").arg("-q").arg(&dest).arg("-d").arg(sandbox);
            c
        } else {
            let mut c = std::process::Command::new("tar");
            c.arg("-C").arg(sandbox).arg("-xf").arg(&dest);
            c
        };
        let out = cmd.output().map_err(io_err)?;
        if !out.status.success() {
            return Err(FetchError::Extract {
                uri: value.to_owned(),
                message: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_latest_and_fetch() {
        let tmp = std::env::temp_dir().join(format!("mesokit-sandbox-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        let dir = create(&tmp, "a", "f", "e", "c1").unwrap();
        assert_eq!(dir, tmp.join("slaves/a/frameworks/f/executors/e/runs/c1"));
        let dir2 = create(&tmp, "a", "f", "e", "c2").unwrap();
        let latest = tmp.join("slaves/a/frameworks/f/executors/e/runs/latest");
        assert_eq!(std::fs::read_link(&latest).unwrap(), dir2);
        assert!(dir.exists());

        let src = tmp.join("script.sh");
        std::fs::write(&src, "echo hi").unwrap();
        let uri = Uri {
            value: format!("file://{}", src.display()),
            executable: Some(true),
            output_file: Some("run.sh".into()),
            ..Default::default()
        };
        fetch(&uri, &dir2).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir2.join("run.sh"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o111, 0o111);
        let http = Uri {
            value: "http://example.com/x".into(),
            ..Default::default()
        };
        assert!(matches!(
            fetch(&http, &dir2),
            Err(FetchError::Unsupported(_))
        ));
        let _ = std::fs::remove_dir_all(&tmp);
    }
}
