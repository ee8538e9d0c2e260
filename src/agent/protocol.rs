//! The agent wire protocol: pure encoding and decoding over any `Read`/`Write`.
//!
//! Stream start: each side sends the 8-byte [`MAGIC`] then a `Hello` frame (protocol version and
//! software version); the versions must match. After that, frames: a 4-byte big-endian length (type
//! byte + payload, at most [`MAX_FRAME`]), one type byte, the payload. Strings are a 4-byte length plus
//! UTF-8 bytes; integers are big-endian.
//!
//! Client → server: `Ping`, the changes (`Mkdir`, `Symlink`, `Chmod`, `Delete`, `Rename`, and a file
//! as `FileBegin`, any number of `FileChunk`, then `FileEnd` or `FileAbort`), queries (`List`, `Hash`). The server answers
//! in order: `Pong` for a ping, exactly one `Ok` or `Err{path, message}` per change (a file is one
//! change, answered after `FileEnd` once it is in place), `ListChunk`… `ListEnd` or `Err` for a list,
//! `HashReply` or `Err` for a hash. So the client knows exactly which changes reached the pod.
//! `Bye` ends the session without needing stdin EOF.
//!
//! May import: error, sync::scan (the Entry type).

use crate::sync::scan::{Entry, Kind};
use std::io::{self, Read, Write};

/// Sent first by both sides.
pub const MAGIC: [u8; 8] = *b"KODAMA\x01\x00";
/// Bumped on any incompatible change.
pub const PROTOCOL_VERSION: u32 = 1;
/// Largest frame accepted.
pub const MAX_FRAME: usize = 16 << 20;
/// Size of the data in one `FileChunk` the client sends.
pub const CHUNK: usize = 256 * 1024;

/// One protocol message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg {
    Hello {
        protocol: u32,
        software: String,
    },
    Ping(u64),
    Pong(u64),
    Mkdir {
        path: String,
    },
    Symlink {
        path: String,
        target: String,
    },
    Chmod {
        path: String,
        exec: bool,
    },
    Delete {
        path: String,
    },
    Rename {
        from: String,
        to: String,
    },
    FileBegin {
        path: String,
        size: u64,
        exec: bool,
        mtime: i64,
        mtime_nsec: u32,
    },
    FileChunk(Vec<u8>),
    FileEnd,
    List {
        path: String,
        use_gitignore: bool,
        excludes: Vec<String>,
    },
    ListChunk(Vec<(String, Entry)>),
    ListEnd,
    Hash {
        path: String,
    },
    HashReply {
        size: u64,
        hash: u64,
    },
    Ok,
    Err {
        path: String,
        message: String,
    },
    /// Client → server: drop the file being sent (the local read failed); answered with `Err`.
    FileAbort {
        reason: String,
    },
    /// Client → server: end the session (the agent exits even when stdin never closes, as over a
    /// v4 exec stream).
    Bye,
}

impl Msg {
    /// A short name for error messages (never the payload, which may be file data).
    pub fn name(&self) -> &'static str {
        match self {
            Msg::Hello { .. } => "hello",
            Msg::Ping(_) => "ping",
            Msg::Pong(_) => "pong",
            Msg::Mkdir { .. } => "mkdir",
            Msg::Symlink { .. } => "symlink",
            Msg::Chmod { .. } => "chmod",
            Msg::Delete { .. } => "delete",
            Msg::Rename { .. } => "rename",
            Msg::FileBegin { .. } => "file-begin",
            Msg::FileChunk(_) => "file-chunk",
            Msg::FileEnd => "file-end",
            Msg::List { .. } => "list",
            Msg::ListChunk(_) => "list-chunk",
            Msg::ListEnd => "list-end",
            Msg::Hash { .. } => "hash",
            Msg::HashReply { .. } => "hash-reply",
            Msg::Ok => "ok",
            Msg::Err { .. } => "error",
            Msg::FileAbort { .. } => "file-abort",
            Msg::Bye => "bye",
        }
    }
}

mod tag {
    pub const HELLO: u8 = 0x01;
    pub const PING: u8 = 0x02;
    pub const PONG: u8 = 0x03;
    pub const MKDIR: u8 = 0x10;
    pub const SYMLINK: u8 = 0x11;
    pub const CHMOD: u8 = 0x12;
    pub const DELETE: u8 = 0x13;
    pub const RENAME: u8 = 0x14;
    pub const FILE_BEGIN: u8 = 0x15;
    pub const FILE_CHUNK: u8 = 0x16;
    pub const FILE_END: u8 = 0x17;
    pub const LIST: u8 = 0x20;
    pub const LIST_CHUNK: u8 = 0x21;
    pub const LIST_END: u8 = 0x22;
    pub const HASH: u8 = 0x23;
    pub const HASH_REPLY: u8 = 0x24;
    pub const OK: u8 = 0x30;
    pub const ERR: u8 = 0x31;
    pub const FILE_ABORT: u8 = 0x18;
    pub const BYE: u8 = 0x3f;
}

