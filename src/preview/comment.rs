//! What a preview found, and how it is told (pure): a sync's plan counts, its diffs against the
//! live cluster (Secret values masked by `diff::entry_diff`, the code `berth diff` uses) and
//! what would fail; the pull request's one comment, folded per object and cut below the host's
//! limit; the `berth/preview/<sync>` status.

use crate::diff::{self, Action};
use crate::provider::{State, Status};
use crate::sync::Report;

/// The hidden line that marks berth's comment, so it is found again after a restart.
pub(crate) const MARKER: &str = "<!-- berth:preview -->";

/// How many objects of each action a sync's plan holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub create: usize,
    pub update: usize,
    pub prune: usize,
    pub adopt: usize,
    pub unchanged: usize,
}

/// One object's change: what happens to it, and its diff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Change {
    pub action: &'static str,
    pub object: String,
    pub diff: String,
}

/// What one sync's preview found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyncPreview {
    pub sync: String,
    pub counts: Counts,
    pub changes: Vec<Change>,
    /// What would fail, each naming the file and line or the object.
    pub problems: Vec<String>,
}

impl SyncPreview {
    /// What a plan-only pass of the sync came to.
    pub(crate) fn of(report: &Report) -> Self {
        let plan = &report.plan;
        let mut counts = Counts {
            prune: plan.prune.len(),
            ..Counts::default()
        };
        let mut changes = Vec::new();
        for e in &plan.entries {
            let action = match e.action {
                Action::Create => {
                    counts.create += 1;
                    "create"
                }
                Action::Update => {
                    counts.update += 1;
                    "update"
                }
                Action::Adopt => {
                    counts.adopt += 1;
                    "adopt"
                }
                Action::Unchanged => {
                    counts.unchanged += 1;
                    continue;
                }
            };
            changes.push(Change {
                action,
                object: e.id.to_string(),
                diff: diff::planned_diff(e),
            });
        }
        for o in &plan.prune {
            changes.push(Change {
                action: "prune",
                object: o.id.to_string(),
                diff: diff::entry_diff(&o.id, o.live.as_ref(), None),
            });
        }
        let mut problems: Vec<String> = report
            .changes
            .errors
            .iter()
            .map(|e| e.to_string())
            .collect();
        if problems.is_empty() && report.failed() {
            problems.push(report.message.clone());
        }
        Self {
            sync: report.sync.clone(),
            counts,
            changes,
            problems,
        }
    }

    /// Whether the sync would apply with no failure.
    pub(crate) fn clean(&self) -> bool {
        self.problems.is_empty()
    }

    /// The plan in one line: `1 to create, 2 to update, 3 unchanged`.
    pub(crate) fn summary(&self) -> String {
        let c = &self.counts;
        let parts = [
            (c.create, "to create"),
            (c.update, "to update"),
            (c.prune, "to prune"),
            (c.adopt, "to adopt"),
            (c.unchanged, "unchanged"),
        ];
        let said: Vec<String> = parts
            .iter()
            .filter(|(n, _)| *n > 0)
            .map(|(n, what)| format!("{n} {what}"))
            .collect();
        if said.is_empty() {
            "no objects".to_owned()
        } else {
            said.join(", ")
        }
    }
}

/// A pull request's preview: the syncs its head changes, at that commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Preview {
    pub repository: String,
    pub number: u64,
    pub head: String,
    /// When it was made (RFC 3339).
    pub at: String,
    pub syncs: Vec<SyncPreview>,
}

impl Preview {
    /// Its page on the dashboard, under the dashboard's public address.
    pub(crate) fn link(&self, external_url: Option<&str>) -> Option<String> {
        external_url.map(|base| page(base, &self.repository, self.number))
    }
}

/// The path of a preview's page, under `base`.
pub(crate) fn page(base: &str, repository: &str, number: u64) -> String {
    format!("{base}/previews/{repository}/{number}")
}

/// The `berth/preview/<sync>` status of a sync's preview.
pub(crate) fn status(preview: &SyncPreview, link: Option<String>) -> Status {
    let (state, description) = match preview.problems.first() {
        None => (
            State::Success,
            format!("would apply cleanly: {}", preview.summary()),
        ),
        Some(first) => {
            let more = preview.problems.len() - 1;
            let also = if more > 0 {
                format!(" (and {more} more)")
            } else {
                String::new()
            };
            (State::Failure, format!("would fail: {first}{also}"))
        }
    };
    Status {
        state,
        context: format!("berth/preview/{}", preview.sync),
        description,
        target_url: link,
    }
}

