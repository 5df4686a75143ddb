//! The shape of the source tree, checked by reading `src/` (no cluster, no build of berth
//! itself): imports between top-level modules point one way (no cycles), and the strings berth
//! writes on the cluster (label and annotation keys, field managers, Event reasons) are spelled
//! only in the vocabulary module. ARCHITECTURE.md explains both rules.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`, with its path relative to `src/`.
fn sources(dir: &Path, out: &mut Vec<(String, String)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("src/ is readable")
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path
                .strip_prefix(src())
                .expect("under src/")
                .to_string_lossy()
                .into_owned();
            let text = std::fs::read_to_string(&path).expect("source is UTF-8");
            out.push((rel, without_tests(&text)));
        }
    }
}

/// The text with every `#[cfg(test)] mod … { … }` block blanked (lines kept, so line numbers
/// stay right).
fn without_tests(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("#[cfg(test)]") {
        let after = &rest[start..];
        let Some(open) = after.find('{').filter(|&i| after[..i].contains("mod ")) else {
            out.push_str(&rest[..start + 12]);
            rest = &rest[start + 12..];
            continue;
        };
        out.push_str(&rest[..start]);
        let mut depth = 0usize;
        let mut end = after.len();
        for (i, c) in after[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + i + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        out.extend(after[..end].chars().filter(|&c| c == '\n'));
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// The top-level module a file belongs to (`agent/server.rs` → `agent`); `None` for the crate
/// root files.
fn module_of(rel: &str) -> Option<String> {
    let first = rel.split(['/', '\\']).next()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "main")).then(|| name.to_owned())
}

/// Names a line imports through `crate::` paths, `crate::{a, b}` groups included.
fn crate_paths(line: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = line;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + 7..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for part in group[..end].split(',') {
                let name: String = part
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                    .collect();
                names.push(name);
            }
        } else {
            names.push(
                rest.chars()
                    .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                    .collect(),
            );
        }
    }
    names
}

/// One strongly connected component of more than one module, if any (Kosaraju, small graph).
fn cycles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<BTreeSet<String>> {
    let reach = |from: &str| {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.to_owned()];
        while let Some(m) = stack.pop() {
            for next in edges.get(&m).into_iter().flatten() {
                if seen.insert(next.clone()) {
                    stack.push(next.clone());
                }
            }
        }
        seen
    };
    let mut found: Vec<BTreeSet<String>> = Vec::new();
    for m in edges.keys() {
        let from_m = reach(m);
        let component: BTreeSet<String> = from_m
            .iter()
            .filter(|other| reach(other).contains(m))
            .cloned()
            .chain([m.clone()])
            .collect();
        if component.len() > 1 && !found.contains(&component) {
            found.push(component);
        }
    }
    found
}

/// The imports between top-level modules (`crate::` paths outside test code), with where each
/// edge first appears.
type Edges = BTreeMap<String, BTreeSet<String>>;

fn module_edges(files: &[(String, String)]) -> (Edges, BTreeMap<(String, String), String>) {
    let modules: BTreeSet<String> = files.iter().filter_map(|(r, _)| module_of(r)).collect();
    let mut edges: Edges = BTreeMap::new();
    let mut at: BTreeMap<(String, String), String> = BTreeMap::new();
    for (rel, text) in files {
        let Some(from) = module_of(rel) else { continue };
        for (n, line) in text.lines().enumerate() {
            for to in crate_paths(line) {
                if modules.contains(&to) && to != from {
                    at.entry((from.clone(), to.clone()))
                        .or_insert_with(|| format!("{rel}:{}", n + 1));
                    edges.entry(from.clone()).or_default().insert(to);
                }
            }
        }
    }
    (edges, at)
}

/// The layer of each module, from ARCHITECTURE.md's table under "## Layers": the rows in
/// order, each row's modules in backticks in its second column.
fn layers(architecture: &str) -> BTreeMap<String, usize> {
    let section = architecture
        .split("\n## ")
        .find(|s| s.starts_with("Layers"))
        .expect("a Layers section");
    let mut out = BTreeMap::new();
    let rows = section
        .lines()
        .filter(|l| l.starts_with('|'))
        .skip(2) // the header and the separator
        .enumerate();
    for (layer, row) in rows {
        let column = row.split('|').nth(2).unwrap_or_default();
        for (i, part) in column.split('`').enumerate() {
            if i % 2 == 1 {
                out.insert(part.trim_end_matches('/').to_owned(), layer);
            }
        }
    }
    out
}

/// Edges that point up the layers, or touch a module the table does not place.
fn upward(
    edges: &Edges,
    at: &BTreeMap<(String, String), String>,
    layers: &BTreeMap<String, usize>,
) -> Vec<String> {
    let mut found = Vec::new();
    for (from, tos) in edges {
        for to in tos {
            let (Some(a), Some(b)) = (layers.get(from), layers.get(to)) else {
                let missing = if layers.contains_key(from) { to } else { from };
                found.push(format!("{missing} is in no layer of ARCHITECTURE.md"));
                continue;
            };
            if b > a {
                let w = &at[&(from.clone(), to.clone())];
                found.push(format!(
                    "{from} (layer {a}) imports {to} (layer {b}) at {w}"
                ));
            }
        }
    }
    found.sort();
    found.dedup();
    found
}

