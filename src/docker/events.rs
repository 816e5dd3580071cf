//! The engine's event stream, filtered to peon's containers and turned into [`RuntimeEvent`]s.

use std::collections::HashMap;

use bollard::query_parameters::EventsOptionsBuilder;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;

use super::{Engine, Result, RuntimeError};
use crate::runtime::{EventAction, RuntimeEvent};

impl Engine {
    /// Container events since `since` (Unix seconds) for containers labelled `label=value`.
    pub async fn events(
        &self,
        since: i64,
        label: &str,
        value: &str,
    ) -> Result<BoxStream<'static, Result<RuntimeEvent>>> {
        let c = self.client().await?;
        let filters: HashMap<&str, Vec<String>> = HashMap::from([
            ("type", vec!["container".to_owned()]),
            ("label", vec![format!("{label}={value}")]),
        ]);
        let opts = EventsOptionsBuilder::default()
            .since(&since.to_string())
            .filters(&filters)
            .build();
        let host = self.host().to_owned();
        tracing::info!(since, "docker: subscribed to container events");
        let stream = c.events(Some(opts)).map(move |item| match item {
            Ok(m) => Ok(convert(m)),
            Err(e) => Err(RuntimeError::Unavailable {
                host: host.clone(),
                reason: format!("event stream: {e}"),
            }),
        });
        Ok(stream.boxed())
    }
}

fn convert(m: bollard::models::EventMessage) -> RuntimeEvent {
    let actor = m.actor.unwrap_or_default();
    let mut labels = actor.attributes.unwrap_or_default();
    let name = labels.remove("name").unwrap_or_default();
    let action = match m.action.as_deref().unwrap_or_default() {
        "create" => EventAction::Create,
        "start" => EventAction::Start,
        "die" => EventAction::Die {
            exit_code: labels.get("exitCode").and_then(|c| c.parse().ok()),
        },
        "oom" => EventAction::Oom,
        "kill" => EventAction::Kill {
            signal: labels.get("signal").cloned(),
        },
        "stop" => EventAction::Stop,
        "destroy" => EventAction::Destroy,
        other => EventAction::Other(other.to_owned()),
    };
    RuntimeEvent {
        action,
        container_id: actor.id.unwrap_or_default(),
        container: name.trim_start_matches('/').to_owned(),
        labels,
        time_nano: m
            .time_nano
            .or(m.time.map(|t| t.saturating_mul(1_000_000_000)))
            .unwrap_or_default(),
    }
}
