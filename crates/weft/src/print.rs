//! How the CLI writes: its messages never wait for a reader, and a closed stdout
//! (`weft inspect … | head`) ends a command quietly instead of with a panic.

use std::io::Write;

use weft_runtime::output::{PrefixedStdio, Stream};

/// A line for the user on stderr (`weft: …`), queued with the guests' output so it
/// keeps its place among their lines and cannot block on a stderr nobody reads.
macro_rules! note {
    ($($arg:tt)*) => {
        $crate::print::stderr_line(format!($($arg)*))
    };
}
pub(crate) use note;

pub fn stderr_line(mut line: String) {
    line.push('\n');
    PrefixedStdio::write(Stream::Stderr, line.into_bytes());
}

/// Writes a command's result to stdout. The error of a closed pipe is recognised
/// by [`is_broken_pipe`] at exit.
pub fn out(text: &str) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()
}

/// Whether a command ended because whoever read its stdout went away.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe))
}

/// Log records go the same way as [`note!`]: each record is queued whole.
pub struct QueuedStderr;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for QueuedStderr {
    type Writer = Record;

    fn make_writer(&'a self) -> Record {
        Record(Vec::new())
    }
}

pub struct Record(Vec<u8>);

impl Write for Record {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        if !self.0.is_empty() {
            PrefixedStdio::write(Stream::Stderr, std::mem::take(&mut self.0));
        }
    }
}
