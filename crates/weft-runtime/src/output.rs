//! Where guests' stdout and stderr go.
//!
//! A workload's components do not own the host's terminal: their output is cut into
//! lines and handed to an [`OutputSink`] with the workload and component it came
//! from. The CLI prints the lines with a prefix; tests collect them.

use std::collections::VecDeque;
use std::io::Write;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

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
///
/// `line` is called on the thread running the guest: it must not block.
pub trait OutputSink: Send + Sync + 'static {
    fn line(&self, origin: &Origin, stream: Stream, line: &[u8]);
}

/// Prints `[workload/component] line` to the host's stdout or stderr.
///
/// Each of the two streams has a writer thread, fed by a queue of at most
/// [`QUEUE_BYTES`]: a stdout or stderr that nobody reads (a full pipe, a stopped
/// terminal) holds up that thread only, never a guest, and not the other stream.
/// While a queue is full, lines are dropped and counted ([`PrefixedStdio::dropped`]);
/// once the writer has written what it holds, it reports them on stderr as
/// `weft: N lines of output dropped …`.
#[derive(Debug, Default)]
pub struct PrefixedStdio;

/// How many bytes of output may wait for each of the host's stdout and stderr.
pub const QUEUE_BYTES: usize = 1 << 20;

impl PrefixedStdio {
    /// Lines dropped so far (in this process) because a writer was behind.
    pub fn dropped() -> u64 {
        let (stdout, stderr) = writers();
        stdout.dropped.load(Ordering::Relaxed) + stderr.dropped.load(Ordering::Relaxed)
    }

    /// Queues `bytes` for the host's stdout or stderr the same way, without waiting:
    /// for the host's own messages, so that they cannot block either.
    pub fn write(stream: Stream, bytes: Vec<u8>) {
        writer(stream).push(bytes);
    }

    /// Waits, at most `timeout`, until every queued line (and the count of dropped
    /// ones) is written; false if it was not. For a clean exit: a writer may be
    /// stuck on a pipe nobody reads.
    pub fn flush(timeout: Duration) -> bool {
        let Some((stdout, stderr)) = WRITERS.get() else { return true };
        let deadline = Instant::now() + timeout;
        stdout.flush(deadline) && stderr.flush(deadline)
    }
}

impl OutputSink for PrefixedStdio {
    fn line(&self, origin: &Origin, stream: Stream, line: &[u8]) {
        let prefix = format!("[{}/{}] ", origin.workload, origin.component);
        let mut buf = Vec::with_capacity(prefix.len() + line.len() + 1);
        buf.extend_from_slice(prefix.as_bytes());
        buf.extend_from_slice(line);
        buf.push(b'\n');
        writer(stream).push(buf);
    }
}

static WRITERS: OnceLock<(Arc<Writer>, Arc<Writer>)> = OnceLock::new();

fn writers() -> &'static (Arc<Writer>, Arc<Writer>) {
    WRITERS.get_or_init(|| {
        let stderr = Writer::start(Box::new(std::io::stderr()), QUEUE_BYTES, None);
        let stdout = Writer::start(Box::new(std::io::stdout()), QUEUE_BYTES, Some(stderr.clone()));
        (stdout, stderr)
    })
}

fn writer(stream: Stream) -> &'static Writer {
    let (stdout, stderr) = writers();
    match stream {
        Stream::Stdout => stdout,
        Stream::Stderr => stderr,
    }
}

/// A bounded queue of output for one stream and the thread that writes it.
struct Writer {
    queue: Mutex<Queue>,
    /// Signalled when there is something to write.
    more: Condvar,
    /// Signalled when the writer has written everything it had.
    idle: Condvar,
    capacity: usize,
    dropped: AtomicU64,
    /// Where to report dropped lines; none: in this writer's own stream.
    report_to: Option<Arc<Writer>>,
}

#[derive(Default)]
struct Queue {
    lines: VecDeque<Vec<u8>>,
    /// Queued bytes, including the batch being written.
    bytes: usize,
    /// Dropped since the last report.
    unreported: u64,
    writing: bool,
}

impl Queue {
    fn is_idle(&self) -> bool {
        self.lines.is_empty() && self.unreported == 0 && !self.writing
    }
}

impl Writer {
    fn start(mut out: Box<dyn Write + Send>, capacity: usize, report_to: Option<Arc<Writer>>) -> Arc<Writer> {
        let writer = Arc::new(Writer {
            queue: Mutex::new(Queue::default()),
            more: Condvar::new(),
            idle: Condvar::new(),
            capacity,
            dropped: AtomicU64::new(0),
            report_to,
        });
        let w = writer.clone();
        std::thread::Builder::new()
            .name("weft-output".into())
            .spawn(move || w.run(&mut *out))
            .expect("start an output thread");
        writer
    }

