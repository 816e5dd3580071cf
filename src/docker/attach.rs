//! Attaching to a container's console: stdin, and stdout and stderr as one byte stream.

use bollard::query_parameters::AttachContainerOptionsBuilder;
use futures_util::StreamExt;

use super::{Engine, Result, RuntimeError};
use crate::runtime::Attached;

impl Engine {
    /// Attaches to the live console of a container (no replay of earlier output).
    pub async fn attach(&self, name: &str) -> Result<Attached> {
        let c = self.client().await?;
        let opts = AttachContainerOptionsBuilder::default()
            .stdin(true)
            .stdout(true)
            .stderr(true)
            .stream(true)
            .logs(false)
            .build();
        let r = match c.attach_container(name, Some(opts)).await {
            Ok(r) => r,
            Err(e) => return Err(self.fail("attach container", e).await),
        };
        tracing::debug!(container = %name, "docker: attached");
        let host = self.host().to_owned();
        let output = r
            .output
            .map(move |item| match item {
                Ok(out) => Ok(out.into_bytes()),
                Err(e) => Err(RuntimeError::Unavailable {
                    host: host.clone(),
                    reason: format!("attach stream: {e}"),
                }),
            })
            .boxed();
        Ok(Attached {
            output,
            input: r.input,
        })
    }
}
