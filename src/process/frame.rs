//! Length-prefixed, checked frames over a worker's connection.
//!
//! ```text
//! magic u32 "CFP2" | kind u8 | len u32 | checksum u32 (FNV-1a of the payload) | payload
//! ```
//!
//! All integers little-endian. A reader refuses a frame whose magic is wrong or whose length
//! is over the limit as soon as the header is in, reads the body into a buffer that grows
//! only with the bytes that actually arrive, and gives the body a bounded time once its
//! header has come ([`body_time`]): a peer that promises bytes and never sends them costs
//! one task a clear error, never a huge allocation or a hang.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

const MAGIC: u32 = u32::from_le_bytes(*b"CFP2");
pub(crate) const HEADER: usize = 13;

/// Worker to parent, first frame: protocol version u32, build fingerprint u64, layout
/// probe i64.
pub(crate) const HELLO: u8 = 1;
/// Parent to worker, answering HELLO: frame limit u64, initializer offset i64 (0: none),
/// the descriptor where the parent's stdout waits i32 (-1: none).
pub(crate) const SETUP: u8 = 2;
/// Worker to parent: the initializer ran (or there was none); tasks may come.
pub(crate) const READY: u8 = 3;
/// Worker to parent: the initializer panicked; payload is the message. The worker exits.
pub(crate) const INIT_FAILED: u8 = 4;
/// Parent to worker: run a task. Payload: trampoline offset i64, function offset i64, args.
pub(crate) const TASK: u8 = 5;
/// Parent to worker: exit now.
pub(crate) const STOP: u8 = 6;
/// Worker to parent: the task's serialized result.
pub(crate) const DONE: u8 = 7;
/// Worker to parent: the task panicked; payload is the message.
pub(crate) const PANICKED: u8 = 8;
/// Worker to parent: the argument could not be decoded or the result encoded; payload says
/// why.
pub(crate) const BROKEN: u8 = 9;
/// Worker to parent: the task named code outside this program; payload says why. Nothing
/// was called.
pub(crate) const REFUSED: u8 = 10;

/// The size limit of the handshake frames, whatever the pool's limit.
pub(crate) const HANDSHAKE_LIMIT: usize = 64;

/// A frame that could not be read.
#[derive(Debug)]
pub(crate) enum FrameError {
    /// The connection failed or closed (the peer is gone).
    Closed,
    /// The deadline passed before a frame's header arrived.
    TimedOut,
    /// A header arrived but its body did not follow in time ([`body_time`]).
    Stalled,
    /// The bytes are not a valid frame.
    Corrupt(String),
}

/// A source of frames whose reads can be given a time limit.
pub(crate) trait Timed: Read {
    /// Limits the next reads to `timeout` (`None`: no limit).
    fn read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()>;
}

/// How long one blocking read may wait before the reader looks at its deadline again.
const TICK: Duration = Duration::from_secs(1);

/// How many bytes a [`Link`] reads at once: frames that arrive together (tasks sent ahead,
/// their replies) are then taken from memory, not one system call each.
const BUFFER: usize = 16 * 1024;

/// A worker connection, read through a buffer, that remembers the read timeout set on it,
/// so that a frame read costs no `setsockopt` unless a deadline is less than a [`TICK`]
/// away: reads wait at most a tick and the reader loops until its own deadline.
pub(crate) struct Link {
    stream: UnixStream,
    timeout: Option<Duration>,
    buf: Box<[u8; BUFFER]>,
    /// The unread bytes are `buf[start..end]`.
    start: usize,
    end: usize,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("stream", &self.stream)
            .field("buffered", &(self.end - self.start))
            .finish()
    }
}

impl Link {
    pub(crate) fn new(stream: UnixStream) -> Link {
        Link {
            stream,
            timeout: None,
            buf: Box::new([0; BUFFER]),
            start: 0,
            end: 0,
        }
    }

    fn buffered(&self) -> bool {
        self.start < self.end
    }

    /// One read into the (empty) buffer.
    fn refill(&mut self) -> io::Result<usize> {
        debug_assert!(!self.buffered());
        let n = self.stream.read(&mut self.buf[..])?;
        self.start = 0;
        self.end = n;
        Ok(n)
    }
}