/// Modules that reach up into the crate root: `lib.rs` holds the module list and the crate
/// `Error` that wraps each module's errors, which only the process layer (`agent`, `cli`) may
/// use; every other module has its own error type.
fn lib_edges(files: &[(String, String)]) -> Vec<String> {
    let mut found = Vec::new();
    for (rel, text) in files {
        let Some(module) = module_of(rel) else {
            continue;
        };
        if module == "agent" || module == "cli" {
            continue;
        }
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            if code.contains("crate::Error") || code.contains("crate::{Error") {
                found.push(format!("src/{rel}:{}: uses the crate Error", n + 1));
            }
        }
    }
    found
}

/// Cycles among the files of each folder (`mod.rs`, the folder's root, aside): an edge is a
/// `super::<sibling>` or `crate::<folder>::<sibling>` path.
fn folder_cycles(files: &[(String, String)]) -> Vec<String> {
    let mut folders: BTreeMap<String, BTreeMap<String, &str>> = BTreeMap::new();
    for (rel, text) in files {
        let path = Path::new(rel);
        let (Some(dir), Some(stem)) = (path.parent(), path.file_stem()) else {
            continue;
        };
        let (dir, stem) = (
            dir.to_string_lossy().replace('\\', "/"),
            stem.to_string_lossy(),
        );
        if dir.is_empty() || stem == "mod" {
            continue;
        }
        folders
            .entry(dir)
            .or_default()
            .insert(stem.into_owned(), text);
    }
    let mut found = Vec::new();
    for (dir, members) in &folders {
        let mut edges: Edges = BTreeMap::new();
        let prefixes = [
            "super::".to_owned(),
            format!("crate::{}::", dir.replace('/', "::")),
        ];
        for (from, text) in members {
            for line in text.lines() {
                for prefix in &prefixes {
                    let mut rest = line;
                    while let Some(i) = rest.find(prefix.as_str()) {
                        rest = &rest[i + prefix.len()..];
                        let names: Vec<String> = if let Some(group) = rest.strip_prefix('{') {
                            let end = group.find('}').unwrap_or(group.len());
                            group[..end]
                                .split(',')
                                .map(|p| p.trim().to_owned())
                                .collect()
                        } else {
                            vec![rest.to_owned()]
                        };
                        for name in names {
                            let name: String = name
                                .chars()
                                .take_while(|c| {
                                    c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_'
                                })
                                .collect();
                            if members.contains_key(&name) && &name != from {
                                edges.entry(from.clone()).or_default().insert(name);
                            }
                        }
                    }
                }
            }
        }
        for c in cycles(&edges) {
            found.push(format!("a cycle in src/{dir}/: {c:?}"));
        }
    }
    found
}

fn architecture() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("ARCHITECTURE.md"))
        .expect("ARCHITECTURE.md")
}

#[test]
fn imports_between_modules_point_one_way() {
    let mut files = Vec::new();
    sources(&src(), &mut files);
    let (edges, at) = module_edges(&files);
    assert!(edges.len() > 10, "found the modules: {edges:?}");
    assert!(
        edges.values().map(BTreeSet::len).sum::<usize>() > 20,
        "found the imports"
    );
    let found = cycles(&edges);
    let described: Vec<String> = found
        .iter()
        .map(|c| {
            let inside: Vec<String> = at
                .iter()
                .filter(|((a, b), _)| c.contains(a) && c.contains(b))
                .map(|((a, b), w)| format!("{a} -> {b} ({w})"))
                .collect();
            format!("cycle {c:?}: {}", inside.join("; "))
        })
        .collect();
    assert!(described.is_empty(), "{}", described.join("\n"));
}

