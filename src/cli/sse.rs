//! Server-Sent Events, client side: a parser that takes the body in chunks cut anywhere (even
//! inside a line or a UTF-8 character) and yields whole events, and a reader over a byte stream
//! such as reqwest's `bytes_stream()`.
//!
//! It follows the HTML event-stream rules the daemon's streams use: lines end with `\n`, `\r\n`
//! or `\r`; `data:` lines are joined with `\n`; a blank line ends an event; lines starting with
//! `:` are comments (keep-alives); one space after the colon is dropped; an event without data is
//! not dispatched, and an unfinished event at the end of the stream is dropped.

use std::collections::VecDeque;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};

/// One event of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The `event:` field, if the event had one.
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
    /// The last `id:` seen so far in the stream.
    pub id: Option<String>,
}

/// Turns chunks of an event stream into events.
#[derive(Debug, Default)]
pub struct Parser {
    /// The bytes of the line not yet ended.
    line: Vec<u8>,
    /// The last chunk ended with `\r`: a `\n` starting the next one belongs to that line end.
    after_cr: bool,
    /// A line was already read (a byte-order mark is stripped only from the first).
    started: bool,
    data: String,
    event: Option<String>,
    id: Option<String>,
}

impl Parser {
    pub fn new() -> Parser {
        Parser::default()
    }

    /// Reads one chunk and returns the events it completed.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<Event> {
        let mut out = Vec::new();
        let mut rest = chunk;
        if self.after_cr && rest.first() == Some(&b'\n') {
            rest = &rest[1..];
        }
        self.after_cr = false;
        while let Some(end) = rest.iter().position(|&b| b == b'\n' || b == b'\r') {
            self.line.extend_from_slice(&rest[..end]);
            let line = std::mem::take(&mut self.line);
            if let Some(e) = self.take_line(&line) {
                out.push(e);
            }
            let cr = rest[end] == b'\r';
            rest = &rest[end + 1..];
            if cr {
                match rest.first() {
                    Some(b'\n') => rest = &rest[1..],
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
        }
        self.line.extend_from_slice(rest);
        out
    }

    /// Handles one whole line; returns an event when the line is blank and ends one.
    fn take_line(&mut self, raw: &[u8]) -> Option<Event> {
        let text = String::from_utf8_lossy(raw);
        let mut line: &str = &text;
        if !self.started {
            self.started = true;
            line = line.strip_prefix('\u{feff}').unwrap_or(line);
        }
        if line.is_empty() {
            return self.dispatch();
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "data" => {
                self.data.push_str(value);
                self.data.push('\n');
            }
            "event" => self.event = Some(value.to_owned()),
            "id" if !value.contains('\0') => self.id = Some(value.to_owned()),
            // `retry` and unknown fields are ignored.
            _ => {}
        }
        None
    }

    fn dispatch(&mut self) -> Option<Event> {
        let event = self.event.take();
        if self.data.is_empty() {
            return None;
        }
        let mut data = std::mem::take(&mut self.data);
        if data.ends_with('\n') {
            data.pop();
        }
        Some(Event {
            event,
            data,
            id: self.id.clone(),
        })
    }
}

/// Reads events from a stream of byte chunks.
pub struct Reader<S> {
    chunks: S,
    parser: Parser,
    ready: VecDeque<Event>,
}

impl<S, E> Reader<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    pub fn new(chunks: S) -> Reader<S> {
        Reader {
            chunks,
            parser: Parser::new(),
            ready: VecDeque::new(),
        }
    }

