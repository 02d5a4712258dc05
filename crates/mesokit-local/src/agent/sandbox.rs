//! Sandboxes as Mesos lays them out under the agent's work directory, and the fetcher that
//! puts `CommandInfo.uris` into them: local paths and `file://` are copied, `http(s)://` and
//! `ftp://` are downloaded with the system `curl`; archives are extracted with `tar`/`unzip`.
//! (No fetcher cache: `cache` is ignored.)

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
    /// A scheme we do not fetch.
    #[error(
        "cannot fetch '{0}': only local paths, file://, http(s):// and ftp:// URIs are supported"
    )]
    Unsupported(String),
    /// The download failed.
    #[error("failed to download '{uri}': {message}")]
    Download {
        /// The URI.
        uri: String,
        /// What curl said.
        message: String,
    },
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
    let io_err = |source| FetchError::Io {
        uri: value.to_owned(),
        source,
    };
    let remote = ["http://", "https://", "ftp://", "ftps://"]
        .iter()
        .any(|p| value.starts_with(p));
    let local = if let Some(p) = value.strip_prefix("file://") {
        Some(PathBuf::from(p))
    } else if value.contains("://") && !remote {
        return Err(FetchError::Unsupported(value.to_owned()));
    } else if remote {
        None
    } else {
        Some(PathBuf::from(value))
    };
    let base = match &local {
        Some(p) => p.file_name().map(|n| n.to_string_lossy().into_owned()),
        None => {
            let path = value.split(['?', '#']).next().unwrap_or(value);
            path.rsplit('/')
                .next()
                .filter(|s| !s.is_empty() && !path.ends_with("//"))
                .map(str::to_owned)
        }
    };
    let name = match uri.output_file.clone().filter(|s| !s.is_empty()) {
        Some(n) => n,
        None => base.ok_or_else(|| {
            io_err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the URI names no file; set output_file",
            ))
        })?,
    };
    let dest = sandbox.join(&name);
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent).map_err(io_err)?;
    }
    match &local {
        Some(path) => {
            std::fs::copy(path, &dest).map_err(io_err)?;
        }
        None => {
            let out = std::process::Command::new("curl")
                .args(["-sSfL", "--retry", "2", "-o"])
                .arg(&dest)
                .arg(value)
                .output()
                .map_err(io_err)?;
            if !out.status.success() {
                return Err(FetchError::Download {
                    uri: value.to_owned(),
                    message: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
                });
            }
        }
    }

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
        let s3 = Uri {
            value: "s3://bucket/x".into(),
            ..Default::default()
        };
        assert!(matches!(fetch(&s3, &dir2), Err(FetchError::Unsupported(_))));

        // Archives are extracted (extract defaults to true).
        let tree = tmp.join("tree");
        std::fs::create_dir_all(tree.join("pkg")).unwrap();
        std::fs::write(tree.join("pkg/data.txt"), "payload").unwrap();
        let tgz = tmp.join("pkg.tar.gz");
        let ok = std::process::Command::new("tar")
            .arg("-czf")
            .arg(&tgz)
            .arg("-C")
            .arg(&tree)
            .arg("pkg")
            .status()
            .unwrap();
        assert!(ok.success());
        let uri = Uri {
            value: tgz.display().to_string(),
            ..Default::default()
        };
        fetch(&uri, &dir2).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir2.join("pkg/data.txt")).unwrap(),
            "payload"
        );
        assert!(dir2.join("pkg.tar.gz").exists());
        let _ = std::fs::remove_dir_all(&tmp);
    }
}
