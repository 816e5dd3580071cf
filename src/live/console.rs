//! One server's console, as pure logic (no Docker here).
//!
//! The attach task feeds the game's raw output (stdout and stderr chunks, with arbitrary
//! boundaries) into [`Console::push_bytes`] and installs the attach's stdin writer with
//! [`Console::set_input`]. The console:
//!
//! - splits the output into lines (`\n`, a trailing `\r` stripped, invalid UTF-8 decoded lossily);
//!   a line over [`MAX_LINE_BYTES`] is cut at a char boundary, marked with [`CUT_MARKER`], and the
//!   rest of it (up to its newline) is discarded;
//! - keeps a ring of recent lines ([`Console::recent`]);
//! - fans lines, status changes and notices out as [`Frame`]s to subscribers
//!   ([`Console::subscribe`]), each with a bounded queue: pushing never blocks, and a subscriber
//!   whose queue is full is dropped and flagged ([`Subscription::dropped_for_lag`]);
//! - limits the output to `max_lines_per_sec` lines in any fixed one-second window: the lines
//!   over the limit are neither stored nor delivered, and one notice is sent when throttling
//!   starts and one when it ends;
//! - writes commands to the game's stdin ([`Console::send_command`]), one at a time.
//!
//! A `Console` is shared as `Arc<Console>`; its state sits behind a `std::sync::Mutex` that is
//! never held across an await.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

/// The longest line kept, in bytes (without the [`CUT_MARKER`]); longer lines are cut.
pub const MAX_LINE_BYTES: usize = 4096;

/// Appended to a line that was cut at [`MAX_LINE_BYTES`].
pub const CUT_MARKER: &str = " …(cut)";

/// The longest command accepted by [`Console::send_command`], in bytes (without its newline).
pub const MAX_COMMAND_BYTES: usize = 4096;

/// Bytes buffered beyond [`MAX_LINE_BYTES`] before a line is known to be too long: room for a
/// trailing `\r` and for a multi-byte char straddling the limit.
const LINE_SLACK: usize = 4;

/// The rate limit's window.
const WINDOW: Duration = Duration::from_secs(1);

/// Tuning of a [`Console`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleConfig {
    /// How many recent lines the ring keeps (default 1000); 0 keeps none.
    pub ring: usize,
    /// The capacity of each subscriber's queue, in frames (default 1024; at least 1 is used).
    pub queue: usize,
    /// The most lines stored and delivered in one second (default 2000); 0 disables the limit.
    pub max_lines_per_sec: u32,
    /// How long writing one command to stdin may take before the writer is given up (default 5 s).
    pub write_timeout: Duration,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig {
            ring: 1000,
            // Twice the rate limit: a client is dropped when it falls about two seconds behind
            // (one chunk of the game's output may hold a thousand lines at once).
            queue: 4096,
            max_lines_per_sec: 2000,
            write_timeout: Duration::from_secs(5),
        }
    }
}

/// One message to a console client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A line of the game's output.
    Log(String),
    /// The server's state changed (e.g. `running`, `stopped`).
    Status(String),
    /// A notice or an error (e.g. the output is throttled).
    Error(String),
}

