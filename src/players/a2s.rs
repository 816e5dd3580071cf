//! Steam's A2S_INFO (the Source server query): the request, its challenge, and the reply's
//! player counts. Pure functions over bytes.

use super::{Players, QueryError};

/// Every A2S packet that is not split starts with these four bytes.
const SIMPLE: [u8; 4] = [0xFF; 4];
/// `T`: A2S_INFO.
pub const INFO_REQUEST: u8 = 0x54;
const PAYLOAD: &[u8] = b"Source Engine Query\0";
/// `A`: S2C_CHALLENGE, the request must be sent again with these four bytes appended.
const CHALLENGE: u8 = 0x41;
/// `I`: the Source reply.
const INFO: u8 = 0x49;
/// `m`: the old GoldSource reply.
const INFO_GOLDSRC: u8 = 0x6D;

/// What a server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Ask again with this challenge.
    Challenge([u8; 4]),
    Info {
        name: String,
        players: Players,
    },
}

/// The A2S_INFO request, with the challenge when the server asked for one.
pub fn request(challenge: Option<[u8; 4]>) -> Vec<u8> {
    let mut p = Vec::with_capacity(29);
    p.extend_from_slice(&SIMPLE);
    p.push(INFO_REQUEST);
    p.extend_from_slice(PAYLOAD);
    if let Some(c) = challenge {
        p.extend_from_slice(&c);
    }
    p
}

/// Whether `packet` is an A2S_INFO request.
pub fn is_info_request(packet: &[u8]) -> bool {
    packet.len() >= 5 + PAYLOAD.len()
        && packet[..4] == SIMPLE
        && packet[4] == INFO_REQUEST
        && packet[5..5 + PAYLOAD.len()] == *PAYLOAD
}

struct Reader<'a> {
    b: &'a [u8],
}

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, QueryError> {
        let (&x, rest) = self
            .b
            .split_first()
            .ok_or_else(|| QueryError::Malformed("A2S_INFO reply ends early".into()))?;
        self.b = rest;
        Ok(x)
    }

    fn string(&mut self) -> Result<String, QueryError> {
        let end = self
            .b
            .iter()
            .position(|&c| c == 0)
            .ok_or_else(|| QueryError::Malformed("A2S_INFO string not terminated".into()))?;
        let s = String::from_utf8_lossy(&self.b[..end]).into_owned();
        self.b = &self.b[end + 1..];
        Ok(s)
    }

    fn skip(&mut self, n: usize) -> Result<(), QueryError> {
        if self.b.len() < n {
            return Err(QueryError::Malformed("A2S_INFO reply ends early".into()));
        }
        self.b = &self.b[n..];
        Ok(())
    }
}

/// Parses a server's answer to [`request`].
pub fn parse(packet: &[u8]) -> Result<Reply, QueryError> {
    if packet.len() < 5 || packet[..4] != SIMPLE {
        return Err(QueryError::Malformed(
            "not a simple A2S packet (split replies are not used for A2S_INFO)".into(),
        ));
    }
    let mut r = Reader { b: &packet[5..] };
    match packet[4] {
        CHALLENGE => {
            let c =
                r.b.get(..4)
                    .ok_or_else(|| QueryError::Malformed("short challenge".into()))?;
            Ok(Reply::Challenge([c[0], c[1], c[2], c[3]]))
        }
        INFO => {
            r.byte()?; // protocol
            let name = r.string()?;
            r.string()?; // map
            r.string()?; // folder
            r.string()?; // game
            r.skip(2)?; // app id
            let online = u32::from(r.byte()?);
            let max = u32::from(r.byte()?);
            Ok(Reply::Info {
                name,
                players: Players { online, max },
            })
        }
        INFO_GOLDSRC => {
            r.string()?; // address
            let name = r.string()?;
            r.string()?; // map
            r.string()?; // folder
            r.string()?; // game
            let online = u32::from(r.byte()?);
            let max = u32::from(r.byte()?);
            Ok(Reply::Info {
                name,
                players: Players { online, max },
            })
        }
        other => Err(QueryError::Malformed(format!(
            "unexpected A2S reply type 0x{other:02x}"
        ))),
    }
}

/// A Source A2S_INFO reply (what a game, or peon holding a sleeping game's ports, sends).
pub fn info_reply(name: &str, map: &str, players: Players) -> Vec<u8> {
    let mut p = Vec::with_capacity(64 + name.len());
    p.extend_from_slice(&SIMPLE);
    p.push(INFO);
    p.push(17); // protocol
    for s in [name, map, "peon", "peon"] {
        p.extend_from_slice(s.as_bytes());
        p.push(0);
    }
    p.extend_from_slice(&0u16.to_le_bytes()); // app id
    p.push(players.online.min(255) as u8);
    p.push(players.max.min(255) as u8);
    p.push(0); // bots
    p.push(b'd'); // dedicated
    p.push(b'l'); // linux
    p.push(0); // public
    p.push(0); // no VAC
    p
}

/// A challenge reply.
pub fn challenge_reply(c: [u8; 4]) -> Vec<u8> {
    let mut p = SIMPLE.to_vec();
    p.push(CHALLENGE);
    p.extend_from_slice(&c);
    p
}

/// The challenge a request carries, if any.
pub fn request_challenge(packet: &[u8]) -> Option<[u8; 4]> {
    let c = packet.get(5 + PAYLOAD.len()..5 + PAYLOAD.len() + 4)?;
    Some([c[0], c[1], c[2], c[3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_and_challenge_round_trip() {
        let r = request(None);
        assert_eq!(r.len(), 25);
        assert!(is_info_request(&r));
        assert_eq!(request_challenge(&r), None);
        let with = request(Some([1, 2, 3, 4]));
        assert!(is_info_request(&with));
        assert_eq!(request_challenge(&with), Some([1, 2, 3, 4]));
        assert_eq!(
            parse(&challenge_reply([9, 8, 7, 6])).unwrap(),
            Reply::Challenge([9, 8, 7, 6])
        );
        assert!(!is_info_request(b"hello"));
    }

    #[test]
    fn info_reply_round_trip() {
        let p = info_reply("My Server", "de_dust", Players { online: 3, max: 16 });
        assert_eq!(
            parse(&p).unwrap(),
            Reply::Info {
                name: "My Server".into(),
                players: Players { online: 3, max: 16 }
            }
        );
    }

    #[test]
    fn a_real_source_reply_and_goldsource() {
        // Captured shape: header, protocol 17, strings, app id 240, 5 of 24 players, 0 bots...
        let mut p = vec![0xFF, 0xFF, 0xFF, 0xFF, 0x49, 0x11];
        p.extend_from_slice(b"srv\0map\0cstrike\0Counter-Strike\0");
        p.extend_from_slice(&[0xF0, 0x00, 5, 24, 0, b'd', b'l', 0, 1]);
        assert_eq!(
            parse(&p).unwrap(),
            Reply::Info {
                name: "srv".into(),
                players: Players { online: 5, max: 24 }
            }
        );
        let mut g = vec![0xFF, 0xFF, 0xFF, 0xFF, 0x6D];
        g.extend_from_slice(b"1.2.3.4:27015\0old\0map\0valve\0HL\0");
        g.extend_from_slice(&[2, 8, 47]);
        assert!(matches!(
            parse(&g).unwrap(),
            Reply::Info {
                players: Players { online: 2, max: 8 },
                ..
            }
        ));
        assert!(parse(&[0xFF, 0xFF, 0xFF, 0xFF, 0x49, 0x11, b'x']).is_err());
        assert!(parse(&[0xFE, 0xFF, 0xFF, 0xFF, 0x49]).is_err());
    }
}
