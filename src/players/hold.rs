//! Holding a sleeping game's ports: peon binds the host ports the game publishes (TCP listeners
//! and UDP sockets) and reports the first connection or packet, so that the game can be woken.
//! An A2S_INFO query meanwhile is answered (the server shows in browsers as starting) and does
//! not wake it: server browsers ask all the time.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::{Players, a2s};

/// A transport of a held port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Udp,
}

/// What woke the game.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wake {
    pub port: u16,
    pub transport: Transport,
    pub from: SocketAddr,
}

/// Held ports; dropping or [`Holder::release`] closes them.
pub struct Holder {
    tasks: JoinSet<()>,
    woke: watch::Receiver<Option<Wake>>,
}

impl Holder {
    /// Binds every port on `ip` (all or nothing). `name` is what an A2S_INFO query is told.
    pub async fn bind(
        ip: IpAddr,
        ports: &[(u16, Transport)],
        name: &str,
    ) -> std::io::Result<Holder> {
        let (tx, woke) = watch::channel(None);
        let tx = Arc::new(Mutex::new(Some(tx)));
        let mut tcp = Vec::new();
        let mut udp = Vec::new();
        for &(port, t) in ports {
            let addr = SocketAddr::new(ip, port);
            match t {
                Transport::Tcp => tcp.push((port, TcpListener::bind(addr).await?)),
                Transport::Udp => udp.push((port, UdpSocket::bind(addr).await?)),
            }
        }
        let mut tasks = JoinSet::new();
        let info = a2s::info_reply(name, "starting", Players { online: 0, max: 0 });
        for (port, l) in tcp {
            let tx = tx.clone();
            tasks.spawn(async move {
                loop {
                    if let Ok((conn, from)) = l.accept().await {
                        // The client retries once the game listens; this connection is closed.
                        drop(conn);
                        fire(
                            &tx,
                            Wake {
                                port,
                                transport: Transport::Tcp,
                                from,
                            },
                        );
                    }
                }
            });
        }
        for (port, s) in udp {
            let tx = tx.clone();
            let info = info.clone();
            tasks.spawn(async move {
                let mut buf = [0u8; 1500];
                loop {
                    let Ok((n, from)) = s.recv_from(&mut buf).await else {
                        continue;
                    };
                    if a2s::is_info_request(&buf[..n]) {
                        let _ = s.send_to(&info, from).await;
                        continue;
                    }
                    fire(
                        &tx,
                        Wake {
                            port,
                            transport: Transport::Udp,
                            from,
                        },
                    );
                }
            });
        }
        Ok(Holder { tasks, woke })
    }

    /// Waits for the first connection or packet.
    pub async fn woken(&mut self) -> Wake {
        loop {
            if let Some(w) = self.woke.borrow_and_update().clone() {
                return w;
            }
            if self.woke.changed().await.is_err() {
                // Every task ended (cannot happen while they loop): wait for ever.
                std::future::pending::<()>().await;
            }
        }
    }

    /// Closes every held port; when it returns, the ports are free.
    pub async fn release(mut self) {
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
    }
}

fn fire(tx: &Mutex<Option<watch::Sender<Option<Wake>>>>, w: Wake) {
    if let Some(tx) = tx.lock().unwrap_or_else(|p| p.into_inner()).take() {
        let _ = tx.send(Some(w));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    #[tokio::test]
    async fn a_query_is_answered_a_packet_wakes_and_release_frees_the_ports() {
        let (tp, up) = (free_port(), free_port());
        let ip: IpAddr = [127, 0, 0, 1].into();
        let mut h = Holder::bind(
            ip,
            &[(tp, Transport::Tcp), (up, Transport::Udp)],
            "g (starting)",
        )
        .await
        .unwrap();
        let c = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        c.connect((ip, up)).await.unwrap();
        c.send(&a2s::request(None)).await.unwrap();
        let mut b = [0u8; 1400];
        let n = c.recv(&mut b).await.unwrap();
        assert!(
            matches!(a2s::parse(&b[..n]).unwrap(), a2s::Reply::Info { name, .. } if name == "g (starting)")
        );
        c.send(b"join").await.unwrap();
        let w = h.woken().await;
        assert_eq!((w.port, w.transport), (up, Transport::Udp));
        h.release().await;
        // Both ports can be bound again at once.
        let _t = std::net::TcpListener::bind((ip, tp)).unwrap();
        let _u = std::net::UdpSocket::bind((ip, up)).unwrap();

        let mut h = Holder::bind(ip, &[(tp, Transport::Tcp)], "g").await;
        assert!(h.is_err(), "the port is taken by the test now");
        drop(_t);
        h = Holder::bind(ip, &[(tp, Transport::Tcp)], "g").await;
        let mut h = h.unwrap();
        let _c = tokio::net::TcpStream::connect((ip, tp)).await.unwrap();
        assert_eq!(h.woken().await.transport, Transport::Tcp);
        h.release().await;
    }
}
