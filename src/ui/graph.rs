//! A Workflow's steps and DAG tasks as a graph (pure): the nodes of its `status.nodes`, laid
//! out in layers along their `children` edges, drawn as SVG boxes coloured by phase.

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde_json::Value;

use maud::{Markup, html};

/// One node of a Workflow's status.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Node {
    pub id: String,
    pub name: String,
    /// Argo's node type: `Steps`, `StepGroup`, `DAG`, `TaskGroup`, `Pod`, `Retry`, `Skipped` …
    pub kind: String,
    pub phase: String,
    pub template: String,
    pub children: Vec<String>,
    pub started: String,
    pub finished: String,
    pub message: String,
    /// Output parameters, name and value.
    pub outputs: Vec<(String, String)>,
}

/// The nodes of a Workflow object's `status.nodes`, sorted by start time then id.
pub(crate) fn nodes(workflow: &Value) -> Vec<Node> {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let mut out: Vec<Node> = workflow["status"]["nodes"]
        .as_object()
        .map(|nodes| {
            nodes
                .iter()
                .map(|(id, n)| Node {
                    id: id.clone(),
                    name: n["displayName"]
                        .as_str()
                        .or_else(|| n["name"].as_str())
                        .unwrap_or(id)
                        .to_owned(),
                    kind: text(&n["type"]),
                    phase: text(&n["phase"]),
                    template: text(&n["templateName"]),
                    children: n["children"]
                        .as_array()
                        .map(|c| {
                            c.iter()
                                .filter_map(|c| c.as_str().map(str::to_owned))
                                .collect()
                        })
                        .unwrap_or_default(),
                    started: text(&n["startedAt"]),
                    finished: text(&n["finishedAt"]),
                    message: text(&n["message"]),
                    outputs: n["outputs"]["parameters"]
                        .as_array()
                        .map(|ps| {
                            ps.iter()
                                .map(|p| {
                                    let value = match &p["value"] {
                                        Value::String(s) => s.clone(),
                                        Value::Null => String::new(),
                                        v => v.to_string(),
                                    };
                                    (text(&p["name"]), value)
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort_by(|a, b| (&a.started, &a.id).cmp(&(&b.started, &b.id)));
    out
}

/// A node placed on the drawing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Placed {
    pub id: String,
    pub layer: usize,
    pub column: usize,
}

/// Where each node goes: its layer is the longest path to it from a node without parents
/// (edges to nodes already placed on a cycle are ignored); within a layer, nodes keep the
/// order of `nodes`. Edges are (from, to) for every child that is a node.
pub(crate) fn layout(nodes: &[Node]) -> (Vec<Placed>, Vec<(String, String)>) {
    let index: HashMap<&str, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.id.as_str(), i))
        .collect();
    let edges: Vec<(usize, usize)> = nodes
        .iter()
        .enumerate()
        .flat_map(|(i, n)| {
            n.children
                .iter()
                .filter_map(|c| index.get(c.as_str()).map(|&j| (i, j)))
                .collect::<Vec<_>>()
        })
        .filter(|(i, j)| i != j)
        .collect();
    let mut parents = vec![0usize; nodes.len()];
    for &(_, j) in &edges {
        parents[j] += 1;
    }
    let mut layer = vec![0usize; nodes.len()];
    let mut done = vec![false; nodes.len()];
    let mut queue: VecDeque<usize> = (0..nodes.len()).filter(|&i| parents[i] == 0).collect();
    loop {
        while let Some(i) = queue.pop_front() {
            if done[i] {
                continue;
            }
            done[i] = true;
            for &(from, to) in edges.iter().filter(|(from, _)| *from == i) {
                if done[to] {
                    continue;
                }
                layer[to] = layer[to].max(layer[from] + 1);
                parents[to] -= 1;
                if parents[to] == 0 {
                    queue.push_back(to);
                }
            }
        }
        // a cycle: start again from the first node not placed yet
        match (0..nodes.len()).find(|&i| !done[i]) {
            Some(i) => queue.push_back(i),
            None => break,
        }
    }
    let mut columns: BTreeMap<usize, usize> = BTreeMap::new();
    let placed = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let column = columns.entry(layer[i]).or_default();
            let p = Placed {
                id: n.id.clone(),
                layer: layer[i],
                column: *column,
            };
            *column += 1;
            p
        })
        .collect();
    let edges = edges
        .into_iter()
        .map(|(i, j)| (nodes[i].id.clone(), nodes[j].id.clone()))
        .collect();
    (placed, edges)
}

const WIDTH: usize = 168;
const HEIGHT: usize = 44;
const GAP_X: usize = 24;
const GAP_Y: usize = 36;

/// The graph as an SVG image; each node links to `link(id)`. Nodes carry `data-phase` and
/// edges `data-from`/`data-to`, so what is drawn can be checked. SVG elements are closed
/// explicitly: inline SVG in HTML has no void elements.
pub(crate) fn svg(nodes: &[Node], selected: Option<&str>, link: impl Fn(&str) -> String) -> Markup {
    let (placed, edges) = layout(nodes);
    let columns = placed.iter().map(|p| p.column + 1).max().unwrap_or(1);
    let layers = placed.iter().map(|p| p.layer + 1).max().unwrap_or(1);
    let width = columns * (WIDTH + GAP_X) + GAP_X;
    let height = layers * (HEIGHT + GAP_Y) + GAP_Y;
    let at: HashMap<&str, (usize, usize)> = placed
        .iter()
        .map(|p| {
            let x = GAP_X + p.column * (WIDTH + GAP_X);
            let y = GAP_Y / 2 + p.layer * (HEIGHT + GAP_Y);
            (p.id.as_str(), (x, y))
        })
        .collect();
    let lines = edges.iter().filter_map(|(from, to)| {
        let (&(x1, y1), &(x2, y2)) = (at.get(from.as_str())?, at.get(to.as_str())?);
        Some((from, to, x1 + WIDTH / 2, y1 + HEIGHT, x2 + WIDTH / 2, y2))
    });
    let boxes = nodes
        .iter()
        .filter_map(|n| at.get(n.id.as_str()).map(|&(x, y)| (n, x, y)));
    html! {
        svg class="graph" viewBox={ "0 0 " (width) " " (height) } width=(width) height=(height)
            role="group" aria-label="steps and tasks of the run" {
            defs {
                marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="6"
                    markerHeight="6" orient="auto-start-reverse" {
                    path d="M 0 0 L 10 5 L 0 10 z" class="arrow" {}
                }
            }
            @for (from, to, x1, y1, x2, y2) in lines {
                line class="edge" data-from=(from) data-to=(to) x1=(x1) y1=(y1) x2=(x2) y2=(y2)
                    marker-end="url(#arrow)" {}
            }
            @for (n, x, y) in boxes { (node_box(n, x, y, selected == Some(n.id.as_str()), &link)) }
        }
    }
}

/// One node of the graph: a box coloured by phase, with its name and type, linking to `link`.
fn node_box(n: &Node, x: usize, y: usize, selected: bool, link: impl Fn(&str) -> String) -> Markup {
    let phase = if n.phase.is_empty() {
        "Pending"
    } else {
        &n.phase
    };
    let label: String = if n.name.chars().count() > 20 {
        n.name.chars().take(19).chain(['…']).collect()
    } else {
        n.name.clone()
    };
    let class = if selected { "node selected" } else { "node" };
    html! {
        a href=(link(&n.id)) class=(class) data-node=(n.id) data-phase=(phase)
            aria-label={ (n.name) ": " (phase) } {
            rect class={ "phase-" (phase) } x=(x) y=(y) width=(WIDTH) height=(HEIGHT) rx="6" {}
            text x=(x + 10) y=(y + 19) { (label) }
            text class="sub" x=(x + 10) y=(y + 35) { (n.kind) " · " (phase) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn workflow() -> Value {
        // steps: root → group 0 → [a] → group 1 → [b, c]; and a DAG: d → e
        json!({"status": {"nodes": {
            "wf": {"displayName": "wf", "type": "Steps", "phase": "Running", "children": ["wf-1"], "startedAt": "t0"},
            "wf-1": {"displayName": "[0]", "type": "StepGroup", "phase": "Succeeded", "children": ["wf-2"], "startedAt": "t1"},
            "wf-2": {"displayName": "a", "type": "Pod", "phase": "Succeeded", "children": ["wf-3"], "startedAt": "t2",
                     "outputs": {"parameters": [{"name": "version", "value": "1.2"}]}},
            "wf-3": {"displayName": "[1]", "type": "StepGroup", "phase": "Running", "children": ["wf-4", "wf-5"], "startedAt": "t3"},
            "wf-4": {"displayName": "b", "type": "Pod", "phase": "Running", "startedAt": "t4"},
            "wf-5": {"displayName": "c", "type": "Pod", "phase": "Failed", "message": "exit 1", "startedAt": "t4"}
        }}})
    }

    #[test]
    fn nodes_are_read_with_their_outputs() {
        let n = nodes(&workflow());
        assert_eq!(n.len(), 6);
        assert_eq!(n[0].id, "wf");
        let a = n.iter().find(|n| n.name == "a").expect("a");
        assert_eq!(a.outputs, [("version".to_owned(), "1.2".to_owned())]);
        assert_eq!(
            n.iter().find(|n| n.name == "c").expect("c").message,
            "exit 1"
        );
    }

    #[test]
    fn layers_follow_the_children_and_columns_the_order() {
        let (placed, edges) = layout(&nodes(&workflow()));
        let at = |id: &str| {
            let p = placed.iter().find(|p| p.id == id).expect("placed");
            (p.layer, p.column)
        };
        assert_eq!(at("wf"), (0, 0));
        assert_eq!(at("wf-2"), (2, 0));
        assert_eq!(at("wf-4"), (4, 0));
        assert_eq!(at("wf-5"), (4, 1));
        assert_eq!(edges.len(), 5);
        assert!(edges.contains(&("wf-3".to_owned(), "wf-5".to_owned())));
    }

    #[test]
    fn a_dag_node_sits_below_its_deepest_parent_and_cycles_end() {
        let node = |id: &str, children: &[&str]| Node {
            id: id.into(),
            name: id.into(),
            children: children.iter().map(|c| (*c).to_owned()).collect(),
            ..Node::default()
        };
        // a → b → c, a → c: c goes below b
        let (placed, _) = layout(&[node("a", &["b", "c"]), node("b", &["c"]), node("c", &[])]);
        assert_eq!(placed[2].layer, 2);
        // a cycle is drawn, not looped over
        let (placed, edges) = layout(&[node("x", &["y"]), node("y", &["x"])]);
        assert_eq!(placed.len(), 2);
        assert_eq!(edges.len(), 2);
    }

    #[test]
    fn the_svg_colours_by_phase_and_escapes_names() {
        let mut n = nodes(&workflow());
        n[2].name = "<b>".into();
        let svg = svg(&n, Some("wf-5"), |id| format!("?node={id}")).into_string();
        assert!(
            svg.contains("data-node=\"wf-5\" data-phase=\"Failed\""),
            "{svg}"
        );
        assert!(svg.contains("class=\"node selected\""), "{svg}");
        assert!(svg.contains("data-from=\"wf-3\" data-to=\"wf-4\""), "{svg}");
        assert!(svg.contains("&lt;b&gt;") && !svg.contains("<b>"), "{svg}");
        // no void SVG elements: each is closed, or the HTML parser would nest what follows
        assert!(svg.contains("rx=\"6\"></rect>"), "{svg}");
        assert_eq!(
            svg.matches("<line ").count(),
            svg.matches("</line>").count()
        );
    }
}
