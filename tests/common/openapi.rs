//! A git host's API on loopback that checks every request against the host's published OpenAPI
//! description (GitHub's from npm `@octokit/openapi`): the operation must exist, its path and
//! query parameters must be declared and valid, and its JSON body must conform to the
//! operation's request schema. What does not conform is answered 400 and kept as a violation
//! for the test to report. Conforming requests get the answer the test's responder gives.

#![allow(
    dead_code,
    reason = "the test binaries that include this use different parts of it"
)]

use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::Value;

/// An OpenAPI 3.0 description.
pub struct Spec {
    doc: Value,
}

/// One request as the fake saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: String,
    pub authorization: String,
    pub body: Value,
    /// The operation's `operationId`, when one matched.
    pub operation: String,
    pub violations: Vec<String>,
    pub answered: u16,
}

impl Spec {
    pub fn load(path: &std::path::Path) -> Self {
        let text = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        Self {
            doc: serde_json::from_slice(&text).expect("an OpenAPI document"),
        }
    }

    /// The operation a request names: the path template with the most literal segments that
    /// matches, with its path parameters.
    fn operation(&self, method: &str, path: &str) -> Option<Matched<'_>> {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let mut best: Option<(usize, Matched<'_>)> = None;
        for (template, item) in self.doc["paths"].as_object()? {
            let Some(op) = item.get(method.to_ascii_lowercase()) else {
                continue;
            };
            let parts: Vec<&str> = template.trim_matches('/').split('/').collect();
            if parts.len() != segments.len() {
                continue;
            }
            let mut params = Vec::new();
            let mut literal = 0;
            let fits = parts.iter().zip(&segments).all(|(p, s)| {
                if let Some(name) = p.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                    params.push((name.to_owned(), (*s).to_owned()));
                    !s.is_empty()
                } else {
                    literal += 1;
                    p == s
                }
            });
            if fits && best.as_ref().is_none_or(|b| literal > b.0) {
                let matched = Matched {
                    template: template.clone(),
                    op,
                    params,
                };
                best = Some((literal, matched));
            }
        }
        best.map(|(_, m)| m)
    }

    /// A value with every local `$ref` replaced by what it points at.
    fn resolve(&self, value: &Value, depth: usize) -> Value {
        assert!(depth < 64, "the description's references nest too deep");
        match value {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get("$ref") {
                    let pointer = r.strip_prefix('#').expect("a local reference");
                    let target = self.doc.pointer(pointer).unwrap_or_else(|| panic!("{r}"));
                    return self.resolve(target, depth + 1);
                }
                Value::Object(
                    map.iter()
                        .map(|(k, v)| (k.clone(), self.resolve(v, depth + 1)))
                        .collect(),
                )
            }
            Value::Array(items) => {
                Value::Array(items.iter().map(|v| self.resolve(v, depth + 1)).collect())
            }
            other => other.clone(),
        }
    }

    /// Checks one request; returns the operation's id and what does not conform.
    pub fn check(
        &self,
        method: &str,
        path: &str,
        query: &str,
        body: &[u8],
    ) -> (String, Vec<String>) {
        let Some(Matched {
            template,
            op,
            params: path_params,
        }) = self.operation(method, path)
        else {
            return (
                String::new(),
                vec![format!(
                    "{method} {path}: no such operation in the description"
                )],
            );
        };
        let op = self.resolve(op, 0);
        let id = op["operationId"].as_str().unwrap_or_default().to_owned();
        let mut violations = Vec::new();
        let declared = op["parameters"].as_array().cloned().unwrap_or_default();
        let find = |place: &str, name: &str| {
            declared
                .iter()
                .find(|p| p["in"] == place && p["name"] == name)
                .cloned()
        };
        let mut check_value = |place: &str, name: &str, raw: &str| match find(place, name) {
            None => violations.push(format!(
                "{method} {template}: {place} parameter {name:?} is not declared"
            )),
            Some(p) => {
                let schema = json_schema(&p["schema"]);
                let value = match schema["type"].as_str().or(schema["type"][0].as_str()) {
                    Some("integer" | "number") => raw
                        .parse::<i64>()
                        .map(Value::from)
                        .unwrap_or_else(|_| Value::from(raw)),
                    Some("boolean") => raw
                        .parse::<bool>()
                        .map(Value::from)
                        .unwrap_or_else(|_| Value::from(raw)),
                    _ => Value::from(raw),
                };
                for e in errors(&schema, &value) {
                    violations.push(format!(
                        "{method} {template}: {place} parameter {name}: {e}"
                    ));
                }
            }
        };
        for (name, value) in &path_params {
            check_value("path", name, value);
        }
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            check_value("query", &name, &value);
        }
        let request_body = &op["requestBody"];
        match (request_body.is_null(), body.is_empty()) {
            (true, true) => {}
            (true, false) => violations.push(format!("{method} {template} takes no body")),
            (false, true) if request_body["required"] == true => {
                violations.push(format!("{method} {template}: the body is required"));
            }
            (false, true) => {}
            (false, false) => {
                let schema = json_schema(&request_body["content"]["application/json"]["schema"]);
                match serde_json::from_slice::<Value>(body) {
                    Err(e) => {
                        violations.push(format!("{method} {template}: the body is not JSON: {e}"))
                    }
                    Ok(value) => {
                        for e in errors(&schema, &value) {
                            violations.push(format!("{method} {template}: body: {e}"));
                        }
                    }
                }
            }
        }
        (id, violations)
    }
}

