//! A receiver on loopback for what berth sends out (chat, webhooks): it records every request
//! (path, headers, body) and answers as told: accept, fail with 500, or hang.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

/// How the receiver answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Ok,
    Fail,
    Hang,
}

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Got {
    pub path: String,
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
    /// 0 while it hangs.
    pub answered: u16,
    /// When it arrived.
    pub at: std::time::Instant,
}

impl Got {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{}: not JSON ({e}): {}",
                self.path,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

#[derive(Default)]
struct Log {
    answer: Option<Answer>,
    got: Vec<Got>,
}

/// A chat and webhook receiver on loopback.
pub struct Receiver {
    pub url: String,
    log: Arc<Mutex<Log>>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    pub async fn start() -> Self {
        let log = Arc::new(Mutex::new(Log::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let state = log.clone();
        let app = axum::Router::new().fallback(
            move |uri: http::Uri, headers: http::HeaderMap, body: axum::body::Bytes| {
                let state = state.clone();
                async move {
                    let answer = {
                        let mut log = state.lock().expect("log");
                        let answer = log.answer.unwrap_or(Answer::Ok);
                        log.got.push(Got {
                            path: uri.path().to_owned(),
                            headers: headers
                                .iter()
                                .map(|(k, v)| {
                                    (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned())
                                })
                                .collect(),
                            body: body.to_vec(),
                            at: std::time::Instant::now(),
                            answered: match answer {
                                Answer::Ok => 200,
                                Answer::Fail => 500,
                                Answer::Hang => 0,
                            },
                        });
                        answer
                    };
                    match answer {
                        Answer::Ok => http::StatusCode::OK,
                        Answer::Fail => http::StatusCode::INTERNAL_SERVER_ERROR,
                        Answer::Hang => {
                            tokio::time::sleep(Duration::from_secs(3600)).await;
                            http::StatusCode::OK
                        }
                    }
                }
            },
        );
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        });
        Self { url, log, task }
    }

    pub fn answer(&self, answer: Answer) {
        self.log.lock().expect("log").answer = Some(answer);
    }

    /// Every request to `path`.
    pub fn got(&self, path: &str) -> Vec<Got> {
        let log = self.log.lock().expect("log");
        log.got.iter().filter(|g| g.path == path).cloned().collect()
    }

    /// The requests to `path` it accepted.
    pub fn delivered(&self, path: &str) -> Vec<Got> {
        self.got(path)
            .into_iter()
            .filter(|g| g.answered == 200)
            .collect()
    }

    /// Waits until `path` was delivered `n` messages; returns them.
    pub async fn wait(&self, path: &str, n: usize) -> Vec<Got> {
        let found = super::eventually(Duration::from_secs(90), || async {
            let got = self.delivered(path);
            (got.len() >= n).then_some(got)
        })
        .await;
        found.unwrap_or_else(|| panic!("{path}: expected {n} messages, got {:?}", self.got(path)))
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}
