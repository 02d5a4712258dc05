//! Size-based rotation of a task's `stdout` and `stderr` (optional, off by default): the
//! task's output comes to the executor through pipes and is appended to the sandbox file,
//! which is renamed `<file>.1` (and older ones shifted up to `<file>.<max_files>`, the oldest
//! dropped) before a write would take it past the size limit (output is split at a newline
//! where it can be).
//!
//! Turned on with [`crate::Settings::log_rotation`] (`MESOKIT_EXECUTOR_LOG_MAX_SIZE`,
//! `MESOKIT_EXECUTOR_LOG_MAX_FILES`). The executor's own log is a file of its own
//! (`executor.log`, see [`crate::log`]) and is not rotated. The copy costs a few microseconds
//! per chunk of output; without rotation the task writes straight into its files, as before.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::io::{AsyncRead, AsyncReadExt};

/// Rotation settings; `max_size == 0` means no rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogRotation {
    /// Rotate before a file would grow past this many bytes; 0: never.
    pub max_size: u64,
    /// Rotated files kept (`.1` is the newest).
    pub max_files: u32,
}

impl Default for LogRotation {
    /// Off, keeping 5 files once turned on.
    fn default() -> Self {
        LogRotation {
            max_size: 0,
            max_files: 5,
        }
    }
}

impl LogRotation {
    /// Whether rotation is on.
    pub fn enabled(&self) -> bool {
        self.max_size > 0
    }
}

/// A file appended to and rotated by size. Shared by the commands of a task.
#[derive(Debug)]
pub struct RotatingFile {
    path: PathBuf,
    rotation: LogRotation,
    file: File,
    size: u64,
}

impl RotatingFile {
    /// Opens (creates) `path` for appending.
    pub fn open(path: &Path, rotation: LogRotation) -> io::Result<RotatingFile> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(RotatingFile {
            path: path.to_owned(),
            rotation,
            file,
            size,
        })
    }

    /// Appends `buf`. With rotation on, no file grows past the limit: a piece that does not
    /// fit fills the file up to its last whole line that fits, and the file is rotated
    /// before the rest; a line longer than the limit is split at the limit. So where the
    /// files are cut depends on the lines, not on how the output was read in pieces.
    pub fn write(&mut self, mut buf: &[u8]) -> io::Result<()> {
        let max = self.rotation.max_size;
        while !buf.is_empty() {
            let room = if self.rotation.enabled() {
                max.saturating_sub(self.size)
            } else {
                u64::MAX
            };
            let n = if buf.len() as u64 <= room {
                buf.len()
            } else {
                let fits = &buf[..usize::try_from(room).unwrap_or(buf.len())];
                match fits.iter().rposition(|b| *b == b'\n') {
                    Some(i) => i + 1,
                    None if self.size > 0 => {
                        self.rotate()?;
                        continue;
                    }
                    None => fits.len(),
                }
            };
            self.file.write_all(&buf[..n])?;
            self.size += n as u64;
            buf = &buf[n..];
        }
        Ok(())
    }

    fn rotated(&self, n: u32) -> PathBuf {
        let mut name = self.path.clone().into_os_string();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    fn rotate(&mut self) -> io::Result<()> {
        let keep = self.rotation.max_files.max(1);
        let _ = std::fs::remove_file(self.rotated(keep));
        for n in (1..keep).rev() {
            let from = self.rotated(n);
            if from.exists() {
                std::fs::rename(&from, self.rotated(n + 1))?;
            }
        }
        std::fs::rename(&self.path, self.rotated(1))?;
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

/// A [`RotatingFile`] shared by several writers.
pub(crate) type Sink = Arc<Mutex<RotatingFile>>;

/// Copies `from` into `sink` until the end of the stream.
pub(crate) async fn copy(mut from: impl AsyncRead + Unpin, sink: Sink) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let mut file = sink.lock().unwrap_or_else(PoisonError::into_inner);
                if let Err(e) = file.write(&buf[..n]) {
                    tracing::warn!(path = %file.path.display(), error = %e, "task output lost");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_by_size_and_keeps_max_files() {
        let dir = std::env::temp_dir().join(format!("mesokit-rotate-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("stdout");
        let rotation = LogRotation {
            max_size: 10,
            max_files: 2,
        };
        let mut f = RotatingFile::open(&path, rotation).unwrap();
        for chunk in ["aaaaaa", "bbbbbb", "cccccc", "dddddd"] {
            f.write(chunk.as_bytes()).unwrap();
        }
        f.write(b"xx\nyyyyyyyyyyyy").unwrap();
        let read = |p: PathBuf| std::fs::read_to_string(p).unwrap_or_default();
        assert_eq!(read(path.clone()), "yy");
        assert_eq!(
            read(dir.join("stdout.1")),
            "yyyyyyyyyy",
            "split at the limit"
        );
        assert_eq!(
            read(dir.join("stdout.2")),
            "ddddddxx\n",
            "filled up to the newline"
        );
        assert!(!dir.join("stdout.3").exists(), "only max_files kept");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn files_are_cut_the_same_however_the_output_was_read() {
        let dir =
            std::env::temp_dir().join(format!("mesokit-rotate-pieces-{}", std::process::id()));
        let rotation = LogRotation {
            max_size: 25,
            max_files: 3,
        };
        let lines: Vec<String> = (0..9).map(|i| format!("line {i:03}\n")).collect();
        let mut layouts = Vec::new();
        for per_write in [1, 2, 3, 9] {
            let _ = std::fs::remove_dir_all(&dir);
            let path = dir.join("stdout");
            let mut f = RotatingFile::open(&path, rotation).unwrap();
            for piece in lines.chunks(per_write) {
                f.write(piece.concat().as_bytes()).unwrap();
            }
            let files: Vec<String> = ["stdout", "stdout.1", "stdout.2", "stdout.3"]
                .iter()
                .map(|n| std::fs::read_to_string(dir.join(n)).unwrap_or_default())
                .collect();
            layouts.push(files);
        }
        // Two 9-byte lines per file (a third would pass 25 bytes).
        assert_eq!(layouts[0][0], "line 008\n");
        assert_eq!(layouts[0][1], "line 006\nline 007\n");
        for layout in &layouts[1..] {
            assert_eq!(layout, &layouts[0]);
        }
        let _ = std::fs::remove_dir_all(dir);
    }
}