impl Read for Link {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if !self.buffered() {
            if out.len() >= BUFFER {
                return self.stream.read(out); // a large body: straight in
            }
            if self.refill()? == 0 {
                return Ok(0);
            }
        }
        let n = out.len().min(self.end - self.start);
        out[..n].copy_from_slice(&self.buf[self.start..self.start + n]);
        self.start += n;
        Ok(n)
    }
}

impl Write for Link {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

impl Timed for Link {
    fn read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        let want = timeout.map_or(TICK, |t| t.min(TICK));
        if self.timeout != Some(want) {
            self.stream.set_read_timeout(Some(want))?;
            self.timeout = Some(want);
        }
        Ok(())
    }
}

#[cfg(test)]
impl Timed for UnixStream {
    fn read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.set_read_timeout(timeout)
    }
}

impl Timed for &[u8] {
    fn read_timeout(&mut self, _: Option<Duration>) -> io::Result<()> {
        Ok(())
    }
}

/// FNV-1a, 32 bits: cheap, and enough to catch a torn or foreign frame.
fn checksum(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// How long a body of `len` bytes may take to arrive once its header has: two seconds, plus
/// one for every 16 MiB (a local socket carries hundreds of MiB a second).
pub(crate) fn body_time(len: usize) -> Duration {
    Duration::from_secs(2 + (len >> 24) as u64)
}

/// Writes one frame; `InvalidInput` if the payload is over `limit` (nothing is written).
pub(crate) fn write(w: &mut impl Write, kind: u8, parts: &[&[u8]], limit: usize) -> io::Result<()> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let wire_len = u32::try_from(len).ok().filter(|_| len <= limit);
    let Some(wire_len) = wire_len else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("frame of {len} bytes is over the limit of {limit}"),
        ));
    };
    let mut frame = Vec::with_capacity(HEADER + len);
    frame.extend_from_slice(&MAGIC.to_le_bytes());
    frame.push(kind);
    frame.extend_from_slice(&wire_len.to_le_bytes());
    frame.extend_from_slice(&[0; 4]);
    for p in parts {
        frame.extend_from_slice(p);
    }
    let sum = checksum(&frame[HEADER..]);
    frame[9..13].copy_from_slice(&sum.to_le_bytes());
    w.write_all(&frame)?;
    w.flush()
}

/// What the bytes at the front of a buffer hold.
#[derive(Debug)]
pub(crate) enum Parsed {
    /// Not a whole frame yet; `header`: its header is in (the body is on its way).
    Need { header: bool },
    /// A whole, checked frame: its kind, where its payload is, and how many bytes it took.
    Frame {
        kind: u8,
        body: std::ops::Range<usize>,
        used: usize,
    },
}

/// Parses the frame at the front of `buf` without reading anything: the same checks as
/// [`read`] (magic and limit from the header, then the checksum).
pub(crate) fn parse(buf: &[u8], limit: usize) -> Result<Parsed, FrameError> {
    if buf.len() < HEADER {
        return Ok(Parsed::Need { header: false });
    }
    let word = |i: usize| u32::from_le_bytes(buf[i..i + 4].try_into().expect("4 bytes"));
    if word(0) != MAGIC {
        return Err(FrameError::Corrupt("bad frame magic".into()));
    }
    let len = word(5) as usize;
    if len > limit {
        return Err(FrameError::Corrupt(format!(
            "frame of {len} bytes is over the limit of {limit}"
        )));
    }
    if buf.len() - HEADER < len {
        return Ok(Parsed::Need { header: true });
    }
    let body = HEADER..HEADER + len;
    if checksum(&buf[body.clone()]) != word(9) {
        return Err(FrameError::Corrupt("frame checksum mismatch".into()));
    }
    Ok(Parsed::Frame {
        kind: buf[4],
        body,
        used: HEADER + len,
    })
}

