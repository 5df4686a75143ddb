//! The runs of hooks written with `generateName`, as Argo CD makes them: each run is a new
//! object the API server names, labelled with its sync, its hook and the revision; the earlier
//! runs of a hook are found by those labels.

use kube::Client;
use kube::api::{DeleteParams, DynamicObject, ListParams, PostParams};
use serde_json::Value;

use super::Error;
use super::prune::api_for;
use crate::cluster::{self, Resources};
use crate::object::ObjectId;
use crate::vocab;

/// The label value naming a `generateName` hook within its sync: its prefix, as a label.
pub(crate) fn hook_key(prefix: &str) -> String {
    let key: String = prefix
        .trim_end_matches(['-', '.'])
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    key.trim_matches(['-', '.']).to_owned()
}

/// The selector of a hook's runs.
fn selector(sync: &str, key: &str) -> String {
    format!("{}={sync},{}={key}", vocab::SYNC_LABEL, vocab::HOOK_LABEL)
}

/// Creates one run of a `generateName` hook (`object` already carries berth's labels), with
/// its hook and revision labels; returns the name the API server gave it.
///
/// # Errors
/// The server refuses the object.
pub(crate) async fn create_run(
    client: &Client,
    resources: &Resources,
    (id, mut object): (&ObjectId, Value),
    (sync, key, revision): (&str, &str, &str),
) -> Result<String, Error> {
    let api_version = object["apiVersion"].as_str().unwrap_or_default().to_owned();
    let api = api_for(client, resources, &api_version, id)?;
    let metadata = object["metadata"]
        .as_object_mut()
        .expect("render checked that metadata is a mapping");
    metadata.remove("name");
    let labels = metadata
        .entry("labels")
        .or_insert_with(|| Value::Object(serde_json::Map::new()));
    labels[vocab::SYNC_LABEL] = Value::from(sync);
    labels[vocab::HOOK_LABEL] = Value::from(key);
    labels[vocab::REVISION] = Value::from(revision);
    let failed = |message: String| Error::Apply {
        origin: String::new(),
        id: id.to_string(),
        message,
    };
    let body: DynamicObject = serde_json::from_value(object).map_err(|e| failed(e.to_string()))?;
    let created = api
        .create(&PostParams::default(), &body)
        .await
        .map_err(|e| failed(cluster::api_message(&e)))?;
    Ok(created.metadata.name.unwrap_or_default())
}

/// Deletes every earlier run of a hook (`BeforeHookCreation`), found by its labels.
///
/// # Errors
/// The runs cannot be listed or deleted.
pub(crate) async fn delete_runs(
    client: &Client,
    resources: &Resources,
    (api_version, id): (&str, &ObjectId),
    (sync, key): (&str, &str),
) -> Result<usize, Error> {
    let api = api_for(client, resources, api_version, id)?;
    let failed = |e: kube::Error| Error::Prune {
        id: id.to_string(),
        message: cluster::api_message(&e),
    };
    let runs = api
        .list_metadata(&ListParams::default().labels(&selector(sync, key)))
        .await
        .map_err(failed)?;
    let mut deleted = 0;
    for run in runs.items {
        let Some(name) = run.metadata.name else {
            continue;
        };
        match api.delete(&name, &DeleteParams::background()).await {
            Ok(_) => deleted += 1,
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(failed(e)),
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_becomes_a_label_value() {
        assert_eq!(hook_key("schema-migrate-"), "schema-migrate");
        assert_eq!(hook_key("Upgrade_SQL-"), "Upgrade-SQL");
        assert_eq!(hook_key(&"x".repeat(80)).len(), 63);
        assert_eq!(
            selector("web", "migrate"),
            "berth.dev/sync=web,berth.dev/hook=migrate"
        );
    }
}
