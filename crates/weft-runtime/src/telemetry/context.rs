//! W3C trace context: the ids a span is known by, and the `traceparent` header
//! that carries them between processes.

use std::cell::Cell;
use std::fmt;

/// A trace id: 16 bytes, never all zero.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceId(pub [u8; 16]);

/// A span id: 8 bytes, never all zero.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpanId(pub [u8; 8]);

impl TraceId {
    pub fn random() -> TraceId {
        TraceId(loop {
            let id = ((next_random() as u128) << 64 | next_random() as u128).to_be_bytes();
            if id != [0; 16] {
                break id;
            }
        })
    }

    /// 32 lowercase hex digits, not all zero.
    pub fn parse(hex: &str) -> Option<TraceId> {
        parse_hex::<16>(hex).map(TraceId)
    }
}

impl SpanId {
    pub fn random() -> SpanId {
        SpanId(loop {
            let id = next_random().to_be_bytes();
            if id != [0; 8] {
                break id;
            }
        })
    }

    /// 16 lowercase hex digits, not all zero.
    pub fn parse(hex: &str) -> Option<SpanId> {
        parse_hex::<8>(hex).map(SpanId)
    }
}

fn parse_hex<const N: usize>(hex: &str) -> Option<[u8; N]> {
    if hex.len() != 2 * N || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return None;
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(hex, &mut out).ok()?;
    (out != [0; N]).then_some(out)
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Where a span sits: its trace, its own id, whether it is recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpanContext {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub sampled: bool,
    /// Received from another process (a `traceparent` header).
    pub remote: bool,
    /// The W3C `tracestate` header, passed on unchanged.
    pub trace_state: String,
}

/// The longest `tracestate` weft passes on (the W3C limit is 32 members of at
/// most 256 characters; 512 bytes is what the spec asks every vendor to keep).
const MAX_TRACE_STATE: usize = 512;

impl SpanContext {
    /// Reads a `traceparent` header (version 00, or a later version's first four
    /// fields), with its `tracestate`; `None` for anything malformed.
    pub fn from_headers(traceparent: &str, tracestate: Option<&str>) -> Option<SpanContext> {
        let mut fields = traceparent.trim().split('-');
        let version = fields.next()?;
        let (trace, span, flags) = (fields.next()?, fields.next()?, fields.next()?);
        let rest = fields.next();
        if version.len() != 2 || version == "ff" || !version.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        // Version 00 has exactly four fields; later ones may add more.
        if version == "00" && rest.is_some() {
            return None;
        }
        if flags.len() != 2 {
            return None;
        }
        let flags = u8::from_str_radix(flags, 16).ok()?;
        let trace_state = tracestate.map(str::trim).filter(|s| s.len() <= MAX_TRACE_STATE).unwrap_or_default();
        Some(SpanContext {
            trace_id: TraceId::parse(trace)?,
            span_id: SpanId::parse(span)?,
            sampled: flags & 1 == 1,
            remote: true,
            trace_state: trace_state.to_string(),
        })
    }

    /// The `traceparent` header naming this span as the parent.
    pub fn traceparent(&self) -> String {
        format!("00-{}-{}-{:02x}", self.trace_id, self.span_id, u8::from(self.sampled))
    }

    /// A span of the same trace, a child of this one.
    pub fn child(&self) -> SpanContext {
        SpanContext { span_id: SpanId::random(), remote: false, ..self.clone() }
    }

    /// The first span of a new trace.
    pub fn root() -> SpanContext {
        SpanContext {
            trace_id: TraceId::random(),
            span_id: SpanId::random(),
            sampled: true,
            remote: false,
            trace_state: String::new(),
        }
    }
}

thread_local! {
    static STATE: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    let bytes = *uuid::Uuid::new_v4().as_bytes();
    u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) | 1
}

/// splitmix64 over a per-thread state seeded from the OS: ids need to be
/// unique, not secret, and a span must not cost a system call.
fn next_random() -> u64 {
    STATE.with(|state| {
        let s = state.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
        state.set(s);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trips() {
        let header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let cx = SpanContext::from_headers(header, Some("congo=t61rcWkgMzE")).unwrap();
        assert_eq!(cx.trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(cx.span_id.to_string(), "00f067aa0ba902b7");
        assert!(cx.sampled && cx.remote);
        assert_eq!(cx.trace_state, "congo=t61rcWkgMzE");
        assert_eq!(cx.traceparent(), header);
    }

    #[test]
    fn malformed_traceparents_are_ignored() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
        ] {
            assert!(SpanContext::from_headers(bad, None).is_none(), "{bad}");
        }
        // A later version may carry more fields.
        assert!(SpanContext::from_headers("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-x", None).is_some());
    }

    #[test]
    fn ids_differ() {
        let ids: std::collections::HashSet<_> = (0..1000).map(|_| SpanId::random()).collect();
        assert_eq!(ids.len(), 1000);
        assert_ne!(TraceId::random(), TraceId::random());
    }
}
