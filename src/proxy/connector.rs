//! How the origin client reaches an origin: over TCP to any address (configured sites), over
//! TCP to public addresses only (tenants' origins, `guard.rs`), or over an in-memory stream
//! (the request-path benchmark: the whole path without sockets). One connector type and one
//! stream type, so the proxy holds one kind of client whichever it is.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Uri;
use hyper::rt::ReadBufCursor;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use tokio::io::DuplexStream;
use tokio::net::TcpStream;

use super::guard::PublicOnly;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Opens a new in-memory connection to an origin (the other end is served in-process).
#[derive(Clone)]
pub struct MemoryOrigin(Arc<dyn Fn() -> DuplexStream + Send + Sync>);

impl MemoryOrigin {
    pub fn new(connect: impl Fn() -> DuplexStream + Send + Sync + 'static) -> Self {
        Self(Arc::new(connect))
    }
}

/// Where origin connections come from.
#[derive(Clone)]
pub enum OriginConnector {
    Tcp(HttpConnector),
    PublicOnly(PublicOnly),
    Memory(MemoryOrigin),
}

/// A connection to an origin.
pub enum OriginIo {
    Tcp(TokioIo<TcpStream>),
    Memory(TokioIo<DuplexStream>),
}

impl tower_service::Service<Uri> for OriginConnector {
    type Response = OriginIo;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<OriginIo, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        match self {
            Self::Tcp(c) => c.poll_ready(cx).map_err(Into::into),
            Self::PublicOnly(c) => c.poll_ready(cx),
            Self::Memory(_) => Poll::Ready(Ok(())),
        }
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        match self {
            Self::Tcp(c) => {
                let connecting = c.call(dst);
                Box::pin(async move { Ok(OriginIo::Tcp(connecting.await?)) })
            }
            Self::PublicOnly(c) => {
                let connecting = c.call(dst);
                Box::pin(async move { Ok(OriginIo::Tcp(connecting.await?)) })
            }
            Self::Memory(origin) => {
                let stream = (origin.0)();
                Box::pin(async move { Ok(OriginIo::Memory(TokioIo::new(stream))) })
            }
        }
    }
}

impl Connection for OriginIo {
    fn connected(&self) -> Connected {
        match self {
            Self::Tcp(io) => io.connected(),
            Self::Memory(_) => Connected::new(),
        }
    }
}

impl hyper::rt::Read for OriginIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(io) => Pin::new(io).poll_read(cx, buf),
            Self::Memory(io) => Pin::new(io).poll_read(cx, buf),
        }
    }
}

impl hyper::rt::Write for OriginIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Tcp(io) => Pin::new(io).poll_write(cx, buf),
            Self::Memory(io) => Pin::new(io).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Tcp(io) => Pin::new(io).poll_write_vectored(cx, bufs),
            Self::Memory(io) => Pin::new(io).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Tcp(io) => io.is_write_vectored(),
            Self::Memory(io) => io.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(io) => Pin::new(io).poll_flush(cx),
            Self::Memory(io) => Pin::new(io).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(io) => Pin::new(io).poll_shutdown(cx),
            Self::Memory(io) => Pin::new(io).poll_shutdown(cx),
        }
    }
}
