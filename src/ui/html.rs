//! HTML building blocks (pure): the page frame, tables and badges. Every page is a `maud`
//! template, which escapes each value it inserts unless it is already [`Markup`].

use maud::{DOCTYPE, Markup, html};

/// `text`, or `instead` when it is empty (a phase not reported yet, a time not reached).
pub(crate) fn or<'a>(text: &'a str, instead: &'a str) -> &'a str {
    if text.is_empty() { instead } else { text }
}

/// A path segment, percent-encoded for a link.
pub(crate) fn segment(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// Which page of the navigation is current.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Section {
    Overview,
    Deliveries,
    Previews,
}

/// The whole page around `main`: navigation, the live-update status line and the script that
/// keeps `main` current.
pub(crate) fn page(title: &str, section: Section, main: &Markup) -> Markup {
    let current = |s: Section| (s == section).then_some("page");
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                title { (title) " · berth" }
                link rel="stylesheet" href="/assets/berth.css";
                script src="/assets/berth.js" defer {}
            }
            body {
                a class="skip" href="#main" { "Skip to content" }
                header {
                    nav aria-label="berth" {
                        a class="brand" href="/" { "berth" }
                        a href="/" aria-current=[current(Section::Overview)] { "Overview" }
                        a href="/deliveries" aria-current=[current(Section::Deliveries)] { "Deliveries" }
                        a href="/previews" aria-current=[current(Section::Previews)] { "Previews" }
                    }
                    p id="live" class="live" role="status" aria-live="polite" { "connecting…" }
                }
                main id="main" tabindex="-1" { (main) }
            }
        }
    }
}

/// A status or health word as a badge; its class colours it.
pub(crate) fn badge(word: &str) -> Markup {
    let class = match word {
        "Synced" | "Healthy" | "Succeeded" | "Launched" | "ok" | "Valid" => "good",
        "Progressing" | "Running" | "Pending" | "OutOfSync" => "busy",
        "Failed" | "Degraded" | "Error" | "Invalid" | "failed" => "bad",
        _ => "none",
    };
    let word = if word.is_empty() { "–" } else { word };
    html! { span class={ "badge " (class) } { (word) } }
}

/// A table under a second-level heading; cells are markup.
pub(crate) fn table(caption: &str, headers: &[&str], rows: &[Vec<Markup>], empty: &str) -> Markup {
    table_at(2, caption, headers, rows, empty)
}

/// A table under a heading of `level` (a table within a section gets 3).
pub(crate) fn table_at(
    level: u8,
    caption: &str,
    headers: &[&str],
    rows: &[Vec<Markup>],
    empty: &str,
) -> Markup {
    let body = if rows.is_empty() {
        html! { p class="empty" { (empty) } }
    } else {
        html! {
            div class="scroll" tabindex="0" role="region" aria-label=(caption) {
                table {
                    thead { tr { @for h in headers { th scope="col" { (h) } } } }
                    tbody { @for row in rows { tr { @for cell in row { td { (cell) } } } } }
                }
            }
        }
    };
    html! {
        section {
            @if level == 3 { h3 { (caption) } } @else { h2 { (caption) } }
            (body)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_everywhere() {
        assert_eq!(segment("a b/c"), "a+b%2Fc");
        let t = table("T <t>", &["h"], &[vec![html! { ("<x>") }]], "none");
        let t = t.into_string();
        assert!(t.contains("<td>&lt;x&gt;</td>"), "{t}");
        assert!(t.contains("<h2>T &lt;t&gt;</h2>"), "{t}");
        assert!(t.contains("aria-label=\"T &lt;t&gt;\""), "{t}");
        let nested = table_at(3, "K (1)", &["h"], &[vec![badge("Failed")]], "");
        assert!(nested.into_string().contains("<h3>K (1)</h3>"));
        assert!(
            table("T", &["h"], &[], "nothing yet")
                .into_string()
                .contains("<p class=\"empty\">nothing yet</p>")
        );
        assert!(badge("Failed").into_string().contains("badge bad"));
        assert_eq!(
            badge("").into_string(),
            "<span class=\"badge none\">–</span>"
        );
        let p = page("a <sync>", Section::Deliveries, &html! { p { "hi" } }).into_string();
        assert!(p.contains("<title>a &lt;sync&gt; · berth</title>"), "{p}");
        assert!(
            p.contains("href=\"/deliveries\" aria-current=\"page\""),
            "{p}"
        );
        assert!(p.contains("<a href=\"/\">Overview</a>"), "{p}");
        assert!(
            p.contains("<main id=\"main\" tabindex=\"-1\"><p>hi</p></main>"),
            "{p}"
        );
    }
}
