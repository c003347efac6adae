//! Shipping a function to a worker process without registering it.
//!
//! Workers run this same executable, so a function's code sits at the same distance from any
//! other function in both processes, whatever address each process was loaded at. A task is
//! therefore sent as two distances from [`anchor`]: the user's `fn(A) -> R`, and the
//! [`trampoline`] monomorphized for `A` and `R`, which decodes the argument, calls the
//! function and encodes the result.
//!
//! This is sound only in an identical binary. Workers are started from
//! [`worker_executable`] (on Linux the very file the parent runs), and the handshake checks
//! it: the worker reports its executable's [`fingerprint`] (device, inode, size, modification
//! time) and a [`layout`] probe (the distance between two functions of this crate and the
//! standard library); the parent refuses a worker that differs.

use std::panic::{self, AssertUnwindSafe};

use serde::de::DeserializeOwned;
use serde::Serialize;

/// The point every shipped address is measured from.
#[inline(never)]
fn anchor() -> u64 {
    std::hint::black_box(0x5eed)
}

fn base() -> isize {
    anchor as fn() -> u64 as usize as isize
}

/// The distance of a code address from the anchor.
pub(crate) fn offset(addr: usize) -> i64 {
    (addr as isize - base()) as i64
}

/// The signature of every trampoline: function address, encoded argument, encoded result.
pub(crate) type Trampoline = fn(usize, &[u8]) -> Outcome;

/// What a trampoline returns: the encoded result, a panic message, or a codec failure.
pub(crate) enum Outcome {
    Done(Vec<u8>),
    Panicked(String),
    Broken(String),
}

/// Decodes an `A`, calls the `fn(A) -> R` at `f`, encodes the `R`.
pub(crate) fn trampoline<A: DeserializeOwned, R: Serialize>(f: usize, arg: &[u8]) -> Outcome {
    let f = to_fn::<A, R>(f);
    let arg: A = match postcard::from_bytes(arg) {
        Ok(a) => a,
        Err(e) => return Outcome::Broken(format!("cannot decode the argument: {e}")),
    };
    match panic::catch_unwind(AssertUnwindSafe(|| f(arg))) {
        Ok(r) => match postcard::to_stdvec(&r) {
            Ok(bytes) => Outcome::Done(bytes),
            Err(e) => Outcome::Broken(format!("cannot encode the result: {e}")),
        },
        Err(p) => Outcome::Panicked(crate::error::panic_message(&*p).to_owned()),
    }
}

/// A chunk of a map: decodes a `Vec<A>`, calls `f` on each item catching each panic, encodes
/// a `Vec<Result<R, String>>`.
pub(crate) fn chunk_trampoline<A: DeserializeOwned, R: Serialize>(
    f: usize,
    args: &[u8],
) -> Outcome {
    let f = to_fn::<A, R>(f);
    let args: Vec<A> = match postcard::from_bytes(args) {
        Ok(a) => a,
        Err(e) => return Outcome::Broken(format!("cannot decode the arguments: {e}")),
    };
    let results: Vec<Result<R, String>> = args
        .into_iter()
        .map(|a| {
            panic::catch_unwind(AssertUnwindSafe(|| f(a)))
                .map_err(|p| crate::error::panic_message(&*p).to_owned())
        })
        .collect();
    match postcard::to_stdvec(&results) {
        Ok(bytes) => Outcome::Done(bytes),
        Err(e) => Outcome::Broken(format!("cannot encode the results: {e}")),
    }
}

/// The addresses to ship for `f` with `trampoline`.
pub(crate) fn ship<A, R>(f: fn(A) -> R, trampoline: Trampoline) -> (i64, i64) {
    (offset(trampoline as usize), offset(f as usize))
}

#[allow(unsafe_code)]
fn to_fn<A, R>(addr: usize) -> fn(A) -> R {
    // SAFETY: `addr` is the address of a `fn(A) -> R` that the parent took in `ship`, with
    // these same `A` and `R` (this trampoline was monomorphized for them alongside), moved
    // by the anchor distance into this process. The handshake verified that this process
    // runs the same executable with the same layout (`fingerprint`, `layout`), so the
    // address holds that function here too. `fn` pointers and `usize` have the same size.
    unsafe { std::mem::transmute::<usize, fn(A) -> R>(addr) }
}

/// Turns a shipped trampoline distance back into a callable trampoline.
#[allow(unsafe_code)]
pub(crate) fn trampoline_at(offset: i64) -> Trampoline {
    let addr = (base() + offset as isize) as usize;
    // SAFETY: as in `to_fn`: the parent took this distance from a `Trampoline` in `ship`,
    // and the handshake verified the same executable and layout.
    unsafe { std::mem::transmute::<usize, Trampoline>(addr) }
}

/// Turns a shipped initializer distance back into the `fn()` it was.
#[allow(unsafe_code)]
pub(crate) fn initializer_at(offset: i64) -> fn() {
    let addr = (base() + offset as isize) as usize;
    // SAFETY: the parent took this distance from a `fn()` (the builder's initializer); the
    // worker checks nothing before running it, but it only runs in a worker started from
    // `current_exe()`, which `build` requires to be this same program, and the handshake
    // that follows would reject a different build before any task is sent.
    unsafe { std::mem::transmute::<usize, fn()>(addr) }
}

pub(crate) fn function_at(offset: i64) -> usize {
    (base() + offset as isize) as usize
}

/// The executable to start workers from: on Linux `/proc/self/exe`, which is always the very
/// file this process runs, even if the path was replaced by a rebuild since; elsewhere the
/// path of the current executable.
pub(crate) fn worker_executable() -> std::io::Result<std::path::PathBuf> {
    let proc_self = std::path::Path::new("/proc/self/exe");
    if proc_self.exists() {
        Ok(proc_self.to_path_buf())
    } else {
        std::env::current_exe()
    }
}

/// Identifies the executable this process runs: its device and inode (which a rebuild that
/// replaces the file changes), size and modification time, and this crate's version.
pub(crate) fn fingerprint() -> u64 {
    use std::hash::{Hash, Hasher};
    use std::os::unix::fs::MetadataExt;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    if let Ok(meta) = worker_executable().and_then(std::fs::metadata) {
        (
            meta.dev(),
            meta.ino(),
            meta.len(),
            meta.mtime(),
            meta.mtime_nsec(),
        )
            .hash(&mut h);
    }
    env!("CARGO_PKG_VERSION").hash(&mut h);
    h.finish()
}

/// Distance from the anchor to a function of the standard library: differs between builds.
pub(crate) fn layout() -> i64 {
    offset(std::process::id as fn() -> u32 as usize)
}
