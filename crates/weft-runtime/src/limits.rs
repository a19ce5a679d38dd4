//! Per-component limits: concurrent invocations, memory, and CPU and wall-clock
//! time per invocation.
//!
//! | limit            | default    | what happens past it                                   |
//! |------------------|------------|--------------------------------------------------------|
//! | `maxConcurrent`  | 64         | the call waits for a free slot                         |
//! | `maxQueued`      | 256        | beyond this many waiting calls, a call fails at once   |
//! | `queueTimeout`   | 5s         | a call that waited this long fails with "busy"         |
//! | `memory`         | 256MiB     | `memory.grow` fails (Rust guests then abort: a trap)   |
//! | `cpuTime`        | 10s        | the invocation is interrupted and reported as timeout  |
//! | `timeout`        | 60s        | the invocation is abandoned and reported as timed out  |
//!
//! `cpuTime` counts only time spent running the component's code; `timeout` counts
//! from the invocation's start to its end, waiting included (on a sleep, a stream,
//! an outgoing request), which the CPU limit never sees. `unlimited` lifts either.
//!
//! The service has neither limit unless one is set: it runs for the life of the workload.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Limits as written in a manifest; unset fields take the defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LimitsSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_queued: Option<u32>,
    #[serde(default, with = "duration::option", skip_serializing_if = "Option::is_none")]
    pub queue_timeout: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<ByteSize>,
    #[serde(default, with = "duration::option", skip_serializing_if = "Option::is_none")]
    pub cpu_time: Option<Duration>,
    #[serde(default, with = "duration::option", skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
}

/// Limits in force for one component.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Limits {
    pub max_concurrent: u32,
    pub max_queued: u32,
    #[serde(with = "duration")]
    pub queue_timeout: Duration,
    pub memory: ByteSize,
    #[serde(with = "duration::option")]
    pub cpu_time: Option<Duration>,
    /// Wall-clock time from an invocation's start to its end.
    #[serde(with = "duration::option")]
    pub timeout: Option<Duration>,
}

impl Limits {
    pub const DEFAULT: Limits = Limits {
        max_concurrent: 64,
        max_queued: 256,
        queue_timeout: Duration::from_secs(5),
        memory: ByteSize(256 << 20),
        cpu_time: Some(Duration::from_secs(10)),
        timeout: Some(Duration::from_secs(60)),
    };

    /// The manifest's limits over the defaults; a service gets no time limits by default.
    pub fn resolve(spec: &LimitsSpec, is_service: bool) -> Limits {
        let d = Limits::DEFAULT;
        let cpu_time = spec.cpu_time.or(if is_service { None } else { d.cpu_time });
        let timeout = spec.timeout.or(if is_service { None } else { d.timeout });
        Limits {
            max_concurrent: spec.max_concurrent.unwrap_or(d.max_concurrent),
            max_queued: spec.max_queued.unwrap_or(d.max_queued),
            queue_timeout: spec.queue_timeout.unwrap_or(d.queue_timeout),
            memory: spec.memory.unwrap_or(d.memory),
            cpu_time: cpu_time.filter(|t| *t != UNLIMITED),
            timeout: timeout.filter(|t| *t != UNLIMITED),
        }
    }
}

/// A number of bytes; in manifests an integer or a string such as `64MiB`, `1GiB`, `500kB`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "ByteSizeRepr", into = "String")]
pub struct ByteSize(pub u64);

#[derive(Deserialize)]
#[serde(untagged)]
enum ByteSizeRepr {
    Number(u64),
    Text(String),
}

const UNITS: &[(&str, u64)] = &[
    ("GiB", 1 << 30),
    ("MiB", 1 << 20),
    ("KiB", 1 << 10),
    ("GB", 1_000_000_000),
    ("MB", 1_000_000),
    ("kB", 1_000),
    ("KB", 1_000),
    ("B", 1),
];

impl TryFrom<ByteSizeRepr> for ByteSize {
    type Error = String;
    fn try_from(repr: ByteSizeRepr) -> Result<Self, String> {
        match repr {
            ByteSizeRepr::Number(n) => Ok(ByteSize(n)),
            ByteSizeRepr::Text(s) => s.parse(),
        }
    }
}

impl std::str::FromStr for ByteSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (number, unit) =
            UNITS.iter().find_map(|(suffix, unit)| s.strip_suffix(suffix).map(|n| (n.trim(), *unit))).unwrap_or((s, 1));
        number
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(unit))
            .map(ByteSize)
            .ok_or_else(|| format!("invalid size `{s}` (examples: 65536, 64MiB, 1GiB)"))
    }
}

impl From<ByteSize> for String {
    fn from(b: ByteSize) -> String {
        b.to_string()
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (suffix, unit) in &UNITS[..3] {
            if self.0 >= *unit && self.0.is_multiple_of(*unit) {
                return write!(f, "{}{suffix}", self.0 / unit);
            }
        }
        write!(f, "{}B", self.0)
    }
}

/// `cpuTime: unlimited` in a manifest.
pub const UNLIMITED: Duration = Duration::MAX;

