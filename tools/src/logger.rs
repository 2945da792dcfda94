//! The log of `plexus daemon`, `plexus switch` and `plexus demo`: one line per
//! record on stderr, `PROGRAM: [LEVEL: ]message`, at the level asked for
//! (`--log-level`), behind the `log` facade the libraries write to.
//!
//! Repeats are rate-limited: a message that repeats word for word within
//! [`REPEAT_WINDOW`] is counted instead of printed, and the next time it is
//! printed it says how many were left out — so a failing syscall in a loop
//! costs one line per window, not one per attempt.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use log::{Level, LevelFilter, Log, Metadata, Record};

/// Within this long, a repeated message is counted, not printed.
pub const REPEAT_WINDOW: Duration = Duration::from_secs(10);
/// Distinct messages remembered for rate limiting (older ones are forgotten).
const REMEMBERED: usize = 256;

/// The level names `--log-level` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogLevel {
    /// Only errors.
    Error,
    /// Errors and warnings.
    Warn,
    /// What the daemon does (the default).
    Info,
    /// Details for debugging.
    Debug,
}

impl From<LogLevel> for LevelFilter {
    fn from(l: LogLevel) -> LevelFilter {
        match l {
            LogLevel::Error => LevelFilter::Error,
            LogLevel::Warn => LevelFilter::Warn,
            LogLevel::Info => LevelFilter::Info,
            LogLevel::Debug => LevelFilter::Debug,
        }
    }
}

struct Logger {
    program: &'static str,
    /// message → (last printed, repeats left out since).
    seen: Mutex<HashMap<String, (Instant, u64)>>,
}

impl Logger {
    /// What to print for `message` now, if anything.
    fn admit(&self, message: String) -> Option<String> {
        let now = Instant::now();
        let mut seen = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((last, skipped)) = seen.get_mut(&message) {
            if now.duration_since(*last) < REPEAT_WINDOW {
                *skipped += 1;
                return None;
            }
            let shown = if *skipped > 0 {
                format!("{message} (repeated {skipped} more times)")
            } else {
                message
            };
            *last = now;
            *skipped = 0;
            return Some(shown);
        }
        if seen.len() >= REMEMBERED {
            seen.retain(|_, (last, _)| now.duration_since(*last) < REPEAT_WINDOW);
        }
        seen.insert(message.clone(), (now, 0));
        Some(message)
    }
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let Some(message) = self.admit(record.args().to_string()) else {
            return;
        };
        let level = match record.level() {
            Level::Error => "error: ",
            Level::Warn => "warning: ",
            Level::Info => "",
            Level::Debug | Level::Trace => "debug: ",
        };
        let _ = writeln!(std::io::stderr().lock(), "{}: {level}{message}", self.program);
    }

    fn flush(&self) {}
}

/// Installs the logger for `program` at `level` (once; later calls only
/// change the level).
pub fn init(program: &'static str, level: LogLevel) {
    let logger = Box::new(Logger {
        program,
        seen: Mutex::new(HashMap::new()),
    });
    let _ = log::set_boxed_logger(logger);
    log::set_max_level(level.into());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_are_counted_then_reported() {
        let l = Logger {
            program: "t",
            seen: Mutex::new(HashMap::new()),
        };
        assert_eq!(
            l.admit("accept: Too many open files".into()).as_deref(),
            Some("accept: Too many open files")
        );
        for _ in 0..500 {
            assert_eq!(l.admit("accept: Too many open files".into()), None);
        }
        assert_eq!(l.admit("another".into()).as_deref(), Some("another"));
        // After the window, the next one says how many were left out.
        l.seen.lock().unwrap().get_mut("accept: Too many open files").unwrap().0 -= REPEAT_WINDOW;
        assert_eq!(
            l.admit("accept: Too many open files".into()).as_deref(),
            Some("accept: Too many open files (repeated 500 more times)")
        );
    }
}
