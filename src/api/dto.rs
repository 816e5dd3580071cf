//! The API's own request and answer types: what handlers return and read, and what the
//! OpenAPI document shows. Answers are serialized exactly as PEON clients read them (field
//! order included). Request bodies are read the tolerant way of [`Body`] (an empty body is an
//! empty object, no content type needed) and checked with the same messages as before; a few
//! bodies stay loose maps (flat plan settings, PEON's timers) and are only described here.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, Schema, Type};
use utoipa::openapi::{RefOr, schema::SchemaType};
use utoipa::{PartialSchema, ToSchema};

use super::Body;
use super::error::ApiError;
use crate::schedule::{self, Action, ScheduleError, ScheduleView, When};
use crate::service::EngineStatus;

// ---- Answers ------------------------------------------------------------------------------

/// Every error: `{"status": "error", "info": ..., "err_code": ...}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Always `error`.
    #[schema(value_type = String)]
    pub status: &'static str,
    /// What went wrong, for people.
    pub info: String,
    /// A stable code: `req.invalid`, `auth.denied`, `srv.notfound`, `srv.exists`,
    /// `srv.portsused`, `srv.failed`, `plan.notfound`, `plan.invalid`, `docker.unavailable`, ...
    #[schema(value_type = String)]
    pub err_code: &'static str,
}

/// `{"status": "success", "info": ...}`: an action without an object to return.
#[derive(Debug, Serialize, ToSchema)]
pub struct Success {
    /// Always `success`.
    #[schema(value_type = String)]
    pub status: &'static str,
    /// What was done, for people.
    pub info: String,
}

impl Success {
    pub fn new(info: impl Into<String>) -> Success {
        Success {
            status: "success",
            info: info.into(),
        }
    }
}

/// `202 Accepted`: a long action called with `?wait=false` runs in the background as the job
/// `job_id`; the `Location` header names `<base>/job/<job_id>`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Accepted {
    /// Always `accepted`.
    #[schema(value_type = String)]
    pub status: &'static str,
    pub job_id: String,
}

/// `GET /server/logs/<uid>`: the last lines of the server's console, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct Logs {
    pub logs: Vec<String>,
}

/// `GET /health`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    #[schema(value_type = String)]
    pub status: &'static str,
    pub version: String,
    /// Whether the Docker engine answers.
    pub docker: bool,
}

/// `GET /orchestrator`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Orchestrator {
    pub version: String,
    pub instance: String,
    /// Number of servers.
    pub servers: usize,
    pub engine: EngineStatus,
}

/// `GET /schedules`: every schedule of every server, soonest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct AllSchedules {
    /// The time zone cron expressions are read in.
    #[schema(value_type = String)]
    pub time_zone: &'static str,
    #[schema(value_type = Vec<Object>)]
    pub schedules: Vec<ScheduleView>,
}

/// One entry of `GET /plans`: the registry entry as the plans list has it (keys peon does not
/// know are passed on), with `in_registry`.
#[derive(Debug, Serialize)]
#[serde(transparent)]
pub struct PlanEntry(pub Value);

impl PartialSchema for PlanEntry {
    fn schema() -> RefOr<Schema> {
        let string = || ObjectBuilder::new().schema_type(Type::String);
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(
                "One entry of `GET /plans`: a plans registry entry (other keys are passed on as listed).",
            ))
            .property("title", string())
            .property("game_uid", string())
            .property(
                "plan_url",
                ObjectBuilder::new().schema_type(SchemaType::from_iter([Type::String, Type::Null])),
            )
            .property(
                "in_registry",
                ObjectBuilder::new()
                    .schema_type(Type::Boolean)
                    .description(Some(
                        "false for a plan folder the registry does not list",
                    )),
            )
            .required("title")
            .required("game_uid")
            .required("in_registry")
            .additional_properties(Some(AdditionalProperties::FreeForm(true)))
            .into()
    }
}

