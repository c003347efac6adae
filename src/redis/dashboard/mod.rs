//! [`Dashboard`]: a web view of a Redis queue that a web app mounts, as Sidekiq::Web and Oban
//! Web are (feature `dashboard`).
//!
//! - `GET /`: the queue now (depth, running, workers, the age of the oldest waiting task),
//!   charts of its history (depth, throughput, oldest age; SVG drawn here, no script), the
//!   running tasks, the workers alive and silent, the newest dead letters with their errors.
//! - `GET /task?id=...`: a task found by id, from its durable record.
//! - With actions enabled, `POST /dead/retry`, `POST /dead/delete` (bulk, by checkbox),
//!   `POST /task/cancel` (a queued task) and `POST /task/kill` (a running one). Each POST must carry the dashboard's token, which only its own
//!   pages hold (the synchronizer-token defence against cross-site requests), and is refused
//!   when the browser says it comes from another site. Read-only, the default, registers no
//!   POST route and shows no form but the search.
//!
//! Everything it shows comes from Redis, so it is escaped and cut to size before it reaches
//! the page. The Redis calls block, so they run on tokio's blocking pool.

mod chart;
mod page;
mod text;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{OriginalUri, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{MethodRouter, get, post};

use super::{RedisExecutor, TaskId};

/// A web view of a Redis queue, as an [`axum::Router`] to mount in a web app.
///
/// Read-only unless [`with_actions`](Self::with_actions) is called: then its pages offer
/// retrying and deleting dead letters and cancelling queued tasks, each a POST that must
/// carry the token of this dashboard's pages. Put it behind your app's authentication: it
/// shows task names, arguments and errors.
///
/// The handlers call Redis on tokio's blocking pool, so the router must run on a tokio
/// runtime (as every axum server does).
///
/// # Examples
///
/// ```no_run
/// use concurrent_futures::redis::{Dashboard, RedisExecutor, Tasks};
/// use std::sync::Arc;
///
/// # async fn serve() -> Result<(), Box<dyn std::error::Error>> {
/// let ex = Arc::new(RedisExecutor::builder("redis://127.0.0.1/", Tasks::new()).build()?);
/// let app = axum::Router::new()
///     .nest("/queue", Dashboard::new(ex).with_actions().router());
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
/// axum::serve(listener, app).await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Dashboard {
    ex: Arc<RedisExecutor>,
    actions: bool,
    title: Arc<str>,
    token: Arc<str>,
}

impl std::fmt::Debug for Dashboard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dashboard")
            .field("namespace", &self.ex.namespace())
            .field("actions", &self.actions)
            .field("title", &self.title)
            .finish_non_exhaustive()
    }
}

impl Dashboard {
    /// A read-only dashboard of `executor`'s queue (its Redis and namespace). An executor
    /// built with an empty [`Tasks`](super::Tasks) list is enough: the dashboard submits
    /// nothing.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use concurrent_futures::redis::{Dashboard, RedisExecutor, Tasks};
    /// let ex = RedisExecutor::builder("redis://127.0.0.1/", Tasks::new()).build()?;
    /// let router: axum::Router = Dashboard::new(std::sync::Arc::new(ex)).router();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(executor: Arc<RedisExecutor>) -> Dashboard {
        let token = format!(
            "{:016x}{:016x}",
            super::host::random(),
            super::host::random()
        );
        let title = format!("Queue {}", executor.namespace());
        Dashboard {
            ex: executor,
            actions: false,
            title: title.into(),
            token: token.into(),
        }
    }

    /// Enables the actions: retry and delete dead letters, cancel a queued task.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use concurrent_futures::redis::{Dashboard, RedisExecutor, Tasks};
    /// let ex = RedisExecutor::builder("redis://127.0.0.1/", Tasks::new()).build()?;
    /// let admin: axum::Router = Dashboard::new(std::sync::Arc::new(ex)).with_actions().router();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_actions(mut self) -> Dashboard {
        self.actions = true;
        self
    }

    /// The pages' title (default: `Queue <namespace>`).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use concurrent_futures::redis::{Dashboard, RedisExecutor, Tasks};
    /// let ex = RedisExecutor::builder("redis://127.0.0.1/", Tasks::new()).build()?;
    /// let d = Dashboard::new(std::sync::Arc::new(ex)).title("Image jobs");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn title(mut self, title: &str) -> Dashboard {
        self.title = title.into();
        self
    }

    /// The router: mount it with [`Router::nest`] (its links are relative to where it is
    /// mounted) or serve it as it is.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use concurrent_futures::redis::{Dashboard, RedisExecutor, Tasks};
    /// let ex = RedisExecutor::builder("redis://127.0.0.1/", Tasks::new()).build()?;
    /// let app: axum::Router = axum::Router::new().nest("/admin/queue", Dashboard::new(ex.into()).router());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn router<S: Clone + Send + Sync + 'static>(self) -> Router<S> {
        let mut router = Router::new()
            .route("/", get(overview))
            .route("/task", get(task));
        if self.actions {
            router = router
                .route("/dead/retry", action(retry_dead))
                .route("/dead/delete", action(delete_dead))
                .route("/task/cancel", action(cancel_task))
                .route("/task/kill", action(kill_task));
        }
        router.with_state(self)
    }
}

