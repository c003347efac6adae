//! Scoped tasks: count words in a large text by handing each task a borrowed slice of it
//! (no copies, no `Arc`), then fold the counts; the scope returns once every task is done.
//!
//! ```text
//! cargo run --release --example scoped_word_count
//! ```

use std::collections::HashMap;

use concurrent_futures::{ThreadPoolExecutor, as_completed};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A text of about 6 MB, built here so the example needs no input.
    let words = [
        "the", "pool", "runs", "tasks", "that", "borrow", "from", "the", "stack",
    ];
    let text: String = (0..1_000_000)
        .map(|i| words[(i * 7 + i / 3) % words.len()])
        .collect::<Vec<_>>()
        .join(" ");

    let pool = ThreadPoolExecutor::new();
    let pieces = split_on_spaces(&text, 64);

    let totals = pool.scope(|s| {
        // Each task borrows its piece of `text`: nothing is copied or reference-counted.
        let futs: Vec<_> = pieces
            .iter()
            .map(|piece| {
                s.submit(move || {
                    let mut counts: HashMap<&str, usize> = HashMap::new();
                    for word in piece.split_ascii_whitespace() {
                        *counts.entry(word).or_default() += 1;
                    }
                    counts
                        .into_iter()
                        .map(|(w, n)| (w.to_owned(), n))
                        .collect::<Vec<_>>()
                })
            })
            .collect::<Result<_, _>>()
            .expect("the pool is running");
        let mut totals: HashMap<String, usize> = HashMap::new();
        for fut in as_completed(futs) {
            for (word, n) in fut.result().expect("counting does not panic") {
                *totals.entry(word).or_default() += n;
            }
        }
        totals
    }); // every task has finished here, so `text` may be dropped or changed again

    let mut sorted: Vec<_> = totals.into_iter().collect();
    sorted.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    println!(
        "{} words in {} pieces of a {:.1} MB text, counted on {} threads:",
        sorted.iter().map(|(_, n)| n).sum::<usize>(),
        pieces.len(),
        text.len() as f64 / 1e6,
        pool.max_workers()
    );
    for (word, n) in sorted.iter().take(4) {
        println!("  {word:<8} {n}");
    }
    assert_eq!(sorted.iter().map(|(_, n)| n).sum::<usize>(), 1_000_000);
    Ok(())
}

/// Cuts `text` into about `n` pieces, each ending at a space so no word is split.
fn split_on_spaces(text: &str, n: usize) -> Vec<&str> {
    let target = text.len() / n.max(1) + 1;
    let mut pieces = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let cut = rest[target.min(rest.len())..]
            .find(' ')
            .map_or(rest.len(), |i| target.min(rest.len()) + i);
        let (piece, tail) = rest.split_at(cut);
        pieces.push(piece);
        rest = tail;
    }
    pieces
}
