//! weft's own instruments: counted with atomics where the work happens (no
//! lock, no allocation per invocation), read when the metrics are exported.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::model::{HistogramPoint, KeyValue, Metric, MetricData, Number, NumberPoint, Temporality};

/// Upper bounds of the invocation duration buckets, in seconds.
pub const DURATION_BOUNDS: [f64; 14] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// How an invocation ended, as the `outcome` attribute says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Trap,
    /// CPU time or wall-clock deadline.
    Timeout,
    OutOfMemory,
    /// A non-zero exit, or `wasi:cli/run` returning an error.
    Exit,
    Instantiate,
    /// The workload stopped under it.
    Cancelled,
}

impl Outcome {
    const ALL: [Outcome; 7] = [
        Outcome::Ok,
        Outcome::Trap,
        Outcome::Timeout,
        Outcome::OutOfMemory,
        Outcome::Exit,
        Outcome::Instantiate,
        Outcome::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Trap => "trap",
            Outcome::Timeout => "timeout",
            Outcome::OutOfMemory => "out_of_memory",
            Outcome::Exit => "exit",
            Outcome::Instantiate => "instantiate",
            Outcome::Cancelled => "cancelled",
        }
    }
}

/// The counters of one component of one running workload.
pub struct ComponentMetrics {
    /// `weft.workload`, `weft.namespace`, `weft.workload.id`, `weft.component`.
    attributes: Vec<KeyValue>,
    /// Unix nanoseconds when counting began (the start of every cumulative series).
    start: u64,
    outcomes: [AtomicU64; Outcome::ALL.len()],
    busy: AtomicU64,
    buckets: [AtomicU64; DURATION_BOUNDS.len() + 1],
    /// Total duration in nanoseconds.
    duration_sum: AtomicU64,
}

impl ComponentMetrics {
    pub(crate) fn new(attributes: Vec<KeyValue>) -> ComponentMetrics {
        ComponentMetrics {
            attributes,
            start: super::model::now_nanos(),
            outcomes: Default::default(),
            busy: AtomicU64::new(0),
            buckets: Default::default(),
            duration_sum: AtomicU64::new(0),
        }
    }

    /// `weft.workload`, `weft.namespace`, `weft.workload.id`, `weft.component`.
    pub fn attributes(&self) -> &[KeyValue] {
        &self.attributes
    }