/// The text of the comment for a preview, under `limit` characters: the plan of each sync, what
/// would fail, and each object's diff folded in `<details>`. Diffs that do not fit are left out
/// (the last one cut at a line), with a link to the full preview when there is one.
pub(crate) fn comment(preview: &Preview, link: Option<&str>, limit: usize) -> String {
    let short: String = preview.head.chars().take(7).collect();
    let mut head = format!("{MARKER}\n### berth preview of `{short}`\n\n");
    if preview.syncs.is_empty() {
        head.push_str("This pull request no longer changes any previewed sync.\n");
        return head;
    }
    head.push_str("| sync | result | create | update | prune | adopt | unchanged |\n");
    head.push_str("|---|---|---:|---:|---:|---:|---:|\n");
    for s in &preview.syncs {
        let c = &s.counts;
        let result = if s.clean() {
            "✅ applies cleanly".to_owned()
        } else {
            format!("❌ {} problems", s.problems.len())
        };
        head.push_str(&format!(
            "| `{}` | {result} | {} | {} | {} | {} | {} |\n",
            s.sync, c.create, c.update, c.prune, c.adopt, c.unchanged
        ));
    }
    for s in &preview.syncs {
        if !s.clean() {
            head.push_str(&format!("\n**`{}` would fail:**\n\n", s.sync));
            for p in &s.problems {
                head.push_str(&format!("- {}\n", one_line(p)));
            }
        }
    }
    let rest = |left: usize| match link {
        Some(l) => format!("[the full preview on berth's dashboard]({l})"),
        None if left == usize::MAX => String::new(),
        None => format!(
            "run `berth diff --revision {}` for the full preview",
            preview.head
        ),
    };
    let footer = |left: usize, cut: bool| match (left, cut) {
        (0, false) => link.map_or_else(String::new, |l| {
            format!("\n[The full preview on berth's dashboard]({l})\n")
        }),
        (0, true) => format!(
            "\nThe diff above is cut at the host's limit: {}.\n",
            rest(0)
        ),
        (n, _) => format!(
            "\n**{n} more objects are not shown here** (the comment is cut at the host's \
             limit): {}.\n",
            rest(n)
        ),
    };
    // room for the longest footer
    let budget = limit.saturating_sub(footer(usize::MAX, true).len() + 2 * preview.head.len() + 64);
    let mut text = head;
    let (mut left, mut cut) = (0usize, false);
    for s in &preview.syncs {
        if s.changes.is_empty() {
            continue;
        }
        let title = format!("\n#### `{}`: {}\n\n", s.sync, s.summary());
        for (i, change) in s.changes.iter().enumerate() {
            if left > 0 || cut {
                left += 1;
                continue;
            }
            let mut block = if i == 0 { title.clone() } else { String::new() };
            block.push_str(&details(change, None));
            if text.len() + block.len() <= budget {
                text.push_str(&block);
                continue;
            }
            // the first that does not fit goes in cut, when enough of it fits to help
            let room = budget.saturating_sub(text.len() + title.len() + 200);
            if room > 1024 {
                if i == 0 {
                    text.push_str(&title);
                }
                text.push_str(&details(change, Some(room)));
                cut = true;
            } else {
                left = 1;
            }
        }
    }
    text.push_str(&footer(left, cut));
    text
}

/// One object's diff, folded; cut to about `room` characters at a line when given.
fn details(change: &Change, room: Option<usize>) -> String {
    let (added, removed) = change.diff.lines().fold((0, 0), |(a, r), l| {
        if l.starts_with('+') && !l.starts_with("+++") {
            (a + 1, r)
        } else if l.starts_with('-') && !l.starts_with("---") {
            (a, r + 1)
        } else {
            (a, r)
        }
    });
    let mut diff = change.diff.clone();
    let mut cut = "";
    if let Some(room) = room
        && diff.len() > room
    {
        let mut at = room;
        while !diff.is_char_boundary(at) {
            at -= 1;
        }
        let end = diff[..at].rfind('\n').map_or(0, |i| i + 1);
        diff.truncate(end);
        cut = "\n_(cut here: the rest is in the full preview)_\n";
    }
    // a fence longer than any run of backticks inside
    let longest = diff.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest.max(2) + 1);
    format!(
        "<details><summary>{} <code>{}</code> (+{added} −{removed})</summary>\n\n{fence}diff\n{}{fence}\n{cut}</details>\n",
        change.action,
        change.object,
        diff.trim_end_matches('\n').to_owned() + "\n"
    )
}

