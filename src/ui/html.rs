//! HTML building blocks (pure): escaping, the page frame, tables and badges.

/// Escapes text for HTML content and attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

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
}

/// The whole page around `main` (already HTML): navigation, the live-update status line and
/// the script that keeps `main` current.
pub(crate) fn page(title: &str, section: Section, main: &str) -> String {
    let current = |s: Section| {
        if s == section {
            " aria-current=\"page\""
        } else {
            ""
        }
    };
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"color-scheme\" content=\"light dark\">\
         <title>{title} · berth</title><link rel=\"stylesheet\" href=\"/assets/berth.css\">\
         <script src=\"/assets/berth.js\" defer></script></head><body>\
         <a class=\"skip\" href=\"#main\">Skip to content</a>\
         <header><nav aria-label=\"berth\"><a class=\"brand\" href=\"/\">berth</a>\
         <a href=\"/\"{o}>Overview</a><a href=\"/deliveries\"{d}>Deliveries</a></nav>\
         <p id=\"live\" class=\"live\" role=\"status\" aria-live=\"polite\">connecting…</p></header>\
         <main id=\"main\" tabindex=\"-1\">{main}</main></body></html>\n",
        title = escape(title),
        o = current(Section::Overview),
        d = current(Section::Deliveries),
    )
}

/// A status or health word as a badge; its class colours it.
pub(crate) fn badge(word: &str) -> String {
    let class = match word {
        "Synced" | "Healthy" | "Succeeded" | "Launched" | "ok" | "Valid" => "good",
        "Progressing" | "Running" | "Pending" | "OutOfSync" => "busy",
        "Failed" | "Degraded" | "Error" | "Invalid" | "failed" => "bad",
        _ => "none",
    };
    let word = if word.is_empty() { "–" } else { word };
    format!("<span class=\"badge {class}\">{}</span>", escape(word))
}

/// A table under a second-level heading; cells are HTML already.
pub(crate) fn table(caption: &str, headers: &[&str], rows: &[Vec<String>], empty: &str) -> String {
    table_at(2, caption, headers, rows, empty)
}

/// A table under a heading of `level` (a table within a section gets 3).
pub(crate) fn table_at(
    level: u8,
    caption: &str,
    headers: &[&str],
    rows: &[Vec<String>],
    empty: &str,
) -> String {
    if rows.is_empty() {
        return format!(
            "<section><h{level}>{}</h{level}><p class=\"empty\">{}</p></section>",
            escape(caption),
            escape(empty)
        );
    }
    let mut out = format!(
        "<section><h{level}>{c}</h{level}><div class=\"scroll\" tabindex=\"0\" role=\"region\" \
         aria-label=\"{c}\"><table><thead><tr>",
        c = escape(caption)
    );
    for h in headers {
        out.push_str(&format!("<th scope=\"col\">{}</th>", escape(h)));
    }
    out.push_str("</tr></thead><tbody>");
    for row in rows {
        out.push_str("<tr>");
        for cell in row {
            out.push_str(&format!("<td>{cell}</td>"));
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table></div></section>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_everywhere() {
        assert_eq!(
            escape("<a href=\"x\">&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(segment("a b/c"), "a+b%2Fc");
        let t = table("T", &["h"], &[vec![escape("<x>")]], "none");
        assert!(t.contains("<td>&lt;x&gt;</td>"), "{t}");
        assert!(table("T", &["h"], &[], "nothing yet").contains("nothing yet"));
        assert!(badge("Failed").contains("bad"));
        let p = page("a <sync>", Section::Deliveries, "<p>hi</p>");
        assert!(p.contains("<title>a &lt;sync&gt; · berth</title>"), "{p}");
        assert!(
            p.contains("href=\"/deliveries\" aria-current=\"page\""),
            "{p}"
        );
    }
}