    /// One call into the component ended.
    pub fn invoked(&self, duration: Duration, outcome: Outcome) {
        self.outcomes[outcome as usize].fetch_add(1, Ordering::Relaxed);
        let seconds = duration.as_secs_f64();
        let bucket = DURATION_BOUNDS.iter().position(|b| seconds <= *b).unwrap_or(DURATION_BOUNDS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.duration_sum.fetch_add(u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// An invocation was turned away: the component was at its concurrency bound.
    pub fn rejected_busy(&self) {
        self.busy.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds this component's points to the host's metrics, as of `now`.
    pub(crate) fn collect(&self, now: u64, into: &mut Instruments) {
        let point = |extra: Option<KeyValue>, value: u64| {
            let mut attributes = self.attributes.clone();
            attributes.extend(extra);
            NumberPoint {
                attributes,
                start: self.start,
                time: now,
                value: Number::Int(i64::try_from(value).unwrap_or(i64::MAX)),
                exemplars: Vec::new(),
            }
        };
        let mut errors = 0;
        for outcome in Outcome::ALL {
            let n = self.outcomes[outcome as usize].load(Ordering::Relaxed);
            if outcome != Outcome::Ok {
                errors += n;
            }
            into.invocations.push(point(Some(KeyValue::new("outcome", outcome.as_str())), n));
        }
        into.errors.push(point(None, errors));
        into.busy.push(point(None, self.busy.load(Ordering::Relaxed)));
        let bucket_counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).collect();
        into.durations.push(HistogramPoint {
            attributes: self.attributes.clone(),
            start: self.start,
            time: now,
            count: bucket_counts.iter().sum(),
            sum: Some(self.duration_sum.load(Ordering::Relaxed) as f64 / 1e9),
            bucket_counts,
            bounds: DURATION_BOUNDS.to_vec(),
            min: None,
            max: None,
            exemplars: Vec::new(),
        });
    }
}

/// The host's instruments, filled at each collection.
#[derive(Default)]
pub struct Instruments {
    invocations: Vec<NumberPoint>,
    errors: Vec<NumberPoint>,
    busy: Vec<NumberPoint>,
    durations: Vec<HistogramPoint>,
    active: Vec<NumberPoint>,
    idle: Vec<NumberPoint>,
    workloads: Option<NumberPoint>,
    /// Spans, log records and guest metrics the pipeline had to drop.
    pub(crate) dropped: Vec<NumberPoint>,
}

impl Instruments {
    /// How many instances of a component are in use and how many wait to be
    /// reused, now.
    pub fn instances(&mut self, attributes: &[KeyValue], now: u64, active: u64, idle: u64) {
        let gauge = |value: u64| NumberPoint {
            attributes: attributes.to_vec(),
            start: 0,
            time: now,
            value: Number::Int(i64::try_from(value).unwrap_or(i64::MAX)),
            exemplars: Vec::new(),
        };
        self.active.push(gauge(active));
        self.idle.push(gauge(idle));
    }

    /// How many workloads run on the host, now.
    pub fn workloads(&mut self, now: u64, running: u64) {
        self.workloads = Some(NumberPoint {
            attributes: Vec::new(),
            start: 0,
            time: now,
            value: Number::Int(i64::try_from(running).unwrap_or(i64::MAX)),
            exemplars: Vec::new(),
        });
    }

    pub(crate) fn into_metrics(self) -> Vec<Metric> {
        let sum = |points: Vec<NumberPoint>| MetricData::Sum {
            points,
            temporality: Temporality::Cumulative,
            monotonic: true,
        };
        let metric = |name: &str, description: &str, unit: &str, data: MetricData| Metric {
            name: name.into(),
            description: description.into(),
            unit: unit.into(),
            data,
        };
        let mut out = vec![
            metric(
                "weft.invocations",
                "Calls into components, by how they ended",
                "{invocation}",
                sum(self.invocations),
            ),
            metric(
                "weft.invocation.errors",
                "Calls into components that did not end cleanly",
                "{invocation}",
                sum(self.errors),
            ),
            metric(
                "weft.invocation.busy",
                "Invocations turned away at the component's concurrency bound",
                "{invocation}",
                sum(self.busy),
            ),
            metric(
                "weft.invocation.duration",
                "How long calls into components took",
                "s",
                MetricData::Histogram { points: self.durations, temporality: Temporality::Cumulative },
            ),
            metric(
                "weft.instances.active",
                "Instances serving an invocation",
                "{instance}",
                MetricData::Gauge(self.active),
            ),
            metric("weft.instances.idle", "Instances waiting to be reused", "{instance}", MetricData::Gauge(self.idle)),
            metric(
                "weft.telemetry.dropped",
                "Telemetry the host dropped (queue full, or malformed)",
                "{item}",
                sum(self.dropped),
            ),
        ];
        if let Some(point) = self.workloads {
            out.push(metric(
                "weft.workloads",
                "Workloads running on the host",
                "{workload}",
                MetricData::Gauge(vec![point]),
            ));
        }
        out.retain(|m| match &m.data {
            MetricData::Gauge(p) | MetricData::Sum { points: p, .. } => !p.is_empty(),
            MetricData::Histogram { points, .. } => !points.is_empty(),
            MetricData::ExponentialHistogram { points, .. } => !points.is_empty(),
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_land_in_their_buckets() {
        let m = ComponentMetrics::new(vec![KeyValue::new("weft.component", "api")]);
        m.invoked(Duration::from_micros(100), Outcome::Ok);
        m.invoked(Duration::from_millis(30), Outcome::Trap);
        m.invoked(Duration::from_secs(60), Outcome::Timeout);
        m.rejected_busy();
        let mut instruments = Instruments::default();
        m.collect(1, &mut instruments);
        let h = &instruments.durations[0];
        assert_eq!(h.count, 3);
        assert_eq!(h.bucket_counts[0], 1);
        assert_eq!(h.bucket_counts[6], 1, "30 ms is in (25 ms, 50 ms]");
        assert_eq!(h.bucket_counts[DURATION_BOUNDS.len()], 1);
        assert_eq!(instruments.errors[0].value, Number::Int(2));
        assert_eq!(instruments.busy[0].value, Number::Int(1));
    }
}
