//! Where guests' stdout and stderr go.
//!
//! A workload's components do not own the host's terminal: their output is cut into
//! lines and handed to an [`OutputSink`] with the workload and component it came
//! from. The CLI prints the lines with a prefix; tests collect them.

use std::io::Write as _;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Which guest wrote a line.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    pub workload: Arc<str>,
    pub component: Arc<str>,
}

/// Receives guest output, one line at a time (without its newline).
pub trait OutputSink: Send + Sync + 'static {
    fn line(&self, origin: &Origin, stream: Stream, line: &[u8]);
}

/// Prints `[workload/component] line` to the host's stdout or stderr.
#[derive(Debug, Default)]
pub struct PrefixedStdio;

impl OutputSink for PrefixedStdio {
    fn line(&self, origin: &Origin, stream: Stream, line: &[u8]) {
        let prefix = format!("[{}/{}] ", origin.workload, origin.component);
        let mut buf = Vec::with_capacity(prefix.len() + line.len() + 1);
        buf.extend_from_slice(prefix.as_bytes());
        buf.extend_from_slice(line);
        buf.push(b'\n');
        let _ = match stream {
            Stream::Stdout => std::io::stdout().lock().write_all(&buf),
            Stream::Stderr => std::io::stderr().lock().write_all(&buf),
        };
    }
}

/// Keeps every line in memory (for tests and for embedding).
#[derive(Debug, Default)]
pub struct CapturedOutput {
    lines: Mutex<Vec<(Origin, Stream, String)>>,
}

impl CapturedOutput {
    /// Lines a component wrote to `stream`.
    pub fn lines_of(&self, component: &str, stream: Stream) -> Vec<String> {
        let lines = self.lines.lock().unwrap();
        lines.iter().filter(|(o, s, _)| &*o.component == component && *s == stream).map(|(_, _, l)| l.clone()).collect()
    }
}

impl OutputSink for CapturedOutput {
    fn line(&self, origin: &Origin, stream: Stream, line: &[u8]) {
        let text = String::from_utf8_lossy(line).into_owned();
        self.lines.lock().unwrap().push((origin.clone(), stream, text));
    }
}

/// A guest's stdout or stderr, as WASI sees it.
#[derive(Clone)]
pub(crate) struct GuestOutput {
    pub origin: Origin,
    pub stream: Stream,
    pub sink: Arc<dyn OutputSink>,
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(LineWriter { out: self.clone(), pending: Vec::new() })
    }
}

/// Cuts bytes into lines; a last unterminated line is delivered on drop.
struct LineWriter {
    out: GuestOutput,
    pending: Vec<u8>,
}

/// Lines longer than this are delivered in pieces, so a guest cannot grow the
/// buffer without bound by never writing a newline.
const MAX_LINE: usize = 64 * 1024;

impl LineWriter {
    fn emit(&self, line: &[u8]) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        self.out.sink.line(&self.out.origin, self.out.stream, line);
    }
}

impl AsyncWrite for LineWriter {
    fn poll_write(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        let mut rest = buf;
        while let Some(i) = rest.iter().position(|b| *b == b'\n') {
            if this.pending.is_empty() {
                this.emit(&rest[..i]);
            } else {
                this.pending.extend_from_slice(&rest[..i]);
                let line = std::mem::take(&mut this.pending);
                this.emit(&line);
            }
            rest = &rest[i + 1..];
        }
        this.pending.extend_from_slice(rest);
        if this.pending.len() >= MAX_LINE {
            let line = std::mem::take(&mut this.pending);
            this.emit(&line);
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if !self.pending.is_empty() {
            let line = std::mem::take(&mut self.pending);
            self.emit(&line);
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::*;

    #[tokio::test]
    async fn cuts_output_into_lines() {
        let sink = Arc::new(CapturedOutput::default());
        let out = GuestOutput {
            origin: Origin { workload: "w".into(), component: "c".into() },
            stream: Stream::Stdout,
            sink: sink.clone(),
        };
        let mut w = Pin::from(out.async_stream());
        w.write_all(b"one\r\ntw").await.unwrap();
        w.write_all(b"o\nthree").await.unwrap();
        drop(w);
        assert_eq!(sink.lines_of("c", Stream::Stdout), ["one", "two", "three"]);
        assert!(sink.lines_of("c", Stream::Stderr).is_empty());
    }
}
