//! A stream that reports how many bytes each read brought, to a callback: what the client
//! connection's timers (bytes received) and tunnels (last activity) watch. Writes pass
//! through untouched. Also: waiting for a stream to become readable without reading it.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// `inner`, with `on_read(n)` called after every read of `n > 0` bytes.
pub struct ReadHook<S, F> {
    inner: S,
    on_read: F,
}

impl<S, F: FnMut(usize)> ReadHook<S, F> {
    pub fn new(inner: S, on_read: F) -> Self {
        Self { inner, on_read }
    }
}

impl<S: AsyncRead + Unpin, F: FnMut(usize) + Unpin> AsyncRead for ReadHook<S, F> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = buf.filled().len() - before;
        if read > 0 {
            (self.on_read)(read);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin, F: Unpin> AsyncWrite for ReadHook<S, F> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A byte stream whose readiness can be awaited without reading (and so without a buffer).
pub trait WaitReadable {
    /// Resolves once a read would find data (or the end of the stream).
    fn readable(&self) -> impl std::future::Future<Output = io::Result<()>> + Send;
}

impl WaitReadable for tokio::net::TcpStream {
    async fn readable(&self) -> io::Result<()> {
        Self::readable(self).await
    }
}

/// In-memory streams (benchmarks) are read right away.
impl WaitReadable for tokio::io::DuplexStream {
    async fn readable(&self) -> io::Result<()> {
        Ok(())
    }
}
