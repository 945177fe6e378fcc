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

/// What the sender of an upload learns about it.
pub struct UploadWatch {
    /// Resolves when the whole body was handed to the origin connection (or dropped).
    pub sent: oneshot::Receiver<()>,
    /// Set when reading the body from the client failed.
    pub client_failed: Arc<AtomicBool>,
}

impl UploadWatch {
    /// For a request with no body: sent already.
    pub fn nothing_to_send() -> Self {
        let (tx, rx) = oneshot::channel();
        let _ = tx.send(());
        Self {
            sent: rx,
            client_failed: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Whether reading the body from the client failed.
    pub fn client_failed(&self) -> bool {
        self.client_failed.load(Ordering::Acquire)
    }
}

/// `Incoming` with progress accounting.
pub struct Upload {
    inner: Incoming,
    conn: Arc<ClientConn>,
    sent: Option<oneshot::Sender<()>>,
    client_failed: Arc<AtomicBool>,
}

impl Upload {
    pub fn new(inner: Incoming, conn: Arc<ClientConn>) -> (Self, UploadWatch) {
        let (tx, rx) = oneshot::channel();
        let client_failed = Arc::new(AtomicBool::new(false));
        let mut upload = Self {
            inner,
            conn,
            sent: Some(tx),
            client_failed: client_failed.clone(),
        };
        if upload.inner.is_end_stream() {
            upload.finish();
        }
        (
            upload,
            UploadWatch {
                sent: rx,
                client_failed,
            },
        )
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
                self.client_failed.store(true, Ordering::Release);
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
