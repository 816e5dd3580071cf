//! `plans/plan.schema.json`, the JSON Schema of `plan.json`, and the small validator that
//! applies it. The validator implements the structural keywords the schema uses (`type`,
//! `required`, `properties`, `additionalProperties`, `items`, `prefixItems`, `minItems`,
//! `maxItems`, `minProperties`, `minLength`, `enum`, local `$ref`); annotations and `pattern`
//! are left to the plan model, which checks port numbers and names itself. A test proves the
//! schema and the model agree on every fixture plan.

use std::sync::OnceLock;

use serde_json::Value;

use super::Problem;

/// The schema text, as shipped in `plans/` and documented in `docs/plans.md`.
pub const SCHEMA: &str = include_str!("../../plans/plan.schema.json");

fn schema() -> &'static Value {
    static PARSED: OnceLock<Value> = OnceLock::new();
    // The schema is a file of this repository, parsed by a unit test: it is valid JSON.
    PARSED.get_or_init(|| serde_json::from_str(SCHEMA).unwrap_or(Value::Bool(true)))
}

/// Checks a plan document against the schema; each problem names its field as the model does
/// (`metadata.image`, `ports[0][1].PORT`, `volumes[~!/data]`).
pub fn check(doc: &Value) -> Vec<Problem> {
    let root = schema();
    let mut out = Vec::new();
    walk(root, root, doc, "", &mut out);
    out
}

fn field(path: &str) -> String {
    if path.is_empty() {
        "(root)".into()
    } else {
        path.to_owned()
    }
}

fn child_key(path: &str, key: &str) -> String {
    let plain = !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    match (path.is_empty(), plain) {
        (true, _) => key.to_owned(),
        (false, true) => format!("{path}.{key}"),
        (false, false) => format!("{path}[{key}]"),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_matches(want: &str, v: &Value) -> bool {
    let have = type_name(v);
    want == have || (want == "number" && have == "integer")
}

fn resolve<'a>(root: &'a Value, s: &'a Value) -> &'a Value {
    match s.get("$ref").and_then(Value::as_str) {
        Some(r) => r
            .strip_prefix('#')
            .and_then(|p| root.pointer(p))
            .unwrap_or(&Value::Bool(true)),
        None => s,
    }
}

fn walk(root: &Value, s: &Value, v: &Value, path: &str, out: &mut Vec<Problem>) {
    let s = resolve(root, s);
    let bad = |out: &mut Vec<Problem>, msg: String| {
        out.push(Problem {
            field: field(path),
            message: msg,
        })
    };
    if s == &Value::Bool(false) {
        bad(out, "is not allowed here".into());
        return;
    }
    if let Some(t) = s.get("type") {
        let wants: Vec<&str> = match t {
            Value::String(x) => vec![x.as_str()],
            Value::Array(xs) => xs.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if !wants.is_empty() && !wants.iter().any(|w| type_matches(w, v)) {
            bad(
                out,
                format!("must be {} (found {})", wants.join(" or "), type_name(v)),
            );
            return;
        }
    }
    if let Some(opts) = s.get("enum").and_then(Value::as_array)
        && !opts.contains(v)
    {
        let shown: Vec<String> = opts.iter().map(ToString::to_string).collect();
        bad(out, format!("{v} is not one of {}", shown.join(", ")));
    }
    match v {
        Value::String(x) => {
            if let Some(n) = s.get("minLength").and_then(Value::as_u64)
                && (x.chars().count() as u64) < n
            {
                bad(out, "is empty".into());
            }
        }
        Value::Array(items) => {
            let len = items.len() as u64;
            if let Some(n) = s.get("minItems").and_then(Value::as_u64)
                && len < n
            {
                bad(out, format!("needs at least {n} items (found {len})"));
            }
            if let Some(n) = s.get("maxItems").and_then(Value::as_u64)
                && len > n
            {
                bad(out, format!("takes at most {n} items (found {len})"));
            }
            let prefix = s
                .get("prefixItems")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default();
            for (i, item) in items.iter().enumerate() {
                let p = format!("{path}[{i}]");
                if let Some(ps) = prefix.get(i) {
                    walk(root, ps, item, &p, out);
                } else if let Some(is) = s.get("items") {
                    walk(root, is, item, &p, out);
                }
            }
        }
        Value::Object(map) => {
            if let Some(n) = s.get("minProperties").and_then(Value::as_u64)
                && (map.len() as u64) < n
            {
                bad(out, format!("needs at least {n} entries"));
            }
            if let Some(req) = s.get("required").and_then(Value::as_array) {
                for r in req.iter().filter_map(Value::as_str) {
                    if !map.contains_key(r) {
                        out.push(Problem {
                            field: child_key(path, r),
                            message: "is missing".into(),
                        });
                    }
                }
            }
            let props = s.get("properties").and_then(Value::as_object);
            for (k, val) in map {
                let p = child_key(path, k);
                match props.and_then(|ps| ps.get(k)) {
                    Some(ps) => walk(root, ps, val, &p, out),
                    None => {
                        if let Some(extra) = s.get("additionalProperties") {
                            walk(root, extra, val, &p, out);
                        }
                    }
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_schema_is_valid_json() {
        let v: Value = serde_json::from_str(SCHEMA).unwrap();
        assert!(v.get("$defs").is_some());
    }

    #[test]
    fn reports_structural_faults_with_model_style_fields() {
        let doc = json!({
            "metadata": {"game_uid": "g", "image": ""},
            "ports": [[{"PORT": ["2456", "sctp"]}, {"Q": ["1"]}]],
            "environment": {"A": null, "B": [1]},
            "volumes": {"~!/data": 5}
        });
        let fields: Vec<String> = check(&doc)
            .into_iter()
            .map(|p| format!("{} {}", p.field, p.message))
            .collect();
        let want = [
            "metadata.image is empty",
            "ports[0][0].PORT[1] \"sctp\" is not one of",
            "ports[0][1].Q needs at least 2 items",
            "environment.B must be string or null or number or boolean",
            "volumes[~!/data] must be string",
        ];
        for w in want {
            assert!(fields.iter().any(|f| f.starts_with(w)), "{w}: {fields:?}");
        }
        let missing = check(&json!({"metadata": {}}));
        assert_eq!(missing[0].field, "metadata.image");
        assert_eq!(check(&json!([]))[0].field, "(root)");
    }
}
