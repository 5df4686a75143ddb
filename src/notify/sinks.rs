//! What each sink is sent, built purely: Slack's Block Kit message, Teams' Adaptive Card, the
//! plain webhook's JSON (signed like berth's generic receiver), and Alertmanager's alerts. A
//! batch of events becomes one message.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::events::{Condition, Happened, Known};
use crate::config::{EventKind, Notification, SinkKind};

/// How many events a chat message spells out; the rest are counted.
const SHOWN: usize = 20;
/// How long a firing alert lasts unless berth sends it again (it does every minute).
pub(crate) const ALERT_LIFETIME: jiff::SignedDuration = jiff::SignedDuration::from_mins(5);
/// How long an alert for a failed run fires.
const RUN_ALERT_LIFETIME: jiff::SignedDuration = jiff::SignedDuration::from_hours(1);

/// The HMAC-SHA256 signature `sha256=<hex>` of a body, as providers send it and as berth signs
/// its webhooks (`X-Berth-Signature`).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    use hmac::{KeyInit as _, Mac as _};
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// One request to a sink: where under its URL, the body, and the headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Delivery {
    /// Appended to the Secret's URL (Alertmanager's API path).
    pub path: &'static str,
    pub body: Vec<u8>,
    pub headers: Vec<(&'static str, String)>,
}

/// The chat or webhook message for a batch of events.
pub(crate) fn message(kind: SinkKind, batch: &[Happened], secret: Option<&str>) -> Delivery {
    let body = match kind {
        SinkKind::Slack => slack(batch),
        SinkKind::Teams => teams(batch),
        SinkKind::Webhook | SinkKind::Alertmanager => webhook(batch),
    };
    let body = serde_json::to_vec(&body).expect("JSON serializes");
    let headers = secret
        .filter(|_| kind == SinkKind::Webhook)
        .map(|s| vec![("X-Berth-Signature", sign(s.as_bytes(), &body))])
        .unwrap_or_default();
    Delivery {
        path: "",
        body,
        headers,
    }
}

/// A batch's headline: `SyncFailed: sync web` for one event, `3 events: …` for more.
fn headline(batch: &[Happened]) -> String {
    match batch {
        [one] => format!("{}: {}", one.event, one.subject),
        _ => {
            let kinds: BTreeSet<&str> = batch.iter().map(|h| h.event.as_str()).collect();
            let kinds: Vec<&str> = kinds.into_iter().collect();
            format!("{} events: {}", batch.len(), kinds.join(", "))
        }
    }
}

/// `abc1234 (the commit's subject)`.
fn revision(h: &Happened) -> String {
    match (h.short(), h.title.as_str()) {
        ("", _) => String::new(),
        (short, "") => short.to_owned(),
        (short, title) => format!("{short} ({title})"),
    }
}

fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Slack's mrkdwn needs `&`, `<` and `>` escaped.
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn slack(batch: &[Happened]) -> Value {
    let mut blocks = vec![json!({
        "type": "header",
        "text": {"type": "plain_text", "text": cut(&headline(batch), 150)},
    })];
    for h in batch.iter().take(SHOWN) {
        let icon = if h.event.is_failure() { "🔴" } else { "🟢" };
        let mut text = format!("{icon} *{}* {}", h.event, slack_escape(&h.subject));
        let rev = revision(h);
        if !rev.is_empty() {
            text.push_str(&format!(" at `{}`", slack_escape(&rev)));
        }
        if !h.message.is_empty() {
            text.push_str(&format!("\n{}", slack_escape(&h.message)));
        }
        if let Some(url) = &h.url {
            text.push_str(&format!("\n<{url}|Open in berth>"));
        }
        blocks.push(json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": cut(&text, 3000)},
        }));
    }
    if batch.len() > SHOWN {
        blocks.push(json!({
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": format!("and {} more", batch.len() - SHOWN)}],
        }));
    }
    json!({"text": headline(batch), "blocks": blocks})
}

fn teams(batch: &[Happened]) -> Value {
    let mut body = vec![json!({
        "type": "TextBlock",
        "text": headline(batch),
        "weight": "Bolder",
        "size": "Medium",
        "wrap": true,
    })];
    for h in batch.iter().take(SHOWN) {
        let mut text = format!("**{}** {}", h.event, h.subject);
        let rev = revision(h);
        if !rev.is_empty() {
            text.push_str(&format!(" at {rev}"));
        }
        if let Some(url) = &h.url {
            text.push_str(&format!(" · [Open in berth]({url})"));
        }
        body.push(json!({
            "type": "TextBlock",
            "text": text,
            "wrap": true,
            "color": if h.event.is_failure() { "Attention" } else { "Good" },
            "separator": true,
        }));
        if !h.message.is_empty() {
            body.push(
                json!({"type": "TextBlock", "text": h.message, "wrap": true, "isSubtle": true}),
            );
        }
    }
    if batch.len() > SHOWN {
        body.push(json!({"type": "TextBlock", "text": format!("and {} more", batch.len() - SHOWN), "isSubtle": true}));
    }
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "body": body,
            },
        }],
    })
}

