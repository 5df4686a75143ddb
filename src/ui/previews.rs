//! The previews' pages (pure): every pull request previewed, and one preview in full, with each
//! object's diff (Secret values masked when the preview was made) and what would fail.

use maud::{Markup, html};

use super::html::{badge, segment, table};
use super::pages::{diff_lines, short};
use crate::preview::comment::Preview;

/// The page listing the previews the dashboard keeps (`closed`: the pull request closed).
pub(crate) fn list(previews: &[(Preview, bool)]) -> Markup {
    let rows: Vec<Vec<Markup>> = previews
        .iter()
        .map(|(p, closed)| {
            let clean = p.syncs.iter().all(|s| s.clean());
            let href = format!("/previews/{}/{}", segment(&p.repository), p.number);
            vec![
                html! { a href=(href) { (p.repository) " #" (p.number) } },
                html! { code { (short(&p.head)) } },
                html! { (p.syncs.len()) },
                html! { (badge(if clean { "Success" } else { "Failed" })) },
                html! { (if *closed { "closed" } else { "open" }) },
                html! { (p.at) },
            ]
        })
        .collect();
    html! {
        h1 { "Previews" }
        (table(
            "Pull request previews",
            &["Pull request", "Head", "Syncs", "Result", "State", "Made"],
            &rows,
            "No pull request has been previewed since the agent started.",
        ))
    }
}

/// One preview in full.
pub(crate) fn preview(p: &Preview, closed: bool) -> Markup {
    html! {
        h1 { "Preview of " (p.repository) " #" (p.number) }
        p {
            "At " code class="revision" { (short(&p.head)) } ", made " (p.at)
            @if closed { " (the pull request is closed; this page goes a day after)" }
            ". Nothing was written to the cluster: each sync was planned with server-side dry-runs as its own account."
        }
        @if p.syncs.is_empty() {
            p class="empty" { "This pull request no longer changes any previewed sync." }
        }
        @for s in &p.syncs {
            section {
                h2 { "Sync " (s.sync) " " (badge(if s.clean() { "Success" } else { "Failed" })) }
                p { (s.summary()) }
                @if !s.clean() {
                    ul class="problems" {
                        @for problem in &s.problems { li { (problem) } }
                    }
                }
                @for c in &s.changes {
                    details {
                        summary { (c.action) " " code { (c.object) } }
                        pre class="diff" tabindex="0" aria-label={ "diff of " (c.object) } { (diff_lines(&c.diff)) }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preview::comment::{Change, Counts, SyncPreview};

    fn sample() -> Preview {
        Preview {
            repository: "config".into(),
            number: 3,
            head: "abcdef0123456789".into(),
            at: "2026-12-06T00:00:00Z".into(),
            syncs: vec![SyncPreview {
                sync: "web".into(),
                counts: Counts {
                    update: 1,
                    ..Counts::default()
                },
                changes: vec![Change {
                    action: "update",
                    object: "web/Deployment.apps/web".into(),
                    diff: "--- live\n+++ desired\n-  replicas: 1\n+  replicas: 3\n".into(),
                }],
                problems: vec!["apps/x.yaml:3: <script> was not applied".into()],
            }],
        }
    }

    #[test]
    fn a_preview_page_shows_each_diff_and_problem_escaped() {
        let html = preview(&sample(), false).into_string();
        assert!(html.contains("Preview of config #3"), "{html}");
        assert!(
            html.contains("<code class=\"revision\">abcdef0</code>"),
            "{html}"
        );
        assert!(
            html.contains("<span class=\"add\">+  replicas: 3</span>"),
            "{html}"
        );
        assert!(html.contains("&lt;script&gt; was not applied"), "{html}");
        assert!(html.contains("1 to update"), "{html}");
    }

    #[test]
    fn the_list_links_each_preview() {
        let html = list(&[(sample(), true)]).into_string();
        assert!(html.contains("href=\"/previews/config/3\""), "{html}");
        assert!(html.contains("closed"), "{html}");
        let empty = list(&[]).into_string();
        assert!(
            empty.contains("No pull request has been previewed"),
            "{empty}"
        );
    }
}
