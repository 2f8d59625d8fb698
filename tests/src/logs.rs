//! Log files of the processes a test started, read back for failure messages.

use std::cell::Cell;
use std::path::{Path, PathBuf};

/// How many trailing log lines go into a failure message.
pub const TAIL_LINES: usize = 200;

/// The whole file as text (lossy UTF-8); empty when it does not exist yet.
pub fn read(path: &Path) -> String {
    match std::fs::read(path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(_) => String::new(),
    }
}

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> &str {
    if lines == 0 {
        return "";
    }
    let mut start = text.len();
    for _ in 0..lines {
        match text[..start].rfind('\n') {
            Some(i) => start = i,
            None => return text,
        }
    }
    &text[start + 1..]
}

/// A titled block with the tail of the log at `path`, for panic messages.
pub fn excerpt(title: &str, path: &Path) -> String {
    let text = read(path);
    format!(
        "===== {title} ({}; last {TAIL_LINES} lines) =====\n{}\n===== end of {title} =====",
        path.display(),
        tail(text.trim_end(), TAIL_LINES)
    )
}

/// A process's log file that shows up once in a failing test's output:
/// either inside a panic message built with [`LogFile::excerpt`], or, when
/// the test panicked for another reason, printed by
/// [`LogFile::dump_if_panicking`] from the owner's `Drop`.
#[derive(Debug)]
pub struct LogFile {
    title: &'static str,
    path: PathBuf,
    shown: Cell<bool>,
}

impl LogFile {
    /// The log at `path`, called `title` in messages.
    pub fn new(title: &'static str, path: PathBuf) -> LogFile {
        LogFile {
            title,
            path,
            shown: Cell::new(false),
        }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The whole log.
    pub fn read(&self) -> String {
        read(&self.path)
    }

    /// The log's tail for a panic message; marks it as shown.
    pub fn excerpt(&self) -> String {
        self.shown.set(true);
        excerpt(self.title, &self.path)
    }

    /// Prints the tail to stderr if the thread is panicking and no panic
    /// message has included it yet.
    pub fn dump_if_panicking(&self) {
        if std::thread::panicking() && !self.shown.get() {
            eprintln!("{}", excerpt(self.title, &self.path));
        }
    }
}

/// Whether temp dirs should be kept for inspection (`GATEHOUSE_TEST_KEEP=1`).
pub fn keep_dirs() -> bool {
    std::env::var_os("GATEHOUSE_TEST_KEEP").is_some_and(|v| v != "0" && !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::tail;

    #[test]
    fn tail_keeps_last_lines() {
        assert_eq!(tail("a\nb\nc", 2), "b\nc");
        assert_eq!(tail("a\nb\nc", 3), "a\nb\nc");
        assert_eq!(tail("a\nb\nc", 5), "a\nb\nc");
        assert_eq!(tail("", 5), "");
        assert_eq!(tail("a\nb\nc\n", 1), "");
        assert_eq!(tail("a\nb", 0), "");
    }
}
