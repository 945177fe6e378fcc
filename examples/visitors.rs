//! The TLS visitors of `benches/load.sh`: each connection does a TLS 1.3 handshake (full, or
//! resumed with the ticket of the thread's previous connection), one HTTP/1.1 GET with
//! `Connection: close`, reads the whole response and closes. Written in Rust on blocking
//! sockets so that the client, which shares the machine with the server, stays cheap.
//!
//! The client offers X25519 only (what nginx and haproxy on Debian's OpenSSL 3.0 support), so
//! every server does the same key exchange; it does not verify the certificate (client CPU
//! only, the servers' work is unchanged).
//!
//! Usage: `visitors PORT new|reuse SECONDS THREADS [HOST]`. Prints
//! `N connections in S real seconds; resumed R` and the p50/p99 connection time.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use onehttps::served_leaf::AnyCertificate;
use rustls::crypto::aws_lc_rs;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};

struct Args {
    port: u16,
    resume: bool,
    seconds: f64,
    threads: usize,
    host: String,
}

fn args() -> Result<Args, String> {
    let usage = "usage: visitors PORT new|reuse SECONDS THREADS [HOST]";
    let a: Vec<String> = std::env::args().skip(1).collect();
    if a.len() < 4 {
        return Err(usage.into());
    }
    Ok(Args {
        port: a[0]
            .parse()
            .map_err(|_| format!("bad port {:?}; {usage}", a[0]))?,
        resume: match a[1].as_str() {
            "new" => false,
            "reuse" => true,
            other => return Err(format!("bad mode {other:?}; {usage}")),
        },
        seconds: a[2]
            .parse()
            .map_err(|_| format!("bad seconds {:?}", a[2]))?,
        threads: a[3]
            .parse()
            .map_err(|_| format!("bad threads {:?}", a[3]))?,
        host: a.get(4).cloned().unwrap_or_else(|| "localhost".into()),
    })
}

fn config(resume: bool) -> Arc<ClientConfig> {
    let mut provider = aws_lc_rs::default_provider();
    provider.kx_groups = vec![aws_lc_rs::kx_group::X25519];
    let provider = Arc::new(provider);
    let mut config = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3 is supported")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate::new(provider, false)))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    if !resume {
        config.resumption = rustls::client::Resumption::disabled();
    }
    Arc::new(config)
}

/// One visit: connect, handshake, GET, read the response. Returns whether it resumed.
fn visit(args: &Args, config: &Arc<ClientConfig>) -> Result<bool, String> {
    let name = ServerName::try_from(args.host.clone()).map_err(|e| e.to_string())?;
    let tcp = TcpStream::connect(("127.0.0.1", args.port)).map_err(|e| e.to_string())?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let conn = ClientConnection::new(config.clone(), name).map_err(|e| e.to_string())?;
    let mut tls = StreamOwned::new(conn, tcp);
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        args.host
    );
    tls.write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut response = Vec::with_capacity(1024);
    let mut buf = [0u8; 16 * 1024];
    loop {
        match tls.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => response.extend_from_slice(&buf[..n]),
            // Servers that close without close_notify: the response is complete by then.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e.to_string()),
        }
    }
    if !response.starts_with(b"HTTP/1.1 200") {
        return Err(format!(
            "unexpected response: {:?}",
            String::from_utf8_lossy(&response[..response.len().min(80)])
        ));
    }
    Ok(tls.conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed))
}

fn main() {
    let args = match args() {
        Ok(a) => Arc::new(a),
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let end = Instant::now() + Duration::from_secs_f64(args.seconds);
    let workers: Vec<_> = (0..args.threads)
        .map(|_| {
            let args = args.clone();
            std::thread::spawn(move || {
                let config = config(args.resume);
                let (mut times, mut resumed, mut errors) = (Vec::new(), 0usize, 0usize);
                while Instant::now() < end {
                    let t0 = Instant::now();
                    match visit(&args, &config) {
                        Ok(r) => {
                            times.push(t0.elapsed());
                            resumed += usize::from(r);
                        }
                        Err(e) => {
                            errors += 1;
                            if errors == 1 {
                                eprintln!("visit failed: {e}");
                            }
                        }
                    }
                }
                (times, resumed, errors)
            })
        })
        .collect();
    let (mut times, mut resumed, mut errors) = (Vec::new(), 0, 0);
    for w in workers {
        let (t, r, e) = w.join().expect("visitor thread");
        times.extend(t);
        resumed += r;
        errors += e;
    }
    times.sort();
    let pct = |p: f64| {
        times
            .get(((times.len() as f64 * p) as usize).min(times.len().saturating_sub(1)))
            .map_or("-".into(), |t| format!("{:.2}ms", t.as_secs_f64() * 1e3))
    };
    println!(
        "{} connections in {} real seconds; resumed {resumed}; errors {errors}",
        times.len(),
        args.seconds.round()
    );
    println!("50% {}\n99% {}", pct(0.5), pct(0.99));
}