/// A problem on one line of a Markdown list.
fn one_line(text: &str) -> String {
    text.replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(i: usize, lines: usize) -> Change {
        let diff: String = std::iter::once(format!(
            "--- live/ConfigMap/c{i}\n+++ desired/ConfigMap/c{i}\n@@ -1,{lines} +1,{lines} @@\n"
        ))
        .chain((0..lines).map(|l| format!("-  key-{l}: an-old-value\n+  key-{l}: a-new-value\n")))
        .collect();
        Change {
            action: "update",
            object: format!("web/ConfigMap/c{i}"),
            diff,
        }
    }

    fn preview(changes: Vec<Change>, problems: Vec<String>) -> Preview {
        Preview {
            repository: "config".into(),
            number: 4,
            head: "0123456789abcdef0123456789abcdef01234567".into(),
            at: "2026-12-06T00:00:00Z".into(),
            syncs: vec![SyncPreview {
                sync: "web".into(),
                counts: Counts {
                    update: changes.len(),
                    unchanged: 3,
                    ..Counts::default()
                },
                changes,
                problems,
            }],
        }
    }

    #[test]
    fn a_clean_preview_shows_the_plan_and_folds_each_diff() {
        let p = preview(vec![change(1, 2), change(2, 1)], vec![]);
        let text = comment(
            &p,
            Some("https://berth.example.com/previews/config/4"),
            65_536,
        );
        assert!(text.starts_with(MARKER), "{text}");
        assert!(text.contains("berth preview of `0123456`"), "{text}");
        assert!(
            text.contains("| `web` | ✅ applies cleanly | 0 | 2 | 0 | 0 | 3 |"),
            "{text}"
        );
        assert_eq!(text.matches("<details>").count(), 2, "{text}");
        assert!(
            text.contains("update <code>web/ConfigMap/c1</code> (+2 −2)"),
            "{text}"
        );
        assert!(text.contains("```diff\n--- live/ConfigMap/c1"), "{text}");
        assert!(text.contains(
            "[The full preview on berth's dashboard](https://berth.example.com/previews/config/4)"
        ));
        let s = status(&p.syncs[0], None);
        assert_eq!(
            (s.state, s.context.as_str()),
            (State::Success, "berth/preview/web")
        );
        assert_eq!(
            s.description,
            "would apply cleanly: 2 to update, 3 unchanged"
        );
    }

    #[test]
    fn problems_are_listed_and_fail_the_status() {
        let problems = vec![
            "apps/web.yaml:7: Deployment web was not applied: unknown field \"replicaz\"".into(),
            "web/ConfigMap/x belongs to sync \"other\"".into(),
        ];
        let p = preview(vec![], problems);
        let text = comment(&p, None, 65_536);
        assert!(text.contains("❌ 2 problems"), "{text}");
        assert!(text.contains("**`web` would fail:**"), "{text}");
        assert!(text.contains("- apps/web.yaml:7: Deployment web"), "{text}");
        let s = status(&p.syncs[0], None);
        assert_eq!(s.state, State::Failure);
        assert!(
            s.description.starts_with("would fail: apps/web.yaml:7"),
            "{}",
            s.description
        );
        assert!(s.description.contains("(and 1 more)"), "{}", s.description);
    }

    #[test]
    fn a_long_preview_is_cut_below_the_limit_and_links_to_the_rest() {
        // 3,000 changed lines in one object, then more objects
        let changes = vec![change(0, 1500), change(1, 10), change(2, 10)];
        let p = preview(changes, vec![]);
        let link = "https://berth.example.com/previews/config/4";
        let text = comment(&p, Some(link), 65_536);
        assert!(text.len() < 65_536, "{}", text.len());
        assert!(text.contains("_(cut here"), "the big diff is cut");
        assert!(
            text.contains("**2 more objects are not shown here**"),
            "{}",
            &text[text.len() - 300..]
        );
        assert!(text.contains(link));
        // every fence opened is closed
        assert_eq!(
            text.matches("<details>").count(),
            text.matches("</details>").count()
        );
        // without a dashboard, the CLI is named
        let text = comment(&p, None, 65_536);
        assert!(
            text.contains("berth diff --revision 0123456789abcdef"),
            "{text}"
        );
    }

    #[test]
    fn backticks_in_a_diff_cannot_close_its_fence() {
        let mut c = change(0, 1);
        c.diff.push_str("+  script: ```echo```\n");
        let text = details(&c, None);
        assert!(text.contains("````diff\n"), "{text}");
    }

    #[test]
    fn a_preview_with_no_sync_left_says_so() {
        let mut p = preview(vec![], vec![]);
        p.syncs.clear();
        let text = comment(&p, None, 65_536);
        assert!(
            text.contains("no longer changes any previewed sync"),
            "{text}"
        );
    }
}
