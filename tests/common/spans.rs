//! A `tracing` layer for the tests of feature `tracing`: every span with its parent's name,
//! its fields as recorded, and the messages of the events inside it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

/// What the layer saw of one span.
#[derive(Debug, Default, Clone)]
pub struct Seen {
    pub name: String,
    pub parent: Option<String>,
    pub fields: HashMap<String, String>,
    /// Messages of the events inside it.
    pub events: Vec<String>,
}

#[derive(Default, Clone)]
pub struct Recorder(Arc<Mutex<HashMap<u64, Seen>>>);

struct Fields<'a>(&'a mut HashMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(
            field.name().to_owned(),
            format!("{value:?}").trim_matches('"').to_owned(),
        );
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Recorder {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut seen = Seen {
            name: attrs.metadata().name().to_owned(),
            parent: ctx
                .span(id)
                .and_then(|s| s.parent())
                .map(|p| p.name().to_owned()),
            ..Seen::default()
        };
        attrs.record(&mut Fields(&mut seen.fields));
        self.0.lock().unwrap().insert(id.into_u64(), seen);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _: Context<'_, S>) {
        if let Some(seen) = self.0.lock().unwrap().get_mut(&id.into_u64()) {
            values.record(&mut Fields(&mut seen.fields));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.event_span(event) else {
            return;
        };
        let mut fields = HashMap::new();
        event.record(&mut Fields(&mut fields));
        if let Some(seen) = self.0.lock().unwrap().get_mut(&span.id().into_u64()) {
            seen.events.extend(fields.remove("message"));
        }
    }
}

impl Recorder {
    pub fn tasks(&self) -> Vec<Seen> {
        let mut tasks: Vec<Seen> = self
            .0
            .lock()
            .unwrap()
            .values()
            .filter(|s| s.name == "task")
            .cloned()
            .collect();
        tasks.sort_by_key(|s| s.fields.get("outcome").cloned());
        tasks
    }
}

impl Recorder {
    /// Every span named `name`, with its id.
    #[allow(dead_code)]
    pub fn with_ids(&self, name: &str) -> Vec<(u64, Seen)> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, s)| s.name == name)
            .map(|(id, s)| (*id, s.clone()))
            .collect()
    }

    /// Every span named `name`.
    pub fn named(&self, name: &str) -> Vec<Seen> {
        self.0
            .lock()
            .unwrap()
            .values()
            .filter(|s| s.name == name)
            .cloned()
            .collect()
    }
}
