//! Upgraded connections (WebSocket): bytes copied both ways until either side closes or
//! nothing moved for `proxy.tunnel_idle_timeout`. The tunnel keeps its client connection's
//! slot (it holds the connection's `InFlight`), so tunnels count in `max_connections`.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Copies between `client` and `origin` until one closes or both are quiet for `idle`.
pub async fn run<A, B>(client: A, origin: B, idle: Duration)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let started = Instant::now();
    let last = Arc::new(AtomicU64::new(0));
    let mut client = Touching::new(client, started, last.clone());
    let mut origin = Touching::new(origin, started, last.clone());
    let quiet = async {
        loop {
            let last = Duration::from_millis(last.load(Ordering::Relaxed));
            let quiet_for = started.elapsed().saturating_sub(last);
            if quiet_for >= idle {
                return;
            }
            tokio::time::sleep(idle - quiet_for).await;
        }
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut origin) => {}
        () = quiet => {
            crate::stats::bump(&crate::stats::STATS.stalled_connections);
            tracing::debug!(idle_s = idle.as_secs_f64(), "tunnel idle: closed");
        }
    }
}

/// A stream that notes when it last read something.
struct Touching<S> {
    inner: S,
    started: Instant,
    last: Arc<AtomicU64>,
}

impl<S> Touching<S> {
    fn new(inner: S, started: Instant, last: Arc<AtomicU64>) -> Self {
        Self {
            inner,
            started,
            last,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Touching<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
            self.last.store(ms, Ordering::Relaxed);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Touching<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