/// Reads one frame. The header must arrive by `deadline` (`None`: wait as long as it takes);
/// the body then gets [`body_time`] of its length.
pub(crate) fn read(
    r: &mut impl Timed,
    limit: usize,
    deadline: Option<Instant>,
) -> Result<(u8, Vec<u8>), FrameError> {
    let mut header = [0u8; HEADER];
    fill(r, &mut header, deadline)?;
    let word = |i: usize| u32::from_le_bytes(header[i..i + 4].try_into().expect("4 bytes"));
    if word(0) != MAGIC {
        return Err(FrameError::Corrupt("bad frame magic".into()));
    }
    let kind = header[4];
    let len = word(5) as usize;
    if len > limit {
        return Err(FrameError::Corrupt(format!(
            "frame of {len} bytes is over the limit of {limit}"
        )));
    }
    let body_deadline = Instant::now().checked_add(body_time(len));
    // Grown 64 KiB at a time as bytes arrive, never to the claimed length up front (and
    // only the bytes about to be read are zeroed).
    let mut payload = Vec::new();
    while payload.len() < len {
        let start = payload.len();
        let want = (len - start).min(64 << 10);
        payload.resize(start + want, 0);
        match fill(r, &mut payload[start..], body_deadline) {
            Err(FrameError::TimedOut) => return Err(FrameError::Stalled),
            other => other?,
        }
    }
    if checksum(&payload) != word(9) {
        return Err(FrameError::Corrupt("frame checksum mismatch".into()));
    }
    Ok((kind, payload))
}

/// Fills `buf` by `deadline`.
fn fill(r: &mut impl Timed, buf: &mut [u8], deadline: Option<Instant>) -> Result<(), FrameError> {
    let mut got = 0;
    while got < buf.len() {
        let timeout = match deadline {
            None => None,
            Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => Some(left),
                _ => return Err(FrameError::TimedOut),
            },
        };
        r.read_timeout(timeout).map_err(|_| FrameError::Closed)?;
        match r.read(&mut buf[got..]) {
            Ok(0) => return Err(FrameError::Closed),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // A tick passed, or the deadline (which the loop checks): wait on.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return Err(FrameError::Closed),
        }
    }
    Ok(())
}

/// Reads a frame as [`read`] does, first polling briefly (spinning, then yielding) before
/// blocking: an answer that is microseconds away is far cheaper to catch awake than to be
/// woken for, which on virtual machines can cost tens of microseconds.
pub(crate) fn read_polled(
    link: &mut Link,
    limit: usize,
    deadline: Option<Instant>,
) -> Result<(u8, Vec<u8>), FrameError> {
    if !link.buffered() {
        poll(link);
    }
    read(link, limit, deadline)
}

