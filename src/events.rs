//! Kubernetes Events on berth's status records, published through kube-runtime's
//! [`Recorder`]. An Event is a courtesy, never a reason to fail a pass: failures are logged.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

use crate::cluster::api_message;
use crate::vocab::{FIELD_MANAGER, Reason, RecordKind};

/// The most a note may hold (events.k8s.io counts bytes).
const NOTE_BYTES: usize = 1024;

/// Records an Event with `reason` and `message` on the status ConfigMap of a record
/// (`berth-sync-<name>`, `berth-pipeline-<name>`, …) in `namespace`.
pub(crate) async fn publish(
    client: &Client,
    namespace: &str,
    record: (RecordKind, &str),
    reason: Reason,
    message: &str,
) {
    let (kind, name) = record;
    let regarding = ObjectReference {
        api_version: Some("v1".to_owned()),
        kind: Some("ConfigMap".to_owned()),
        name: Some(kind.config_map(name)),
        namespace: Some(namespace.to_owned()),
        ..ObjectReference::default()
    };
    let event = Event {
        type_: if reason.is_warning() {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: reason.as_str().to_owned(),
        note: Some(truncate(message, NOTE_BYTES).to_owned()),
        action: reason.action().to_owned(),
        secondary: None,
    };
    // A Recorder per Event: the Recorder folds repeats of a reason on one object into a series
    // that keeps the first note, and every one of berth's notes says something new.
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: FIELD_MANAGER.to_owned(),
            instance: None,
        },
    );
    if let Err(e) = recorder.publish(&event, &regarding).await {
        tracing::warn!(error = %api_message(&e), %reason, "failed to record event");
    }
}

/// The longest prefix of `text` of at most `max` bytes that ends on a character boundary.
fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_are_cut_on_character_boundaries() {
        assert_eq!(truncate("short", 10), "short");
        assert_eq!(truncate("äöü", 3), "ä");
        assert_eq!(truncate(&"x".repeat(2000), NOTE_BYTES).len(), NOTE_BYTES);
    }
}