    /// The next event; `None` when the stream has ended, an error when reading it failed.
    pub async fn next(&mut self) -> Option<Result<Event, E>> {
        loop {
            if let Some(e) = self.ready.pop_front() {
                return Some(Ok(e));
            }
            match self.chunks.next().await? {
                Ok(chunk) => self.ready.extend(self.parser.feed(&chunk)),
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(events: &[Event]) -> Vec<&str> {
        events.iter().map(|e| e.data.as_str()).collect()
    }

    /// Feeds `input` cut at every possible place (and byte by byte) and checks that the events
    /// are the same as when fed whole.
    fn same_in_any_chunks(input: &[u8]) -> Vec<Event> {
        let whole = Parser::new().feed(input);
        for cut in 0..=input.len() {
            let mut p = Parser::new();
            let mut got = p.feed(&input[..cut]);
            got.extend(p.feed(&input[cut..]));
            assert_eq!(got, whole, "cut at {cut}");
        }
        let mut p = Parser::new();
        let bytewise: Vec<Event> = input.iter().flat_map(|b| p.feed(&[*b])).collect();
        assert_eq!(bytewise, whole, "byte by byte");
        whole
    }

    #[test]
    fn data_lines_make_events_ended_by_a_blank_line() {
        let ev = same_in_any_chunks(b"data: {\"type\":\"log\"}\n\ndata: two\n\n");
        assert_eq!(data(&ev), ["{\"type\":\"log\"}", "two"]);
    }

    #[test]
    fn multi_line_data_is_joined_with_newlines() {
        let ev = same_in_any_chunks(b"data: a\ndata: b\ndata:\ndata:c\n\n");
        assert_eq!(data(&ev), ["a\nb\n\nc"]);
    }

    #[test]
    fn comments_and_unknown_fields_are_ignored() {
        let ev = same_in_any_chunks(b": keep-alive\n\n:\n\nretry: 100\nfoo: bar\ndata: x\n\n");
        assert_eq!(data(&ev), ["x"]);
    }

    #[test]
    fn every_line_ending_works_even_split_across_chunks() {
        let ev = same_in_any_chunks(b"data: a\r\n\r\ndata: b\r\rdata: c\n\ndata: d\r\n\n");
        assert_eq!(data(&ev), ["a", "b", "c", "d"]);
        // `\r` at a chunk's end followed by `\n` is one line end, not a blank line between.
        let mut p = Parser::new();
        assert!(p.feed(b"data: a\r").is_empty());
        assert!(p.feed(b"\ndata: b\r").is_empty());
        assert_eq!(data(&p.feed(b"\n\r\n")), ["a\nb"]);
    }

    #[test]
    fn a_character_cut_between_chunks_is_kept_whole() {
        let ev = same_in_any_chunks("data: héllo wörld ✓\n\n".as_bytes());
        assert_eq!(data(&ev), ["héllo wörld ✓"]);
    }

    #[test]
    fn event_names_ids_and_the_space_after_the_colon() {
        let ev =
            same_in_any_chunks(b"\xEF\xBB\xBFevent: state\nid: 7\ndata:  two spaces\n\ndata\n\n");
        assert_eq!(
            ev,
            [
                Event {
                    event: Some("state".into()),
                    data: " two spaces".into(),
                    id: Some("7".into())
                },
                Event {
                    event: None,
                    data: String::new(),
                    id: Some("7".into())
                }
            ]
        );
    }

    #[test]
    fn events_without_data_are_not_dispatched() {
        let mut p = Parser::new();
        assert!(p.feed(b"event: x\n\n").is_empty());
        // The next event does not inherit the dropped event's name.
        let ev = p.feed(b"data: y\n\n");
        assert_eq!(data(&ev), ["y"]);
        assert_eq!(ev[0].event, None);
    }

    #[tokio::test]
    async fn the_reader_reads_events_from_a_chunked_stream() {
        let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
            Ok(Bytes::from_static(b"data: o")),
            Ok(Bytes::from_static(b"ne\n\n:ping\n\ndata: two\n")),
            Ok(Bytes::from_static(b"\ndata: cut off")),
        ];
        let mut r = Reader::new(futures_util::stream::iter(chunks));
        let mut got = Vec::new();
        while let Some(e) = r.next().await {
            got.push(e.map(|e| e.data).unwrap_or_else(|e| format!("error {e}")));
        }
        assert_eq!(got, ["one", "two"]);

        let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
            Ok(Bytes::from_static(b"data: a\n\n")),
            Err(std::io::Error::other("reset")),
        ];
        let mut r = Reader::new(futures_util::stream::iter(chunks));
        assert_eq!(
            r.next().await.map(|e| e.map(|e| e.data).ok()),
            Some(Some("a".into()))
        );
        assert!(matches!(r.next().await, Some(Err(_))));
    }
}
