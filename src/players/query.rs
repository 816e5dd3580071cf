//! Sends a query to a game and reads its player counts, with a timeout.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use super::{Players, QueryError, a2s, slp};

/// How a game is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Steam's A2S_INFO over UDP.
    A2s,
    /// Minecraft's Server List Ping over TCP.
    Minecraft,
}

/// Asks the game at `addr`; fails when it does not answer within `timeout`.
pub async fn ask(
    proto: Protocol,
    addr: SocketAddr,
    timeout: Duration,
) -> Result<Players, QueryError> {
    let work = async {
        match proto {
            Protocol::A2s => ask_a2s(addr).await,
            Protocol::Minecraft => ask_slp(addr).await,
        }
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| QueryError::Timeout(timeout))?
}

async fn ask_a2s(addr: SocketAddr) -> Result<Players, QueryError> {
    let local: SocketAddr = if addr.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let sock = UdpSocket::bind(local).await?;
    sock.connect(addr).await?;
    let mut challenge = None;
    let mut buf = vec![0u8; 1400];
    // A server asks for a challenge at most once; a second is tolerated.
    for _ in 0..3 {
        sock.send(&a2s::request(challenge)).await?;
        let n = sock.recv(&mut buf).await?;
        match a2s::parse(&buf[..n])? {
            a2s::Reply::Challenge(c) => challenge = Some(c),
            a2s::Reply::Info { players, .. } => return Ok(players),
        }
    }
    Err(QueryError::Malformed("challenged again and again".into()))
}

async fn ask_slp(addr: SocketAddr) -> Result<Players, QueryError> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(&slp::status_request(&addr.ip().to_string(), addr.port()))
        .await?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        if let Some((body, _)) = slp::take_packet(&buf)? {
            return slp::parse_status(body);
        }
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(QueryError::Malformed(
                "connection closed before the status".into(),
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a2s_with_a_challenge_and_slp_against_local_responders() {
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let uaddr = udp.local_addr().unwrap();
        tokio::spawn(async move {
            let mut b = [0u8; 1400];
            loop {
                let (n, from) = udp.recv_from(&mut b).await.unwrap();
                let reply = match a2s::request_challenge(&b[..n]) {
                    Some([1, 2, 3, 4]) => a2s::info_reply("x", "m", Players { online: 2, max: 9 }),
                    _ => a2s::challenge_reply([1, 2, 3, 4]),
                };
                udp.send_to(&reply, from).await.unwrap();
            }
        });
        let p = ask(Protocol::A2s, uaddr, Duration::from_secs(2))
            .await
            .unwrap();
        assert_eq!(p, Players { online: 2, max: 9 });

        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let taddr = tcp.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut c, _) = tcp.accept().await.unwrap();
            let mut b = [0u8; 512];
            let _ = c.read(&mut b).await.unwrap();
            c.write_all(&slp::status_response(r#"{"players":{"online":1,"max":5}}"#))
                .await
                .unwrap();
        });
        let p = ask(Protocol::Minecraft, taddr, Duration::from_secs(2))
            .await
            .unwrap();
        assert_eq!(p, Players { online: 1, max: 5 });

        // Nobody there: a timeout, not a hang.
        let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let r = ask(
            Protocol::A2s,
            silent.local_addr().unwrap(),
            Duration::from_millis(200),
        )
        .await;
        assert!(matches!(r, Err(QueryError::Timeout(_))), "{r:?}");
    }
}
