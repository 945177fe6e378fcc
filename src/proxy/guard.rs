//! The connector for tenants' origins and the webhook: a plain TCP connect, then a check of
//! the address actually connected to. An API-registered site cannot make the edge talk to
//! loopback, private or link-local addresses (cloud metadata, the admin API), neither with
//! an IP literal nor with a name that resolves there — also not one that changes its answer
//! after registration (DNS rebinding): nothing is sent before the check passes.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Uri;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a connection was refused after it was made.
#[derive(Debug, thiserror::Error)]
#[error(
    "{target} resolves to {addr}, {why}: refused for tenant origins (onboarding.allow_private_origins)"
)]
pub struct NotPublic {
    target: String,
    addr: std::net::IpAddr,
    why: &'static str,
}

/// Wraps an [`HttpConnector`]; refuses connections whose peer address is not public.
#[derive(Clone)]
pub struct PublicOnly {
    inner: HttpConnector,
}

impl PublicOnly {
    pub fn new(inner: HttpConnector) -> Self {
        Self { inner }
    }
}

impl tower_service::Service<Uri> for PublicOnly {
    type Response = TokioIo<TcpStream>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let connecting = self.inner.call(dst.clone());
        Box::pin(async move {
            let io = connecting.await?;
            let addr = io.inner().peer_addr()?.ip();
            match crate::net::non_public_reason(addr) {
                None => Ok(io),
                Some(why) => Err(NotPublic {
                    target: dst
                        .authority()
                        .map_or_else(String::new, ToString::to_string),
                    addr,
                    why,
                }
                .into()),
            }
        })
    }
}