impl ToSchema for PlanEntry {}

// ---- Typed request bodies -----------------------------------------------------------------

/// `PUT /server/description/<uid>`: `{"description": str}`.
#[derive(Debug, ToSchema)]
pub struct DescriptionBody {
    pub description: String,
}

impl TryFrom<Body> for DescriptionBody {
    type Error = ApiError;

    fn try_from(body: Body) -> Result<Self, ApiError> {
        let description = body.str("description")?.ok_or_else(|| {
            ApiError::BadRequest("The description argument was incorrectly provided.".into())
        })?;
        Ok(DescriptionBody { description })
    }
}

/// `PUT /server/update/<uid>`: `{"mode": ..., "watch": ...}`, all optional.
#[derive(Debug, Default, ToSchema)]
pub struct UpdateBody {
    /// `full` (default, also `all`), `image` (`container`), `server` (`game`), `reinit`.
    pub mode: Option<String>,
    /// How long the updated server must stay up after getting ready before the update is kept
    /// (a crash within it rolls the update back): seconds, or a duration such as `"2m"`; `0`
    /// for no watch. The daemon's `update_watch` (30 s) when absent.
    #[schema(value_type = Option<String>, example = "30s")]
    pub watch: Option<std::time::Duration>,
    /// `{"deadline": "10m", "announce": "..."}` (or `true`): wait until nobody plays first (at
    /// most the deadline), announcing through the plan's `say_command`.
    #[schema(value_type = Option<Object>)]
    pub when_empty: Option<schedule::WhenEmpty>,
    /// Move the server to this version of its game's plan (its files, settings and image; the
    /// plan is refreshed from the plan source when this host does not hold it yet). 409 when the
    /// version is not available.
    #[schema(example = "1.1.0")]
    pub plan_version: Option<String>,
}

impl TryFrom<Body> for UpdateBody {
    type Error = ApiError;

    fn try_from(body: Body) -> Result<Self, ApiError> {
        let watch = body.duration("watch", std::time::Duration::from_secs(86_400))?;
        Ok(UpdateBody {
            when_empty: schedule::WhenEmpty::parse(body.0.get("when_empty"))
                .map_err(crate::service::ServiceError::from)?,
            mode: body.str("mode")?,
            watch,
            plan_version: body
                .str("plan_version")?
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty()),
        })
    }
}

/// `DELETE /server/destroy/<uid>` and `/server/eradicate/<uid>`: `{"eradicate": true}`.
#[derive(Debug, Default, ToSchema)]
pub struct DestroyBody {
    /// Also delete the server's files (required by eradicate). Only JSON `true` or the string
    /// `"True"` count; anything else is false.
    #[schema(required = false)]
    pub eradicate: bool,
}

impl TryFrom<Body> for DestroyBody {
    type Error = ApiError;

    fn try_from(body: Body) -> Result<Self, ApiError> {
        Ok(DestroyBody {
            eradicate: body.flag("eradicate"),
        })
    }
}

/// `POST /server/schedules/<uid>`: an action with either `cron` (recurring) or `at` (once).
#[derive(Debug, Clone)]
pub struct ScheduleBody {
    pub action: Action,
    pub when: When,
    /// A restart that waits for an empty server first.
    pub when_empty: Option<schedule::WhenEmpty>,
}