/// The wire form of the frames; the tag comes first.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Wire<'a> {
    Log { data: &'a str },
    Status { data: &'a str },
    Error { message: &'a str },
    Connected { server_uid: &'a str },
}

impl Wire<'_> {
    fn to_json(&self) -> String {
        // Serializing a struct of strings cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

impl Frame {
    /// The frame as sent to clients: `{"type":"log","data":"…"}`,
    /// `{"type":"status","data":"…"}` or `{"type":"error","message":"…"}`.
    pub fn to_json(&self) -> String {
        match self {
            Frame::Log(line) => Wire::Log { data: line },
            Frame::Status(state) => Wire::Status { data: state },
            Frame::Error(message) => Wire::Error { message },
        }
        .to_json()
    }
}

/// The hello frame sent to a client once it is connected:
/// `{"type":"connected","server_uid":"…"}`.
pub fn connected_json(server_uid: &str) -> String {
    Wire::Connected { server_uid }.to_json()
}

/// Why a command could not be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConsoleError {
    /// No stdin writer is installed: the server is not running (or not attached).
    #[error("the server is not running")]
    NotRunning,
    /// The command is not acceptable (a newline in it, or too long).
    #[error("invalid command: {0}")]
    Invalid(String),
    /// Writing to stdin failed or timed out; the writer has been removed.
    #[error("cannot write to the server's console: {0}")]
    Io(String),
}

/// A client's view of the console, from [`Console::subscribe`].
#[derive(Debug)]
pub struct Subscription {
    /// The last lines before the subscription, oldest first; `rx` continues right after them.
    pub replay: Vec<String>,
    /// The live frames. It yields `None` once the console dropped this subscriber (see
    /// [`Subscription::dropped_for_lag`]) or closed all subscribers, after the queued frames.
    pub rx: mpsc::Receiver<Frame>,
    lagged: Arc<AtomicBool>,
}

impl Subscription {
    /// Whether the console dropped this subscriber because its queue was full (the client did
    /// not keep up). Meaningful once `rx` has ended; the handler may then send a final notice.
    pub fn dropped_for_lag(&self) -> bool {
        self.lagged.load(Ordering::Acquire)
    }
}

/// The writer of the game's stdin, as installed by [`Console::set_input`].
pub type Input = Box<dyn AsyncWrite + Send + Unpin>;

/// One server's console. See the [module documentation](self).
pub struct Console {
    config: ConsoleConfig,
    state: Mutex<State>,
    /// The stdin writer of the current attach; the lock serializes commands.
    input: tokio::sync::Mutex<Option<Input>>,
    /// Mirrors `input.is_some()`, readable without awaiting.
    has_input: AtomicBool,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console")
            .field("config", &self.config)
            .field("subscribers", &self.subscribers())
            .field("has_input", &self.has_input())
            .finish_non_exhaustive()
    }
}

impl Default for Console {
    fn default() -> Self {
        Console::new(ConsoleConfig::default())
    }
}

impl Console {
    /// A console with no output yet, no subscribers and no stdin writer.
    pub fn new(config: ConsoleConfig) -> Console {
        Console {
            state: Mutex::new(State {
                ring: VecDeque::with_capacity(config.ring.min(1024)),
                splitter: LineSplitter::default(),
                subscribers: Vec::new(),
                throttle: Throttle::default(),
            }),
            config,
            input: tokio::sync::Mutex::new(None),
            has_input: AtomicBool::new(false),
        }
    }

    /// The configuration this console was made with.
    pub fn config(&self) -> &ConsoleConfig {
        &self.config
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Feeds a chunk of the game's output (stdout or stderr, any boundaries). Complete lines are
    /// stored and delivered, within the rate limit; a partial line waits for its end. Never blocks.
    pub fn push_bytes(&self, bytes: &[u8]) {
        self.push_bytes_at(bytes, Instant::now());
    }

    /// [`Console::push_bytes`] with the clock given, for the rate limit.
    fn push_bytes_at(&self, bytes: &[u8], now: Instant) {
        let mut lines = Vec::new();
        let mut state = self.state();
        state.splitter.feed(bytes, &mut lines);
        state.publish(lines, now, &self.config);
    }

    /// The output stream ended (the attach is over): a pending partial line is stored and
    /// delivered as a line.
    pub fn end_of_stream(&self) {
        self.end_of_stream_at(Instant::now());
    }

    fn end_of_stream_at(&self, now: Instant) {
        let mut lines = Vec::new();
        let mut state = self.state();
        state.splitter.flush(&mut lines);
        state.publish(lines, now, &self.config);
    }

    /// The last `n` lines of the ring (fewer if it holds fewer), oldest first.
    pub fn recent(&self, n: usize) -> Vec<String> {
        self.state().recent(n)
    }

    /// Registers a subscriber. Its [`Subscription::replay`] holds the last `replay` lines and its
    /// queue receives every frame after them: taken under one lock, so no line is lost or
    /// duplicated between the two.
    pub fn subscribe(&self, replay: usize) -> Subscription {
        let (tx, rx) = mpsc::channel(self.config.queue.max(1));
        let lagged = Arc::new(AtomicBool::new(false));
        let mut state = self.state();
        let replay = state.recent(replay);
        state.subscribers.push(Subscriber {
            tx,
            lagged: lagged.clone(),
        });
        Subscription { replay, rx, lagged }
    }

    /// How many subscribers are registered (the closed ones are pruned first).
    pub fn subscribers(&self) -> usize {
        let mut state = self.state();
        state.subscribers.retain(|s| !s.tx.is_closed());
        state.subscribers.len()
    }

    /// Drops every subscriber (not flagged as lagging): their receivers end after the queued
    /// frames. For a server that goes away.
    pub fn close_subscribers(&self) {
        self.state().subscribers.clear();
    }

    /// Broadcasts the server's new state as a [`Frame::Status`] (not stored in the ring).
    pub fn status(&self, state: &str) {
        self.state().broadcast(Frame::Status(state.to_owned()));
    }

    /// Broadcasts a [`Frame::Error`] (not stored in the ring).
    pub fn error(&self, message: &str) {
        self.state().broadcast(Frame::Error(message.to_owned()));
    }

    /// Installs (`Some`) or removes (`None`) the writer of the game's stdin, normally the one of
    /// the current attach; a previous writer is dropped. Waits for a command being written.
    pub async fn set_input(&self, writer: Option<Input>) {
        let mut input = self.input.lock().await;
        self.has_input.store(writer.is_some(), Ordering::Release);
        *input = writer;
    }

    /// Whether a stdin writer is installed.
    pub fn has_input(&self) -> bool {
        self.has_input.load(Ordering::Acquire)
    }

    /// Writes `cmd` and a newline to the game's stdin and flushes. Commands are written one at a
    /// time, so those of different clients never interleave.
    ///
    /// Errors: [`ConsoleError::Invalid`] for a command with `\n` or `\r` or over
    /// [`MAX_COMMAND_BYTES`]; [`ConsoleError::NotRunning`] without a writer;
    /// [`ConsoleError::Io`] when the write fails or does not finish within the configured
    /// timeout, in which case the writer is removed (a later attach installs a new one).
    pub async fn send_command(&self, cmd: &str) -> Result<(), ConsoleError> {
        validate_command(cmd)?;
        let mut input = self.input.lock().await;
        let writer = input.as_mut().ok_or(ConsoleError::NotRunning)?;
        let mut line = Vec::with_capacity(cmd.len() + 1);
        line.extend_from_slice(cmd.as_bytes());
        line.push(b'\n');
        let write = async {
            writer.write_all(&line).await?;
            writer.flush().await
        };
        let failure = match tokio::time::timeout(self.config.write_timeout, write).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!(
                "the write did not finish within {} ms",
                self.config.write_timeout.as_millis()
            ),
        };
        *input = None;
        self.has_input.store(false, Ordering::Release);
        Err(ConsoleError::Io(failure))
    }
}

fn validate_command(cmd: &str) -> Result<(), ConsoleError> {
    if cmd.contains(['\n', '\r']) {
        return Err(ConsoleError::Invalid(
            "a command cannot contain a line break".into(),
        ));
    }
    if cmd.len() > MAX_COMMAND_BYTES {
        return Err(ConsoleError::Invalid(format!(
            "a command cannot be longer than {MAX_COMMAND_BYTES} bytes"
        )));
    }
    Ok(())
}

/// The console's state, behind its mutex.
struct State {
    ring: VecDeque<String>,
    splitter: LineSplitter,
    subscribers: Vec<Subscriber>,
    throttle: Throttle,
}

struct Subscriber {
    tx: mpsc::Sender<Frame>,
    lagged: Arc<AtomicBool>,
}

impl State {
    fn recent(&self, n: usize) -> Vec<String> {
        let skip = self.ring.len().saturating_sub(n);
        self.ring.iter().skip(skip).cloned().collect()
    }

    /// Stores and delivers complete lines, within the rate limit.
    fn publish(&mut self, lines: Vec<String>, now: Instant, config: &ConsoleConfig) {
        for line in lines {
            let mut notices = Vec::new();
            let admitted = self
                .throttle
                .admit(now, config.max_lines_per_sec, &mut notices);
            for notice in notices {
                self.broadcast(notice);
            }
            if !admitted {
                continue;
            }
            if config.ring > 0 {
                if self.ring.len() >= config.ring {
                    self.ring.pop_front();
                }
                self.ring.push_back(line.clone());
            }
            self.broadcast(Frame::Log(line));
        }
    }

    /// Offers a frame to every subscriber without waiting: a full queue drops (and flags) its
    /// subscriber, a closed one is pruned.
    fn broadcast(&mut self, frame: Frame) {
        self.subscribers
            .retain(|s| match s.tx.try_send(frame.clone()) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) => {
                    s.lagged.store(true, Ordering::Release);
                    false
                }
                Err(TrySendError::Closed(_)) => false,
            });
    }
}

