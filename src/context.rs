//! What every pass of a sync, pipeline or cleanup rule needs: the API client, berth's own
//! namespace, the git cache, the request parallelism and the metrics, plus the one reader of
//! repository credentials.

use std::path::PathBuf;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::Api;

use crate::cluster::api_message;
use crate::git::Credentials;
use crate::object::ObjectId;
use crate::store::Store;
use crate::telemetry::Metrics;

#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error("failed to read secret {name}: {message}")]
    Secret { name: String, message: String },
    #[error("failed to read ConfigMap {name}: {message}")]
    ConfigMap { name: String, message: String },
    #[error("{0}")]
    Identity(String),
}

/// Who berth acts as: itself, or a ServiceAccount it impersonates (a sync's or pipeline's
/// `serviceAccount`, else the default one), with one client per account.
pub(crate) struct Identities {
    connection: crate::cluster::Connection,
    default_service_account: Option<String>,
    clients: std::sync::Mutex<std::collections::HashMap<String, Client>>,
}

impl Identities {
    pub(crate) fn new(
        connection: crate::cluster::Connection,
        default_service_account: Option<String>,
    ) -> Self {
        Self {
            connection,
            default_service_account,
            clients: std::sync::Mutex::default(),
        }
    }
}

/// What every pass needs.
#[derive(Clone)]
pub(crate) struct Context {
    pub client: Client,
    /// berth's own namespace: status ConfigMaps, Events, credential Secrets.
    pub namespace: String,
    pub cache_dir: PathBuf,
    /// Parallel API requests per sync.
    pub concurrency: usize,
    /// The largest manifest file a render reads.
    pub max_manifest_bytes: u64,
    /// Whether long work reports its progress on stderr (a one-shot verb at a terminal).
    pub progress: bool,
    pub identities: Arc<Identities>,
    pub metrics: Arc<Metrics>,
    /// The one client for git hosts' APIs.
    pub provider: crate::provider::Client,
    /// The dashboard's public address (`--external-url`), for links in commit statuses.
    pub external_url: Option<Arc<str>>,
    /// The objects the syncs passing now declare.
    pub claims: Arc<Claims>,
}

/// The objects each sync passing now declares, so syncs passing side by side see each other's
/// objects before either has labelled them: an object that two syncs declare belongs to the
/// one whose pass claimed it first, as it would to the one that passed first.
#[derive(Debug, Default)]
pub(crate) struct Claims(std::sync::Mutex<std::collections::HashMap<ObjectId, String>>);

/// What one sync's pass claimed; let go when the pass ends.
#[derive(Debug)]
pub(crate) struct Claim {
    claims: Arc<Claims>,
    sync: String,
    ids: Vec<ObjectId>,
}

impl Claims {
    /// Claims `ids` for `sync`. The error names each object another sync's pass claimed.
    pub(crate) fn claim(
        self: &Arc<Self>,
        sync: &str,
        ids: impl IntoIterator<Item = ObjectId>,
    ) -> Result<Claim, Vec<String>> {
        let mut held = self.0.lock().expect("claims lock");
        let ids: Vec<ObjectId> = ids.into_iter().collect();
        let taken: Vec<String> = ids
            .iter()
            .filter_map(|id| {
                let owner = held.get(id).filter(|owner| *owner != sync)?;
                Some(format!(
                    "{id} is declared by sync {owner:?}, passing now; sync {sync:?} declares it too"
                ))
            })
            .collect();
        if !taken.is_empty() {
            return Err(taken);
        }
        let mut mine = Vec::new();
        for id in ids {
            if !held.contains_key(&id) {
                held.insert(id.clone(), sync.to_owned());
                mine.push(id);
            }
        }
        Ok(Claim {
            claims: self.clone(),
            sync: sync.to_owned(),
            ids: mine,
        })
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut held = self.claims.0.lock().expect("claims lock");
        for id in &self.ids {
            if held.get(id) == Some(&self.sync) {
                held.remove(id);
            }
        }
    }
}

impl Context {
    /// The client to act with for something in `namespace` with `service_account` (or the
    /// default one): an impersonating client, or berth's own when neither names an account.
    /// Returns the account's user name with it, for messages.
    ///
    /// # Errors
    /// An account is needed but there is no namespace to find it in, or the client cannot be
    /// set up.
    pub(crate) fn client_as(
        &self,
        what: &str,
        namespace: Option<&str>,
        service_account: Option<&str>,
    ) -> Result<(Client, Option<String>), Error> {
        let ids = &self.identities;
        let Some(account) = service_account.or(ids.default_service_account.as_deref()) else {
            return Ok((self.client.clone(), None));
        };
        let Some(namespace) = namespace else {
            return Err(Error::Identity(format!(
                "{what} has no namespace, so it cannot act as the ServiceAccount {account:?}; \
                 set its namespace (or its own serviceAccount with one)"
            )));
        };
        let user = crate::cluster::service_account_user(namespace, account);
        let mut clients = ids.clients.lock().expect("client cache lock");
        if let Some(client) = clients.get(&user) {
            return Ok((client.clone(), Some(user)));
        }
        let client = ids
            .connection
            .as_service_account(namespace, account)
            .map_err(|e| Error::Identity(e.to_string()))?;
        clients.insert(user.clone(), client.clone());
        Ok((client, Some(user)))
    }

