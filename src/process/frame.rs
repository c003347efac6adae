//! Length-prefixed, checked frames over a worker's socket.
//!
//! ```text
//! magic u32 "CFP1" | kind u8 | len u32 | checksum u32 (FNV-1a of the payload) | payload
//! ```
//!
//! All integers little-endian. A reader refuses a frame whose magic or checksum is wrong or
//! whose length is over the limit *before* allocating for it, so a corrupt peer costs one
//! task a clear error, never a huge allocation, undefined behaviour or a hang.

use std::io::{self, Read, Write};

const MAGIC: u32 = u32::from_le_bytes(*b"CFP1");
const HEADER: usize = 13;

/// Parent to worker: run a task. Payload: trampoline offset i64, function offset i64, args.
pub(crate) const TASK: u8 = 1;
/// Parent to worker: exit now.
pub(crate) const STOP: u8 = 2;
/// Worker to parent, first frame: the build fingerprint (u64) and the layout probe (i64).
pub(crate) const HELLO: u8 = 3;
/// Worker to parent: the task's serialized result.
pub(crate) const DONE: u8 = 4;
/// Worker to parent: the task panicked; payload is the message.
pub(crate) const PANICKED: u8 = 5;
/// Worker to parent: the task could not be decoded or its result encoded; payload says why.
pub(crate) const BROKEN: u8 = 6;

/// A frame that could not be read.
#[derive(Debug)]
pub(crate) enum FrameError {
    /// The socket failed or closed (the peer is gone).
    Io(io::Error),
    /// The bytes are not a valid frame.
    Corrupt(String),
}

impl From<io::Error> for FrameError {
    fn from(e: io::Error) -> Self {
        FrameError::Io(e)
    }
}

/// FNV-1a, 32 bits: cheap, and enough to catch a torn or foreign frame.
fn checksum(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

pub(crate) fn write(w: &mut impl Write, kind: u8, parts: &[&[u8]], limit: usize) -> io::Result<()> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    if len > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("frame of {len} bytes is over the limit of {limit}"),
        ));
    }
    let mut frame = Vec::with_capacity(HEADER + len);
    frame.extend_from_slice(&MAGIC.to_le_bytes());
    frame.push(kind);
    frame.extend_from_slice(&(len as u32).to_le_bytes());
    frame.extend_from_slice(&[0; 4]);
    for p in parts {
        frame.extend_from_slice(p);
    }
    let sum = checksum(&frame[HEADER..]);
    frame[9..13].copy_from_slice(&sum.to_le_bytes());
    w.write_all(&frame)?;
    w.flush()
}

pub(crate) fn read(r: &mut impl Read, limit: usize) -> Result<(u8, Vec<u8>), FrameError> {
    let mut header = [0u8; HEADER];
    r.read_exact(&mut header)?;
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
    let mut payload = vec![0; len];
    r.read_exact(&mut payload)?;
    if checksum(&payload) != word(9) {
        return Err(FrameError::Corrupt("frame checksum mismatch".into()));
    }
    Ok((kind, payload))
}

/// Reads a frame, first polling briefly (spinning, then yielding) before blocking: an answer
/// that is microseconds away is far cheaper to catch awake than to be woken for, which on
/// virtual machines can cost tens of microseconds.
pub(crate) fn read_polled(
    socket: &mut std::os::unix::net::UnixStream,
    limit: usize,
) -> Result<(u8, Vec<u8>), FrameError> {
    match first_byte(socket) {
        Some(b) => read(&mut [b].as_slice().chain(&mut *socket), limit),
        None => read(socket, limit),
    }
}

/// The first byte of the next frame if it arrives while polling; `None` to block instead.
fn first_byte(socket: &mut std::os::unix::net::UnixStream) -> Option<u8> {
    socket.set_nonblocking(true).ok()?;
    let backoff = crossbeam_utils::Backoff::new();
    let mut byte = [0u8; 1];
    let got = loop {
        match socket.read(&mut byte) {
            Ok(1) => break Some(byte[0]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && !backoff.is_completed() => {
                backoff.snooze();
            }
            // End of stream, an error, or polling is over: the blocking read decides.
            _ => break None,
        }
    };
    let _ = socket.set_nonblocking(false);
    got
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_damage() {
        let mut buf = Vec::new();
        write(&mut buf, TASK, &[b"ab", b"cd"], 100).unwrap();
        assert_eq!(read(&mut &buf[..], 100).unwrap(), (TASK, b"abcd".to_vec()));

        let mut flipped = buf.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(matches!(
            read(&mut &flipped[..], 100),
            Err(FrameError::Corrupt(_))
        ));

        let mut foreign = buf.clone();
        foreign[0] = b'X';
        assert!(matches!(
            read(&mut &foreign[..], 100),
            Err(FrameError::Corrupt(_))
        ));

        // Over the limit: refused from the header, before reading (or allocating) the body.
        assert!(matches!(
            read(&mut &buf[..], 3),
            Err(FrameError::Corrupt(_))
        ));
        assert!(write(&mut Vec::new(), TASK, &[b"abcd"], 3).is_err());

        // Torn: the peer died mid-frame.
        assert!(matches!(
            read(&mut &buf[..buf.len() - 1], 100),
            Err(FrameError::Io(_))
        ));
    }
}
