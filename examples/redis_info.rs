//! What a Redis queue holds now, like `rq info`.
//!
//! ```text
//! cargo run --features redis --example redis_info -- redis://127.0.0.1/ [namespace]
//! ```

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .or_else(|| std::env::var("REDIS_URL").ok())
        .unwrap_or_else(|| "redis://127.0.0.1/".into());
    let namespace = args.next().unwrap_or_else(|| "cf".into());
    let info = concurrent_futures::redis::inspect(&url, &namespace)?;
    print!("{info}");
    Ok(())
}
