//! Where a field is in a manifest's source file (pure). The API server names a field by its
//! path (`.spec.template.spec.containers[name="web"].portz`); errors about it should name the
//! file and line to fix, as a compiler would.

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

use crate::render::Manifest;

/// A YAML node with the line of every key and item.
#[derive(Debug)]
enum Tree {
    Map(Vec<(Spanned<String>, Spanned<Tree>)>),
    Seq(Vec<Spanned<Tree>>),
    /// A scalar as written (null as empty).
    Leaf(String),
}

impl<'de> Deserialize<'de> for Tree {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(TreeVisitor)
    }
}

struct TreeVisitor;

impl<'de> Visitor<'de> for TreeVisitor {
    type Value = Tree;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a YAML node")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Tree, E> {
        Ok(Tree::Leaf(v.to_string()))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Tree, E> {
        Ok(Tree::Leaf(v.to_string()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Tree, E> {
        Ok(Tree::Leaf(v.to_string()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Tree, E> {
        Ok(Tree::Leaf(v.to_string()))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Tree, E> {
        Ok(Tree::Leaf(v.to_owned()))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Tree, E> {
        Ok(Tree::Leaf(String::new()))
    }

    fn visit_none<E: de::Error>(self) -> Result<Tree, E> {
        Ok(Tree::Leaf(String::new()))
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Tree, D::Error> {
        Tree::deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Tree, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Tree>>()? {
            items.push(item);
        }
        Ok(Tree::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Tree, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<String>>()? {
            let value = map.next_value::<Spanned<Tree>>()?;
            entries.push((key, value));
        }
        Ok(Tree::Map(entries))
    }
}

impl Tree {
    fn get(&self, key: &str) -> Option<&Spanned<Tree>> {
        match self {
            Tree::Map(entries) => entries.iter().find(|(k, _)| k.value == key).map(|(_, v)| v),
            _ => None,
        }
    }

    fn text(&self) -> Option<&str> {
        match self {
            Tree::Leaf(s) => Some(s),
            _ => None,
        }
    }
}

/// The line of each of `paths` (the API server's field paths) in the object `m` came from, or
/// of the deepest part of it that the source has; the file is parsed once. `None` when the
/// object is not found in its source.
fn lines_of(m: &Manifest, paths: &[&str]) -> Option<Vec<u64>> {
    let docs: Vec<Spanned<Tree>> =
        serde_saphyr::from_multiple_with_options(&m.source, crate::render::yaml_options()).ok()?;
    let doc = docs.iter().find(|d| d.referenced.line().max(1) == m.line)?;
    let object = list_item(&doc.value, m).unwrap_or(doc);
    Some(paths.iter().map(|path| walk(object, path)).collect())
}

/// In a `List` document, the item that is `m`.
fn list_item<'t>(doc: &'t Tree, m: &Manifest) -> Option<&'t Spanned<Tree>> {
    let Tree::Seq(items) = &doc.get("items")?.value else {
        return None;
    };
    items.iter().find(|item| {
        let meta = item.value.get("metadata");
        item.value.get("kind").and_then(|k| k.value.text()) == Some(m.kind())
            && meta
                .and_then(|meta| meta.value.get("name"))
                .and_then(|n| n.value.text())
                == Some(m.name())
    })
}

/// Follows `path` from `node`; the line of the last step found.
fn walk(node: &Spanned<Tree>, path: &str) -> u64 {
    let mut line = node.referenced.line().max(1);
    let mut node = node;
    let mut rest = path;
    loop {
        if let Some(after) = rest.strip_prefix('.') {
            // the longest key that the path continues with (keys may hold dots)
            let Tree::Map(entries) = &node.value else {
                return line;
            };
            let found = entries
                .iter()
                .filter(|(k, _)| {
                    after.strip_prefix(k.value.as_str()).is_some_and(|tail| {
                        tail.is_empty() || tail.starts_with('.') || tail.starts_with('[')
                    })
                })
                .max_by_key(|(k, _)| k.value.len());
            let Some((key, value)) = found else {
                return line;
            };
            line = key.referenced.line();
            rest = &after[key.value.len()..];
            node = value;
        } else if let Some(after) = rest.strip_prefix('[') {
            let Some(end) = closing_bracket(after) else {
                return line;
            };
            let Tree::Seq(items) = &node.value else {
                return line;
            };
            let Some(item) = select(items, &after[..end]) else {
                return line;
            };
            line = item.referenced.line();
            rest = &after[end + 1..];
            node = item;
        } else {
            return line;
        }
    }
}

/// The index of the `]` that closes a selector, skipping quoted strings.
fn closing_bracket(s: &str) -> Option<usize> {
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ']' if !quoted => return Some(i),
            _ => {}
        }
    }
    None
}

/// The list item a selector names: `[3]` (index), `[=value]` (a set's value) or
/// `[key="v",other=1]` (an associative list's keys, values in JSON).
fn select<'t>(items: &'t [Spanned<Tree>], selector: &str) -> Option<&'t Spanned<Tree>> {
    if let Ok(index) = selector.parse::<usize>() {
        return items.get(index);
    }
    let as_text = |json: &str| match serde_json::from_str::<serde_json::Value>(json) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => json.to_owned(),
    };
    if let Some(value) = selector.strip_prefix('=') {
        let value = as_text(value);
        return items
            .iter()
            .find(|i| i.value.text() == Some(value.as_str()));
    }
    let keys: Vec<(&str, String)> = split_top(selector)
        .into_iter()
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k, as_text(v)))
        .collect();
    items.iter().find(|item| {
        keys.iter()
            .all(|(k, v)| item.value.get(k).and_then(|x| x.value.text()) == Some(v.as_str()))
    })
}

/// Splits `a="x,y",b=1` at the commas outside quotes.
fn split_top(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

/// The field errors in an API server's message: `(path, what)` for each line such as
/// `.spec.replicsa: field not declared in schema` (server-side apply's strict validation, one
/// or several after `errors:`).
pub(crate) fn field_errors(message: &str) -> Vec<(&str, &str)> {
    let body = message
        .find("): ")
        .filter(|_| message.starts_with("failed to create typed patch object"))
        .map_or(message, |i| &message[i + 3..]);
    body.lines()
        .map(str::trim)
        .filter(|l| l.starts_with('.'))
        .filter_map(|l| {
            // the path ends at the first `: ` outside a selector's quotes
            let mut depth = 0usize;
            let mut quoted = false;
            for (i, c) in l.char_indices() {
                match c {
                    '"' => quoted = !quoted,
                    '[' if !quoted => depth += 1,
                    ']' if !quoted => depth = depth.saturating_sub(1),
                    ':' if !quoted && depth == 0 && l[i + 1..].starts_with(' ') => {
                        return Some((&l[..i], l[i + 2..].trim()));
                    }
                    _ => {}
                }
            }
            None
        })
        .collect()
}

/// An API server's refusal of `m` restated at the lines it is about: the origin
/// (`file:line` of the first field named) and a message naming each field with its line.
/// `None` when the message names no field.
pub(crate) fn explain(m: &Manifest, message: &str) -> Option<(String, String)> {
    let fields = field_errors(message);
    let first = fields.first()?;
    let paths: Vec<&str> = fields.iter().map(|(path, _)| *path).collect();
    let lines = lines_of(m, &paths).unwrap_or_else(|| vec![m.line; paths.len()]);
    let located: Vec<(u64, &str, &str)> = fields
        .iter()
        .zip(lines)
        .map(|((path, what), line)| (line, *path, *what))
        .collect();
    let origin = format!("{}:{}", m.file, located[0].0);
    let text = if located.len() == 1 {
        format!("{}: {}", first.0, first.1)
    } else {
        located
            .iter()
            .map(|(line, path, what)| format!("{path}: {what} (line {line})"))
            .collect::<Vec<_>>()
            .join("; ")
    };
    Some((origin, text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const FILE: &str = "apiVersion: v1
kind: ConfigMap
metadata: {name: other}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  annotations:
    example.com/team: web
spec:
  replicsa: 2
  template:
    spec:
      containers:
        - name: sidecar
          image: envoy
        - name: web
          image: nginx
          ports:
            - containerPort: 80
              protocol: TCP
            - containerPort: 443
              protcol: TCP
";

    fn deployment() -> Manifest {
        Manifest {
            object: serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment",
                                       "metadata": {"name": "web"}}),
            file: "apps/web.yaml".into(),
            line: 5,
            source: Arc::from(FILE),
            hidden: Default::default(),
        }
    }

    #[test]
    fn paths_lead_to_their_lines() {
        let m = deployment();
        for (path, line) in [
            (".spec.replicsa", 12),
            (".metadata.annotations.example.com/team", 10),
            (".spec.template.spec.containers[name=\"web\"]", 18),
            (".spec.template.spec.containers[name=\"web\"].image", 19),
            (
                ".spec.template.spec.containers[name=\"web\"].ports[containerPort=80,protocol=\"TCP\"]",
                21,
            ),
            (".spec.template.spec.containers[1].ports[1].protcol", 24),
            // a field the source lacks: the deepest part it has
            (".spec.template.spec.volumes", 14),
        ] {
            assert_eq!(lines_of(&m, &[path]), Some(vec![line]), "{path}");
        }
    }

    #[test]
    fn strict_validation_errors_are_read_from_the_message() {
        let one = "failed to create typed patch object (ns/web; apps/v1, Kind=Deployment): \
                   .spec.replicsa: field not declared in schema";
        assert_eq!(
            field_errors(one),
            [(".spec.replicsa", "field not declared in schema")]
        );
        let many = "failed to create typed patch object (ns/web; apps/v1, Kind=Deployment): errors:\n  \
                    .spec.template.spec.containers[name=\"web\"].portz: field not declared in schema\n  \
                    .spec.replicsa: field not declared in schema";
        let (origin, text) = explain(&deployment(), many).expect("fields");
        assert_eq!(origin, "apps/web.yaml:18");
        assert!(
            text.contains(".spec.replicsa: field not declared in schema (line 12)"),
            "{text}"
        );
        assert!(explain(&deployment(), "namespaces \"x\" not found").is_none());
    }
}
