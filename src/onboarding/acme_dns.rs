//! The edge's own authoritative DNS server for `[onboarding] acme_zone`, the zone a site
//! owner's `_acme-challenge.<name> CNAME <site-id>.<acme_zone>` points into. It answers TXT
//! at `<site-id>.<acme_zone>` with the DNS-01 values of that site's orders in flight and
//! nothing else: names outside the zone are refused (no recursion), every other question
//! gets an empty authoritative answer, answers are capped in size (truncated over UDP, so a
//! resolver retries over TCP), and each client address is rate-limited. No DNS API key of
//! the site owner's is ever needed.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_resolver::proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_resolver::proto::rr::rdata::{SOA, TXT};
use hickory_resolver::proto::rr::{DNSClass, Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

/// TTL of every answer: values change with each order.
const TTL: u32 = 1;
/// Largest UDP answer without EDNS (RFC 1035), and with it (the DNS flag day's 1232).
const UDP_PLAIN: usize = 512;
const UDP_EDNS: u16 = 1232;
/// Most TXT values in one answer (orders in flight for one site).
const MAX_VALUES: usize = 16;
/// Largest query read over TCP.
const MAX_TCP_QUERY: usize = 4096;
/// A TCP connection idle this long is closed.
const TCP_IDLE: Duration = Duration::from_secs(5);
/// Queries per second per client address, and the burst allowed.
const RATE: f64 = 50.0;
const BURST: f64 = 100.0;
/// Clients remembered by the rate limiter before it starts over.
const MAX_CLIENTS: usize = 65_536;

/// Everything the server needs to answer: the zone and the values of a site id.
pub struct Zone<F> {
    /// Lowercase, no trailing dot.
    pub name: String,
    /// The DNS-01 values to serve for a site id (empty if none or no such site).
    pub values: F,
}

impl<F: Fn(&str) -> Vec<String>> Zone<F> {
    /// The answer to `request` (wire format), at most `udp_limit` bytes when set (`None`:
    /// TCP); `None` for something that is not a query at all.
    pub fn answer(&self, request: &[u8], udp_limit: bool) -> Option<Vec<u8>> {
        let request = Message::from_vec(request).ok()?;
        if request.metadata.message_type != MessageType::Query {
            return None;
        }
        let mut response = Message::response(request.metadata.id, request.metadata.op_code);
        response.metadata.recursion_desired = request.metadata.recursion_desired;
        let limit = match (&request.edns, udp_limit) {
            (_, false) => usize::from(u16::MAX),
            (Some(edns), true) => usize::from(edns.max_payload().clamp(512, UDP_EDNS)),
            (None, true) => UDP_PLAIN,
        };
        if request.edns.is_some() {
            let mut edns = Edns::new();
            edns.set_max_payload(UDP_EDNS);
            response.set_edns(edns);
        }
        let code = self.fill(&request, &mut response);
        response.metadata.response_code = code;
        let bytes = response.to_vec().ok()?;
        if bytes.len() <= limit {
            return Some(bytes);
        }
        let mut truncated = response.truncate();
        truncated.metadata.truncation = true;
        truncated.to_vec().ok()
    }

    /// Puts the answer to `request`'s one question into `response`.
    fn fill(&self, request: &Message, response: &mut Message) -> ResponseCode {
        if request.metadata.op_code != OpCode::Query {
            return ResponseCode::NotImp;
        }
        let [query] = request.queries.as_slice() else {
            return ResponseCode::FormErr;
        };
        response.add_query(query.clone());
        let qname = query
            .name()
            .to_ascii()
            .trim_end_matches('.')
            .to_ascii_lowercase();
        let relative = if qname == self.name {
            Some("")
        } else {
            qname
                .strip_suffix(&self.name)
                .and_then(|rest| rest.strip_suffix('.'))
        };
        let Some(relative) = relative else {
            // Not ours, and no recursion for anyone.
            return ResponseCode::Refused;
        };
        if query.query_class() != DNSClass::IN {
            return ResponseCode::Refused;
        }
        response.metadata.authoritative = true;
        let exists = relative.is_empty() || !relative.contains('.');
        if query.query_type() == RecordType::SOA && relative.is_empty() {
            if let Some(soa) = self.soa() {
                response.add_answer(soa);
            }
            return ResponseCode::NoError;
        }
        if query.query_type() == RecordType::TXT && exists && !relative.is_empty() {
            let values = (self.values)(relative);
            if !values.is_empty() {
                for value in values.into_iter().take(MAX_VALUES) {
                    response.add_answer(Record::from_rdata(
                        query.name().clone(),
                        TTL,
                        RData::TXT(TXT::new(vec![value])),
                    ));
                }
                return ResponseCode::NoError;
            }
        }
        // Nothing here (now): an empty answer with the zone's SOA, so it is not cached long.
        if let Some(soa) = self.soa() {
            response.add_authority(soa);
        }
        if exists {
            ResponseCode::NoError
        } else {
            ResponseCode::NXDomain
        }
    }

    fn soa(&self) -> Option<Record> {
        let zone = Name::from_ascii(format!("{}.", self.name)).ok()?;
        let mname = Name::from_ascii(format!("ns.{}.", self.name)).ok()?;
        let rname = Name::from_ascii(format!("hostmaster.{}.", self.name)).ok()?;
        Some(Record::from_rdata(
            zone,
            TTL,
            RData::SOA(SOA::new(mname, rname, 1, 60, 60, 600, TTL)),
        ))
    }
}

/// Queries allowed per client address (a token bucket each).
#[derive(Default)]
pub struct Limiter {
    clients: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl Limiter {
    /// Whether `client` may have one more answer now.
    pub fn allow(&self, client: IpAddr) -> bool {
        self.allow_at(client, Instant::now())
    }

    fn allow_at(&self, client: IpAddr, now: Instant) -> bool {
        let mut clients = self
            .clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if clients.len() >= MAX_CLIENTS && !clients.contains_key(&client) {
            clients.clear();
        }
        let (tokens, at) = clients.entry(client).or_insert((BURST, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * RATE).min(BURST);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Serves `zone` on `udp` and `tcp` until `cancel`.
pub async fn serve<F>(
    zone: Arc<Zone<F>>,
    udp: tokio::net::UdpSocket,
    tcp: tokio::net::TcpListener,
    cancel: CancellationToken,
) where
    F: Fn(&str) -> Vec<String> + Send + Sync + 'static,
{
    let limiter = Arc::new(Limiter::default());
    let tcp_task = {
        let (zone, limiter, cancel) = (zone.clone(), limiter.clone(), cancel.clone());
        tokio::spawn(async move { serve_tcp(zone, tcp, limiter, cancel).await })
    };
    let mut buffer = vec![0u8; 4096];
    loop {
        let (len, from) = tokio::select! {
            () = cancel.cancelled() => break,
            received = udp.recv_from(&mut buffer) => match received {
                Ok(received) => received,
                Err(e) => {
                    tracing::debug!(error = %e, "ACME zone DNS: UDP receive failed");
                    continue;
                }
            },
        };
        if !limiter.allow(from.ip()) {
            continue;
        }
        if let Some(answer) = zone.answer(&buffer[..len], true)
            && let Err(e) = udp.send_to(&answer, from).await
        {
            tracing::debug!(error = %e, %from, "ACME zone DNS: UDP send failed");
        }
    }
    tcp_task.abort();
}

async fn serve_tcp<F>(
    zone: Arc<Zone<F>>,
    listener: tokio::net::TcpListener,
    limiter: Arc<Limiter>,
    cancel: CancellationToken,
) where
    F: Fn(&str) -> Vec<String> + Send + Sync + 'static,
{
    loop {
        let (stream, from) = tokio::select! {
            () = cancel.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(_) => continue,
            },
        };
        if !limiter.allow(from.ip()) {
            continue;
        }
        let (zone, limiter) = (zone.clone(), limiter.clone());
        tokio::spawn(async move {
            let _ = answer_tcp(&zone, stream, from, &limiter).await;
        });
    }
}

/// Answers length-prefixed queries on one connection until it goes idle.
async fn answer_tcp<F: Fn(&str) -> Vec<String>>(
    zone: &Zone<F>,
    mut stream: tokio::net::TcpStream,
    from: SocketAddr,
    limiter: &Limiter,
) -> std::io::Result<()> {
    loop {
        let mut len = [0u8; 2];
        tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut len)).await??;
        let len = usize::from(u16::from_be_bytes(len));
        if len > MAX_TCP_QUERY {
            return Ok(());
        }
        let mut query = vec![0u8; len];
        tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut query)).await??;
        if !limiter.allow(from.ip()) {
            return Ok(());
        }
        let Some(answer) = zone.answer(&query, false) else {
            return Ok(());
        };
        let Ok(prefix) = u16::try_from(answer.len()) else {
            return Ok(());
        };
        stream.write_all(&prefix.to_be_bytes()).await?;
        stream.write_all(&answer).await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_resolver::proto::op::Query;

    fn zone() -> Zone<impl Fn(&str) -> Vec<String>> {
        Zone {
            name: "acme.edge.test".into(),
            values: |id: &str| match id {
                "site1" => vec!["value-one".into(), "value-two".into()],
                "big" => (0..40).map(|i| format!("{i:0>200}")).collect(),
                _ => Vec::new(),
            },
        }
    }

    fn ask(name: &str, kind: RecordType, edns: bool, udp: bool) -> Message {
        let mut query = Message::query();
        query.metadata.id = 7;
        query.metadata.recursion_desired = true;
        query.add_query(Query::query(Name::from_ascii(name).unwrap(), kind));
        if edns {
            query.set_edns(Edns::new());
        }
        let answer = zone().answer(&query.to_vec().unwrap(), udp).unwrap();
        Message::from_vec(&answer).unwrap()
    }

    fn txt(message: &Message) -> Vec<String> {
        message
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::TXT(txt) => Some(txt.to_string()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn answers_the_txt_values_of_a_site_in_flight_and_nothing_else() {
        let got = ask("site1.acme.edge.test.", RecordType::TXT, false, true);
        assert_eq!(got.metadata.id, 7);
        assert!(got.metadata.authoritative && !got.metadata.recursion_available);
        assert_eq!(got.metadata.response_code, ResponseCode::NoError);
        assert_eq!(txt(&got), ["value-one", "value-two"]);
        // Case does not matter.
        assert_eq!(
            txt(&ask("SITE1.Acme.Edge.Test.", RecordType::TXT, false, true)).len(),
            2
        );
        // No order in flight: empty, with the SOA.
        let none = ask("other.acme.edge.test.", RecordType::TXT, false, true);
        assert_eq!(none.metadata.response_code, ResponseCode::NoError);
        assert!(none.answers.is_empty() && none.authorities.len() == 1);
        // Only TXT is answered.
        assert!(
            ask("site1.acme.edge.test.", RecordType::A, false, true)
                .answers
                .is_empty()
        );
        let deeper = ask("x.site1.acme.edge.test.", RecordType::TXT, false, true);
        assert_eq!(deeper.metadata.response_code, ResponseCode::NXDomain);
        let soa = ask("acme.edge.test.", RecordType::SOA, false, true);
        assert_eq!(soa.answers.len(), 1);
    }

    #[test]
    fn names_outside_the_zone_are_refused() {
        for name in ["example.com.", "edge.test.", "xacme.edge.test."] {
            let got = ask(name, RecordType::TXT, false, true);
            assert_eq!(got.metadata.response_code, ResponseCode::Refused, "{name}");
            assert!(got.answers.is_empty());
        }
    }

    #[test]
    fn a_large_answer_is_truncated_over_udp_and_whole_over_tcp() {
        let udp = ask("big.acme.edge.test.", RecordType::TXT, false, true);
        assert!(udp.metadata.truncation && udp.answers.is_empty());
        let with_edns = ask("big.acme.edge.test.", RecordType::TXT, true, true);
        assert!(with_edns.metadata.truncation && with_edns.edns.is_some());
        let tcp = ask("big.acme.edge.test.", RecordType::TXT, false, false);
        assert!(!tcp.metadata.truncation);
        assert_eq!(txt(&tcp).len(), MAX_VALUES);
        // Garbage is not answered.
        assert!(zone().answer(b"\x00\x01garbage", true).is_none());
    }

    #[test]
    fn each_client_gets_its_burst_then_its_rate() {
        let limiter = Limiter::default();
        let start = Instant::now();
        let (a, b) = ("127.0.0.1".parse().unwrap(), "127.0.0.2".parse().unwrap());
        let allowed = (0..200).filter(|_| limiter.allow_at(a, start)).count();
        assert_eq!(allowed, BURST as usize);
        assert!(limiter.allow_at(b, start), "another client is not affected");
        assert!(limiter.allow_at(a, start + Duration::from_millis(20)));
        assert!(!limiter.allow_at(a, start + Duration::from_millis(20)));
    }
}