impl ScheduleBody {
    /// Reads the body; `at` is judged against `now` (Unix seconds).
    pub fn parse(body: &Body, now: i64) -> Result<ScheduleBody, ApiError> {
        let invalid = |msg: String| ApiError::from(ScheduleError::Invalid(msg));
        let action = match body.0.get("action") {
            Some(Value::String(a)) => Action::parse(a)?,
            _ => {
                return Err(invalid(
                    "action is required: start, stop, restart or backup".into(),
                ));
            }
        };
        let field = |k: &str| body.0.get(k).filter(|v| !v.is_null());
        let when = match (field("cron"), field("at")) {
            (Some(Value::String(c)), None) => When::Cron(schedule::cron::CronSpec::parse(c)?),
            (Some(c), None) => {
                return Err(invalid(format!(
                    "cron {c} must be a string such as \"0 18 * * FRI\""
                )));
            }
            (None, Some(at)) => When::At(schedule::parse_at(at, now)?),
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "give either cron (recurring) or at (once), not both".into(),
                ));
            }
            (None, None) => {
                return Err(invalid(
                    "cron or at is required: cron as 5 or 6 fields, at as RFC 3339 or Unix seconds"
                        .into(),
                ));
            }
        };
        let when_empty = schedule::WhenEmpty::parse(body.0.get("when_empty"))?;
        Ok(ScheduleBody {
            action,
            when,
            when_empty,
        })
    }
}

impl PartialSchema for ScheduleBody {
    fn schema() -> RefOr<Schema> {
        let text =
            |t: SchemaType, d: &str| ObjectBuilder::new().schema_type(t).description(Some(d));
        let optional = || SchemaType::from_iter([Type::String, Type::Null]);
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(
                "`POST /server/schedules/<uid>`: give `cron` or `at`, not both.",
            ))
            .property(
                "action",
                text(Type::String.into(), "`start`, `stop` or `restart`."),
            )
            .property(
                "cron",
                text(
                    optional(),
                    "Recurring: 5 or 6 fields (seconds optional), in the daemon's time zone, e.g. `0 18 * * FRI`.",
                ),
            )
            .property(
                "at",
                text(
                    optional(),
                    "Once: RFC 3339, or Unix seconds (a string or a number).",
                ),
            )
            .property(
                "when_empty",
                text(
                    SchemaType::from_iter([Type::Object, Type::Boolean, Type::Null]),
                    "Restarts only: `{\"deadline\": \"10m\", \"announce\": \"Restart soon\"}` (or `true`: 30m, no announcement): wait until nobody plays (at most the deadline, then go anyway), announcing through the plan's `say_command` first.",
                ),
            )
            .required("action")
            .into()
    }
}

impl ToSchema for ScheduleBody {}

// ---- Loose request bodies, described only ---------------------------------------------------

/// Describes a loose body for the document only: start and stop read it with [`Body`] and
/// [`crate::schedule::timer_from_body`]; no handler holds this type.
#[derive(ToSchema)]
#[schema(description = "PEON's stop timer fields; give at most one.")]
pub struct TimerBody {
    /// Stop after this long: `30s`, `10m`, `2h`, `1d`, compounds such as `1h30m`.
    pub interval: Option<String>,
    /// Stop at this Unix time: 10 digits, a string or a number.
    #[schema(value_type = Option<String>)]
    pub epoch_time: Option<Value>,
}

/// Describes a loose body for the document only: the creates read it with [`Body`], every key
/// not listed here being a plan setting; no handler holds this type.
#[derive(ToSchema)]
#[schema(
    description = "A create request: plan settings as flat keys (e.g. `\"SERVER_NAME\": \"Alpha\"`) plus these."
)]
pub struct CreateBody {
    pub description: Option<String>,
    /// Create the server stopped.
    pub start_later: Option<bool>,
    pub interval: Option<String>,
    #[schema(value_type = Option<String>)]
    pub epoch_time: Option<Value>,
    /// `POST /server/create` only: the game.
    pub game_uid: Option<String>,
    /// `POST /server/create` only: the server name (also `warcamp`).
    pub servername: Option<String>,
    /// Stop the game after this long with nobody playing, like `30m` (needs the plan's `query`).
    pub idle_stop: Option<String>,
    /// No idle stop within this long of a start (default 10m).
    pub idle_grace: Option<String>,
    /// After an idle stop, hold the game's ports and start it on the first connection.
    pub wake_on_connect: Option<bool>,
    /// Take a backup (`save`) before an idle stop.
    pub backup_before_idle_stop: Option<bool>,
    /// The server's own resource limits over the plan's (see `PUT /server/limits`).
    #[schema(value_type = Option<Object>)]
    pub limits: Option<Value>,
    /// Cluster mode: the node (id or hostname) to place the server on; peon chooses when absent.
    pub node: Option<String>,
}