/// A fixed one-second window counting the lines let through.
#[derive(Default)]
struct Throttle {
    window_start: Option<Instant>,
    count: u32,
    throttled: bool,
    skipped: u64,
}

impl Throttle {
    /// Whether one more line may pass at `now`; pushes the notices due (throttling starts, or
    /// ends with a new window).
    fn admit(&mut self, now: Instant, max: u32, notices: &mut Vec<Frame>) -> bool {
        if max == 0 {
            return true;
        }
        let expired = self
            .window_start
            .is_none_or(|start| now.saturating_duration_since(start) >= WINDOW);
        if expired {
            self.window_start = Some(now);
            self.count = 0;
            if self.throttled {
                self.throttled = false;
                notices.push(Frame::Error(format!(
                    "output resumed: {} lines skipped",
                    self.skipped
                )));
                self.skipped = 0;
            }
        }
        if self.count < max {
            self.count += 1;
            return true;
        }
        if !self.throttled {
            self.throttled = true;
            notices.push(Frame::Error(format!(
                "output throttled: more than {max} lines per second, lines are skipped"
            )));
        }
        self.skipped += 1;
        false
    }
}

/// Splits a byte stream into lines.
#[derive(Default)]
struct LineSplitter {
    /// The pending line, at most `MAX_LINE_BYTES + LINE_SLACK` bytes.
    buf: Vec<u8>,
    /// The pending line was cut: its bytes are discarded up to its newline.
    discarding: bool,
}