/// Waits briefly, without blocking, for bytes to arrive into the link's buffer; if none
/// come, the blocking read that follows waits for them.
fn poll(link: &mut Link) {
    if link.stream.set_nonblocking(true).is_err() {
        return;
    }
    let backoff = crossbeam_utils::Backoff::new();
    loop {
        match link.refill() {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && !backoff.is_completed() => {
                backoff.snooze();
            }
            // Bytes, the end of the stream, an error, or polling is over.
            _ => break,
        }
    }
    let _ = link.stream.set_nonblocking(false);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
        let mut buf = Vec::new();
        write(&mut buf, kind, &[payload], 1 << 20).unwrap();
        buf
    }

    #[test]
    fn round_trips_and_rejects_damage() {
        let mut buf = Vec::new();
        write(&mut buf, TASK, &[b"ab", b"cd"], 100).unwrap();
        assert_eq!(
            read(&mut &buf[..], 100, None).unwrap(),
            (TASK, b"abcd".to_vec())
        );

        let mut flipped = buf.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(matches!(
            read(&mut &flipped[..], 100, None),
            Err(FrameError::Corrupt(_))
        ));

        let mut foreign = buf.clone();
        foreign[0] = b'X';
        assert!(matches!(
            read(&mut &foreign[..], 100, None),
            Err(FrameError::Corrupt(_))
        ));

        // Over the limit: refused from the header, before reading the body.
        assert!(matches!(
            read(&mut &buf[..], 3, None),
            Err(FrameError::Corrupt(_))
        ));
        assert!(write(&mut Vec::new(), TASK, &[b"abcd"], 3).is_err());

        // Torn: the peer died mid-frame.
        assert!(matches!(
            read(&mut &buf[..buf.len() - 1], 100, None),
            Err(FrameError::Closed)
        ));
    }

    #[test]
    fn a_huge_claimed_length_allocates_only_what_arrives() {
        // A header promising 4 GiB - 1 under a 4 GiB limit, then ten bytes and the end.
        let mut buf = frame(DONE, b"0123456789");
        buf[5..9].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            read(&mut &buf[..], u32::MAX as usize, None),
            Err(FrameError::Closed)
        ));
    }

    #[test]
    fn a_body_that_never_arrives_times_out() {
        let (mut a, b) = UnixStream::pair().unwrap();
        let whole = frame(DONE, &[7; 4096]);
        a.write_all(&whole[..HEADER + 10]).unwrap(); // the header, then silence
        let start = Instant::now();
        let got = read(&mut Link::new(b), 1 << 20, None);
        assert!(matches!(got, Err(FrameError::Stalled)), "{got:?}");
        assert!(start.elapsed() >= body_time(4096));
        drop(a);
    }

    #[test]
    fn a_header_deadline_times_out_and_a_closed_peer_is_closed() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let deadline = Instant::now() + Duration::from_millis(20);
        assert!(matches!(
            read(&mut b, 100, Some(deadline)),
            Err(FrameError::TimedOut)
        ));
        // A deadline already past.
        assert!(matches!(
            read(&mut b, 100, Some(Instant::now())),
            Err(FrameError::TimedOut)
        ));
        drop(a);
        assert!(matches!(
            read_polled(&mut Link::new(b), 100, None),
            Err(FrameError::Closed)
        ));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn config() -> ProptestConfig {
            // Bounded, so CI time stays fixed; set PROPTEST_CASES to search longer.
            ProptestConfig::with_cases(
                std::env::var("PROPTEST_CASES")
                    .ok()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(2_000),
            )
        }

        proptest! {
            #![proptest_config(config())]

            /// Arbitrary bytes are a frame, an error, or the end: never a panic, and never a
            /// payload larger than the bytes given.
            #[test]
            fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256),
                                           limit in 0usize..512) {
                if let Ok((_, payload)) = read(&mut &bytes[..], limit, None) {
                    prop_assert!(payload.len() <= limit);
                    prop_assert!(payload.len() + HEADER <= bytes.len());
                }
            }

            /// A valid frame with bytes flipped, cut or appended is read as what was sent,
            /// or refused: never as different content.
            #[test]
            fn mutated_frames_are_refused_or_exact(kind in any::<u8>(),
                                                   payload in proptest::collection::vec(any::<u8>(), 0..200),
                                                   flips in proptest::collection::vec((any::<usize>(), 1u8..=255), 0..4),
                                                   cut in any::<usize>(),
                                                   extra in proptest::collection::vec(any::<u8>(), 0..8)) {
                let mut bytes = frame(kind, &payload);
                for (at, mask) in &flips {
                    let i = at % bytes.len();
                    bytes[i] ^= mask;
                }
                bytes.truncate(HEADER + cut % (bytes.len() - HEADER + 1));
                bytes.extend_from_slice(&extra);
                if let Ok((k, p)) = read(&mut &bytes[..], 1 << 20, None) {
                    // Only a frame whose body matches its header's checksum is accepted.
                    prop_assert!(fnv_matches(&p, &bytes));
                    if flips.is_empty() {
                        prop_assert_eq!((k, p), (kind, payload));
                    }
                }
            }

            /// Decoding arbitrary bytes as nested or recursive types errs or succeeds, never
            /// panics or overflows the stack.
            #[test]
            fn arbitrary_payloads_decode_or_err(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
                #[derive(serde::Deserialize)]
                #[allow(dead_code)]
                enum Tree { Leaf(u64), Node(Vec<Tree>), Named(String, Option<Box<Tree>>) }
                let _ = crate::process::codec::decode::<Tree>(&bytes);
                let _ = crate::process::codec::decode::<Vec<Result<String, String>>>(&bytes);
                let _ = crate::process::codec::decode::<(u8, i64, f64, Vec<u8>)>(&bytes);
            }
        }

        /// The checksum in a frame's header matches the payload read.
        fn fnv_matches(payload: &[u8], bytes: &[u8]) -> bool {
            u32::from_le_bytes(bytes[9..13].try_into().unwrap()) == checksum(payload)
        }
    }

    #[test]
    fn a_link_waits_past_its_tick_for_a_frame() {
        let (mut a, b) = UnixStream::pair().unwrap();
        let reader = std::thread::spawn(move || read_polled(&mut Link::new(b), 100, None));
        std::thread::sleep(TICK + Duration::from_millis(500));
        a.write_all(&frame(TASK, b"late")).unwrap();
        let got = reader.join().unwrap();
        assert!(matches!(&got, Ok((TASK, p)) if p == b"late"), "{got:?}");
    }
}