struct Enc(Vec<u8>);

impl Enc {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.u32(b.len() as u32);
        self.0.extend_from_slice(b);
    }
    fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }
}

struct Dec<'a>(&'a [u8]);

fn bad(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("agent protocol: {what}"),
    )
}

impl<'a> Dec<'a> {
    fn take(&mut self, n: usize) -> io::Result<&'a [u8]> {
        if self.0.len() < n {
            return Err(bad("truncated frame"));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u8(&mut self) -> io::Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> io::Result<u32> {
        Ok(u32::from_be_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn u64(&mut self) -> io::Result<u64> {
        Ok(u64::from_be_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    fn i64(&mut self) -> io::Result<i64> {
        Ok(i64::from_be_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    fn bytes(&mut self) -> io::Result<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn str(&mut self) -> io::Result<String> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| bad("string is not UTF-8"))
    }
    fn bool(&mut self) -> io::Result<bool> {
        Ok(self.u8()? != 0)
    }
}

/// Encode one message as a complete frame.
pub fn encode(m: &Msg) -> Vec<u8> {
    let mut e = Enc(vec![0, 0, 0, 0]);
    match m {
        Msg::Hello { protocol, software } => {
            e.u8(tag::HELLO);
            e.u32(*protocol);
            e.str(software);
        }
        Msg::Ping(n) => {
            e.u8(tag::PING);
            e.u64(*n);
        }
        Msg::Pong(n) => {
            e.u8(tag::PONG);
            e.u64(*n);
        }
        Msg::Mkdir { path } => {
            e.u8(tag::MKDIR);
            e.str(path);
        }
        Msg::Symlink { path, target } => {
            e.u8(tag::SYMLINK);
            e.str(path);
            e.str(target);
        }
        Msg::Chmod { path, exec } => {
            e.u8(tag::CHMOD);
            e.str(path);
            e.u8(*exec as u8);
        }
        Msg::Delete { path } => {
            e.u8(tag::DELETE);
            e.str(path);
        }
        Msg::Rename { from, to } => {
            e.u8(tag::RENAME);
            e.str(from);
            e.str(to);
        }
        Msg::FileBegin {
            path,
            size,
            exec,
            mtime,
            mtime_nsec,
        } => {
            e.u8(tag::FILE_BEGIN);
            e.str(path);
            e.u64(*size);
            e.u8(*exec as u8);
            e.i64(*mtime);
            e.u32(*mtime_nsec);
        }
        Msg::FileChunk(d) => {
            e.u8(tag::FILE_CHUNK);
            e.0.extend_from_slice(d);
        }
        Msg::FileEnd => e.u8(tag::FILE_END),
        Msg::List {
            path,
            use_gitignore,
            excludes,
        } => {
            e.u8(tag::LIST);
            e.str(path);
            e.u8(*use_gitignore as u8);
            e.u32(excludes.len() as u32);
            for x in excludes {
                e.str(x);
            }
        }
        Msg::ListChunk(items) => {
            e.u8(tag::LIST_CHUNK);
            e.u32(items.len() as u32);
            for (p, en) in items {
                e.str(p);
                e.u8(en.kind.code());
                e.u64(en.size);
                e.i64(en.mtime);
                e.u32(en.mtime_nsec);
                e.u8(en.exec as u8);
                e.str(en.target.as_deref().unwrap_or(""));
            }
        }
        Msg::ListEnd => e.u8(tag::LIST_END),
        Msg::Hash { path } => {
            e.u8(tag::HASH);
            e.str(path);
        }
        Msg::HashReply { size, hash } => {
            e.u8(tag::HASH_REPLY);
            e.u64(*size);
            e.u64(*hash);
        }
        Msg::Ok => e.u8(tag::OK),
        Msg::Err { path, message } => {
            e.u8(tag::ERR);
            e.str(path);
            e.str(message);
        }
        Msg::FileAbort { reason } => {
            e.u8(tag::FILE_ABORT);
            e.str(reason);
        }
        Msg::Bye => e.u8(tag::BYE),
    }
    let len = (e.0.len() - 4) as u32;
    e.0[..4].copy_from_slice(&len.to_be_bytes());
    e.0
}

/// Decode a frame body (type byte + payload).
pub fn decode(body: &[u8]) -> io::Result<Msg> {
    let mut d = Dec(body);
    let t = d.u8()?;
    let m = match t {
        tag::HELLO => Msg::Hello {
            protocol: d.u32()?,
            software: d.str()?,
        },
        tag::PING => Msg::Ping(d.u64()?),
        tag::PONG => Msg::Pong(d.u64()?),
        tag::MKDIR => Msg::Mkdir { path: d.str()? },
        tag::SYMLINK => Msg::Symlink {
            path: d.str()?,
            target: d.str()?,
        },
        tag::CHMOD => Msg::Chmod {
            path: d.str()?,
            exec: d.bool()?,
        },
        tag::DELETE => Msg::Delete { path: d.str()? },
        tag::RENAME => Msg::Rename {
            from: d.str()?,
            to: d.str()?,
        },
        tag::FILE_BEGIN => Msg::FileBegin {
            path: d.str()?,
            size: d.u64()?,
            exec: d.bool()?,
            mtime: d.i64()?,
            mtime_nsec: d.u32()?,
        },
        tag::FILE_CHUNK => {
            let rest = d.0.to_vec();
            d.0 = &[];
            Msg::FileChunk(rest)
        }
        tag::FILE_END => Msg::FileEnd,
        tag::LIST => {
            let path = d.str()?;
            let use_gitignore = d.bool()?;
            let n = d.u32()? as usize;
            let mut excludes = Vec::with_capacity(n.min(4096));
            for _ in 0..n {
                excludes.push(d.str()?);
            }
            Msg::List {
                path,
                use_gitignore,
                excludes,
            }
        }
        tag::LIST_CHUNK => {
            let n = d.u32()? as usize;
            let mut items = Vec::with_capacity(n.min(4096));
            for _ in 0..n {
                let p = d.str()?;
                let kind = Kind::from_code(d.u8()?).ok_or_else(|| bad("unknown entry kind"))?;
                let size = d.u64()?;
                let mtime = d.i64()?;
                let mtime_nsec = d.u32()?;
                let exec = d.bool()?;
                let target = d.str()?;
                items.push((
                    p,
                    Entry {
                        kind,
                        size,
                        mtime,
                        mtime_nsec,
                        exec,
                        target: (kind == Kind::Symlink).then_some(target),
                    },
                ));
            }
            Msg::ListChunk(items)
        }
        tag::LIST_END => Msg::ListEnd,
        tag::HASH => Msg::Hash { path: d.str()? },
        tag::HASH_REPLY => Msg::HashReply {
            size: d.u64()?,
            hash: d.u64()?,
        },
        tag::OK => Msg::Ok,
        tag::ERR => Msg::Err {
            path: d.str()?,
            message: d.str()?,
        },
        tag::FILE_ABORT => Msg::FileAbort { reason: d.str()? },
        tag::BYE => Msg::Bye,
        other => return Err(bad(&format!("unknown message type 0x{other:02x}"))),
    };
    if !d.0.is_empty() {
        return Err(bad("trailing bytes in frame"));
    }
    Ok(m)
}

/// Write one message (not flushed).
pub fn write_msg(w: &mut dyn Write, m: &Msg) -> io::Result<()> {
    w.write_all(&encode(m))
}

/// Write a file chunk without copying the data into a message first.
pub fn write_chunk(w: &mut dyn Write, data: &[u8]) -> io::Result<()> {
    let len = (data.len() + 1) as u32;
    w.write_all(&len.to_be_bytes())?;
    w.write_all(&[tag::FILE_CHUNK])?;
    w.write_all(data)
}

/// Read one message; `Ok(None)` on a clean end of stream between frames.
pub fn read_msg(r: &mut dyn Read) -> io::Result<Option<Msg>> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut len[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "agent protocol: stream ended inside a frame",
                ))
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let n = u32::from_be_bytes(len) as usize;
    if n == 0 || n > MAX_FRAME {
        return Err(bad(&format!("bad frame length {n}")));
    }
    let mut body = vec![0u8; n];
    r.read_exact(&mut body)?;
    decode(&body).map(Some)
}

/// Send the stream opening: magic and hello.
pub fn write_hello(w: &mut dyn Write) -> io::Result<()> {
    w.write_all(&MAGIC)?;
    write_msg(
        w,
        &Msg::Hello {
            protocol: PROTOCOL_VERSION,
            software: crate::VERSION.to_string(),
        },
    )?;
    w.flush()
}

/// Read and check the other side's opening; returns its software version.
pub fn read_hello(r: &mut dyn Read) -> io::Result<String> {
    let mut magic = [0u8; 8];
    r.read_exact(&mut magic)?;
    if magic != MAGIC {
        return Err(bad(&format!(
            "not a kodama agent (got {:?} instead of the magic number)",
            String::from_utf8_lossy(&magic)
        )));
    }
    match read_msg(r)? {
        Some(Msg::Hello { protocol, software }) if protocol == PROTOCOL_VERSION => Ok(software),
        Some(Msg::Hello { protocol, software }) => Err(bad(&format!(
            "protocol version {protocol} (kodama {software}) does not match ours ({PROTOCOL_VERSION}, kodama {})",
            crate::VERSION
        ))),
        Some(other) => Err(bad(&format!("expected hello, got {other:?}"))),
        None => Err(io::Error::new(io::ErrorKind::UnexpectedEof, "agent protocol: stream ended before hello")),
    }
}

/// FNV-1a 64 over a stream, for the `Hash` query.
pub fn hash_stream(r: &mut dyn Read) -> io::Result<(u64, u64)> {
    let mut h: u64 = 0xcbf29ce484222325;
    let mut buf = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            return Ok((size, h));
        }
        size += n as u64;
        for b in &buf[..n] {
            h ^= *b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_round_trips() {
        let e = Entry {
            kind: Kind::Symlink,
            size: 0,
            mtime: -5,
            mtime_nsec: 7,
            exec: false,
            target: Some("../ü".into()),
        };
        let msgs = vec![
            Msg::Hello {
                protocol: 1,
                software: "0.1.0".into(),
            },
            Msg::Ping(u64::MAX),
            Msg::Pong(3),
            Msg::Mkdir {
                path: "a/日本".into(),
            },
            Msg::Symlink {
                path: "l".into(),
                target: "/etc".into(),
            },
            Msg::Chmod {
                path: "x".into(),
                exec: true,
            },
            Msg::Delete { path: "d".into() },
            Msg::Rename {
                from: "a".into(),
                to: "b".into(),
            },
            Msg::FileBegin {
                path: "f".into(),
                size: 1 << 40,
                exec: true,
                mtime: 1_700_000_000,
                mtime_nsec: 999,
            },
            Msg::FileChunk(vec![0, 1, 2, 255]),
            Msg::FileChunk(vec![]),
            Msg::FileEnd,
            Msg::List {
                path: "".into(),
                use_gitignore: false,
                excludes: vec!["*.o".into()],
            },
            Msg::ListChunk(vec![("l".into(), e), ("d".into(), Entry::dir())]),
            Msg::ListEnd,
            Msg::Hash { path: "f".into() },
            Msg::HashReply { size: 3, hash: 42 },
            Msg::Ok,
            Msg::Err {
                path: "p".into(),
                message: "no".into(),
            },
            Msg::FileAbort {
                reason: "disk".into(),
            },
            Msg::Bye,
        ];
        let mut buf = Vec::new();
        for m in &msgs {
            write_msg(&mut buf, m).unwrap();
        }
        let mut r = &buf[..];
        for m in &msgs {
            assert_eq!(read_msg(&mut r).unwrap().as_ref(), Some(m));
        }
        assert_eq!(read_msg(&mut r).unwrap(), None);
    }

    #[test]
    fn hostile_frames_are_errors_not_panics() {
        for body in [
            &[0u8, 0, 0, 0][..],                 // zero length
            &[0xff, 0xff, 0xff, 0xff, 1][..],    // too long
            &[0, 0, 0, 1, 0x99][..],             // unknown type
            &[0, 0, 0, 5, 0x10, 0, 0, 0, 9][..], // string longer than frame
            &[0, 0, 0, 2, 0x30, 0][..],          // trailing byte
            &[0, 0, 0, 9, 0x10][..],             // truncated stream
        ] {
            let mut r = body;
            assert!(read_msg(&mut r).is_err(), "{body:?}");
        }
    }

    #[test]
    fn handshake_checks_magic_and_version() {
        let mut buf = Vec::new();
        write_hello(&mut buf).unwrap();
        assert_eq!(read_hello(&mut &buf[..]).unwrap(), crate::VERSION);
        let mut bad_magic = buf.clone();
        bad_magic[0] = b'X';
        assert!(read_hello(&mut &bad_magic[..]).is_err());
        let mut other = MAGIC.to_vec();
        write_msg(
            &mut other,
            &Msg::Hello {
                protocol: 99,
                software: "9".into(),
            },
        )
        .unwrap();
        let e = read_hello(&mut &other[..]).unwrap_err();
        assert!(e.to_string().contains("does not match"), "{e}");
    }
}