/// Describes a loose body for the document only: `POST /servers` reads it with [`Body`] and
/// matches the settings entries' `type` loosely; no handler holds this type.
#[derive(ToSchema)]
#[schema(description = "PEON 1.0's create (`POST /servers`).")]
pub struct CreateV10Body {
    pub game_uid: String,
    pub servername: String,
    pub description: Option<String>,
    /// `[{"type": "env"|"json"|"txt", "name": ..., "content": ...}]`
    #[schema(value_type = Option<Vec<Object>>)]
    pub settings: Option<Value>,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn body(v: Value) -> Body {
        match v {
            Value::Object(m) => Body(m),
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn answers_serialize_as_peon_clients_read_them() {
        let s = serde_json::to_string(&Success::new("done")).unwrap();
        assert_eq!(s, r#"{"status":"success","info":"done"}"#);
        let e = ErrorBody {
            status: "error",
            info: "no".into(),
            err_code: "req.invalid",
        };
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"status":"error","info":"no","err_code":"req.invalid"}"#
        );
        let logs = Logs {
            logs: vec!["a".into()],
        };
        assert_eq!(serde_json::to_string(&logs).unwrap(), r#"{"logs":["a"]}"#);
        let up = EngineStatus {
            reachable: true,
            version: Some("27".into()),
            api_version: Some("1.41".into()),
            os: Some("linux".into()),
            error: None,
        };
        let o = Orchestrator {
            version: "1".into(),
            instance: "peon".into(),
            servers: 2,
            engine: up,
        };
        assert_eq!(
            serde_json::to_string(&o).unwrap(),
            r#"{"version":"1","instance":"peon","servers":2,"engine":{"reachable":true,"version":"27","api_version":"1.41","os":"linux"}}"#
        );
        let down = EngineStatus {
            reachable: false,
            version: None,
            api_version: None,
            os: None,
            error: Some("gone".into()),
        };
        assert_eq!(
            serde_json::to_string(&down).unwrap(),
            r#"{"reachable":false,"error":"gone"}"#
        );
        let entry = PlanEntry(json!({"title": "T", "game_uid": "t", "extra": 1}));
        assert_eq!(
            serde_json::to_string(&entry).unwrap(),
            r#"{"title":"T","game_uid":"t","extra":1}"#
        );
    }

    #[test]
    fn typed_bodies_keep_peons_loose_input_and_messages() {
        let d = DescriptionBody::try_from(body(json!({"description": "x"}))).unwrap();
        assert_eq!(d.description, "x");
        let e = DescriptionBody::try_from(body(json!({}))).unwrap_err();
        assert_eq!(
            e.to_string(),
            "The description argument was incorrectly provided."
        );
        let e = DescriptionBody::try_from(body(json!({"description": 5}))).unwrap_err();
        assert_eq!(
            e.to_string(),
            "The field description must be a string, not 5."
        );

        assert!(
            UpdateBody::try_from(Body::default())
                .unwrap()
                .mode
                .is_none()
        );
        assert!(UpdateBody::try_from(body(json!({"mode": 1}))).is_err());

        for (v, want) in [
            (json!({}), false),
            (json!({"eradicate": true}), true),
            (json!({"eradicate": "True"}), true),
            (json!({"eradicate": "true"}), false),
            (json!({"eradicate": 1}), false),
        ] {
            let got = DestroyBody::try_from(body(v.clone())).unwrap().eradicate;
            assert_eq!(got, want, "{v}");
        }
    }

    #[test]
    fn a_schedule_body_has_an_action_and_cron_or_at() {
        let now = 1_700_000_000;
        let s = ScheduleBody::parse(
            &body(json!({"action": "stop", "cron": "0 18 * * FRI"})),
            now,
        )
        .unwrap();
        assert_eq!(s.action, Action::Stop);
        assert!(matches!(s.when, When::Cron(_)));
        let s =
            ScheduleBody::parse(&body(json!({"action": "start", "at": now + 60})), now).unwrap();
        assert!(matches!(s.when, When::At(t) if t == now + 60));
        for (v, part) in [
            (json!({"cron": "* * * * *"}), "action is required"),
            (json!({"action": "start"}), "cron or at is required"),
            (
                json!({"action": "start", "cron": "* * * * *", "at": now + 5}),
                "not both",
            ),
            (json!({"action": "start", "cron": 5}), "must be a string"),
        ] {
            let e = ScheduleBody::parse(&body(v.clone()), now).unwrap_err();
            assert!(e.to_string().contains(part), "{v}: {e}");
            assert_eq!(e.classify().1, "req.invalid", "{v}");
        }
    }
}

/// The servers a key reaches: every server of the listed games plus the listed uids.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct KeyScope {
    #[serde(default)]
    pub games: Vec<String>,
    #[serde(default)]
    pub uids: Vec<String>,
}

/// `POST /keys`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct KeyBody {
    /// 1-64 lowercase letters, digits, `_` or `-`.
    pub name: String,
    /// `admin`, `operator` or `viewer`.
    pub role: String,
    /// Omitted or null: every server (required for admin keys).
    #[serde(default)]
    pub scope: Option<KeyScope>,
}

