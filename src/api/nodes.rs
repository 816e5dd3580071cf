//! Cluster mode: the swarm's nodes. `GET /nodes`, `GET /node/<id>`, `PUT /node/<id>`, and
//! `POST /server/move/<uid>` (a server to another node).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Extension, OriginalUri, Path, Query, State};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::auth::Caller;
use super::dto::ErrorBody;
use super::error::ApiError;
use super::extract::ServerUid;
use super::jobs::{self as jobs_api, WaitQuery};
use super::{AppState, Body};
use crate::service::{JobKind, NodeUpdate, NodeView};

/// `{"availability": "drain", "labels": {"peon.private": "team-a", "old": null}}`: each key
/// given changes the node; a label set to `null` is removed, other labels are kept.
#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
pub struct NodeBody {
    /// `active`, `pause` (no new tasks) or `drain` (Swarm moves tasks off; peon never places
    /// a server there).
    pub availability: Option<String>,
    /// Labels to set or (with `null`) remove.
    #[schema(value_type = Option<Object>)]
    pub labels: Option<Value>,
}

#[utoipa::path(
    get,
    path = "/nodes",
    tag = "cluster",
    summary = "The nodes of the cluster",
    description = "Cluster mode only (409 otherwise). Each node of the swarm with its state, availability, labels, capacity (CPU, memory, game slots), what peon's servers reserve there, the host ports in use and the servers pinned to it. A key that is not an admin key sees the public nodes and the nodes private to it (its name or its scope), and on each only the servers in its scope.",
    responses(
        (status = 200, description = "The nodes", body = [NodeView]),
        (status = 401, description = "Missing or wrong X-Api-Key", body = ErrorBody),
        (status = 409, description = "Not in cluster mode", body = ErrorBody)
    ),
    security(("api_key" = []))
)]
/// `GET /nodes`
pub async fn list(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Vec<NodeView>>, ApiError> {
    Ok(Json(s.service.nodes_for(&caller.0).await?))
}

#[utoipa::path(
    get,
    path = "/node/{id}",
    tag = "cluster",
    summary = "One node of the cluster",
    params(("id" = String, Path, description = "Node id or hostname")),
    responses(
        (status = 200, description = "The node", body = NodeView),
        (status = 401, description = "Missing or wrong X-Api-Key", body = ErrorBody),
        (status = 404, description = "No such node (or one private to another key or scope)", body = ErrorBody),
        (status = 409, description = "Not in cluster mode", body = ErrorBody)
    ),
    security(("api_key" = []))
)]
/// `GET /node/<id>`
pub async fn get(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<NodeView>, ApiError> {
    Ok(Json(s.service.node_for(&id, &caller.0).await?))
}

#[utoipa::path(
    put,
    path = "/node/{id}",
    tag = "cluster",
    summary = "Change a node's availability or labels",
    description = "Drain: Swarm stops the node's tasks and peon never places a new server there. A server pinned to a drained node (its world lives there) is not moved by Swarm: its task stays pending (`container_state` says so) until the node is active again or the server is moved.",
    params(("id" = String, Path, description = "Node id or hostname")),
    request_body(content = NodeBody, content_type = "application/json"),
    responses(
        (status = 200, description = "The node as it is now", body = NodeView),
        (status = 400, description = "Invalid input", body = ErrorBody),
        (status = 401, description = "Missing or wrong X-Api-Key", body = ErrorBody),
        (status = 404, description = "No such node", body = ErrorBody),
        (status = 409, description = "Not in cluster mode", body = ErrorBody)
    ),
    security(("api_key" = []))
)]
/// `PUT /node/<id>`
pub async fn update(
    State(s): State<AppState>,
    Path(id): Path<String>,
    body: Body,
) -> Result<Json<NodeView>, ApiError> {
    let availability = body.str("availability")?;
    let mut labels = BTreeMap::new();
    match body.0.get("labels") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (k, v) in m {
                let v = match v {
                    Value::Null => None,
                    Value::String(s) => Some(s.clone()),
                    other => {
                        return Err(ApiError::BadRequest(format!(
                            "label {k:?}: {other} is not a string or null."
                        )));
                    }
                };
                labels.insert(k.clone(), v);
            }
        }
        Some(_) => {
            return Err(ApiError::BadRequest(
                "labels must be an object of strings (or null to remove one).".into(),
            ));
        }
    }
    if availability.is_none() && labels.is_empty() {
        return Err(ApiError::BadRequest(
            "Give availability and/or labels.".into(),
        ));
    }
    let update = NodeUpdate {
        availability,
        labels,
    };
    Ok(Json(s.service.update_node(&id, update).await?))
}

/// `{"node": "<id or hostname>"}`: where a server moves to.
#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
pub struct MoveBody {
    /// The target node's id or hostname.
    pub node: String,
}

#[utoipa::path(
    post,
    path = "/server/move/{uid}",
    tag = "cluster",
    summary = "Move a server to another node",
    description = "Cluster mode only (400 otherwise). A job: stop the server, stream its directory from the old node's agent to the new one's (checksum checked by the receiver), re-pin it (`node.id==<id>`), start it again when it ran, remove the old copy. Any failure leaves it on its old node as it was. 409 when the target cannot take it (each reason named, as placement says it).",
    params(("uid" = String, Path, description = "Server uid `<game>.<name>`"), ("wait" = Option<bool>, Query, description = "`false`: answer 202 at once and run the move as a background job")),
    request_body(content = MoveBody, content_type = "application/json"),
    responses(
        (status = 200, description = "The server on its new node", body = crate::service::ServerObject),
        (status = 202, description = "With `?wait=false`: accepted, running as a job", body = super::dto::Accepted),
        (status = 400, description = "Not in cluster mode, no node given, or the server is on that node already", body = ErrorBody),
        (status = 401, description = "Missing or wrong X-Api-Key", body = ErrorBody),
        (status = 404, description = "No such server or node", body = ErrorBody),
        (status = 409, description = "The node cannot take the server (the reasons), or an agent does not answer", body = ErrorBody),
        (status = 500, description = "The move failed; the server is on its old node as it was", body = ErrorBody)
    ),
    security(("api_key" = []))
)]
/// `POST /server/move/<uid>`
pub async fn move_server(
    State(s): State<AppState>,
    ServerUid(uid): ServerUid,
    uri: OriginalUri,
    Query(w): Query<WaitQuery>,
    body: Body,
) -> Result<Response, ApiError> {
    let node = body
        .str("node")?
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::BadRequest("node is required: a node id or hostname".into()))?;
    let placer = super::auth::requester();
    // Refused at once (400, 404, 409) before a job is made.
    s.service.check_move(&uid, &node, Some(&placer)).await?;
    let (svc, sid) = (s.service.clone(), uid.to_string());
    let work = async move { svc.move_server(&uid, &node, Some(&placer)).await };
    jobs_api::run(&s, &uri, &w, JobKind::Move, &sid, work).await
}
