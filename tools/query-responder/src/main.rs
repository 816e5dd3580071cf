//! peon's test stand-in for a game's query port: answers Steam's A2S_INFO over UDP (asking for a
//! challenge first) and Minecraft's Server List Ping over TCP on `$QUERY_PORT`, with the player
//! count in `$PLAYERS_FILE` (`N` or `N/MAX`; default `/home/steam/user/players`). While the file
//! is missing it does not answer at all (a game that does not answer queries). No dependencies:
//! built static for the busybox test image.

use std::io::{Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::time::Duration;

const CHALLENGE: [u8; 4] = [0x0A, 0x0B, 0x0C, 0x0D];

fn players(file: &str) -> Option<(u8, u8)> {
    let text = std::fs::read_to_string(file).ok()?;
    let text = text.trim();
    let (n, max) = text.split_once('/').unwrap_or((text, "16"));
    Some((n.trim().parse().ok()?, max.trim().parse().ok()?))
}

fn a2s_info(n: u8, max: u8) -> Vec<u8> {
    let mut p = vec![0xFF, 0xFF, 0xFF, 0xFF, 0x49, 17];
    for s in ["peon test game", "world", "peon", "peon test"] {
        p.extend_from_slice(s.as_bytes());
        p.push(0);
    }
    p.extend_from_slice(&[0, 0, n, max, 0, b'd', b'l', 0, 0]);
    p
}

fn udp(port: u16, file: String) {
    let s = UdpSocket::bind(("0.0.0.0", port)).expect("bind udp");
    let mut b = [0u8; 1500];
    loop {
        let Ok((n, from)) = s.recv_from(&mut b) else {
            continue;
        };
        let req = &b[..n];
        if n < 25 || req[..5] != [0xFF, 0xFF, 0xFF, 0xFF, 0x54] {
            continue;
        }
        let Some((p, max)) = players(&file) else {
            continue;
        };
        let reply = if req.len() >= 29 && req[25..29] == CHALLENGE {
            a2s_info(p, max)
        } else {
            let mut c = vec![0xFF, 0xFF, 0xFF, 0xFF, 0x41];
            c.extend_from_slice(&CHALLENGE);
            c
        };
        let _ = s.send_to(&reply, from);
    }
}

fn varint(out: &mut Vec<u8>, v: u32) {
    let mut u = v;
    loop {
        if u & !0x7F == 0 {
            out.push(u as u8);
            return;
        }
        out.push((u & 0x7F | 0x80) as u8);
        u >>= 7;
    }
}

fn tcp(port: u16, file: String) {
    let l = TcpListener::bind(("0.0.0.0", port)).expect("bind tcp");
    for conn in l.incoming() {
        let Ok(mut c) = conn else { continue };
        let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
        // The handshake and the status request: read what comes, then answer.
        let mut b = [0u8; 512];
        let _ = c.read(&mut b);
        let Some((p, max)) = players(&file) else {
            continue;
        };
        let json = format!(
            "{{\"version\":{{\"name\":\"peon\",\"protocol\":763}},\"players\":{{\"max\":{max},\"online\":{p}}},\"description\":{{\"text\":\"peon test\"}}}}"
        );
        let mut body = vec![0x00];
        varint(&mut body, json.len() as u32);
        body.extend_from_slice(json.as_bytes());
        let mut out = Vec::new();
        varint(&mut out, body.len() as u32);
        out.extend_from_slice(&body);
        let _ = c.write_all(&out);
    }
}

fn main() {
    let port: u16 = std::env::var("QUERY_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .expect("QUERY_PORT");
    let file =
        std::env::var("PLAYERS_FILE").unwrap_or_else(|_| "/home/steam/user/players".to_owned());
    let f = file.clone();
    std::thread::spawn(move || udp(port, f));
    tcp(port, file);
}