/// `{event, subject, revision, message, url, time}`, and every event of the batch in
/// `events`. A batch of several names their common event (or `Several`) and counts them.
fn webhook(batch: &[Happened]) -> Value {
    let one = |h: &Happened| {
        json!({
            "event": h.event.as_str(),
            "subject": h.subject,
            "revision": h.revision,
            "message": h.message,
            "url": h.url,
            "time": h.time,
        })
    };
    let events: Vec<Value> = batch.iter().map(one).collect();
    let mut top = match batch {
        [h] => one(h),
        _ => {
            let kinds: BTreeSet<EventKind> = batch.iter().map(|h| h.event).collect();
            let revisions: BTreeSet<&str> = batch.iter().map(|h| h.revision.as_str()).collect();
            let event = match (kinds.len(), kinds.first()) {
                (1, Some(k)) => k.as_str(),
                _ => "Several",
            };
            let revision = match (revisions.len(), revisions.first()) {
                (1, Some(r)) => *r,
                _ => "",
            };
            json!({
                "event": event,
                "subject": format!("{} subjects", batch.len()),
                "revision": revision,
                "message": headline(batch),
                "url": null,
                "time": batch.last().map(|h| h.time.clone()),
            })
        }
    };
    top["events"] = Value::Array(events);
    top
}

/// The conditions a notification's alerts fire for.
pub(crate) fn alerting(n: &Notification) -> BTreeSet<Condition> {
    [
        (EventKind::SyncFailed, Condition::Failed),
        (EventKind::Degraded, Condition::Degraded),
        (EventKind::OutOfSync, Condition::OutOfSync),
    ]
    .into_iter()
    .filter(|(e, _)| n.on.contains(e))
    .map(|(_, c)| c)
    .collect()
}

fn alert_name(condition: Condition) -> &'static str {
    match condition {
        Condition::Failed => "BerthSyncFailed",
        Condition::Degraded => "BerthSyncDegraded",
        Condition::OutOfSync => "BerthSyncOutOfSync",
        Condition::Fine => "BerthSyncFine",
    }
}

