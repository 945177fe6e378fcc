//! Upgraded connections (WebSocket): bytes copied both ways until either side closes or
//! nothing moved for `proxy.tunnel_idle_timeout`. The tunnel keeps its client connection's
//! slot (it holds the connection's `InFlight`), so tunnels count in `max_connections`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite};

use crate::net_io::ReadHook;

/// Copies between `client` and `origin` until one closes or both are quiet for `idle`.
pub async fn run<A, B>(client: A, origin: B, idle: Duration)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let started = Instant::now();
    let last = Arc::new(AtomicU64::new(0));
    let touch = |last: Arc<AtomicU64>| {
        move |_: usize| {
            let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            last.store(ms, Ordering::Relaxed);
        }
    };
    let mut client = ReadHook::new(client, touch(last.clone()));
    let mut origin = ReadHook::new(origin, touch(last.clone()));
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
