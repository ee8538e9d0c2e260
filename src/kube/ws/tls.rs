//! A full-duplex-safe TLS stream for the socket thread.
//!
//! `rustls::StreamOwned::read` first pushes out any pending TLS records and returns `WouldBlock`
//! when that cannot complete, so while our send buffer is full it never reads. If the server is at
//! the same time blocked sending to us (a `cat` echoing a large upload), neither side moves: a
//! deadlock. [`DuplexTls`] reads whenever bytes arrive and only tries opportunistically to send,
//! so a full send buffer never stops the receive side. Used for every TLS WebSocket.
//!
//! May import: kube::ws (WsTransport), rustls.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use rustls::ClientConnection;

use super::WsTransport;

/// A client TLS connection (handshake already done or in progress) over a TCP socket.
pub struct DuplexTls {
    conn: ClientConnection,
    sock: TcpStream,
}

fn would_block(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

impl DuplexTls {
    /// Wrap a rustls client connection and its socket.
    pub fn new(conn: ClientConnection, sock: TcpStream) -> DuplexTls {
        DuplexTls { conn, sock }
    }

    /// Write out pending TLS records. `Ok(false)` when the socket would block with some left.
    fn send_pending(&mut self) -> io::Result<bool> {
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut self.sock) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "the TLS connection was closed while sending",
                    ))
                }
                Ok(_) => {}
                Err(e) if would_block(&e) => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Complete the TLS handshake (blocking within the socket's timeouts).
    pub fn handshake(&mut self) -> io::Result<()> {
        while self.conn.is_handshaking() {
            self.conn.complete_io(&mut self.sock)?;
        }
        Ok(())
    }
}

impl Read for DuplexTls {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            match self.conn.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            // Never send here: a blocked send would stall reading. Records rustls queued (key
            // updates, alerts) go out with the next write or flush, which the socket thread does
            // every turn.
            let n = self.conn.read_tls(&mut self.sock)?;
            let processed = self.conn.process_new_packets();
            if let Err(e) = processed {
                // Try to tell the peer why, then fail.
                let _ = self.send_pending();
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
            if n == 0 {
                // EOF: the reader now reports Ok(0) (close_notify) or UnexpectedEof.
                return match self.conn.reader().read(buf) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
                    other => other,
                };
            }
        }
    }
}

impl Write for DuplexTls {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.send_pending()?;
        let n = self.conn.writer().write(buf)?;
        if n == 0 {
            // rustls' send buffer is full and the socket would block: let the caller retry.
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.send_pending()?;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.conn.writer().flush()?;
        if !self.send_pending()? {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.sock.flush()
    }
}

impl WsTransport for DuplexTls {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.sock.set_read_timeout(timeout)
    }
    fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.sock.set_write_timeout(timeout)
    }
}
