//! The dashboard's pages as HTML: one stylesheet inline, no script, every value from Redis
//! escaped and cut to size.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use super::chart::{self, Series};
use super::text::{ago, esc};
use super::{Dashboard, Here};
use crate::redis::{QueueInfo, QueueSample, TaskId, TaskStatus};

/// The longest text shown from one field; the rest is cut.
const SHOWN: usize = 500;

const STYLE: &str = "
body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#222;background:#f6f7f9}
header{background:#24292f;color:#fff;padding:10px 20px;display:flex;gap:20px;align-items:center}
header a{color:#fff;text-decoration:none;font-weight:600}
header form{margin-left:auto}
main{padding:16px 20px;max-width:1200px}
.cards{display:flex;gap:12px;flex-wrap:wrap;margin-bottom:16px}
.card{background:#fff;border:1px solid #d0d7de;border-radius:6px;padding:10px 16px;min-width:120px}
.card b{display:block;font-size:22px}
.charts{display:flex;gap:12px;flex-wrap:wrap}
figure.chart{background:#fff;border:1px solid #d0d7de;border-radius:6px;margin:0;padding:8px}
figcaption{font-weight:600;margin-bottom:4px}
section{background:#fff;border:1px solid #d0d7de;border-radius:6px;padding:10px 16px;margin:16px 0}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #eee;vertical-align:top}
td.msg{font-family:ui-monospace,monospace;font-size:12px;white-space:pre-wrap;word-break:break-word}
.silent{color:#b35900;font-weight:600}
.alive{color:#1a7f37}
.notice{background:#ddf4ff;border:1px solid #54aeff;padding:8px 12px;border-radius:6px}
.readonly{color:#57606a;font-size:12px}
button{margin-right:8px}
";

/// At most [`SHOWN`] characters of `s`, escaped.
fn cut(s: &str) -> String {
    let mut shown: String = s.chars().take(SHOWN).collect();
    if shown.len() < s.len() {
        shown.push_str(" …");
    }
    esc(&shown)
}

fn when(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t)
        .format("%Y-%m-%d %H:%M:%S UTC")
        .to_string()
}

fn layout(d: &Dashboard, here: &Here, body: &str) -> String {
    let base = esc(&here.base);
    let mode = if d.actions {
        ""
    } else {
        r#"<span class="readonly">read-only</span>"#
    };
    format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><title>{title}</title><style>{STYLE}</style></head><body><header><a href="{home}">{title}</a>{mode}<form method="get" action="{base}/task"><input name="id" placeholder="Find a task by id" size="28" aria-label="task id"> <button type="submit">Find</button></form></header><main>{body}</main></body></html>"#,
        title = esc(&d.title),
        home = esc(here.home()),
    )
}

/// A page with a heading and a sentence: errors and refusals.
pub(super) fn message(d: &Dashboard, here: &Here, heading: &str, text: &str) -> String {
    layout(
        d,
        here,
        &format!(
            r#"<h1>{}</h1><p id="message">{}</p><p><a href="{}">Back to the queue</a></p>"#,
            esc(heading),
            cut(text),
            esc(here.home())
        ),
    )
}

/// The hidden field every action form carries.
fn token(d: &Dashboard) -> String {
    format!(
        r#"<input type="hidden" name="token" value="{}">"#,
        esc(&d.token)
    )
}

fn task_link(here: &Here, id: &str) -> String {
    if TaskId::new(id).is_err() {
        return cut(id);
    }
    let mut encoded = String::new();
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            encoded.push(b as char);
        } else {
            let _ = write!(encoded, "%{b:02X}");
        }
    }
    format!(
        r#"<a href="{}/task?id={}">{}</a>"#,
        esc(&here.base),
        encoded,
        esc(id)
    )
}

/// The overview: cards, charts, workers, running tasks, dead letters.
pub(super) fn overview(
    d: &Dashboard,
    here: &Here,
    info: &QueueInfo,
    history: &[QueueSample],
    notice: Option<&str>,
) -> String {
    let now = SystemTime::now();
    let mut body = String::new();
    if let Some(n) = notice {
        let _ = write!(body, r#"<p class="notice" id="notice">{}</p>"#, cut(n));
    }
    let alive = info.workers.iter().filter(|w| w.alive()).count();
    let silent = info.workers.len() - alive;
    let last = history.last();
    let oldest = last.map_or_else(|| "–".to_owned(), |s| ago(s.oldest_age));
    let _ = write!(
        body,
        r#"<div class="cards"><div class="card">Queued<b id="queued">{}</b></div><div class="card">Running<b id="running">{}</b></div><div class="card">Oldest waiting<b id="oldest">{}</b></div><div class="card">Workers<b id="workers">{alive}</b>{}</div><div class="card">Dead letters<b id="dead-total">{}</b></div><div class="card">Answered<b id="answered">{}</b>{} failed</div></div>"#,
        info.queued,
        info.running_total,
        esc(&oldest),
        if silent > 0 {
            format!(r#"<span class="silent">{silent} silent</span>"#)
        } else {
            String::new()
        },
        info.dead_total,
        last.map_or(0, |s| s.completed + s.failed),
        last.map_or(0, |s| s.failed),
    );
    // Charts of the history.
    let at = |f: fn(&QueueSample) -> f64| -> Vec<(SystemTime, f64)> {
        history.iter().map(|s| (s.at, f(s))).collect()
    };
    let counts = |f: fn(&QueueSample) -> u64| -> Vec<(SystemTime, u64)> {
        history.iter().map(|s| (s.at, f(s))).collect()
    };
    body.push_str(r#"<div class="charts">"#);
    body.push_str(&chart::lines(
        "Queue depth",
        "tasks",
        &[
            Series {
                name: "queued",
                color: "#1f6feb",
                points: at(|s| s.queued as f64),
            },
            Series {
                name: "running",
                color: "#8250df",
                points: at(|s| s.running as f64),
            },
        ],
        now,
    ));
    body.push_str(&chart::lines(
        "Throughput",
        "tasks a minute",
        &[
            Series {
                name: "completed",
                color: "#1a7f37",
                points: chart::per_minute(&counts(|s| s.completed)),
            },
            Series {
                name: "failed",
                color: "#cf222e",
                points: chart::per_minute(&counts(|s| s.failed)),
            },
        ],
        now,
    ));
    body.push_str(&chart::lines(
        "Oldest waiting task",
        "seconds",
        &[Series {
            name: "age",
            color: "#b35900",
            points: at(|s| s.oldest_age.as_secs_f64()),
        }],
        now,
    ));
    body.push_str("</div>");

    // Workers.
    let _ = write!(
        body,
        r#"<section id="workers-list"><h2>Workers</h2><table><tr><th>Worker</th><th>State</th><th>Last seen</th><th>Details</th></tr>"#
    );
    for w in &info.workers {
        let details: Vec<String> = w
            .details
            .iter()
            .take(16)
            .map(|(k, v)| format!("{}={}", cut(k), cut(v)))
            .collect();
        let state = if w.alive() {
            r#"<span class="alive">alive</span>"#
        } else {
            r#"<span class="silent">silent</span>"#
        };
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{state}</td><td>{} ago</td><td>{}</td></tr>",
            cut(&w.name),
            esc(&ago(w.last_seen)),
            details.join(" ")
        );
    }
    if info.workers.is_empty() {
        body.push_str(r#"<tr><td colspan="4">No worker has sent a heartbeat lately.</td></tr>"#);
    }
    body.push_str("</table></section>");

    // Running tasks.
    let _ = write!(
        body,
        r#"<section id="running-list"><h2>Running ({})</h2><table><tr><th>Task</th><th>Function</th><th>Worker</th><th>Delivery</th><th>Lease renewed</th>{}</tr>"#,
        info.running_total,
        if d.actions { "<th></th>" } else { "" }
    );
    for r in &info.running {
        let kill = if d.actions && TaskId::new(&r.id).is_ok() {
            format!(
                r#"<td><form method="post" action="{}/task/kill">{}<input type="hidden" name="id" value="{}"><button type="submit" class="kill">Kill</button></form></td>"#,
                esc(&here.base),
                token(d),
                esc(&r.id)
            )
        } else if d.actions {
            "<td></td>".to_owned()
        } else {
            String::new()
        };
        let _ = write!(
            body,
            r#"<tr class="running-row"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} ago</td>{kill}</tr>"#,
            task_link(here, &r.id),
            cut(&r.task),
            cut(&r.worker),
            r.deliveries,
            esc(&ago(r.since_renewal))
        );
    }
    body.push_str("</table></section>");

    // Tasks that ran and failed.
    let _ = write!(
        body,
        r#"<section id="failures-list"><h2>Recent failures</h2><table><tr><th>Task</th><th>Error</th><th>Worker</th><th>When</th></tr>"#
    );
    for t in &info.failed {
        let _ = write!(
            body,
            r#"<tr class="failure-row"><td>{}</td><td class="msg">{}</td><td>{}</td><td>{}</td></tr>"#,
            task_link(here, &t.id),
            cut(&t.error.to_string()),
            cut(&t.worker),
            esc(&when(t.at))
        );
    }
    if info.failed.is_empty() {
        body.push_str(r#"<tr><td colspan="4">None kept.</td></tr>"#);
    }
    body.push_str("</table></section>");

    // Dead letters, with bulk actions.
    let _ = write!(
        body,
        r#"<section id="dead-list"><h2>Dead letters ({})</h2>"#,
        info.dead_total
    );
    if d.actions && !info.dead.is_empty() {
        let _ = write!(
            body,
            r#"<form method="post" action="{base}/dead/retry">{}<p><button type="submit" id="retry">Retry selected</button><button type="submit" id="delete" formaction="{base}/dead/delete">Delete selected</button></p>"#,
            token(d),
            base = esc(&here.base)
        );
    }
    body.push_str("<table><tr>");
    if d.actions {
        body.push_str("<th></th>");
    }
    body.push_str(
        "<th>Task</th><th>Function</th><th>Why</th><th>Error</th><th>Worker</th><th>When</th></tr>",
    );
    for letter in &info.dead {
        let field = |k: &str| {
            letter
                .fields
                .iter()
                .find(|(f, _)| f == k)
                .map_or("", |(_, v)| v.as_str())
        };
        body.push_str(r#"<tr class="dead-row">"#);
        if d.actions {
            let _ = write!(
                body,
                r#"<td><input type="checkbox" name="ids" value="{}" aria-label="select"></td>"#,
                esc(&letter.id)
            );
        }
        let at = field("at")
            .parse::<u64>()
            .map(|ms| when(SystemTime::UNIX_EPOCH + Duration::from_millis(ms)))
            .unwrap_or_default();
        let _ = write!(
            body,
            r#"<td>{}</td><td>{}</td><td>{}</td><td class="msg">{}</td><td>{}</td><td>{}</td></tr>"#,
            task_link(here, field("id")),
            cut(field("fn")),
            cut(&letter.why),
            cut(&letter.message),
            cut(field("w")),
            esc(&at)
        );
    }
    body.push_str("</table>");
    if d.actions && !info.dead.is_empty() {
        body.push_str("</form>");
    }
    body.push_str("</section>");
    layout(d, here, &body)
}

/// A task found by id.
pub(super) fn task(d: &Dashboard, here: &Here, id: &TaskId, status: &TaskStatus) -> String {
    let mut rows: Vec<(&str, String)> = Vec::new();
    let (state, cancellable) = match status {
        TaskStatus::Queued => ("queued", true),
        TaskStatus::Scheduled { at, .. } => {
            rows.push(("Due", esc(&when(*at))));
            ("scheduled", true)
        }
        TaskStatus::Running {
            worker,
            started,
            deliveries,
            since_renewal,
            ..
        } => {
            rows.push(("Worker", cut(worker)));
            if let Some(t) = started {
                rows.push(("Started", esc(&when(*t))));
            }
            rows.push(("Delivery", deliveries.to_string()));
            rows.push((
                "Lease renewed",
                format!("{} ago", esc(&ago(*since_renewal))),
            ));
            ("running", false)
        }
        TaskStatus::Done {
            worker, finished, ..
        } => {
            rows.push(("Worker", cut(worker)));
            if let Some(t) = finished {
                rows.push(("Finished", esc(&when(*t))));
            }
            ("done", false)
        }
        TaskStatus::Failed {
            error,
            worker,
            finished,
            ..
        } => {
            rows.push((
                "Error",
                format!(r#"<span class="msg">{}</span>"#, cut(&error.to_string())),
            ));
            rows.push(("Worker", cut(worker)));
            if let Some(t) = finished {
                rows.push(("Finished", esc(&when(*t))));
            }
            ("failed", false)
        }
        TaskStatus::DeadLettered {
            error, finished, ..
        } => {
            rows.push((
                "Error",
                format!(r#"<span class="msg">{}</span>"#, cut(&error.to_string())),
            ));
            if let Some(t) = finished {
                rows.push(("When", esc(&when(*t))));
            }
            ("dead-lettered", false)
        }
        TaskStatus::Cancelled => ("cancelled", false),
        _ => ("unknown: never queued, or its record expired", false),
    };
    let mut body = format!(
        r#"<h1>Task {}</h1><section><table><tr><th>State</th><td id="state">{}</td></tr>"#,
        esc(id.as_str()),
        esc(state)
    );
    for (k, v) in rows {
        let _ = write!(body, "<tr><th>{k}</th><td>{v}</td></tr>");
    }
    body.push_str("</table>");
    if d.actions && cancellable {
        let _ = write!(
            body,
            r#"<form method="post" action="{}/task/cancel">{}<input type="hidden" name="id" value="{}"><p><button type="submit" id="cancel">Cancel this task</button></p></form>"#,
            esc(&here.base),
            token(d),
            esc(id.as_str())
        );
    }
    if d.actions && state == "running" {
        let _ = write!(
            body,
            r#"<form method="post" action="{}/task/kill">{}<input type="hidden" name="id" value="{}"><p><button type="submit" id="kill">Kill this task</button></p></form>"#,
            esc(&here.base),
            token(d),
            esc(id.as_str())
        );
    }
    body.push_str("</section>");
    layout(d, here, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_from_redis_cannot_become_markup() {
        assert_eq!(
            esc(r#"<script>alert('x')</script>&"#),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;"
        );
        assert_eq!(esc("a\u{0}b\u{1b}[31m"), "a\u{fffd}b\u{fffd}[31m");
        let long = "x".repeat(SHOWN + 10);
        assert!(cut(&long).ends_with(" …"));
        assert_eq!(cut(&long).chars().count(), SHOWN + 2);
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(ago(Duration::from_millis(4_200)), "4.2 s");
        assert_eq!(ago(Duration::from_secs(180)), "3 min");
        assert_eq!(ago(Duration::from_secs(9_000)), "2.5 h");
    }
}
