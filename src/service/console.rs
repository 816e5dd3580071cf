//! The console and the event stream as the API sees them: a subscription to a server's console
//! (recent lines, then live frames), console commands, and following events.

use std::sync::Arc;

use tokio::sync::broadcast;

use super::{Result, ServerService, ServiceError};
use crate::live::Event;
use crate::live::console::{ConsoleError, Subscription};
use crate::names::Uid;

/// A client's view of one server's console.
pub struct ConsoleStream {
    pub uid: Uid,
    /// Recent lines, then live frames.
    pub sub: Subscription,
    /// The server's `server_state` when the client connected.
    pub state: String,
}

/// A client's view of the event stream, optionally of one server.
pub struct EventStream {
    pub rx: broadcast::Receiver<Arc<Event>>,
    pub uid: Option<String>,
}

impl ServerService {
    /// Follows a server's console, starting with its last `replay` lines.
    pub fn console(&self, uid: &Uid, replay: usize) -> Result<ConsoleStream> {
        self.record(uid)?;
        self.refuse_if_unreachable(uid, "the console")?;
        let h = self.handle_of(uid);
        Ok(ConsoleStream {
            uid: uid.clone(),
            sub: h.console.subscribe(replay),
            state: h.server_state(),
        })
    }

    /// Writes one console command to the game's stdin.
    pub async fn command(&self, uid: &Uid, command: &str) -> Result<()> {
        self.record(uid)?;
        self.refuse_if_unreachable(uid, "a console command")?;
        let h = self.handle_of(uid);
        if !h.is_running() {
            return Err(ServiceError::NotRunning(format!(
                "The server [{uid}] is not running; start it first."
            )));
        }
        match h.console.send_command(command).await {
            Ok(()) => {
                tracing::info!(uid = %uid, "console command sent");
                Ok(())
            }
            Err(ConsoleError::Invalid(m)) => Err(ServiceError::BadRequest(m)),
            Err(ConsoleError::NotRunning) => Err(ServiceError::NotRunning(format!(
                "The console of [{uid}] is not attached; the game may be stopping."
            ))),
            Err(ConsoleError::Io(m)) => Err(ServiceError::NotRunning(format!(
                "The console of [{uid}] did not take the command: {m}"
            ))),
        }
    }

    /// Follows events, of one server when `uid` is given.
    pub fn events(&self, uid: Option<&Uid>) -> Result<EventStream> {
        if let Some(u) = uid {
            self.record(u)?;
        }
        Ok(EventStream {
            rx: self.registry.subscribe(),
            uid: uid.map(ToString::to_string),
        })
    }
}
