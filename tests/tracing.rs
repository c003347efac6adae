//! Feature `tracing`: every task on the local pools gets a span, child of the submitter's
//! span, with where it ran, how long it waited and ran, and how it ended; on the thread pool
//! what the task itself traces is inside that span.
#![cfg(all(unix, feature = "process", feature = "tracing"))]

mod common;

use common::spans::Recorder;
use concurrent_futures::{ProcessPoolExecutor, TaskError, ThreadPoolExecutor};
use tracing_subscriber::layer::SubscriberExt;

concurrent_futures::worker_test!();

fn square(x: u64) -> u64 {
    x * x
}

fn boom(_: ()) -> u8 {
    panic!("boom")
}

#[test]
fn every_task_has_a_span_under_the_submitters_with_where_how_long_and_how_it_ended() {
    concurrent_futures::init();
    let recorder = Recorder::default();
    let subscriber = tracing_subscriber::registry().with(recorder.clone());
    tracing::subscriber::with_default(subscriber, || {
        let request = tracing::info_span!("request");
        let _in_request = request.enter();

        let threads = ThreadPoolExecutor::builder()
            .max_workers(1)
            .thread_name_prefix("traced")
            .build()
            .unwrap();
        let ok = threads
            .submit(|| {
                tracing::info!("inside the task");
                7
            })
            .unwrap();
        assert_eq!(ok.result(), Ok(7));
        let panics = threads.submit(|| -> u8 { panic!("thread boom") }).unwrap();
        assert!(matches!(panics.result(), Err(TaskError::Panicked(_))));
        threads.shutdown();

        let processes = ProcessPoolExecutor::builder()
            .max_workers(1)
            .build()
            .unwrap();
        assert_eq!(processes.submit(square, 9).unwrap().result(), Ok(81));
        assert!(matches!(
            processes.submit(boom, ()).unwrap().result(),
            Err(TaskError::Panicked(_))
        ));
        processes.shutdown();
    });

    let tasks = recorder.tasks();
    assert_eq!(tasks.len(), 4, "{tasks:#?}");
    for task in &tasks {
        assert_eq!(task.parent.as_deref(), Some("request"), "{task:#?}");
        for field in [
            "executor", "function", "worker", "wait_us", "run_us", "outcome",
        ] {
            assert!(
                task.fields.contains_key(field),
                "{field} missing: {task:#?}"
            );
        }
    }
    let by = |executor: &str, outcome: &str| {
        tasks
            .iter()
            .find(|t| t.fields["executor"] == executor && t.fields["outcome"] == outcome)
            .unwrap_or_else(|| panic!("no {executor} task that ended {outcome}: {tasks:#?}"))
    };
    let thread_ok = by("thread", "ok");
    assert_eq!(thread_ok.fields["worker"], "traced_0");
    assert_eq!(
        thread_ok.events,
        ["inside the task"],
        "the task's own events are inside its span"
    );
    by("thread", "panicked");
    let process_ok = by("process", "ok");
    assert!(
        process_ok.fields["function"].contains("u64"),
        "{process_ok:#?}"
    );
    by("process", "panicked");
}
