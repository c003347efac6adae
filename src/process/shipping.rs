//! Shipping a function to a worker process without registering it, and checking what
//! arrives before anything is called.
//!
//! Workers run this same executable, so a function's code sits at the same distance from any
//! other function in both processes, whatever address each process was loaded at. A task is
//! therefore sent as two distances from [`anchor`]: the user's `fn(A) -> R`, and the
//! [`trampoline`] monomorphized for `A` and `R`, which decodes the argument, calls the
//! function and encodes the result.
//!
//! This is sound only in an identical binary, reached only by the parent. Workers are
//! started from [`worker_executable`] (on Linux the very file the parent runs) and talk to
//! the parent over a connection no other process holds; the handshake checks the build (the
//! executable's [`fingerprint`] and a [`layout`] probe). As a last guard against bugs, a
//! worker refuses any distance that does not land inside this program's own machine code
//! ([`code_at`]), or that names the anchor itself.

use std::sync::OnceLock;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::codec::Postcard;
use crate::outcome::{self, Outcome};

/// The point every shipped address is measured from. Never shipped itself.
#[inline(never)]
fn anchor() -> u64 {
    std::hint::black_box(0x5eed)
}

fn base() -> usize {
    anchor as fn() -> u64 as usize
}

/// The distance of a code address from the anchor.
pub(crate) fn offset(addr: usize) -> i64 {
    addr.wrapping_sub(base()) as i64
}

/// The signature of every trampoline: function address, encoded argument, outcome.
pub(crate) type Trampoline = fn(usize, &[u8]) -> Outcome<Vec<u8>>;

/// Decodes an `A`, calls the `fn(A) -> R` at `f`, encodes the `R` (`outcome::run`).
pub(crate) fn trampoline<A: DeserializeOwned, R: Serialize>(
    f: usize,
    arg: &[u8],
) -> Outcome<Vec<u8>> {
    outcome::run::<Postcard, A, R>(to_fn::<A, R>(f), arg)
}

/// A chunk of a map: decodes a `Vec<A>`, calls `f` on each item catching each panic, encodes
/// every item's outcome (`outcome::run_chunk`).
pub(crate) fn chunk_trampoline<A: DeserializeOwned, R: Serialize>(
    f: usize,
    args: &[u8],
) -> Outcome<Vec<u8>> {
    outcome::run_chunk::<Postcard, A, R>(to_fn::<A, R>(f), args)
}

/// The distances to ship for `f` with `trampoline`.
pub(crate) fn ship<A, R>(f: fn(A) -> R, trampoline: Trampoline) -> (i64, i64) {
    (offset(trampoline as usize), offset(f as usize))
}

#[allow(unsafe_code)]
fn to_fn<A, R>(addr: usize) -> fn(A) -> R {
    // SAFETY: `addr` passed `code_at` (it lies in this program's machine code) and is the
    // address of a `fn(A) -> R` that the parent took in `ship`, with these same `A` and `R`
    // (this trampoline was monomorphized for them alongside), moved by the anchor distance
    // into this process. Only the parent can send it (the connection is private), and the
    // handshake verified that this process runs the same executable with the same layout
    // (`fingerprint`, `layout`), so the address holds that function here too. `fn` pointers
    // and `usize` have the same size.
    unsafe { std::mem::transmute::<usize, fn(A) -> R>(addr) }
}

/// Turns a shipped trampoline distance into a callable trampoline, if it names code of
/// this program.
#[allow(unsafe_code)]
pub(crate) fn trampoline_at(offset: i64) -> Result<Trampoline, String> {
    let addr = code_at(offset, "trampoline")?;
    // SAFETY: as in `to_fn`: inside this program's code, taken by the parent from a
    // `Trampoline` in `ship`, and sent over the private connection after the handshake.
    Ok(unsafe { std::mem::transmute::<usize, Trampoline>(addr) })
}

/// Turns a shipped initializer distance into the `fn()` it was, if it names code of this
/// program.
#[allow(unsafe_code)]
pub(crate) fn initializer_at(offset: i64) -> Result<fn(), String> {
    let addr = code_at(offset, "initializer")?;
    // SAFETY: inside this program's code; the parent took this distance from the builder's
    // `fn()` initializer and sent it in SETUP, over the private connection, after the
    // handshake showed that both processes run the same build.
    Ok(unsafe { std::mem::transmute::<usize, fn()>(addr) })
}

/// The address of a shipped function, if it lies inside this program's machine code.
pub(crate) fn function_at(offset: i64) -> Result<usize, String> {
    code_at(offset, "function")
}