/// Where the dashboard is mounted: the original path without the part the router matched
/// (`/queue/task` matched as `/task` is mounted at `/queue`), with one leading slash.
fn base(original: &Uri, inner: &Uri) -> String {
    let (o, i) = (original.path(), inner.path());
    let mounted = if i == "/" {
        o
    } else {
        o.strip_suffix(i).unwrap_or("")
    };
    let mounted = mounted.trim_matches('/');
    if mounted.is_empty() {
        String::new()
    } else {
        // One leading slash: `//host` would be another site in a Location header.
        format!("/{mounted}")
    }
}

/// Where the page is: the links' prefix.
struct Here {
    base: String,
}

impl Here {
    /// The overview's path: the mount point itself (axum's `nest` matches `/queue`, not
    /// `/queue/`), or `/` at the root.
    fn home(&self) -> &str {
        if self.base.is_empty() {
            "/"
        } else {
            &self.base
        }
    }
}

async fn overview(
    State(d): State<Dashboard>,
    OriginalUri(original): OriginalUri,
    uri: Uri,
    RawQuery(query): RawQuery,
) -> Response {
    let here = Here {
        base: base(&original, &uri),
    };
    let notice = query
        .as_deref()
        .and_then(|q| form_value(q, "notice"))
        .map(|n| n.chars().take(200).collect::<String>());
    let ex = d.ex.clone();
    let read = tokio::task::spawn_blocking(move || (ex.info(), ex.history())).await;
    match read {
        Ok((Ok(info), history)) => {
            let history = history.unwrap_or_default();
            Html(page::overview(
                &d,
                &here,
                &info,
                &history,
                notice.as_deref(),
            ))
            .into_response()
        }
        Ok((Err(e), _)) => unavailable(&d, &here, &e.to_string()),
        Err(e) => unavailable(&d, &here, &e.to_string()),
    }
}

async fn task(
    State(d): State<Dashboard>,
    OriginalUri(original): OriginalUri,
    uri: Uri,
    RawQuery(query): RawQuery,
) -> Response {
    let here = Here {
        base: base(&original, &uri),
    };
    let text = query
        .as_deref()
        .and_then(|q| form_value(q, "id"))
        .unwrap_or_default();
    let id = match TaskId::new(text.trim()) {
        Ok(id) => id,
        Err(e) => {
            let body = page::message(&d, &here, "No such task id", &e.to_string());
            return (StatusCode::BAD_REQUEST, Html(body)).into_response();
        }
    };
    let ex = d.ex.clone();
    let looked = id.clone();
    match tokio::task::spawn_blocking(move || ex.status(&looked)).await {
        Ok(Ok(status)) => Html(page::task(&d, &here, &id, &status)).into_response(),
        Ok(Err(e)) => unavailable(&d, &here, &e.to_string()),
        Err(e) => unavailable(&d, &here, &e.to_string()),
    }
}

/// An action's POST route: `run` gets the executor and the form, on the blocking pool,
/// once [`act`] has checked the request.
fn action(run: Action) -> MethodRouter<Dashboard> {
    post(
        move |State(d): State<Dashboard>,
              OriginalUri(original): OriginalUri,
              uri: Uri,
              headers: HeaderMap,
              body: Bytes| async move { act(d, &original, &uri, &headers, &body, run).await },
    )
}

/// What an action does with the checked form: the notice to show after it.
type Action = fn(&RedisExecutor, &str) -> Result<String, super::SetupError>;

fn retry_dead(ex: &RedisExecutor, form: &str) -> Result<String, super::SetupError> {
    let ids = form_values(form, "ids");
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    ex.retry_dead(&ids)
        .map(|n| format!("Queued {n} of {} dead letters again", ids.len()))
}

fn delete_dead(ex: &RedisExecutor, form: &str) -> Result<String, super::SetupError> {
    let ids = form_values(form, "ids");
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    ex.delete_dead(&ids)
        .map(|n| format!("Deleted {n} of {} dead letters", ids.len()))
}