impl LineSplitter {
    /// Splits a chunk; complete lines go to `out`.
    fn feed(&mut self, mut bytes: &[u8], out: &mut Vec<String>) {
        while let Some(i) = bytes.iter().position(|&b| b == b'\n') {
            self.take(&bytes[..i], out);
            self.end_line(out);
            bytes = &bytes[i + 1..];
        }
        self.take(bytes, out);
    }

    /// The stream ended: a pending partial line goes to `out`.
    fn flush(&mut self, out: &mut Vec<String>) {
        if self.buf.is_empty() {
            self.discarding = false;
        } else {
            self.end_line(out);
        }
    }

    /// Appends a piece of a line (no newline in it); cuts the line once it is surely too long.
    fn take(&mut self, piece: &[u8], out: &mut Vec<String>) {
        if self.discarding || piece.is_empty() {
            return;
        }
        let limit = MAX_LINE_BYTES + LINE_SLACK;
        let room = (limit + 1).saturating_sub(self.buf.len());
        self.buf.extend_from_slice(&piece[..piece.len().min(room)]);
        if self.buf.len() > limit {
            out.push(decode_line(&self.buf));
            self.buf.clear();
            self.discarding = true;
        }
    }

    fn end_line(&mut self, out: &mut Vec<String>) {
        if self.discarding {
            self.discarding = false;
            return;
        }
        let mut line = std::mem::take(&mut self.buf);
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        out.push(decode_line(&line));
    }
}

