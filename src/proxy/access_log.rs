//! The access log: one line per request, written when the response body is finished (or
//! abandoned), so it carries the bytes sent and the total time.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, StatusCode, Version};
use hyper::body::{Body, Frame, SizeHint};

use super::ProxyBody;
use super::conn::InFlight;

/// Target of access log events, so they can be filtered apart from the rest.
pub const ACCESS_TARGET: &str = "onehttps::access";

/// What is known of a request by the time its response starts.
pub struct AccessRecord {
    pub client: std::net::SocketAddr,
    pub host: String,
    pub method: Method,
    pub path: String,
    pub version: Version,
    pub status: StatusCode,
    pub started: Instant,
    pub origin_time: Option<Duration>,
    pub tls_version: &'static str,
    pub resumed: bool,
}

/// A response body that counts what it sends and logs the request when dropped.
pub struct LoggedBody {
    inner: ProxyBody,
    bytes: u64,
    record: Option<AccessRecord>,
    _in_flight: InFlight,
}

impl LoggedBody {
    /// Wraps `inner`; `record` is `None` when access logging is off.
    pub fn new(inner: ProxyBody, record: Option<AccessRecord>, in_flight: InFlight) -> Self {
        Self {
            inner,
            bytes: 0,
            record,
            _in_flight: in_flight,
        }
    }
}

impl Body for LoggedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            self.bytes += data.len() as u64;
            self._in_flight.conn().moved_bytes(data.len());
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        let Some(r) = self.record.take() else { return };
        tracing::info!(
            target: ACCESS_TARGET,
            client_addr = %r.client,
            host = %r.host,
            method = %r.method,
            path = %r.path,
            version = ?r.version,
            status = r.status.as_u16(),
            bytes = self.bytes,
            total_ms = r.started.elapsed().as_secs_f64() * 1e3,
            origin_ms = r.origin_time.map(|d| d.as_secs_f64() * 1e3),
            tls_version = r.tls_version,
            tls_resumed = r.resumed,
            "request"
        );
    }
}
