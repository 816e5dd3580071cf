//! Minecraft's Server List Ping (the modern one, 1.7 and later): a handshake and a status
//! request over TCP, answered by one packet with JSON (`players.online`, `players.max`).
//! Packets are framed by a VarInt length. Pure functions over bytes.

use super::{Players, QueryError};

/// Appends `v` as a VarInt.
pub fn put_varint(out: &mut Vec<u8>, v: i32) {
    let mut u = v as u32;
    loop {
        if u & !0x7F == 0 {
            out.push(u as u8);
            return;
        }
        out.push((u & 0x7F | 0x80) as u8);
        u >>= 7;
    }
}

/// Reads a VarInt at the start of `b`: the value and the bytes it took; `Ok(None)` when more
/// bytes are needed.
pub fn get_varint(b: &[u8]) -> Result<Option<(i32, usize)>, QueryError> {
    let mut v: u32 = 0;
    for (i, &x) in b.iter().enumerate() {
        if i >= 5 {
            return Err(QueryError::Malformed("VarInt longer than 5 bytes".into()));
        }
        v |= u32::from(x & 0x7F) << (7 * i);
        if x & 0x80 == 0 {
            return Ok(Some((v as i32, i + 1)));
        }
    }
    Ok(None)
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    put_varint(out, s.len() as i32);
    out.extend_from_slice(s.as_bytes());
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 5);
    put_varint(&mut out, body.len() as i32);
    out.extend_from_slice(body);
    out
}

/// The handshake (next state: status) followed by the status request.
pub fn status_request(host: &str, port: u16) -> Vec<u8> {
    let mut hs = Vec::new();
    put_varint(&mut hs, 0x00);
    put_varint(&mut hs, -1); // protocol version: any, for a status ping
    put_string(&mut hs, host);
    hs.extend_from_slice(&port.to_be_bytes());
    put_varint(&mut hs, 1);
    let mut out = frame(&hs);
    out.extend_from_slice(&frame(&[0x00]));
    out
}

/// A whole packet at the start of `buf`: its body and the bytes it took; `Ok(None)` when more
/// bytes are needed.
pub fn take_packet(buf: &[u8]) -> Result<Option<(&[u8], usize)>, QueryError> {
    let Some((len, n)) = get_varint(buf)? else {
        return Ok(None);
    };
    let len = usize::try_from(len)
        .ok()
        .filter(|l| *l <= 1 << 20)
        .ok_or_else(|| QueryError::Malformed(format!("packet length {len}")))?;
    if buf.len() < n + len {
        return Ok(None);
    }
    Ok(Some((&buf[n..n + len], n + len)))
}

/// The player counts of a status response packet's body.
pub fn parse_status(body: &[u8]) -> Result<Players, QueryError> {
    let Some((id, n)) = get_varint(body)? else {
        return Err(QueryError::Malformed("empty packet".into()));
    };
    if id != 0 {
        return Err(QueryError::Malformed(format!(
            "packet id {id}, not a status"
        )));
    }
    let rest = &body[n..];
    let Some((len, m)) = get_varint(rest)? else {
        return Err(QueryError::Malformed("no JSON".into()));
    };
    let json = rest
        .get(m..m + usize::try_from(len).unwrap_or(usize::MAX))
        .ok_or_else(|| QueryError::Malformed("JSON cut short".into()))?;
    let v: serde_json::Value =
        serde_json::from_slice(json).map_err(|e| QueryError::Malformed(e.to_string()))?;
    let n = |k: &str| {
        v["players"][k]
            .as_u64()
            .and_then(|x| u32::try_from(x).ok())
            .ok_or_else(|| QueryError::Malformed(format!("no players.{k}")))
    };
    Ok(Players {
        online: n("online")?,
        max: n("max")?,
    })
}

/// A status response packet (framed), as a server sends it.
pub fn status_response(json: &str) -> Vec<u8> {
    let mut body = Vec::new();
    put_varint(&mut body, 0x00);
    put_string(&mut body, json);
    frame(&body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints() {
        for (v, bytes) in [
            (0, vec![0x00]),
            (1, vec![0x01]),
            (127, vec![0x7F]),
            (128, vec![0x80, 0x01]),
            (25565, vec![0xDD, 0xC7, 0x01]),
            (-1, vec![0xFF, 0xFF, 0xFF, 0xFF, 0x0F]),
        ] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(out, bytes, "{v}");
            assert_eq!(get_varint(&out).unwrap(), Some((v, bytes.len())));
        }
        assert_eq!(get_varint(&[0x80]).unwrap(), None);
        assert!(get_varint(&[0x80; 6]).is_err());
    }

    #[test]
    fn request_shape_and_response_round_trip() {
        let r = status_request("localhost", 25565);
        let (hs, n) = take_packet(&r).unwrap().unwrap();
        assert_eq!(hs[0], 0x00);
        assert_eq!(&hs[hs.len() - 3..], &[0x63, 0xDD, 0x01]);
        assert_eq!(take_packet(&r[n..]).unwrap().unwrap().0, &[0x00]);
        let resp = status_response(
            r#"{"version":{"name":"1.20","protocol":763},"players":{"max":20,"online":4},"description":{"text":"hi"}}"#,
        );
        assert_eq!(take_packet(&resp[..3]).unwrap(), None);
        let (body, _) = take_packet(&resp).unwrap().unwrap();
        assert_eq!(parse_status(body).unwrap(), Players { online: 4, max: 20 });
        let bad = status_response(r#"{"players":{}}"#);
        assert!(parse_status(take_packet(&bad).unwrap().unwrap().0).is_err());
    }
}
