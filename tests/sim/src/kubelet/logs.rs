//! Container logs of the simulated kubelet: output pumps that write CRI-format log files
//! (`<RFC3339Nano> <stdout|stderr> <F|P> <text>` per line) and fan raw output out to attach
//! sessions, and the reader behind `GET .../log` (tailLines, sinceSeconds, timestamps, follow).
//!
//! May import: std, kubelet::util.

use super::util::{parse_rfc3339, rfc3339_nano};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// A message to a WebSocket session's I/O loop.
pub enum Msg {
    /// A binary frame on a channel.
    Frame(u8, Vec<u8>),
    /// Send a normal close frame and end the session.
    Close,
}

/// Fan-out of a container's raw output to attach sessions.
#[derive(Default)]
pub struct Hub {
    subs: Mutex<Vec<Sender<Msg>>>,
}

impl Hub {
    pub fn subscribe(&self, tx: Sender<Msg>) {
        if let Ok(mut s) = self.subs.lock() {
            s.push(tx);
        }
    }
    fn publish(&self, chan: u8, data: &[u8]) {
        if let Ok(mut s) = self.subs.lock() {
            s.retain(|tx| tx.send(Msg::Frame(chan, data.to_vec())).is_ok());
        }
    }
    /// Drop every subscriber (their receivers see the end of the container).
    pub fn close(&self) {
        if let Ok(mut s) = self.subs.lock() {
            s.clear();
        }
    }
}

fn write_entry(sink: &Mutex<File>, stream: &str, full: bool, text: &[u8]) {
    let mut line = format!(
        "{} {stream} {} ",
        rfc3339_nano(SystemTime::now()),
        if full { 'F' } else { 'P' }
    )
    .into_bytes();
    line.extend_from_slice(text);
    line.push(b'\n');
    if let Ok(mut f) = sink.lock() {
        let _ = f.write_all(&line);
    }
}

/// Copy a container output stream into the log file (one entry per line) and to attach sessions.
/// Returns at EOF (or EIO from a pty master whose slave side is closed).
pub fn pump(
    mut r: impl Read,
    stream: &'static str,
    chan: u8,
    sink: Arc<Mutex<File>>,
    hub: Arc<Hub>,
) {
    let mut buf = [0u8; 32 * 1024];
    let mut pending: Vec<u8> = Vec::new();
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        hub.publish(chan, &buf[..n]);
        pending.extend_from_slice(&buf[..n]);
        while let Some(i) = pending.iter().position(|&b| b == b'\n') {
            let mut line: Vec<u8> = pending.drain(..=i).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            write_entry(&sink, stream, true, &line);
        }
        if pending.len() >= 16 * 1024 {
            write_entry(&sink, stream, false, &pending);
            pending.clear();
        }
    }
    if !pending.is_empty() {
        write_entry(&sink, stream, false, &pending);
    }
}

/// One parsed log entry.
struct Entry<'a> {
    ts: &'a str,
    full: bool,
    text: &'a [u8],
}

fn parse_line(line: &[u8]) -> Option<Entry<'_>> {
    let mut it = line.splitn(4, |&b| b == b' ');
    let ts = std::str::from_utf8(it.next()?).ok()?;
    let _stream = it.next()?;
    let tag = it.next()?;
    let text = it.next().unwrap_or(b"");
    Some(Entry {
        ts,
        full: tag == b"F",
        text,
    })
}

fn render(e: &Entry<'_>, timestamps: bool, out: &mut Vec<u8>) {
    if timestamps {
        out.extend_from_slice(e.ts.as_bytes());
        out.push(b' ');
    }
    out.extend_from_slice(e.text);
    if e.full {
        out.push(b'\n');
    }
}

/// Options for [`copy_log`].
pub struct ReadOpts {
    pub tail_lines: Option<i64>,
    pub since: Option<SystemTime>,
    pub timestamps: bool,
}

/// Write the existing log (filtered) and return the byte offset read up to.
pub fn copy_log(path: &Path, o: &ReadOpts, out: &mut dyn Write) -> std::io::Result<u64> {
    let mut data = Vec::new();
    if let Ok(mut f) = File::open(path) {
        f.read_to_end(&mut data)?;
    }
    let complete = data.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let lines: Vec<Entry<'_>> = data[..complete]
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .filter_map(parse_line)
        .filter(|e| match (o.since, parse_rfc3339(e.ts)) {
            (Some(s), Some(t)) => t >= s,
            _ => true,
        })
        .collect();
    let start = match o.tail_lines {
        Some(n) if n >= 0 => {
            // Count whole lines (a line may span several partial entries).
            let mut seen = 0i64;
            let mut idx = lines.len();
            for (i, e) in lines.iter().enumerate().rev() {
                if e.full {
                    if seen == n {
                        break;
                    }
                    seen += 1;
                }
                idx = i;
            }
            if n == 0 {
                lines.len()
            } else {
                idx
            }
        }
        _ => 0,
    };
    let mut buf = Vec::new();
    for e in &lines[start..] {
        render(e, o.timestamps, &mut buf);
    }
    out.write_all(&buf)?;
    out.flush()?;
    Ok(complete as u64)
}

/// Follow the log from `offset` until `done()` says the container ended and nothing is left.
pub fn follow_log(
    path: &Path,
    mut offset: u64,
    timestamps: bool,
    out: &mut dyn Write,
    done: &dyn Fn() -> bool,
) -> std::io::Result<()> {
    loop {
        let finished = done();
        let mut chunk = Vec::new();
        if let Ok(mut f) = File::open(path) {
            f.seek(SeekFrom::Start(offset))?;
            f.read_to_end(&mut chunk)?;
        }
        let complete = chunk.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        if complete > 0 {
            let mut buf = Vec::new();
            for l in chunk[..complete].split(|&b| b == b'\n') {
                if let Some(e) = parse_line(l) {
                    render(&e, timestamps, &mut buf);
                }
            }
            out.write_all(&buf)?;
            out.flush()?;
            offset += complete as u64;
            continue;
        }
        if finished {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
