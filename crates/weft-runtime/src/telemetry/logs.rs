//! weft's log (its `tracing` events, guests' `wasi:logging` records among them)
//! as OTLP log records: a `tracing_subscriber` layer that hands each event to
//! the telemetry [`connect`]ed last, if it exports logs at the event's level.
//!
//! The layer is filtered by the level that telemetry exports (none until one is
//! connected). Unfiltered, it would keep every `tracing` callsite of the process
//! enabled at `TRACE`: each WASI host call would then open a span and record its
//! arguments, and hyper would build its trace events, for every request.

use std::sync::RwLock;
use std::sync::atomic::{AtomicU8, Ordering};

use tracing::field::{Field, Visit};
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::{Context, Filter, Layer as _};

use super::context::{SpanId, TraceId};
use super::model::{KeyValue, LogRecord, Value, now_nanos};
use super::{LogLevel, Telemetry};

static SINK: RwLock<Option<Telemetry>> = RwLock::new(None);

/// The most verbose level the connected telemetry exports: 0 none, 1 error, …,
/// 5 trace.
static EXPORTED: AtomicU8 = AtomicU8::new(0);

/// Sends the process's log records to `telemetry` from now on.
pub fn connect(telemetry: &Telemetry) {
    let levels = [LogLevel::Trace, LogLevel::Debug, LogLevel::Info, LogLevel::Warn, LogLevel::Error];
    let most_verbose = levels.iter().position(|l| telemetry.exports_logs_at(*l)).map_or(0, |i| 5 - i as u8);
    *SINK.write().unwrap() = telemetry.is_enabled().then(|| telemetry.clone());
    EXPORTED.store(most_verbose, Ordering::Relaxed);
    // Callsites cache whether anyone wants them; ask again.
    tracing::callsite::rebuild_interest_cache();
}

/// The layer to install in the process's subscriber.
pub fn layer<S>() -> impl tracing_subscriber::Layer<S>
where
    S: Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    Layer.with_filter(Exported)
}

struct Layer;

/// Lets through the events at the levels the connected telemetry exports.
struct Exported;

impl Exported {
    fn level() -> LevelFilter {
        match EXPORTED.load(Ordering::Relaxed) {
            0 => LevelFilter::OFF,
            1 => LevelFilter::ERROR,
            2 => LevelFilter::WARN,
            3 => LevelFilter::INFO,
            4 => LevelFilter::DEBUG,
            _ => LevelFilter::TRACE,
        }
    }
}

impl<S> Filter<S> for Exported {
    fn enabled(&self, meta: &Metadata<'_>, _: &Context<'_, S>) -> bool {
        meta.is_event() && *meta.level() <= Exported::level()
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> Interest {
        if meta.is_event() && *meta.level() <= Exported::level() { Interest::always() } else { Interest::never() }
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(Exported::level())
    }
}

/// Events of this target are the exporter's own reports: exporting them would
/// feed a failing receiver's queue with its own failures.
const OWN_TARGET: &str = "weft::telemetry";

impl<S: Subscriber> tracing_subscriber::Layer<S> for Layer {
    fn on_event(&self, event: &Event<'_>, _cx: Context<'_, S>) {
        let meta = event.metadata();
        if meta.target().starts_with(OWN_TARGET) {
            return;
        }
        let level = match *meta.level() {
            Level::TRACE => LogLevel::Trace,
            Level::DEBUG => LogLevel::Debug,
            Level::INFO => LogLevel::Info,
            Level::WARN => LogLevel::Warn,
            Level::ERROR => LogLevel::Error,
        };
        let sink = SINK.read().unwrap();
        let Some(telemetry) = sink.as_ref().filter(|t| t.exports_logs_at(level)) else { return };
        let (severity_number, severity_text) = match level {
            LogLevel::Trace => (1, "TRACE"),
            LogLevel::Debug => (5, "DEBUG"),
            LogLevel::Info => (9, "INFO"),
            LogLevel::Warn => (13, "WARN"),
            LogLevel::Error => (17, "ERROR"),
        };
        let now = now_nanos();
        let mut record = LogRecord {
            time: now,
            observed_time: now,
            severity_number,
            severity_text: severity_text.into(),
            attributes: vec![KeyValue::new("target", meta.target())],
            ..LogRecord::default()
        };
        event.record(&mut Fields(&mut record));
        telemetry.log(record);
    }
}

/// Fills a record from an event's fields: `message` is the body, `trace_id` and
/// `span_id` (hex) place it in a trace, the rest are attributes.
struct Fields<'a>(&'a mut LogRecord);

impl Fields<'_> {
    fn put(&mut self, field: &Field, value: Value) {
        match (field.name(), &value) {
            ("message", _) => self.0.body = Some(value),
            ("trace_id", Value::String(hex)) if TraceId::parse(hex).is_some() => {
                self.0.trace_id = TraceId::parse(hex);
                self.0.flags = 1;
            }
            ("span_id", Value::String(hex)) if SpanId::parse(hex).is_some() => self.0.span_id = SpanId::parse(hex),
            (name, _) => self.0.attributes.push(KeyValue::new(name, value)),
        }
    }
}

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::String(value.to_string()));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::Bool(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::Int(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, Value::Double(value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put(field, Value::String(format!("{value:?}")));
    }
}