fn cancel_task(ex: &RedisExecutor, form: &str) -> Result<String, super::SetupError> {
    let Ok(id) = TaskId::new(&form_value(form, "id").unwrap_or_default()) else {
        return Ok("That is not a task id".to_owned());
    };
    Ok(if ex.cancel(&id)? {
        format!("Cancelled {id}")
    } else {
        format!("{id} was not cancelled: a worker holds it, it ended, or it is unknown")
    })
}

fn kill_task(ex: &RedisExecutor, form: &str) -> Result<String, super::SetupError> {
    let Ok(id) = TaskId::new(&form_value(form, "id").unwrap_or_default()) else {
        return Ok("That is not a task id".to_owned());
    };
    Ok(if ex.kill(&id)? {
        format!("Asked to stop {id}")
    } else {
        format!("{id} was not stopped: it ended, or it is unknown")
    })
}

/// Checks a POST (same site, the page's token), runs `action` on the blocking pool and
/// sends the browser back to the overview with its notice (POST, then redirect, then GET:
/// a reload does not repeat the action).
async fn act(
    d: Dashboard,
    original: &Uri,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    action: Action,
) -> Response {
    let here = Here {
        base: base(original, uri),
    };
    let cross_site = headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes() == b"cross-site");
    let form = String::from_utf8_lossy(body).into_owned();
    let token = form_value(&form, "token").unwrap_or_default();
    if cross_site || !same(token.as_bytes(), d.token.as_bytes()) {
        let body = page::message(
            &d,
            &here,
            "Refused",
            "This action did not come from this dashboard's own page (its token is missing or \
             wrong). Reload the dashboard and try again.",
        );
        return (StatusCode::FORBIDDEN, Html(body)).into_response();
    }
    let ex = d.ex.clone();
    match tokio::task::spawn_blocking(move || action(&ex, &form)).await {
        Ok(Ok(notice)) => {
            // 303 See Other: the browser GETs the overview.
            Redirect::to(&format!("{}?notice={}", here.home(), encode(&notice))).into_response()
        }
        Ok(Err(e)) => unavailable(&d, &here, &e.to_string()),
        Err(e) => unavailable(&d, &here, &e.to_string()),
    }
}

fn unavailable(d: &Dashboard, here: &Here, why: &str) -> Response {
    let body = page::message(d, here, "Redis cannot be reached", why);
    (StatusCode::SERVICE_UNAVAILABLE, Html(body)).into_response()
}

/// Compares in time independent of where the inputs differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The first value of `key` in a query string or form body.
fn form_value(form: &str, key: &str) -> Option<String> {
    form_pairs(form).find(|(k, _)| k == key).map(|(_, v)| v)
}

/// Every value of `key` (checkboxes of one name), at most 1,000.
fn form_values(form: &str, key: &str) -> Vec<String> {
    form_pairs(form)
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v)
        .take(1000)
        .collect()
}

/// `application/x-www-form-urlencoded` pairs, decoded.
fn form_pairs(form: &str) -> impl Iterator<Item = (String, String)> + '_ {
    form.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (decode(k), decode(v))
    })
}

/// Percent-decoding, `+` as a space; bad escapes are kept as they are.
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = |b: u8| (b as char).to_digit(16);
                match (
                    bytes.get(i + 1).copied().and_then(hex),
                    bytes.get(i + 2).copied().and_then(hex),
                ) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Percent-encoding for a query value.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_decode_and_encode() {
        let form = "token=ab%2Fc&ids=1-0&ids=2-0&empty=&x=a+b&bad=%zz%4";
        assert_eq!(form_value(form, "token").as_deref(), Some("ab/c"));
        assert_eq!(form_values(form, "ids"), ["1-0", "2-0"]);
        assert_eq!(form_value(form, "empty").as_deref(), Some(""));
        assert_eq!(form_value(form, "x").as_deref(), Some("a b"));
        assert_eq!(form_value(form, "bad").as_deref(), Some("%zz%4"));
        assert_eq!(form_value(form, "missing"), None);
        let text = "Queued 2 of 3 — done & <ok>";
        assert_eq!(decode(&encode(text)), text);
    }

    #[test]
    fn the_base_is_where_the_router_is_mounted() {
        let u = |s: &str| s.parse::<Uri>().unwrap();
        assert_eq!(base(&u("/queue/task?id=1"), &u("/task?id=1")), "/queue");
        assert_eq!(base(&u("/queue"), &u("/")), "/queue");
        assert_eq!(base(&u("/queue/"), &u("/")), "/queue");
        assert_eq!(base(&u("/"), &u("/")), "");
        assert_eq!(base(&u("/task"), &u("/task")), "");
        assert_eq!(
            base(&u("//evil.example/task"), &u("/task")),
            "/evil.example"
        );
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"ab"));
        assert!(!same(b"", b"a"));
    }
}
