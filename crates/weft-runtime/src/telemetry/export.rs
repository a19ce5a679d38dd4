//! Sending encoded batches to an OTLP receiver: OTLP/HTTP (protobuf or JSON)
//! or OTLP/gRPC.

use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;

use super::{Protocol, Signal};
use crate::transport;

/// The most of a receiver's answer weft reads (an error message, a partial-success note).
const MAX_RESPONSE: usize = 64 * 1024;

pub(crate) struct Exporter {
    /// Without a trailing slash: `http://collector:4318`.
    base: String,
    protocol: Protocol,
    headers: Vec<(http::HeaderName, http::HeaderValue)>,
    timeout: Duration,
}

/// Why an export failed, and whether trying again may help.
#[derive(Debug)]
pub(crate) struct ExportError {
    pub message: String,
    pub retry: bool,
}

impl Exporter {
    pub fn new(
        endpoint: &str,
        protocol: Protocol,
        headers: &indexmap::IndexMap<String, String>,
        timeout: Duration,
    ) -> Result<Exporter, String> {
        let uri: http::Uri = endpoint.parse().map_err(|e| format!("`endpoint` `{endpoint}` is not a URL: {e}"))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            return Err(format!("`endpoint` `{endpoint}` must be an http:// or https:// URL with a host"));
        }
        if uri.query().is_some() {
            return Err(format!("`endpoint` `{endpoint}` must not have a query"));
        }
        let headers = headers
            .iter()
            .map(|(k, v)| {
                let name = http::HeaderName::try_from(k.as_str()).map_err(|e| format!("header `{k}`: {e}"))?;
                let value = http::HeaderValue::try_from(v.as_str()).map_err(|e| format!("header `{k}`: {e}"))?;
                Ok((name, value))
            })
            .collect::<Result<_, String>>()?;
        Ok(Exporter { base: endpoint.trim_end_matches('/').to_string(), protocol, headers, timeout })
    }

    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// Where a signal goes: the OTLP/HTTP paths, or the gRPC method.
    fn url(&self, signal: Signal) -> String {
        match self.protocol {
            Protocol::HttpProtobuf | Protocol::HttpJson => format!("{}/v1/{}", self.base, signal.as_str()),
            Protocol::Grpc => {
                let (package, service) = match signal {
                    Signal::Traces => ("trace", "TraceService"),
                    Signal::Metrics => ("metrics", "MetricsService"),
                    Signal::Logs => ("logs", "LogsService"),
                };
                format!("{}/opentelemetry.proto.collector.{package}.v1.{service}/Export", self.base)
            }
        }
    }

    /// Sends one export request; `encoded` is protobuf, or JSON for `http/json`.
    pub async fn send(&self, signal: Signal, encoded: Bytes) -> Result<(), ExportError> {
        let (content_type, body) = match self.protocol {
            Protocol::HttpProtobuf => ("application/x-protobuf", encoded),
            Protocol::HttpJson => ("application/json", encoded),
            // A gRPC message: uncompressed flag, 4-byte big-endian length, the message.
            Protocol::Grpc => {
                let mut framed = Vec::with_capacity(encoded.len() + 5);
                framed.push(0);
                framed.extend_from_slice(&(encoded.len() as u32).to_be_bytes());
                framed.extend_from_slice(&encoded);
                ("application/grpc", Bytes::from(framed))
            }
        };
        let mut request = http::Request::post(self.url(signal))
            .header(http::header::CONTENT_TYPE, content_type)
            .body(Full::new(body))
            .map_err(|e| ExportError { message: e.to_string(), retry: false })?;
        for (name, value) in &self.headers {
            request.headers_mut().insert(name.clone(), value.clone());
        }
        let grpc = self.protocol == Protocol::Grpc;
        if grpc {
            request.headers_mut().insert(http::header::TE, http::HeaderValue::from_static("trailers"));
        }
        let exchange = async {
            let sent = if grpc { transport::send_h2(request).await } else { transport::send(request).await };
            let response = sent.map_err(|e| ExportError { message: e.0, retry: true })?;
            let status = response.status();
            let mut headers = response.headers().clone();
            let mut body = Vec::new();
            let mut incoming = response.into_body();
            while let Some(frame) = incoming.frame().await {
                let frame =
                    frame.map_err(|e| ExportError { message: format!("reading the answer: {e}"), retry: true })?;
                match frame.into_data() {
                    Ok(data) if body.len() < MAX_RESPONSE => body.extend_from_slice(&data),
                    Ok(_) => {}
                    Err(frame) => {
                        if let Ok(trailers) = frame.into_trailers() {
                            headers.extend(trailers);
                        }
                    }
                }
            }
            if grpc { grpc_outcome(status, &headers) } else { http_outcome(status, &body) }
        };
        tokio::time::timeout(self.timeout, exchange).await.unwrap_or_else(|_| {
            Err(ExportError { message: format!("no answer within {:?}", self.timeout), retry: true })
        })
    }
}

fn http_outcome(status: http::StatusCode, body: &[u8]) -> Result<(), ExportError> {
    if status.is_success() {
        return Ok(());
    }
    // The retryable codes of the OTLP/HTTP specification.
    let retry = matches!(status.as_u16(), 429 | 502 | 503 | 504);
    let text = String::from_utf8_lossy(&body[..body.len().min(200)]).trim().to_string();
    Err(ExportError { message: format!("the receiver answered {status}: {text}"), retry })
}

fn grpc_outcome(status: http::StatusCode, headers: &http::HeaderMap) -> Result<(), ExportError> {
    if !status.is_success() {
        return Err(ExportError { message: format!("the receiver answered HTTP {status}"), retry: true });
    }
    let code = headers.get("grpc-status").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u32>().ok());
    match code {
        Some(0) => Ok(()),
        Some(code) => {
            let message = headers.get("grpc-message").and_then(|v| v.to_str().ok()).unwrap_or_default();
            // CANCELLED, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, ABORTED, OUT_OF_RANGE,
            // UNAVAILABLE, DATA_LOSS: retryable, as the OTLP/gRPC specification lists.
            let retry = matches!(code, 1 | 4 | 8 | 10 | 11 | 14 | 15);
            Err(ExportError { message: format!("the receiver answered gRPC status {code}: {message}"), retry })
        }
        None => Err(ExportError { message: "the receiver's answer has no grpc-status".into(), retry: true }),
    }
}