#[test]
fn imports_follow_the_layers_of_architecture_md() {
    let mut files = Vec::new();
    sources(&src(), &mut files);
    let (edges, at) = module_edges(&files);
    let layers = layers(&architecture());
    assert!(
        layers.len() >= 25 && layers["vocab"] == 0 && layers["cli"] == 7,
        "{layers:?}"
    );
    let found = upward(&edges, &at, &layers);
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn only_the_process_layer_uses_the_crate_error() {
    let mut files = Vec::new();
    sources(&src(), &mut files);
    let found = lib_edges(&files);
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn no_folder_has_a_cycle_between_its_files() {
    let mut files = Vec::new();
    sources(&src(), &mut files);
    assert!(
        files.iter().any(|(r, _)| r == "sync/pass.rs"),
        "read the folders"
    );
    let found = folder_cycles(&files);
    assert!(found.is_empty(), "{}", found.join("\n"));
}

/// Each check fires on a violation planted in a copy of the tree's shape.
#[test]
fn the_checks_see_planted_violations() {
    let file = |rel: &str, text: &str| (rel.to_owned(), text.to_owned());
    let table = "# A\n\n## Layers\n\n| layer | modules | what |\n|---|---|---|\n| low | `vocab` | x |\n| high | `agent/` | y |\n";
    let layers = layers(table);
    assert_eq!(layers["vocab"], 0);
    assert_eq!(layers["agent"], 1);
    // an upward edge: the vocabulary importing the agent
    let planted = vec![
        file("vocab.rs", "use crate::agent::Shared;\n"),
        file("agent/mod.rs", "use crate::vocab::X;\n"),
    ];
    let (edges, at) = module_edges(&planted);
    let found = upward(&edges, &at, &layers);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].contains("vocab (layer 0) imports agent (layer 1) at vocab.rs:1"),
        "{found:?}"
    );
    // a module the table does not place
    let planted = vec![
        file("new.rs", "use crate::vocab::X;\n"),
        file("vocab.rs", ""),
    ];
    let (edges, at) = module_edges(&planted);
    assert!(upward(&edges, &at, &layers)[0].contains("new is in no layer"));
    // a cycle inside a folder, through super:: and crate:: paths
    let planted = vec![
        file("sync/mod.rs", "mod a;\nmod b;\n"),
        file("sync/a.rs", "use super::b::f;\n"),
        file("sync/b.rs", "use crate::sync::{a, Mode};\n"),
        file("sync/c.rs", "use super::a::g;\n"),
    ];
    let found = folder_cycles(&planted);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("\"a\", \"b\""), "{found:?}");
    // a module below the process layer reaching for the crate Error
    let planted = vec![
        file(
            "render.rs",
            "fn f() -> Result<(), crate::Error> { todo!() }\n",
        ),
        file(
            "cli/mod.rs",
            "fn g() -> Result<(), crate::Error> { todo!() }\n",
        ),
    ];
    let found = lib_edges(&planted);
    assert_eq!(found, ["src/render.rs:1: uses the crate Error"]);
}

/// The string literals of a text, without their quotes (plain and escaped quotes only; raw
/// strings hold no vocabulary in this tree).
fn literals(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        // a quote as a char literal is not the start of a string
        if line.trim_start().starts_with("//") {
            continue;
        }
        let code = line.replace("'\"'", "' '");
        let mut chars = code.chars();
        while let Some(c) = chars.next() {
            if c != '"' {
                continue;
            }
            let mut lit = String::new();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(escaped) = chars.next() {
                            lit.push(escaped);
                        }
                    }
                    '"' => break,
                    c => lit.push(c),
                }
            }
            out.push((n + 1, lit));
        }
    }
    out
}

/// The literals of `vocab.rs` between two markers.
fn literals_between(vocab: &str, from: &str, to: &str) -> BTreeSet<String> {
    let start = vocab.find(from).expect("start marker in vocab.rs");
    let end = start + vocab[start..].find(to).expect("end marker in vocab.rs");
    literals(&vocab[start..end])
        .into_iter()
        .map(|(_, l)| l)
        .collect()
}

#[test]
fn cluster_vocabulary_is_spelled_only_in_vocab() {
    let mut files = Vec::new();
    sources(&src(), &mut files);
    let vocab = &files
        .iter()
        .find(|(r, _)| r == "vocab.rs")
        .expect("src/vocab.rs")
        .1;
    let reasons = literals_between(vocab, "impl Reason", "fn action");
    let managers = literals_between(vocab, "const FIELD_MANAGER", "// ---- labels");
    // Synced, Launched and the health words are Event reasons and also status values berth
    // writes (a sync's phase and health, a pipeline's outcome). An Event only takes a `vocab::Reason`, so the words that
    // are nothing but reasons are enough to catch a reason spelled elsewhere.
    let statuses = [
        "Synced",
        "Launched",
        "Skipped",
        "Healthy",
        "Progressing",
        "Degraded",
    ];
    let forbidden = |line: &str, lit: &str| {
        let key = ["berth.dev/", "app.kubernetes.io/", "argocd.argoproj.io/"]
            .iter()
            .filter_map(|domain| lit.strip_prefix(domain))
            // berth.dev/v1alpha1 is the mapping file's apiVersion, not a key
            .any(|name| {
                !(name.starts_with('v') && name[1..].starts_with(|c: char| c.is_ascii_digit()))
            });
        let reason = reasons.contains(lit) && !statuses.contains(&lit);
        let manager = managers.contains(lit)
            && (line.contains(&format!("apply(\"{lit}\")"))
                || line.contains(&format!("field_manager(\"{lit}\")"))
                || line.contains("FIELD_MANAGER")
                || line.contains("field_manager"));
        key || reason || manager
    };
    let mut found = Vec::new();
    for (rel, text) in files.iter().filter(|(r, _)| r != "vocab.rs") {
        for (line, lit) in literals(text) {
            let code = text.lines().nth(line - 1).unwrap_or_default();
            if forbidden(code, &lit) {
                found.push(format!("src/{rel}:{line}: {lit:?}"));
            }
        }
    }
    assert!(
        reasons.contains("CleanupStuck") && reasons.len() >= 12,
        "{reasons:?}"
    );
    assert!(managers.contains("berth"), "{managers:?}");
    assert!(
        found.is_empty(),
        "spell these through src/vocab.rs:\n{}",
        found.join("\n")
    );
}