/// Decodes a line lossily and cuts it at [`MAX_LINE_BYTES`] (at a char boundary), marked.
fn decode_line(bytes: &[u8]) -> String {
    let mut line = String::from_utf8_lossy(bytes).into_owned();
    if line.len() > MAX_LINE_BYTES {
        let mut end = MAX_LINE_BYTES;
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        line.truncate(end);
        line.push_str(CUT_MARKER);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    fn config(ring: usize, queue: usize, max_lines_per_sec: u32) -> ConsoleConfig {
        ConsoleConfig {
            ring,
            queue,
            max_lines_per_sec,
            ..ConsoleConfig::default()
        }
    }

    fn drain(rx: &mut mpsc::Receiver<Frame>) -> Vec<Frame> {
        let mut frames = Vec::new();
        while let Ok(frame) = rx.try_recv() {
            frames.push(frame);
        }
        frames
    }

    fn logs(frames: &[Frame]) -> Vec<String> {
        frames
            .iter()
            .filter_map(|f| match f {
                Frame::Log(line) => Some(line.clone()),
                _ => None,
            })
            .collect()
    }

    fn strings(lines: &[&str]) -> Vec<String> {
        lines.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn console_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Console>();
        assert_send_sync::<Arc<Console>>();
        assert_send_sync::<Subscription>();
    }

    #[test]
    fn lines_split_across_chunks_and_crlf() {
        let console = Console::default();
        console.push_bytes(b"hel");
        assert!(console.recent(10).is_empty());
        console.push_bytes(b"lo\r");
        console.push_bytes(b"\nwor");
        console.push_bytes(b"ld\n\nlast\r\n");
        console.push_bytes(b"partial");
        assert_eq!(console.recent(10), strings(&["hello", "world", "", "last"]));
        console.end_of_stream();
        assert_eq!(
            console.recent(10),
            strings(&["hello", "world", "", "last", "partial"])
        );
        // Nothing pending: a second end of stream adds nothing.
        console.end_of_stream();
        assert_eq!(console.recent(10).len(), 5);
    }

    #[test]
    fn invalid_utf8_is_decoded_lossily_even_split_across_chunks() {
        let console = Console::default();
        // "é" is C3 A9: split across two chunks it still decodes.
        console.push_bytes(b"caf\xC3");
        console.push_bytes(b"\xA9\nbad \xFF byte\n");
        assert_eq!(console.recent(2), strings(&["café", "bad \u{FFFD} byte"]));
    }

    #[test]
    fn long_line_is_cut_and_its_rest_discarded() {
        let console = Console::default();
        let mut long = "x".repeat(MAX_LINE_BYTES - 1);
        long.push('é'); // straddles the limit: dropped whole
        long.push_str(&"y".repeat(10_000));
        // Fed in small chunks, the rest of the line never turns into new lines.
        for chunk in long.as_bytes().chunks(1000) {
            console.push_bytes(chunk);
        }
        console.push_bytes(b"\nnext\n");
        let recent = console.recent(10);
        assert_eq!(recent.len(), 2, "{:?}", recent.iter().map(String::len));
        let expected = format!("{}{CUT_MARKER}", "x".repeat(MAX_LINE_BYTES - 1));
        assert_eq!(recent[0], expected);
        assert_eq!(recent[1], "next");
    }

    #[test]
    fn line_of_exactly_the_limit_is_kept_whole() {
        let console = Console::default();
        let line = "z".repeat(MAX_LINE_BYTES);
        console.push_bytes(format!("{line}\r\n").as_bytes());
        let over = "w".repeat(MAX_LINE_BYTES + 2);
        console.push_bytes(format!("{over}\n").as_bytes());
        let recent = console.recent(10);
        assert_eq!(recent[0], line);
        assert_eq!(
            recent[1],
            format!("{}{CUT_MARKER}", "w".repeat(MAX_LINE_BYTES))
        );
    }

    #[test]
    fn long_partial_line_is_cut_at_end_of_stream() {
        let console = Console::default();
        console.push_bytes("a".repeat(MAX_LINE_BYTES * 3).as_bytes());
        assert_eq!(console.recent(10).len(), 1);
        console.end_of_stream();
        assert_eq!(console.recent(10).len(), 1);
        console.push_bytes(b"after\n");
        assert_eq!(console.recent(1), strings(&["after"]));
    }

    #[test]
    fn ring_keeps_the_last_lines() {
        let console = Console::new(config(3, 16, 0));
        for i in 0..10 {
            console.push_bytes(format!("line {i}\n").as_bytes());
        }
        assert_eq!(
            console.recent(100),
            strings(&["line 7", "line 8", "line 9"])
        );
        assert_eq!(console.recent(2), strings(&["line 8", "line 9"]));
        assert!(console.recent(0).is_empty());

        let none = Console::new(config(0, 16, 0));
        none.push_bytes(b"a\n");
        assert!(none.recent(10).is_empty());
    }

    #[test]
    fn replay_then_live_without_loss_or_duplicate() {
        let console = Console::default();
        for i in 0..5 {
            console.push_bytes(format!("{i}\n").as_bytes());
        }
        let mut sub = console.subscribe(3);
        assert_eq!(sub.replay, strings(&["2", "3", "4"]));
        console.push_bytes(b"5\n6\n");
        assert_eq!(logs(&drain(&mut sub.rx)), strings(&["5", "6"]));

        let all = console.subscribe(150);
        assert_eq!(all.replay.len(), 7);
        assert_eq!(console.subscribers(), 2);
    }

    #[test]
    fn two_subscribers_receive_everything() {
        let console = Console::default();
        let mut a = console.subscribe(0);
        let mut b = console.subscribe(0);
        console.push_bytes(b"one\ntwo\n");
        console.status("running");
        console.error("boom");
        let expected = vec![
            Frame::Log("one".into()),
            Frame::Log("two".into()),
            Frame::Status("running".into()),
            Frame::Error("boom".into()),
        ];
        assert_eq!(drain(&mut a.rx), expected);
        assert_eq!(drain(&mut b.rx), expected);
        // Status and errors are not stored.
        assert_eq!(console.recent(10), strings(&["one", "two"]));
    }

    #[test]
    fn slow_subscriber_is_dropped_and_flagged() {
        let console = Console::new(config(1000, 4, 0));
        let mut slow = console.subscribe(0);
        let mut fast = console.subscribe(0);
        let mut received = Vec::new();
        for i in 0..10 {
            console.push_bytes(format!("{i}\n").as_bytes());
            received.extend(logs(&drain(&mut fast.rx)));
        }
        let expected: Vec<String> = (0..10).map(|i| i.to_string()).collect();
        assert_eq!(received, expected);
        assert!(!fast.dropped_for_lag());
        assert_eq!(console.subscribers(), 1);

        // The slow one gets what was queued, then the end, and knows why.
        assert_eq!(logs(&drain(&mut slow.rx)), strings(&["0", "1", "2", "3"]));
        assert!(matches!(
            slow.rx.try_recv(),
            Err(mpsc::error::TryRecvError::Disconnected)
        ));
        assert!(slow.dropped_for_lag());
    }

    #[test]
    fn closed_receivers_are_pruned_without_lag_flag() {
        let console = Console::default();
        let sub = console.subscribe(0);
        let kept = console.subscribe(0);
        drop(sub);
        console.push_bytes(b"x\n");
        assert_eq!(console.subscribers(), 1);
        assert!(!kept.dropped_for_lag());
        console.close_subscribers();
        assert_eq!(console.subscribers(), 0);
        assert!(!kept.dropped_for_lag());
    }

    #[test]
    fn throttle_sends_one_notice_and_resumes_after_the_window() {
        let console = Console::new(config(1000, 1024, 5));
        let mut sub = console.subscribe(0);
        let t0 = Instant::now();
        let burst: String = (0..8).map(|i| format!("a{i}\n")).collect();
        console.push_bytes_at(burst.as_bytes(), t0);
        console.push_bytes_at(b"b0\nb1\nb2\n", t0 + Duration::from_millis(500));
        console.push_bytes_at(b"c0\n", t0 + Duration::from_millis(999));

        let frames = drain(&mut sub.rx);
        assert_eq!(logs(&frames), strings(&["a0", "a1", "a2", "a3", "a4"]));
        let notices: Vec<&Frame> = frames
            .iter()
            .filter(|f| matches!(f, Frame::Error(_)))
            .collect();
        assert_eq!(notices.len(), 1, "{frames:?}");
        assert!(matches!(notices[0], Frame::Error(m) if m.starts_with("output throttled")));
        // The notice comes right after the last delivered line.
        assert!(matches!(&frames[5], Frame::Error(_)));
        assert_eq!(console.recent(100).len(), 5);

        // A new window: delivery resumes, with a notice counting the skipped lines.
        console.push_bytes_at(b"d0\nd1\n", t0 + Duration::from_secs(1));
        let frames = drain(&mut sub.rx);
        assert_eq!(
            frames,
            vec![
                Frame::Error("output resumed: 7 lines skipped".into()),
                Frame::Log("d0".into()),
                Frame::Log("d1".into()),
            ]
        );
        assert_eq!(console.recent(2), strings(&["d0", "d1"]));

        // Throttling again in a later window sends one new notice.
        let burst: String = (0..10).map(|i| format!("e{i}\n")).collect();
        console.push_bytes_at(burst.as_bytes(), t0 + Duration::from_secs(5));
        let frames = drain(&mut sub.rx);
        assert_eq!(logs(&frames).len(), 5);
        assert_eq!(frames.len(), 6);
    }

    #[test]
    fn throttle_counts_lines_in_the_window_not_per_chunk() {
        let console = Console::new(config(1000, 1024, 3));
        let t0 = Instant::now();
        for i in 0..3 {
            console.push_bytes_at(b"x\n", t0 + Duration::from_millis(100 * i));
        }
        let mut sub = console.subscribe(0);
        console.push_bytes_at(b"y\n", t0 + Duration::from_millis(900));
        let frames = drain(&mut sub.rx);
        assert_eq!(frames.len(), 1);
        assert!(matches!(&frames[0], Frame::Error(_)));
    }

    #[tokio::test]
    async fn commands_are_written_with_a_newline() {
        let console = Arc::new(Console::default());
        let (writer, mut reader) = tokio::io::duplex(1024);
        assert!(!console.has_input());
        console.set_input(Some(Box::new(writer))).await;
        assert!(console.has_input());

        console.send_command("say hello").await.unwrap();
        let mut buf = vec![0; "say hello\n".len()];
        reader.read_exact(&mut buf).await.unwrap();
        assert_eq!(buf, b"say hello\n");

        // Concurrent commands never interleave.
        let a = "a".repeat(3000);
        let b = "b".repeat(3000);
        let (ra, rb, read) =
            tokio::join!(console.send_command(&a), console.send_command(&b), async {
                let mut buf = vec![0; 2 * 3001];
                reader.read_exact(&mut buf).await.map(|_| buf)
            });
        ra.unwrap();
        rb.unwrap();
        let text = String::from_utf8(read.unwrap()).unwrap();
        let mut lines: Vec<&str> = text.split_terminator('\n').collect();
        lines.sort();
        assert_eq!(lines, vec![a.as_str(), b.as_str()]);

        console.set_input(None).await;
        assert!(!console.has_input());
        assert_eq!(
            console.send_command("x").await,
            Err(ConsoleError::NotRunning)
        );
    }

    #[tokio::test]
    async fn not_running_without_a_writer() {
        let console = Console::default();
        assert_eq!(
            console.send_command("stop").await,
            Err(ConsoleError::NotRunning)
        );
    }

    #[tokio::test]
    async fn invalid_commands_are_rejected() {
        let console = Console::default();
        let (writer, _reader) = tokio::io::duplex(64);
        console.set_input(Some(Box::new(writer))).await;
        for cmd in ["say a\nstop", "say a\r", "\n"] {
            assert!(matches!(
                console.send_command(cmd).await,
                Err(ConsoleError::Invalid(_))
            ));
        }
        let long = "x".repeat(MAX_COMMAND_BYTES + 1);
        assert!(matches!(
            console.send_command(&long).await,
            Err(ConsoleError::Invalid(_))
        ));
        // Rejections leave the writer in place.
        assert!(console.has_input());
    }

    #[tokio::test]
    async fn io_error_removes_the_writer() {
        let console = Console::default();
        let (writer, reader) = tokio::io::duplex(64);
        console.set_input(Some(Box::new(writer))).await;
        drop(reader);
        assert!(matches!(
            console.send_command("stop").await,
            Err(ConsoleError::Io(_))
        ));
        assert!(!console.has_input());
        assert_eq!(
            console.send_command("stop").await,
            Err(ConsoleError::NotRunning)
        );
    }

    #[tokio::test]
    async fn a_stuck_write_times_out() {
        let console = Console::new(ConsoleConfig {
            write_timeout: Duration::from_millis(50),
            ..ConsoleConfig::default()
        });
        // Nobody reads: the 4-byte pipe fills up.
        let (writer, _reader) = tokio::io::duplex(4);
        console.set_input(Some(Box::new(writer))).await;
        let result = console.send_command("a long command").await;
        assert!(matches!(result, Err(ConsoleError::Io(_))), "{result:?}");
        assert!(!console.has_input());
    }

    #[test]
    fn frames_json_is_exact() {
        assert_eq!(
            Frame::Log("hello \"world\"".into()).to_json(),
            r#"{"type":"log","data":"hello \"world\""}"#
        );
        assert_eq!(
            Frame::Status("running".into()).to_json(),
            r#"{"type":"status","data":"running"}"#
        );
        assert_eq!(
            Frame::Error("output throttled".into()).to_json(),
            r#"{"type":"error","message":"output throttled"}"#
        );
        assert_eq!(
            connected_json("g.n"),
            r#"{"type":"connected","server_uid":"g.n"}"#
        );
    }
}