/// The operation a request matched: its path template, its description and the path
/// parameters' values.
struct Matched<'a> {
    template: String,
    op: &'a Value,
    params: Vec<(String, String)>,
}

/// An OpenAPI 3.0 schema as JSON Schema (draft 4): `nullable: true` allows `null`.
fn json_schema(schema: &Value) -> Value {
    match schema {
        Value::Object(map) => {
            let mut out: serde_json::Map<String, Value> = map
                .iter()
                .filter(|(k, _)| k.as_str() != "nullable" && k.as_str() != "example")
                .map(|(k, v)| (k.clone(), json_schema(v)))
                .collect();
            if map.get("nullable") == Some(&Value::Bool(true)) {
                if let Some(Value::String(t)) = out.get("type").cloned() {
                    out.insert("type".into(), serde_json::json!([t, "null"]));
                }
                if let Some(Value::Array(values)) = out.get_mut("enum") {
                    values.push(Value::Null);
                }
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(json_schema).collect()),
        other => other.clone(),
    }
}

/// What of `value` does not conform to `schema`.
fn errors(schema: &Value, value: &Value) -> Vec<String> {
    let validator = jsonschema::draft4::new(schema).expect("the description's schema compiles");
    validator
        .iter_errors(value)
        .map(|e| format!("{e} (at {})", e.instance_path()))
        .collect()
}

/// How the fake answers a conforming request: (status, body) from the operation's id, the
/// request's path and its body.
pub type Responder = Arc<dyn Fn(&str, &str, &Value) -> (u16, Value) + Send + Sync>;

/// What the fake does now.
#[derive(Default)]
pub struct Mode {
    /// Answer 500 until then.
    pub fail_until: Option<Instant>,
    /// Answer 401 (bad credentials).
    pub refuse: bool,
}

struct Inner {
    spec: Spec,
    token: String,
    respond: Responder,
    mode: Mutex<Mode>,
    log: Mutex<Vec<Recorded>>,
}

/// The fake API server on loopback.
pub struct FakeApi {
    /// `http://127.0.0.1:<port>`
    pub url: String,
    inner: Arc<Inner>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeApi {
    /// Serves `spec`, accepting `Authorization: Bearer <token>`, `token <token>` or basic
    /// authentication with `<token>` as the password.
    pub async fn start(spec: Spec, token: &str, respond: Responder) -> Self {
        let inner = Arc::new(Inner {
            spec,
            token: token.to_owned(),
            respond,
            mode: Mutex::new(Mode::default()),
            log: Mutex::new(Vec::new()),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let state = inner.clone();
        let app = axum::Router::new().fallback(
            move |method: http::Method,
                  uri: http::Uri,
                  headers: http::HeaderMap,
                  body: axum::body::Bytes| {
                let state = state.clone();
                async move { answer(&state, &method, &uri, &headers, &body) }
            },
        );
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        });
        Self { url, inner, task }
    }

    /// Changes how the fake answers.
    pub fn set(&self, change: impl FnOnce(&mut Mode)) {
        change(&mut self.inner.mode.lock().expect("mode"));
    }

    /// Every request so far.
    pub fn log(&self) -> Vec<Recorded> {
        self.inner.log.lock().expect("log").clone()
    }

    /// Every violation so far, one per line.
    pub fn violations(&self) -> Vec<String> {
        self.log().into_iter().flat_map(|r| r.violations).collect()
    }
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn answer(
    state: &Inner,
    method: &http::Method,
    uri: &http::Uri,
    headers: &http::HeaderMap,
    body: &[u8],
) -> (http::StatusCode, axum::Json<Value>) {
    let path = uri.path().to_owned();
    let query = uri.query().unwrap_or_default().to_owned();
    let authorization = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let (operation, mut violations) = state.spec.check(method.as_str(), &path, &query, body);
    if !body.is_empty()
        && !headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|c| c.starts_with("application/json"))
    {
        violations.push(format!(
            "{method} {path}: a JSON body without Content-Type: application/json"
        ));
    }
    let basic = authorization
        .strip_prefix("Basic ")
        .and_then(|b| base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|b| b.split_once(':').map(|(_, password)| password.to_owned()));
    let authorized = authorization == format!("Bearer {}", state.token)
        || authorization == format!("token {}", state.token)
        || basic.as_deref() == Some(state.token.as_str());
    let json: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let (code, reply) = {
        let mode = state.mode.lock().expect("mode");
        if !violations.is_empty() {
            (400, serde_json::json!({"message": violations.join("; ")}))
        } else if mode.fail_until.is_some_and(|t| Instant::now() < t) {
            (500, serde_json::json!({"message": "Server Error"}))
        } else if mode.refuse || !authorized {
            (
                401,
                serde_json::json!({"message": "Bad credentials",
                "documentation_url": "https://docs.github.com/rest"}),
            )
        } else {
            (state.respond)(&operation, &path, &json)
        }
    };
    state.log.lock().expect("log").push(Recorded {
        method: method.to_string(),
        path,
        query,
        authorization,
        body: json,
        operation,
        violations,
        answered: code,
    });
    (
        http::StatusCode::from_u16(code).expect("a status code"),
        axum::Json(reply),
    )
}