/// The alerts to post now: one firing per sync whose condition fires (lasting
/// [`ALERT_LIFETIME`], sent again every minute), one resolved for each alert sent before
/// that no longer fires (when `Recovered` is wanted), and one per failed run in `batch`.
/// Updates `known.alerted` to what fires.
pub(crate) fn alerts(
    n: &Notification,
    known: &mut Known,
    batch: &[Happened],
    base: Option<&str>,
    now: jiff::Timestamp,
) -> Option<Delivery> {
    let at = |t: jiff::Timestamp| t.to_string();
    let label = |sync: &str, c: Condition| format!("{}/{sync}", alert_name(c));
    let mut alerts = Vec::new();
    let mut firing = BTreeSet::new();
    for (sync, standing) in known.firing(&alerting(n)) {
        if !n.follows(sync, false) {
            continue;
        }
        firing.insert(label(sync, standing.condition));
        alerts.push(json!({
            "labels": {"alertname": alert_name(standing.condition), "sync": sync, "notification": n.name},
            "annotations": {
                "summary": format!("sync {sync}: {}", standing.condition.as_str()),
                "description": standing.message,
                "revision": standing.revision,
            },
            "generatorURL": base.map(|b| format!("{b}/syncs/{sync}")),
            "startsAt": standing.since,
            "endsAt": at(now + ALERT_LIFETIME),
        }));
    }
    if n.on.contains(&EventKind::Recovered) {
        for ended in known.alerted.difference(&firing) {
            let Some((name, sync)) = ended.split_once('/') else {
                continue;
            };
            alerts.push(json!({
                "labels": {"alertname": name, "sync": sync, "notification": n.name},
                "annotations": {"summary": format!("sync {sync}: resolved")},
                "generatorURL": base.map(|b| format!("{b}/syncs/{sync}")),
                "endsAt": at(now),
            }));
        }
    }
    for h in batch.iter().filter(|h| h.event == EventKind::RunFailed) {
        alerts.push(json!({
            "labels": {"alertname": "BerthRunFailed", "subject": h.subject, "notification": n.name},
            "annotations": {"summary": format!("{}: failed", h.subject), "description": h.message, "revision": h.revision},
            "generatorURL": h.url,
            "startsAt": at(now),
            "endsAt": at(now + RUN_ALERT_LIFETIME),
        }));
    }
    known.alerted = firing;
    (!alerts.is_empty()).then(|| Delivery {
        path: "/api/v2/alerts",
        body: serde_json::to_vec(&alerts).expect("JSON serializes"),
        headers: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::events::Standing;

    fn happened(event: EventKind, subject: &str) -> Happened {
        Happened {
            event,
            subject: subject.into(),
            revision: "0123456789abcdef".into(),
            title: "Bump web <v2>".into(),
            message: "Deployment web/web: image & tag".into(),
            url: Some(format!("https://berth/syncs/{subject}")),
            time: "2026-12-06T10:00:00Z".into(),
            key: String::new(),
        }
    }

    fn body(d: &Delivery) -> Value {
        serde_json::from_slice(&d.body).expect("JSON")
    }

    #[test]
    fn slack_gets_escaped_blocks_and_a_count_beyond_twenty() {
        let batch: Vec<Happened> = (0..25)
            .map(|i| happened(EventKind::SyncFailed, &format!("sync web-{i}")))
            .collect();
        let v = body(&message(SinkKind::Slack, &batch, None));
        assert_eq!(v["text"], "25 events: SyncFailed");
        let blocks = v["blocks"].as_array().expect("blocks");
        assert_eq!(blocks.len(), 1 + 20 + 1);
        let first = blocks[1]["text"]["text"].as_str().expect("text");
        assert!(first.contains("`0123456 (Bump web &lt;v2&gt;)`"), "{first}");
        assert!(first.contains("image &amp; tag"));
        assert!(first.contains("<https://berth/syncs/sync web-0|Open in berth>"));
        assert_eq!(blocks[21]["elements"][0]["text"], "and 5 more");
    }

    #[test]
    fn teams_gets_an_adaptive_card() {
        let v = body(&message(
            SinkKind::Teams,
            &[happened(EventKind::Recovered, "sync web")],
            None,
        ));
        let card = &v["attachments"][0];
        assert_eq!(
            card["contentType"],
            "application/vnd.microsoft.card.adaptive"
        );
        assert_eq!(card["content"]["type"], "AdaptiveCard");
        assert_eq!(card["content"]["body"][0]["text"], "Recovered: sync web");
    }

    #[test]
    fn webhooks_are_signed_and_list_every_event() {
        let batch = [
            happened(EventKind::SyncFailed, "sync a"),
            happened(EventKind::SyncFailed, "sync b"),
        ];
        let d = message(SinkKind::Webhook, &batch, Some("s3cret"));
        assert_eq!(d.headers[0].0, "X-Berth-Signature");
        assert_eq!(d.headers[0].1, sign(b"s3cret", &d.body));
        let v = body(&d);
        assert_eq!(v["event"], "SyncFailed");
        assert_eq!(v["subject"], "2 subjects");
        assert_eq!(v["events"][1]["subject"], "sync b");
        let single = body(&message(SinkKind::Webhook, &batch[..1], None));
        assert_eq!(single["subject"], "sync a");
        assert_eq!(single["revision"], "0123456789abcdef");
        assert_eq!(single["events"].as_array().map(Vec::len), Some(1));
        let mixed = [batch[0].clone(), happened(EventKind::Recovered, "sync c")];
        assert_eq!(
            body(&message(SinkKind::Webhook, &mixed, None))["event"],
            "Several"
        );
    }

    #[test]
    fn alerts_fire_while_failing_and_resolve_after() {
        let n = Notification {
            name: "am".into(),
            kind: SinkKind::Alertmanager,
            secret_ref: "am".into(),
            on: EventKind::DEFAULT.into_iter().collect(),
            syncs: Vec::new(),
            pipelines: Vec::new(),
        };
        let mut known = Known::default();
        let standing = Standing {
            condition: Condition::Failed,
            revision: "abc".into(),
            since: "2026-12-06T10:00:00Z".into(),
            message: "refused".into(),
        };
        known.syncs.insert("web".into(), standing);
        let now: jiff::Timestamp = "2026-12-06T10:01:00Z".parse().expect("time");
        let d = alerts(&n, &mut known, &[], None, now).expect("firing");
        assert_eq!(d.path, "/api/v2/alerts");
        let v = body(&d);
        assert_eq!(v[0]["labels"]["alertname"], "BerthSyncFailed");
        assert_eq!(v[0]["startsAt"], "2026-12-06T10:00:00Z");
        assert_eq!(v[0]["endsAt"], "2026-12-06T10:06:00Z");
        known.syncs.get_mut("web").expect("web").condition = Condition::Fine;
        let v = body(&alerts(&n, &mut known, &[], None, now).expect("resolved"));
        assert_eq!(v[0]["endsAt"], "2026-12-06T10:01:00Z");
        assert!(
            alerts(&n, &mut known, &[], None, now).is_none(),
            "nothing left"
        );
    }
}
