//! What a hook receives: the message of an event, its JSON body (peon's own, or a Discord
//! embed), and the signature header.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Sha256;

/// The event names a hook may ask for.
pub const EVENTS: [&str; 13] = [
    "started",
    "stopped",
    "crashed",
    "restarted",
    "gave_up",
    "backup_done",
    "backup_failed",
    "update_rolled_back",
    "rollout_done",
    "idle_stop",
    "node_down",
    "node_up",
    "test",
];

/// One notification, before it is shaped for a receiver.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// One of [`EVENTS`].
    pub event: String,
    pub uid: String,
    /// RFC 3339, UTC.
    pub time: String,
    /// One line for people.
    pub summary: String,
    /// The game's last lines (a crash).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub last_lines: Vec<String>,
    /// The event as the event stream has it.
    #[serde(default)]
    pub data: Value,
}

/// How a receiver wants the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// peon's JSON.
    Generic,
    /// Discord's `embeds`.
    Discord,
}

impl Format {
    /// Discord's webhook URLs get embeds.
    pub fn detect(url: &str) -> Format {
        let rest = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"))
            .unwrap_or(url);
        let host = rest.split('/').next().unwrap_or_default();
        let discord = ["discord.com", "discordapp.com"]
            .iter()
            .any(|d| host == *d || host.ends_with(&format!(".{d}")));
        if discord && rest.contains("/api/webhooks/") {
            Format::Discord
        } else {
            Format::Generic
        }
    }

    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "generic" => Some(Format::Generic),
            "discord" => Some(Format::Discord),
            _ => None,
        }
    }
}

/// Discord's embed colours by event: red for trouble, green for good news, grey otherwise.
fn colour(event: &str) -> u32 {
    match event {
        "crashed" | "gave_up" | "backup_failed" | "update_rolled_back" | "node_down" => 0x00E7_4C3C,
        "started" | "restarted" | "backup_done" | "rollout_done" | "node_up" => 0x002E_CC71,
        _ => 0x0095_A5A6,
    }
}

/// Discord's limit on an embed's description.
const DISCORD_DESCRIPTION: usize = 4096;

/// The body sent for `m` in `format`, with the delivery's id.
pub fn body(m: &Message, format: Format, delivery: &str) -> Vec<u8> {
    let v = match format {
        Format::Generic => json!({
            "event": m.event,
            "uid": m.uid,
            "time": m.time,
            "delivery": delivery,
            "summary": m.summary,
            "last_lines": m.last_lines,
            "data": m.data,
        }),
        Format::Discord => {
            let mut description = m.summary.clone();
            if !m.last_lines.is_empty() {
                // The newest lines fit; a fence inside the game's output is broken up.
                let mut lines = String::new();
                for l in m.last_lines.iter().rev() {
                    let l = l.replace("```", "`\u{200b}``");
                    if description.len() + lines.len() + l.len() + 16 > DISCORD_DESCRIPTION {
                        break;
                    }
                    lines.insert_str(0, &format!("{l}\n"));
                }
                description.push_str(&format!("\n```\n{lines}```"));
            }
            json!({
                "username": "peon",
                "embeds": [{
                    "title": format!("{}: {}", m.uid, m.event.replace('_', " ")),
                    "description": description,
                    "color": colour(&m.event),
                    "timestamp": m.time,
                    "footer": {"text": format!("peon · {delivery}")},
                }],
            })
        }
    };
    serde_json::to_vec(&v).unwrap_or_default()
}

/// `sha256=<hex of HMAC-SHA256(secret, body)>`: the `X-Peon-Signature` header.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        // HMAC takes keys of any length.
        Err(_) => return String::new(),
    };
    mac.update(body);
    let bytes = mac.finalize().into_bytes();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crash() -> Message {
        Message {
            event: "crashed".into(),
            uid: "demo.a".into(),
            time: "2026-01-01T00:00:00Z".into(),
            summary: "demo.a crashed (exit code 3)".into(),
            last_lines: vec!["one".into(), "two ``` three".into()],
            data: json!({"type": "exit"}),
        }
    }

    #[test]
    fn discord_urls_are_detected() {
        for u in [
            "https://discord.com/api/webhooks/1/abc",
            "https://discordapp.com/api/webhooks/1/abc",
            "https://ptb.discord.com/api/webhooks/1/abc",
        ] {
            assert_eq!(Format::detect(u), Format::Discord, "{u}");
        }
        for u in [
            "https://example.com/api/webhooks/1",
            "https://discord.com.evil.net/api/webhooks/1",
            "https://discord.com/other",
            "http://127.0.0.1:9/hook",
        ] {
            assert_eq!(Format::detect(u), Format::Generic, "{u}");
        }
    }

    #[test]
    fn bodies_and_the_signature() {
        let g: Value = serde_json::from_slice(&body(&crash(), Format::Generic, "d1")).unwrap();
        assert_eq!(g["event"], "crashed");
        assert_eq!(g["delivery"], "d1");
        assert_eq!(g["last_lines"][1], "two ``` three");
        let d: Value = serde_json::from_slice(&body(&crash(), Format::Discord, "d1")).unwrap();
        let e = &d["embeds"][0];
        assert_eq!(e["title"], "demo.a: crashed");
        assert_eq!(e["color"], 0x00E7_4C3C);
        let desc = e["description"].as_str().unwrap();
        assert!(
            desc.starts_with("demo.a crashed (exit code 3)\n```\none\n"),
            "{desc}"
        );
        assert!(
            desc.ends_with("```") && desc.matches("```").count() == 2,
            "{desc}"
        );
        // RFC 4231 test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