    /// Queues a line, or drops it when the queue is full. Never waits for the writer.
    fn push(&self, line: Vec<u8>) {
        let mut queue = self.queue.lock().unwrap();
        if queue.bytes + line.len() > self.capacity {
            queue.unreported += 1;
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        queue.bytes += line.len();
        queue.lines.push_back(line);
        drop(queue);
        self.more.notify_one();
    }

    fn run(&self, out: &mut dyn Write) {
        loop {
            let (batch, unreported) = {
                let mut queue = self.queue.lock().unwrap();
                while queue.lines.is_empty() && queue.unreported == 0 {
                    queue.writing = false;
                    self.idle.notify_all();
                    queue = self.more.wait(queue).unwrap();
                }
                queue.writing = true;
                (std::mem::take(&mut queue.lines), std::mem::take(&mut queue.unreported))
            };
            let mut bytes = 0;
            // Errors (a closed pipe) lose the output, as they would for the host's own.
            for line in &batch {
                bytes += line.len();
                let _ = out.write_all(line);
            }
            if unreported > 0 {
                let s = if unreported == 1 { "" } else { "s" };
                let notice = format!(
                    "weft: {unreported} line{s} of output dropped (stdout or stderr was not read fast enough)\n"
                );
                match &self.report_to {
                    Some(other) => other.push(notice.into_bytes()),
                    None => {
                        let _ = out.write_all(notice.as_bytes());
                    }
                }
            }
            let _ = out.flush();
            self.queue.lock().unwrap().bytes -= bytes;
        }
    }

    fn flush(&self, deadline: Instant) -> bool {
        let mut queue = self.queue.lock().unwrap();
        while !queue.is_idle() {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else { return false };
            queue = self.idle.wait_timeout(queue, left).unwrap().0;
        }
        true
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

    /// A pipe nobody reads: writes wait until the test opens it.
    #[derive(Clone, Default)]
    struct Stuck {
        open: Arc<(Mutex<bool>, Condvar)>,
        written: Arc<Mutex<Vec<u8>>>,
    }

    impl Stuck {
        fn open(&self) {
            *self.open.0.lock().unwrap() = true;
            self.open.1.notify_all();
        }

        fn text(&self) -> String {
            String::from_utf8(self.written.lock().unwrap().clone()).unwrap()
        }
    }

    impl Write for Stuck {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let mut open = self.open.0.lock().unwrap();
            while !*open {
                open = self.open.1.wait(open).unwrap();
            }
            self.written.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stuck_stdout_drops_and_counts_lines_instead_of_blocking() {
        let (stdout, stderr) = (Stuck::default(), Stuck::default());
        stderr.open();
        let err = Writer::start(Box::new(stderr.clone()), 1000, None);
        let out = Writer::start(Box::new(stdout.clone()), 1000, Some(err.clone()));
        let started = Instant::now();
        for n in 0..10_000 {
            out.push(format!("line {n:05}\n").into_bytes());
        }
        assert!(started.elapsed() < Duration::from_secs(2), "pushing took {:?}", started.elapsed());
        // The writer holds at most `capacity` bytes (11 per line); the rest is dropped.
        let dropped = out.dropped.load(Ordering::Relaxed);
        assert!(dropped >= 10_000 - 1000 / 11, "{dropped} dropped");
        let soon = || Instant::now() + Duration::from_millis(100);
        assert!(!out.flush(soon()), "flushed into a stuck pipe");
        // The other stream is not held up.
        err.push(b"meanwhile\n".to_vec());
        assert!(err.flush(Instant::now() + Duration::from_secs(5)));
        assert_eq!(stderr.text(), "meanwhile\n");

        stdout.open();
        let later = || Instant::now() + Duration::from_secs(5);
        assert!(out.flush(later()) && err.flush(later()));
        let written = stdout.text();
        assert!(written.starts_with("line 00000\nline 00001\n"), "{written}");
        assert_eq!(written.lines().count() as u64, 10_000 - dropped);
        // Every dropped line is reported (in one notice per batch the writer wrote).
        let notices = stderr.text();
        let mut lines = notices.lines();
        assert_eq!(lines.next(), Some("meanwhile"));
        let reported: u64 = lines
            .map(|l| {
                let n = l.strip_prefix("weft: ").and_then(|l| l.split_once(' ')).map(|(n, _)| n.parse::<u64>());
                assert!(l.ends_with("of output dropped (stdout or stderr was not read fast enough)"), "{l}");
                n.unwrap().unwrap()
            })
            .sum();
        assert_eq!(reported, dropped);
        // Once caught up, lines flow again.
        out.push(b"after\n".to_vec());
        assert!(out.flush(later()));
        assert!(stdout.text().ends_with("\nafter\n"));
    }
}