/// A key as listed: never its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyInfo {
    pub name: String,
    /// `admin`, `operator` or `viewer`.
    pub role: String,
    /// Null: every server.
    pub scope: Option<KeyScope>,
    /// RFC 3339; null for the configured key.
    pub created: Option<String>,
    /// The key from the configuration (name `admin`): cannot be revoked.
    pub configured: bool,
}

/// `POST /keys` answer: the key and its secret, shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct NewKeyInfo {
    #[serde(flatten)]
    pub key: KeyInfo,
    /// Send it as `X-Api-Key`. It is stored only as a hash and cannot be shown again.
    pub secret: String,
}

/// One audited request (`GET /audit`).
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditInfo {
    /// RFC 3339, UTC.
    pub time: String,
    /// The key's name.
    pub key: String,
    /// The client's IP address.
    pub addr: String,
    pub method: String,
    /// The route template, e.g. `/api/v1/server/start/{uid}`.
    pub route: String,
    pub uid: Option<String>,
    pub status: u16,
    /// The job the request started (not recorded yet: null).
    pub job_id: Option<String>,
}

/// `POST /hooks`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct HookBody {
    /// 1-64 letters, digits, `-` or `_`.
    pub id: String,
    /// An http:// or https:// URL.
    pub url: String,
    /// Event names: started, stopped, crashed, restarted, gave_up, backup_done, backup_failed,
    /// update_rolled_back, rollout_done, idle_stop, node_down, node_up; or `*` for all.
    pub events: Vec<String>,
    /// The HMAC-SHA256 key of the `X-Peon-Signature` header; never shown again.
    #[serde(default)]
    pub secret: Option<String>,
    /// `generic` or `discord`; by default Discord webhook URLs get Discord embeds.
    #[serde(default)]
    pub format: Option<String>,
}

/// `GET /hook/{id}`: the hook and its latest dead letters, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct HookDetail {
    pub hook: crate::service::HookInfo,
    pub dead_letters: Vec<crate::service::DeadLetter>,
}

/// `GET /server/save/<uid>` with `Accept: application/json`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SaveLinkBody {
    /// A link to the fresh save zip that works without the API key until `expires_at`.
    pub download_url: String,
    /// RFC 3339, UTC.
    pub expires_at: String,
}
