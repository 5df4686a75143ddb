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

#[test]
fn imports_between_modules_point_one_way() {
    let mut files = Vec::new();
    sources(&src(), &mut files);
    let modules: BTreeSet<String> = files.iter().filter_map(|(r, _)| module_of(r)).collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut at: BTreeMap<(String, String), String> = BTreeMap::new();
    for (rel, text) in &files {
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
    assert!(modules.len() > 10, "found the modules: {modules:?}");
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
fn the_cycle_check_sees_a_cycle() {
    let edges = BTreeMap::from([
        ("a".to_owned(), BTreeSet::from(["b".to_owned()])),
        ("b".to_owned(), BTreeSet::from(["c".to_owned()])),
        ("c".to_owned(), BTreeSet::from(["a".to_owned()])),
        ("d".to_owned(), BTreeSet::from(["a".to_owned()])),
    ]);
    let found = cycles(&edges);
    assert_eq!(found.len(), 1);
    assert_eq!(
        found[0],
        BTreeSet::from(["a".to_owned(), "b".to_owned(), "c".to_owned()])
    );
    assert_eq!(
        crate_paths("use crate::{agent, cleanup::x}; crate::vocab::A"),
        ["agent", "cleanup", "vocab"]
    );
    assert_eq!(
        without_tests("a\n#[cfg(test)]\nmod tests {\n  fn f() { crate::x }\n}\nb"),
        "a\n\n\n\n\nb"
    );
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
    let statuses = ["Synced", "Launched", "Healthy", "Progressing", "Degraded"];
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
