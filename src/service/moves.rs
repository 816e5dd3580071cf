//! Cluster mode: `POST /server/move/<uid>`, a server moved to another node as a job. The
//! target must be able to hold it (placement's reasons: ready, active, a free game slot, its
//! ports free there, not private to another key); then [`relocate::move_server`] stops it,
//! copies its directory between the nodes' agents, re-pins it and starts it, with the
//! [`MoveOps`] below: the stop and start are the service's own (power lock held by the move),
//! the re-pin writes the new node into `.peon.json` and makes the service again with the
//! `node.id==<id>` constraint of the new node.

use futures_util::future::BoxFuture;

use super::placement;
use super::relocate::{self, MoveOps, Side};
use super::view::ServerObject;
use super::{Result, ServerService, ServiceError};
use crate::jobs::JobKind;
use crate::model::exit::Expected;
use crate::names::Uid;
use crate::store::NodePin;

impl ServerService {
    /// Checks a move before it is run as a job: 400 outside cluster mode or to the node the
    /// server is on, 404 for an unknown server or node, 409 when the node cannot take it.
    pub async fn check_move(
        &self,
        uid: &Uid,
        node: &str,
        placer: Option<&str>,
    ) -> Result<(NodePin, NodePin)> {
        if self.agents().is_none() {
            return Err(ServiceError::BadRequest(
                "moves are for cluster mode; this peon runs on one host.".into(),
            ));
        }
        let rec = self.record(uid)?;
        let Some(from) = rec.state.node.clone() else {
            return Err(ServiceError::Conflict(format!(
                "The server [{uid}] is not placed on a node."
            )));
        };
        if from.id == node || from.hostname == node {
            return Err(ServiceError::BadRequest(format!(
                "The server [{uid}] is on node {} already.",
                from.hostname
            )));
        }
        let nodes = self.nodes().await?;
        if !nodes.iter().any(|n| n.id == node || n.hostname == node) {
            return Err(ServiceError::NotFound(format!("There is no node {node}.")));
        }
        let group: Vec<_> = rec.plan.port_groups.first().cloned().into_iter().collect();
        match placement::choose(&nodes, &group, Some(node), &self.placer(placer)) {
            Ok((n, _)) => Ok((
                from,
                NodePin {
                    id: n.id,
                    hostname: n.hostname,
                    address: n.address,
                    data_dir: None,
                },
            )),
            Err(reasons) => {
                let why: Vec<String> = reasons.iter().map(|(n, r)| format!("{n}: {r}")).collect();
                Err(ServiceError::Conflict(format!(
                    "Node {node} cannot take [{uid}]: {}.",
                    why.join("; ")
                )))
            }
        }
    }

    /// Moves a server to `node` (id or hostname): stop, copy its directory between the nodes'
    /// agents (checksum checked by the receiver), re-pin, start again when it ran. Any
    /// failure leaves it on its node as it was.
    pub async fn move_server(
        &self,
        uid: &Uid,
        node: &str,
        placer: Option<&str>,
    ) -> Result<ServerObject> {
        self.check_move(uid, node, placer).await?;
        self.action(uid, JobKind::Move, async {
            let _g = self.lock(uid).await;
            // Checked again under the lock: the cluster may have changed since.
            let (from, to) = self.check_move(uid, node, placer).await?;
            let to = self.with_home(to).await?;
            let agents = self
                .agents()
                .ok_or_else(|| ServiceError::BadRequest("not in cluster mode".into()))?;
            let from_agent = agents
                .agent(&from.id)
                .await
                .map_err(|e| ServiceError::Conflict(format!("node {}: {e}", from.hostname)))?;
            let to_agent = agents
                .agent(&to.id)
                .await
                .map_err(|e| ServiceError::Conflict(format!("node {}: {e}", to.hostname)))?;
            let running = self
                .runtime
                .inspect(&uid.container_name())
                .await?
                .is_some_and(|c| c.running);
            tracing::info!(uid = %uid, from = %from.hostname, to = %to.hostname, running, "moving");
            let ops = Ops {
                svc: self,
                pins: [from.clone(), to.clone()],
            };
            relocate::move_server(
                &ops,
                uid,
                Side {
                    node: &from.id,
                    agent: &from_agent,
                },
                Side {
                    node: &to.id,
                    agent: &to_agent,
                },
                running,
            )
            .await?;
            self.get(uid).await
        })
        .await
    }
}

/// The cluster's part of a move, on the service (its power lock is held by the move).
struct Ops<'s> {
    svc: &'s ServerService,
    /// The old and the new node.
    pins: [NodePin; 2],
}

impl MoveOps for Ops<'_> {
    fn stop<'a>(&'a self, uid: &'a Uid) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.svc.want_stopped(uid, Expected::Stop).await?;
            self.svc.stop_locked(uid).await.map(|_| ())
        })
    }

    fn pin<'a>(&'a self, uid: &'a Uid, node: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let pin = self
                .pins
                .iter()
                .find(|p| p.id == node)
                .cloned()
                .ok_or_else(|| ServiceError::Failed(format!("no node {node} in this move")))?;
            let hostname = pin.hostname.clone();
            // A node that held a stale copy (a failover went away from it) holds the current
            // one once the move copied it there.
            self.svc
                .save_state(uid, move |s| {
                    s.stale_on.retain(|n| *n != pin.id);
                    s.node = Some(pin);
                })
                .await?;
            // The service is made again with the new node's constraint (a stopped service has
            // no task: nothing runs while it is replaced).
            self.svc.runtime.remove(&uid.container_name()).await?;
            let rec = self.svc.record(uid)?;
            self.svc.ensure_container(&rec).await?;
            tracing::info!(uid = %uid, node = %hostname, "pinned");
            Ok(())
        })
    }

    fn start<'a>(&'a self, uid: &'a Uid) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move { self.svc.start_locked(uid, None).await.map(|_| ()) })
    }
}