/// Serde helpers for human-readable durations (`250ms`, `5s`, `1m 30s`, `unlimited`).
pub mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    use super::UNLIMITED;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        if *d == UNLIMITED {
            return s.serialize_str("unlimited");
        }
        s.collect_str(&humantime::format_duration(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        parse(&text).map_err(serde::de::Error::custom)
    }

    pub fn parse(text: &str) -> Result<Duration, String> {
        if text.trim() == "unlimited" {
            return Ok(UNLIMITED);
        }
        humantime::parse_duration(text)
            .map_err(|e| format!("invalid duration `{text}` ({e}; examples: 250ms, 5s, 2m, unlimited)"))
    }

    pub mod option {
        use std::time::Duration;

        use serde::{Deserialize, Deserializer, Serializer};

        pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
            match d {
                Some(d) => super::serialize(d, s),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
            #[derive(Deserialize)]
            struct Wrapped(#[serde(with = "super")] Duration);
            Ok(Option::<Wrapped>::deserialize(d)?.map(|Wrapped(d)| d))
        }
    }
}

/// Admits at most `max_concurrent` invocations of a component at a time; the rest
/// wait (at most `max_queued` of them, for at most `queue_timeout`).
#[derive(Debug)]
pub struct ConcurrencyGate {
    slots: Arc<Semaphore>,
    max_concurrent: u32,
    waiting: AtomicU32,
    max_queued: u32,
    queue_timeout: Duration,
}

/// A call was refused because the component is saturated.
#[derive(Debug, Clone, thiserror::Error)]
#[error("busy: {max_concurrent} invocations already running and {}", if *.queue_full { format!("{} waiting (queue full)", .max_queued) } else { format!("no slot freed within {:?}", .waited) })]
pub struct Busy {
    pub max_concurrent: u32,
    pub max_queued: u32,
    pub queue_full: bool,
    pub waited: Duration,
}

impl ConcurrencyGate {
    pub fn new(limits: &Limits) -> ConcurrencyGate {
        ConcurrencyGate {
            slots: Arc::new(Semaphore::new(limits.max_concurrent as usize)),
            max_concurrent: limits.max_concurrent,
            waiting: AtomicU32::new(0),
            max_queued: limits.max_queued,
            queue_timeout: limits.queue_timeout,
        }
    }

    /// Waits for a slot; the slot is held until the returned permit drops.
    pub async fn enter(&self) -> Result<OwnedSemaphorePermit, Busy> {
        if let Ok(permit) = self.slots.clone().try_acquire_owned() {
            return Ok(permit);
        }
        let busy = |queue_full| Busy {
            max_concurrent: self.max_concurrent,
            max_queued: self.max_queued,
            queue_full,
            waited: if queue_full { Duration::ZERO } else { self.queue_timeout },
        };
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.max_queued {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(busy(true));
        }
        let acquired = tokio::time::timeout(self.queue_timeout, self.slots.clone().acquire_owned()).await;
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        match acquired {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(busy(false)),
        }
    }

    /// Invocations running right now.
    pub fn in_use(&self) -> u32 {
        self.max_concurrent - self.slots.available_permits() as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes() {
        assert_eq!("64MiB".parse::<ByteSize>(), Ok(ByteSize(64 << 20)));
        assert_eq!("1 GiB".parse::<ByteSize>(), Ok(ByteSize(1 << 30)));
        assert_eq!("500kB".parse::<ByteSize>(), Ok(ByteSize(500_000)));
        assert_eq!("4096".parse::<ByteSize>(), Ok(ByteSize(4096)));
        assert!("lots".parse::<ByteSize>().is_err());
        assert!("99999999999GiB".parse::<ByteSize>().is_err());
        assert_eq!(ByteSize(64 << 20).to_string(), "64MiB");
        assert_eq!(ByteSize(1000).to_string(), "1000B");
    }

    #[test]
    fn services_have_no_time_limits_by_default() {
        let service = Limits::resolve(&LimitsSpec::default(), true);
        assert_eq!((service.cpu_time, service.timeout), (None, None));
        assert_eq!(Limits::resolve(&LimitsSpec::default(), false), Limits::DEFAULT);
        let set = LimitsSpec { cpu_time: Some(Duration::from_secs(1)), ..Default::default() };
        assert_eq!(Limits::resolve(&set, true).cpu_time, Some(Duration::from_secs(1)));
        let unlimited: LimitsSpec = serde_json::from_str(r#"{"cpuTime": "unlimited"}"#).unwrap();
        assert_eq!(Limits::resolve(&unlimited, false).cpu_time, None);
        assert_eq!(serde_json::to_string(&unlimited).unwrap(), r#"{"cpuTime":"unlimited"}"#);
        let waiting: LimitsSpec = serde_json::from_str(r#"{"timeout": "unlimited"}"#).unwrap();
        assert_eq!(Limits::resolve(&waiting, false).timeout, None);
        let short: LimitsSpec = serde_json::from_str(r#"{"timeout": "250ms"}"#).unwrap();
        assert_eq!(Limits::resolve(&short, true).timeout, Some(Duration::from_millis(250)));
    }

    #[tokio::test]
    async fn gate_queues_then_refuses() {
        let limits =
            Limits { max_concurrent: 1, max_queued: 1, queue_timeout: Duration::from_millis(50), ..Limits::DEFAULT };
        let gate = Arc::new(ConcurrencyGate::new(&limits));
        let held = gate.enter().await.unwrap();
        assert_eq!(gate.in_use(), 1);
        // One caller may wait; it times out because the slot is never freed.
        let waiter = tokio::spawn({
            let gate = gate.clone();
            async move { gate.enter().await }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        // The queue is full now: refused at once.
        let refused = gate.enter().await.unwrap_err();
        assert!(refused.queue_full, "{refused}");
        let timed_out = waiter.await.unwrap().unwrap_err();
        assert!(!timed_out.queue_full);
        assert!(timed_out.to_string().starts_with("busy:"), "{timed_out}");
        drop(held);
        assert!(gate.enter().await.is_ok());
    }
}
