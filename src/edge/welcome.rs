//! The built-in welcome origin for demos: a page showing what the edge forwarded (the request
//! line and headers), so a newcomer sees the proxy at work. Only started when configured.

use std::convert::Infallible;
use std::fmt::Write;

use http::header::CONTENT_TYPE;
use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::proxy::ProxyBody;
use crate::proxy::responses::full;

pub(super) async fn serve(listener: TcpListener, cancel: CancellationToken) {
    loop {
        let tcp = tokio::select! {
            () = cancel.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    tracing::warn!(error = %e, "welcome page: accept failed");
                    continue;
                }
            },
        };
        tokio::spawn(async move {
            let service = service_fn(|req| async move { Ok::<_, Infallible>(page(&req)) });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}

fn page(req: &Request<Incoming>) -> Response<ProxyBody> {
    let mut rows = String::new();
    for (name, value) in req.headers() {
        let value = html_escape(&String::from_utf8_lossy(value.as_bytes()));
        let _ = write!(rows, "<tr><td>{name}</td><td>{value}</td></tr>");
    }
    let line = html_escape(&format!(
        "{} {} {:?}",
        req.method(),
        req.uri(),
        req.version()
    ));
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>onehttps works</title>\
         <style>body{{font-family:system-ui;max-width:50em;margin:3em auto}}td{{padding:.2em 1em;\
         border-bottom:1px solid #ddd;font-family:monospace}}</style></head><body>\
         <h1>&#128274; onehttps is working</h1><p>This page comes from the demo origin; \
         onehttps terminated TLS and forwarded the request over plain HTTP:</p>\
         <p><code>{line}</code></p><table>{rows}</table></body></html>\n"
    );
    let mut response = Response::new(full(html));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
