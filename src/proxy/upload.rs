//! The request body on its way to the origin: counts the bytes it moves (the transfer
//! timeout reads them), says when it has been sent completely (the response timeout starts
//! then, not while a slow client is still uploading), and remembers when the client broke
//! it (bad chunked framing, a reset stream), so that failure is the client's, not the
//! origin's.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::sync::oneshot;

use super::conn::ClientConn;

/// What the sender of an upload learns about it; nothing to watch for a request without a
/// body (no channel is made for it: most requests on the hot path).
pub struct UploadWatch(Option<Pending>);

struct Pending {
    /// Resolves when the whole body was handed to the origin connection (or dropped).
    sent: oneshot::Receiver<()>,
    /// Set when reading the body from the client failed.
    client_failed: Arc<AtomicBool>,
}

impl UploadWatch {
    /// For a request with no body: sent already.
    pub fn nothing_to_send() -> Self {
        Self(None)
    }

    /// What resolves once the body has been sent; `None` when there was nothing to send.
    pub fn sending(&mut self) -> Option<&mut oneshot::Receiver<()>> {
        self.0.as_mut().map(|p| &mut p.sent)
    }

    /// Whether reading the body from the client failed.
    pub fn client_failed(&self) -> bool {
        self.0
            .as_ref()
            .is_some_and(|p| p.client_failed.load(Ordering::Acquire))
    }
}

/// `Incoming` with progress accounting.
pub struct Upload {
    inner: Incoming,
    conn: Arc<ClientConn>,
    sent: Option<oneshot::Sender<()>>,
    client_failed: Option<Arc<AtomicBool>>,
}

impl Upload {
    pub fn new(inner: Incoming, conn: Arc<ClientConn>) -> (Self, UploadWatch) {
        if inner.is_end_stream() {
            let upload = Self {
                inner,
                conn,
                sent: None,
                client_failed: None,
            };
            return (upload, UploadWatch::nothing_to_send());
        }
        let (tx, rx) = oneshot::channel();
        let client_failed = Arc::new(AtomicBool::new(false));
        let upload = Self {
            inner,
            conn,
            sent: Some(tx),
            client_failed: Some(client_failed.clone()),
        };
        let watch = UploadWatch(Some(Pending {
            sent: rx,
            client_failed,
        }));
        (upload, watch)
    }

    fn finish(&mut self) {
        if let Some(tx) = self.sent.take() {
            let _ = tx.send(());
        }
    }
}

impl Body for Upload {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.conn.moved_bytes(data.len());
                }
                if self.inner.is_end_stream() {
                    self.finish();
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(failed) = &self.client_failed {
                    failed.store(true, Ordering::Release);
                }
                self.finish();
            }
            Poll::Ready(None) => self.finish(),
            Poll::Pending => {}
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