    /// Reports progress of a sync to a person at a terminal; nothing otherwise.
    pub(crate) fn progress(&self, sync: &str, text: &str) {
        if self.progress {
            eprintln!("{sync}: {text}");
        }
    }

    /// Reports a wait someone may want to know about (a wave waiting for the waves before it,
    /// a hook running): as progress at a terminal, else as a log line.
    pub(crate) fn announce(&self, sync: &str, text: &str) {
        if self.progress {
            self.progress(sync, text);
        } else {
            tracing::info!(sync, "{text}");
        }
    }

    /// berth's status records.
    pub(crate) fn store(&self) -> Store {
        Store::new(&self.client, &self.namespace)
    }

    /// The data of a ConfigMap or (`secret`) a Secret in berth's namespace, read with `client`
    /// (berth's own, or a sync's account); `None` when it does not exist. Values are text.
    ///
    /// # Errors
    /// It cannot be read (refused, unreachable).
    pub(crate) async fn namespace_data(
        &self,
        client: &Client,
        secret: bool,
        name: &str,
    ) -> Result<Option<std::collections::BTreeMap<String, String>>, Error> {
        let at = format!("{}/{name}", self.namespace);
        if secret {
            let api: Api<Secret> = Api::namespaced(client.clone(), &self.namespace);
            let failed = |e: kube::Error| Error::Secret {
                name: at.clone(),
                message: api_message(&e),
            };
            let Some(found) = api.get_opt(name).await.map_err(failed)? else {
                return Ok(None);
            };
            let data = found.data.unwrap_or_default().into_iter();
            let text = data.map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()));
            let mut all: std::collections::BTreeMap<String, String> = text.collect();
            all.extend(found.string_data.unwrap_or_default());
            return Ok(Some(all));
        }
        let api: Api<k8s_openapi::api::core::v1::ConfigMap> =
            Api::namespaced(client.clone(), &self.namespace);
        let found = api.get_opt(name).await.map_err(|e| Error::ConfigMap {
            name: at,
            message: api_message(&e),
        })?;
        Ok(found.map(|cm| cm.data.unwrap_or_default()))
    }

    /// Reads a repository's credentials from the Secret its `auth.secretRef` names, in
    /// berth's namespace; `None` without one.
    ///
    /// # Errors
    /// The Secret cannot be read.
    pub(crate) async fn credentials(
        &self,
        secret: Option<&str>,
    ) -> Result<Option<Credentials>, Error> {
        let Some(name) = secret else {
            return Ok(None);
        };
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
        let secret = api.get(name).await.map_err(|e| Error::Secret {
            name: format!("{}/{name}", self.namespace),
            message: api_message(&e),
        })?;
        let data = secret.data.unwrap_or_default();
        let get = |k: &str| {
            data.get(k).map(|v| {
                String::from_utf8_lossy(&v.0)
                    .trim_end_matches('\n')
                    .to_owned()
            })
        };
        Ok(Some(Credentials {
            secret: name.to_owned(),
            username: get("username"),
            password: get("password"),
            token: get("token"),
            identity: get("identity"),
            known_hosts: get("known_hosts"),
        }))
    }

    /// The token of a repository's provider, from its Secret: key `token` (or `password`, for
    /// the repository's auth Secret), and `username` for Bitbucket's basic authentication.
    ///
    /// # Errors
    /// The Secret cannot be read, or holds no token.
    pub(crate) async fn provider_token(
        &self,
        target: &crate::provider::Target,
    ) -> Result<crate::provider::Token, crate::provider::Error> {
        let no_token = |message: String| crate::provider::Error::Token {
            provider: target.kind.as_str(),
            repository: target.project.clone(),
            message,
        };
        let creds = self
            .credentials(target.secret.as_deref())
            .await
            .map_err(|e| no_token(e.to_string()))?
            .ok_or_else(|| no_token("the provider has no secretRef".to_owned()))?;
        let secret = creds.token.or(creds.password).ok_or_else(|| {
            no_token(format!(
                "Secret {}/{} has no key `token`",
                self.namespace, creds.secret
            ))
        })?;
        let username = match target.kind {
            crate::provider::Kind::Bitbucket | crate::provider::Kind::BitbucketServer => {
                creds.username
            }
            _ => None,
        };
        Ok(crate::provider::Token { username, secret })
    }
}

#[cfg(test)]
mod claim_tests {
    use super::*;

    #[test]
    fn an_object_belongs_to_the_pass_that_claimed_it_first() {
        let claims = Arc::new(Claims::default());
        let id = |name: &str| ObjectId {
            group: String::new(),
            kind: "ConfigMap".into(),
            namespace: "web".into(),
            name: name.into(),
        };
        let first = claims
            .claim("a", [id("shared"), id("a-only")])
            .expect("free");
        let refused = claims
            .claim("b", [id("shared"), id("b-only")])
            .expect_err("taken");
        assert_eq!(refused.len(), 1);
        assert!(
            refused[0].contains("sync \"a\", passing now"),
            "{refused:?}"
        );
        // a sync claims again what it holds; another sync's claim is untouched by a refusal
        let again = claims.claim("a", [id("shared")]).expect("its own");
        drop(again);
        assert!(
            claims.claim("b", [id("shared")]).is_err(),
            "still held by the first claim"
        );
        drop(first);
        assert!(
            claims.claim("b", [id("shared")]).is_ok(),
            "let go when the pass ended"
        );
    }
}
