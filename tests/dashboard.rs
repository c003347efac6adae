//! The Redis queue's dashboard (feature `dashboard`): its routes through the router, and the
//! whole page in a real headless Chromium driven by chromedriver, against a real
//! `redis-server` and real workers. `.ci/run` installs both from Debian's packages; without
//! them (and without `CI=true`) these tests say so and pass.

#![cfg(feature = "dashboard")]

mod redis_server;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use concurrent_futures::TaskError;
use concurrent_futures::redis::{Dashboard, RedisExecutor, RedisWorker, TaskStatus, Tasks};
use redis_server::RedisServer;
use tower::ServiceExt;

fn double(x: u64) -> u64 {
    x * 2
}

/// A task of a newer build: the "old" workers below do not know it.
fn newer(x: u64) -> u64 {
    x + 1
}

/// Waits until the file `path` exists.
fn wait_for(path: String) -> bool {
    let t = Instant::now();
    while !std::path::Path::new(&path).exists() {
        if t.elapsed() > Duration::from_secs(60) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    true
}

/// Fails, for the failures list.
fn flaky(x: u64) -> u64 {
    assert!(x % 10 != 7, "flaky {x}: sevens fail");
    x
}

fn old_tasks() -> Tasks {
    Tasks::new()
        .add("double/v1", double)
        .add("wait_for/v1", wait_for)
        .add("flaky/v1", flaky)
}

fn new_tasks() -> Tasks {
    old_tasks().add("newer/v1", newer)
}

fn server() -> Option<RedisServer> {
    redis_server::available().then(|| RedisServer::start("dashboard", false))
}

fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let t = Instant::now();
    while !cond() {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A queue with one dead letter: a task the running worker does not know.
fn with_a_dead_letter(server: &RedisServer) -> (Arc<RedisExecutor>, RedisWorker, String) {
    let worker = RedisWorker::builder(&server.url, old_tasks())
        .max_workers(2)
        .spawn()
        .unwrap();
    let ex = Arc::new(
        RedisExecutor::builder(&server.url, new_tasks())
            .build()
            .unwrap(),
    );
    let fut = ex.submit(newer, 41).unwrap();
    let id = fut.task_id().unwrap().as_str().to_owned();
    assert!(matches!(fut.result(), Err(TaskError::Rejected(_))));
    (ex, worker, id)
}

async fn get(router: &axum::Router, path: &str) -> (StatusCode, String) {
    let response = router
        .clone()
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 1 << 24)
        .await
        .unwrap();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

async fn post(
    router: &axum::Router,
    path: &str,
    form: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, Option<String>) {
    let mut request =
        Request::post(path).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = router
        .clone()
        .oneshot(request.body(Body::from(form.to_owned())).unwrap())
        .await
        .unwrap();
    let location = response
        .headers()
        .get(header::LOCATION)
        .map(|v| v.to_str().unwrap().to_owned());
    (response.status(), location)
}

/// The token in a page's action forms.
fn token_of(page: &str) -> String {
    let at = page.find(r#"name="token" value=""#).expect("a token field") + 20;
    page[at..].split('"').next().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_pages_offer_no_action_and_have_no_action_routes() {
    let Some(server) = server() else { return };
    let (ex, _worker, id) = tokio::task::spawn_blocking(move || {
        let (ex, w, id) = with_a_dead_letter(&server);
        (ex, (w, server), id)
    })
    .await
    .unwrap();
    let router: axum::Router = Dashboard::new(ex.clone()).router();
    let (status, page) = get(&router, "/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("Dead letters (1)"), "{page}");
    assert!(page.contains(&id), "the dead letter names its task");
    assert!(page.contains("read-only"));
    assert!(!page.contains(r#"method="post""#), "no action form");
    assert!(!page.contains("checkbox"));
    for path in ["/dead/retry", "/dead/delete", "/task/cancel"] {
        let (status, _) = post(&router, path, "token=x", &[]).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: no such route");
    }
    // The task page finds it by id; a bad id is a 400, not an error page of Redis.
    let (status, page) = get(&router, &format!("/task?id={id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains(r#"<td id="state">dead-lettered</td>"#),
        "{page}"
    );
    assert!(!page.contains("Cancel this task"));
    let (status, _) = get(&router, "/task?id=%00%3Cscript%3E").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_action_needs_the_pages_token_and_the_same_site() {
    let Some(server) = server() else { return };
    let (ex, _keep, _id) = tokio::task::spawn_blocking(move || {
        let (ex, w, id) = with_a_dead_letter(&server);
        (ex, (w, server), id)
    })
    .await
    .unwrap();
    let router: axum::Router = axum::Router::new().nest(
        "/admin/q",
        Dashboard::new(ex.clone()).with_actions().router(),
    );
    let (status, page) = get(&router, "/admin/q").await;
    assert_eq!(status, StatusCode::OK);
    // Mounted under a prefix, its links and forms stay under it.
    assert!(page.contains(r#"action="/admin/q/dead/retry""#), "{page}");
    assert!(page.contains(r#"formaction="/admin/q/dead/delete""#));
    assert!(page.contains(r#"action="/admin/q/task""#));
    let token = token_of(&page);
    let info = ex.info().unwrap();
    let letter = &info.dead[0].id;
    let form = |token: &str| format!("token={token}&ids={letter}");
    for (form, headers, why) in [
        (format!("ids={letter}"), vec![], "no token"),
        (
            form("0123456789abcdef0123456789abcdef"),
            vec![],
            "a wrong token",
        ),
        (
            form(&token),
            vec![("sec-fetch-site", "cross-site")],
            "another site",
        ),
    ] {
        let (status, _) = post(&router, "/admin/q/dead/delete", &form, &headers).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{why}");
    }
    assert_eq!(ex.info().unwrap().dead_total, 1, "nothing was deleted");
    // Another dashboard's token is not this one's.
    let other: axum::Router = Dashboard::new(ex.clone()).with_actions().router();
    let (_, other_page) = get(&other, "/").await;
    assert_ne!(token_of(&other_page), token);
    let (status, location) = post(
        &router,
        "/admin/q/dead/delete",
        &form(&token),
        &[("sec-fetch-site", "same-origin")],
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let location = location.unwrap();
    assert!(
        location.starts_with("/admin/q?notice=Deleted%201%20of%201"),
        "{location}"
    );
    assert_eq!(ex.info().unwrap().dead_total, 0);
    let (_, page) = get(&router, &location).await;
    assert!(page.contains("Deleted 1 of 1 dead letters"), "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_task_is_cancelled_from_its_page() {
    let Some(server) = server() else { return };
    // No worker: the task stays queued.
    let ex = Arc::new(
        RedisExecutor::builder(&server.url, new_tasks())
            .build()
            .unwrap(),
    );
    let fut = ex.submit(double, 1).unwrap();
    let id = fut.task_id().unwrap();
    ex.flush().unwrap();
    let router: axum::Router = Dashboard::new(ex.clone()).with_actions().router();
    let (_, page) = get(&router, &format!("/task?id={}", id.as_str())).await;
    assert!(page.contains(r#"<td id="state">queued</td>"#), "{page}");
    assert!(page.contains("Cancel this task"));
    let form = format!("token={}&id={}", token_of(&page), id.as_str());
    let (status, location) = post(&router, "/task/cancel", &form, &[]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(location.unwrap().starts_with("/?notice=Cancelled"));
    assert!(fut.cancelled());
    assert_eq!(ex.status(&id).unwrap(), TaskStatus::Cancelled);
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_task_is_killed_from_the_running_list() {
    let Some(server) = server() else { return };
    let url = server.url.clone();
    let gate = std::env::temp_dir().join(format!("cf-dash-kill-{}", std::process::id()));
    let path = gate.to_string_lossy().into_owned();
    let (ex, worker, fut) = tokio::task::spawn_blocking(move || {
        let worker = RedisWorker::builder(&url, old_tasks()).spawn().unwrap();
        let ex = Arc::new(RedisExecutor::builder(&url, new_tasks()).build().unwrap());
        let fut = ex.submit(wait_for, path).unwrap();
        let id = fut.task_id().unwrap();
        eventually("it runs", || {
            matches!(ex.status(&id).unwrap(), TaskStatus::Running { .. })
        });
        (ex, worker, fut)
    })
    .await
    .unwrap();
    let id = fut.task_id().unwrap();
    let router: axum::Router = Dashboard::new(ex.clone()).with_actions().router();
    let (_, page) = get(&router, "/").await;
    assert!(page.contains(r#"class="running-row""#), "{page}");
    assert!(page.contains(r#"action="/task/kill""#));
    assert!(page.contains(id.as_str()), "the row names the task by id");
    let read_only: axum::Router = Dashboard::new(ex.clone()).router();
    assert!(!get(&read_only, "/").await.1.contains("Kill"));
    let form = format!("token={}&id={}", token_of(&page), id.as_str());
    let (status, location) = post(&router, "/task/kill", &form, &[]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(location.unwrap().starts_with("/?notice=Asked%20to%20stop"));
    let result = tokio::task::spawn_blocking(move || fut.result())
        .await
        .unwrap();
    assert_eq!(result, Err(TaskError::Cancelled));
    std::fs::write(&gate, b"x").unwrap(); // the thread, which cannot be killed, ends
    tokio::task::spawn_blocking(move || drop((worker, server)))
        .await
        .unwrap();
    let _ = std::fs::remove_file(&gate);
}

// ---------------------------------------------------------------------------------------
// In a real browser.

/// chromedriver on a free port, with a headless Chromium session.
struct Browser {
    driver: Child,
    address: SocketAddr,
    session: String,
}

impl Browser {
    fn start() -> Option<Browser> {
        let found = ["chromedriver", "chromium"].iter().all(|b| {
            Command::new("sh")
                .args(["-c", &format!("command -v {b}")])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
        if !found {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "chromium and chromium-driver are not installed: under CI=true the browser test must run (.ci/run installs them)"
            );
            eprintln!(
                "*** SKIPPED: chromium and chromedriver are not installed (apt-get install chromium chromium-driver) ***"
            );
            return None;
        }
        let port = redis_server::free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let address: SocketAddr = ([127, 0, 0, 1], port).into();
        let t = Instant::now();
        while TcpStream::connect(address).is_err() {
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "chromedriver did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut browser = Browser {
            driver,
            address,
            session: String::new(),
        };
        let caps = serde_json::json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,1560"]
            }
        }}});
        let created = browser.call("POST", "/session", Some(caps));
        browser.session = created["sessionId"].as_str().expect("a session").to_owned();
        Some(browser)
    }

    /// One WebDriver command: its `value`.
    fn call(&self, method: &str, path: &str, body: Option<serde_json::Value>) -> serde_json::Value {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut s = TcpStream::connect(self.address).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.address,
            body.len()
        )
        .unwrap();
        let body = read_response(&mut s);
        let v: serde_json::Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
        if v["value"]["error"].is_string() {
            panic!("WebDriver {method} {path}: {}", v["value"]);
        }
        v["value"].clone()
    }

    fn session_path(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    fn open(&self, url: &str) {
        self.call(
            "POST",
            &self.session_path("/url"),
            Some(serde_json::json!({ "url": url })),
        );
    }

    fn find_all(&self, css: &str) -> Vec<String> {
        let found = self.call(
            "POST",
            &self.session_path("/elements"),
            Some(serde_json::json!({"using": "css selector", "value": css})),
        );
        found
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                e["element-6066-11e4-a52e-4f735466cecf"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    }

    fn text(&self, css: &str) -> String {
        let el = self
            .find_all(css)
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("no {css}"));
        self.call(
            "GET",
            &self.session_path(&format!("/element/{el}/text")),
            None,
        )
        .as_str()
        .unwrap()
        .to_owned()
    }

    /// Waits for `css` to match (a click's navigation may still be loading the next page).
    fn wait_for(&self, css: &str) {
        let t = Instant::now();
        while self.find_all(css).is_empty() {
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "{css} never appeared"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn click(&self, element: &str) {
        self.call(
            "POST",
            &self.session_path(&format!("/element/{element}/click")),
            Some(serde_json::json!({})),
        );
    }

    fn screenshot(&self) -> Vec<u8> {
        use base64::Engine as _;
        let png = self.call("GET", &self.session_path("/screenshot"), None);
        base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let path = self.session_path("");
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.call("DELETE", &path, None)
            }));
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// An HTTP/1.1 response's body, read to its `Content-Length` or last chunk (chromedriver
/// may keep the connection open whatever the request asked).
fn read_response(s: &mut TcpStream) -> String {
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = s.read(&mut buf).unwrap();
        raw.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&raw);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let head = head.to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok());
            match length {
                Some(len) if body.len() >= len => return body[..len].to_owned(),
                None if head.contains("transfer-encoding: chunked")
                    && body.contains("\r\n0\r\n") =>
                {
                    return dechunk(body);
                }
                None if n == 0 => return body.to_owned(),
                _ => {}
            }
        }
        assert!(n > 0, "the connection closed mid-response");
    }
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

/// Serves `app` on a free port from a runtime of its own; the address.
fn serve(app: axum::Router) -> (SocketAddr, tokio::runtime::Runtime) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let address = listener.local_addr().unwrap();
    runtime.spawn(async move { axum::serve(listener, app).await });
    (address, runtime)
}

/// A POST as another site's page would send it: no token.
fn raw_post(address: SocketAddr, path: &str, form: &str) -> String {
    let mut s = TcpStream::connect(address).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}",
        form.len()
    )
    .unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    response.lines().next().unwrap_or("").to_owned()
}

#[test]
fn in_a_real_browser_the_dashboard_shows_the_queue_and_retries_a_dead_letter() {
    let Some(server) = server() else { return };
    let Some(browser) = Browser::start() else {
        return;
    };
    let ex = Arc::new(
        RedisExecutor::builder(&server.url, new_tasks())
            .build()
            .unwrap(),
    );
    let app = axum::Router::new()
        .nest("/queue", Dashboard::new(ex.clone()).with_actions().router())
        .nest(
            "/view",
            Dashboard::new(ex.clone())
                .title("Queue (read-only)")
                .router(),
        );
    let (address, _runtime) = serve(app);
    let page = format!("http://{address}/queue");

    // No worker yet: the page shows the depth that `info()` reports.
    let queued: Vec<_> = (0..7).map(|i| ex.submit(double, i).unwrap()).collect();
    ex.flush().unwrap();
    browser.open(&page);
    assert_eq!(
        browser.text("#queued"),
        ex.info().unwrap().queued.to_string()
    );
    assert_eq!(browser.text("#queued"), "7");

    // An old worker runs them, refuses a task it does not know (a dead letter), and
    // samples the queue every second while work flows, for the charts.
    let old = RedisWorker::builder(&server.url, old_tasks())
        .max_workers(2)
        .lease(Duration::from_secs(3))
        .sample_every(Duration::from_secs(1))
        .spawn()
        .unwrap();
    for f in queued {
        f.result().unwrap();
    }
    assert!(ex.submit(flaky, 17).unwrap().result().is_err());
    let poison = ex.submit(newer, 41).unwrap();
    let id = poison.task_id().unwrap();
    assert!(matches!(poison.result(), Err(TaskError::Rejected(_))));
    for round in 0..6u64 {
        let burst: Vec<_> = (0..(10 + 15 * (round % 3)))
            .map(|i| ex.submit(double, i).unwrap())
            .collect();
        for f in burst {
            f.result().unwrap();
        }
        std::thread::sleep(Duration::from_millis(900));
    }
    eventually("a few samples", || ex.history().unwrap().len() >= 4);
    browser.open(&page);
    let rows = browser.find_all(".dead-row");
    assert_eq!(rows.len(), 1);
    assert!(browser.text(".dead-row").contains("newer/v1"));
    assert!(browser.text("#dead-total") == "1");
    assert_eq!(
        browser.find_all("figure.chart svg polyline").len(),
        5,
        "every series is drawn"
    );
    assert!(
        browser
            .text(".failure-row")
            .contains("flaky 17: sevens fail")
    );

    // The README's picture of the dashboard: the newest run's.
    let png = browser.screenshot();
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/dashboard.png");
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    std::fs::write(&out, &png).unwrap();

    // A newer worker replaces the old one; a retry from the page runs the task.
    drop(old);
    let _new = RedisWorker::builder(&server.url, new_tasks())
        .spawn()
        .unwrap();
    let checkbox = browser.find_all(r#".dead-row input[type="checkbox"]"#);
    browser.click(&checkbox[0]);
    browser.click(&browser.find_all("#retry")[0]);
    browser.wait_for("#notice");
    assert!(
        browser.text("#notice").contains("Queued 1 of 1"),
        "{}",
        browser.text("#notice")
    );
    assert_eq!(ex.attach::<u64>(&id).unwrap().result(), Ok(42));
    browser.open(&format!("{page}/task?id={}", id.as_str()));
    assert_eq!(browser.text("#state"), "done");

    // Read-only: nothing to press but the search.
    browser.open(&format!("http://{address}/view"));
    assert!(browser.text("header").contains("read-only"));
    assert!(browser.find_all(r#"form[method="post"]"#).is_empty());
    assert!(
        browser
            .find_all("#retry, #delete, #cancel, input[type=checkbox]")
            .is_empty()
    );

    // A POST without the page's token is refused.
    assert!(raw_post(address, "/queue/dead/delete", "ids=1-1").contains("403"));
}