/// Checks that `offset` from the anchor lands inside this program's executable code (and
/// is not the anchor, which nobody ships): the answer to a frame that names garbage, a
/// null pointer or data is a refusal, never a jump.
fn code_at(offset: i64, what: &str) -> Result<usize, String> {
    let addr = (base() as i64)
        .checked_add(offset)
        .and_then(|a| usize::try_from(a).ok())
        .filter(|&a| a != base());
    match addr {
        Some(addr) if code_ranges().iter().any(|r| r.contains(&addr)) => Ok(addr),
        _ => Err(format!(
            "the {what} address (offset {offset:#x}) is not inside this program's code"
        )),
    }
}

/// The address ranges of this program's machine code, found once.
fn code_ranges() -> &'static [std::ops::Range<usize>] {
    static RANGES: OnceLock<Vec<std::ops::Range<usize>>> = OnceLock::new();
    RANGES.get_or_init(|| find_code(base()))
}

/// The executable segments of the loaded object that holds `addr` (the program itself, or
/// the shared library this crate was linked into), from the dynamic loader's list.
#[cfg(any(
    target_os = "linux",
    target_os = "android",
    target_os = "freebsd",
    target_os = "dragonfly",
    target_os = "netbsd",
    target_os = "openbsd"
))]
#[allow(unsafe_code)]
fn find_code(addr: usize) -> Vec<std::ops::Range<usize>> {
    struct Search {
        addr: usize,
        found: Vec<std::ops::Range<usize>>,
    }

    unsafe extern "C" fn visit(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: the loader passes a valid `dl_phdr_info` for the duration of the call,
        // whose `dlpi_phdr` points to `dlpi_phnum` program headers; `data` is the `Search`
        // that `find_code` passed, alive and not otherwise borrowed during the iteration.
        let (info, search) = unsafe { (&*info, &mut *data.cast::<Search>()) };
        let headers = if info.dlpi_phdr.is_null() {
            &[][..]
        } else {
            // SAFETY: see above.
            unsafe { std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum)) }
        };
        let load = info.dlpi_addr as usize;
        let code: Vec<std::ops::Range<usize>> = headers
            .iter()
            .filter(|h| h.p_type == libc::PT_LOAD && h.p_flags & libc::PF_X != 0)
            .map(|h| {
                let start = load.wrapping_add(h.p_vaddr as usize);
                start..start.wrapping_add(h.p_memsz as usize)
            })
            .collect();
        if code.iter().any(|r| r.contains(&search.addr)) {
            search.found = code;
            1 // found: stop
        } else {
            0
        }
    }

    let mut search = Search {
        addr,
        found: Vec::new(),
    };
    // SAFETY: `visit` matches the callback signature and only reads what the loader hands
    // it; `search` outlives the call, which runs the callback synchronously.
    unsafe {
        libc::dl_iterate_phdr(Some(visit), (&mut search as *mut Search).cast());
    }
    search.found
}

/// Elsewhere: `dladdr` names the image that holds `addr` but not the extent of its code, so
/// addresses from that image's base up to 256 MiB past it pass (a coarser guard).
#[cfg(not(any(
    target_os = "linux",
    target_os = "android",
    target_os = "freebsd",
    target_os = "dragonfly",
    target_os = "netbsd",
    target_os = "openbsd"
)))]
#[allow(unsafe_code)]
fn find_code(addr: usize) -> Vec<std::ops::Range<usize>> {
    // SAFETY: `dladdr` only reads the loader's tables; `info` is a valid out-parameter.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    let found = unsafe { libc::dladdr(addr as *const libc::c_void, &mut info) };
    if found == 0 || info.dli_fbase.is_null() {
        return Vec::new();
    }
    let start = info.dli_fbase as usize;
    vec![start..start.saturating_add(256 << 20)]
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

#[cfg(test)]
mod tests {
    use super::*;

    fn double(x: u32) -> u32 {
        x * 2
    }

    #[test]
    fn real_functions_pass_and_garbage_is_refused() {
        let (t, f) = ship(double, trampoline::<u32, u32> as Trampoline);
        assert!(trampoline_at(t).is_ok());
        assert!(function_at(f).is_ok());
        for bad in [0, i64::MAX, i64::MIN, -(base() as i64), 1 << 40] {
            assert!(function_at(bad).is_err(), "{bad:#x}");
            assert!(trampoline_at(bad).is_err(), "{bad:#x}");
        }
        // Data is not code: a static's address.
        static DATA: u64 = 5;
        assert!(function_at(offset(&DATA as *const u64 as usize)).is_err());
        // A heap address.
        let heap = Box::new(1u64);
        assert!(function_at(offset(&*heap as *const u64 as usize)).is_err());
    }

    #[test]
    fn shipped_calls_run() {
        let (t, f) = ship(double, trampoline::<u32, u32> as Trampoline);
        let t = trampoline_at(t).unwrap();
        let arg = super::super::codec::encode(&21u32).unwrap();
        let bytes = t(function_at(f).unwrap(), &arg).expect("a result");
        assert_eq!(outcome::decode::<Postcard, u32>(&bytes), Ok(42));
    }
}
