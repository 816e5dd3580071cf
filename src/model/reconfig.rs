//! A server's `config.json` moved to a newer version of its plan: the new plan's document, with
//! the settings the host gave kept, the new settings at their defaults and the removed ones
//! dropped; the server's ports and its own metadata (name, hostname, description) are kept. A
//! setting still at the old plan's default is not one the host gave: it takes the new default.

use serde_json::{Map, Value};

/// Metadata keys that belong to the server, not to the plan.
const SERVER_METADATA: [&str; 4] = ["description", "warcamp", "hostname", "container_name"];

/// Builds the config of a server on `plan_doc` (a `plan.json`) from its `current` config and the
/// plan it was built from (`old_plan`, when known). Fails with the names of the settings the new
/// plan requires that the server has no value for.
pub fn upgrade_config(
    current: &Value,
    old_plan: Option<&Value>,
    plan_doc: &Value,
) -> Result<Value, Vec<String>> {
    let mut doc = plan_doc.clone();
    let env_of = |v: &Value| {
        v.get("environment")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    };
    let had = env_of(current);
    let old_defaults = old_plan.map(env_of).unwrap_or_default();
    let wanted = doc
        .get("environment")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut env = Map::new();
    let mut missing = Vec::new();
    for (k, default) in wanted {
        let value = match had.get(&k) {
            Some(v) if v.is_null() => default,
            // Left at the old plan's default: the new default.
            Some(v) if old_defaults.get(&k) == Some(v) && !default.is_null() => default,
            Some(v) => v.clone(),
            None => default,
        };
        if value.is_null() {
            missing.push(k.clone());
        }
        env.insert(k, value);
    }
    if !missing.is_empty() {
        return Err(missing);
    }
    if let Some(d) = doc.as_object_mut() {
        d.insert("environment".into(), Value::Object(env));
        if let Some(ports) = current.get("ports") {
            d.insert("ports".into(), ports.clone());
        }
        let mine = current.get("metadata").and_then(Value::as_object);
        if let (Some(meta), Some(mine)) =
            (d.get_mut("metadata").and_then(Value::as_object_mut), mine)
        {
            for k in SERVER_METADATA {
                if let Some(v) = mine.get(k) {
                    meta.insert(k.into(), v.clone());
                }
            }
        }
    }
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn host_values_kept_new_defaults_added_removed_dropped() {
        let current = json!({
            "metadata": {"game_uid": "g", "version": "1", "image": "x:1",
                "description": "mine", "warcamp": "a", "hostname": "peon.warcamp.g.a",
                "container_name": "peon.warcamp.g.a"},
            "ports": [{"PORT": ["4000", "tcp"]}],
            "environment": {"SERVER_NAME": "host", "MOTD": "hi host", "OLD": "x",
                "PASSWORD": "", "MAP": "old default"},
            "volumes": {"~!/data": "/data"}
        });
        let old = json!({
            "metadata": {"game_uid": "g", "version": "1"},
            "environment": {"SERVER_NAME": null, "MOTD": "plan motd", "OLD": "x",
                "PASSWORD": "", "MAP": "old default"}
        });
        let plan = json!({
            "metadata": {"game_uid": "g", "version": "2", "image": "x:2",
                "description": "plan", "warcamp": "default", "hostname": "peon.warcamp.g"},
            "ports": [[{"PORT": ["27960", "tcp"]}], [{"PORT": ["27961", "tcp"]}]],
            "environment": {"SERVER_NAME": null, "MOTD": "plan motd 2", "NEW": "fresh",
                "PASSWORD": "", "MAP": "new default"},
            "volumes": {"~!/data": "/data", "~!/user": "/user"}
        });
        let c = upgrade_config(&current, Some(&old), &plan).unwrap();
        assert_eq!(
            c["environment"],
            json!({"SERVER_NAME": "host", "MOTD": "hi host", "NEW": "fresh",
                "PASSWORD": "", "MAP": "new default"})
        );
        // Without the old plan, every value the server has is kept.
        let c = upgrade_config(&current, None, &plan).unwrap();
        assert_eq!(c["environment"]["MAP"], "old default");
        assert_eq!(c["ports"], current["ports"]);
        assert_eq!(c["metadata"]["version"], "2");
        assert_eq!(c["metadata"]["image"], "x:2");
        assert_eq!(c["metadata"]["description"], "mine");
        assert_eq!(c["metadata"]["warcamp"], "a");
        assert_eq!(c["metadata"]["container_name"], "peon.warcamp.g.a");
        assert_eq!(c["volumes"], plan["volumes"]);
    }

    #[test]
    fn a_new_required_setting_without_a_value_is_named() {
        let current = json!({"metadata": {}, "environment": {"A": "1"}});
        let plan = json!({"metadata": {}, "environment": {"A": null, "B": null}});
        assert_eq!(
            upgrade_config(&current, None, &plan),
            Err(vec!["B".to_owned()])
        );
    }
}
