//! Production wiring: the REST client's transport as a [`Dialer`]. Each WebSocket gets its own
//! connection from `Transport::connect_stream` (TCP, proxy CONNECT tunnel, TLS with ALPN
//! `http/1.1`); a TLS stream is re-wrapped in [`DuplexTls`] so the socket thread can keep reading
//! while its writes are blocked.
//!
//! May import: error, secret, kube::{client, transport}, kube::ws.

use super::tls::DuplexTls;
use super::{Dialer, WsTransport};
use crate::error::Result;
use crate::kube::client::Client;
use crate::kube::transport::{KubeStream, Transport};
use crate::secret::Secret;

impl Dialer for Transport {
    fn connect(&self) -> Result<Box<dyn WsTransport>> {
        match self.connect_stream()? {
            KubeStream::Plain(tcp) => Ok(Box::new(tcp)),
            KubeStream::Tls(owned) => {
                let owned = *owned;
                Ok(Box::new(DuplexTls::new(owned.conn, owned.sock)))
            }
        }
    }
    fn url_for(&self, path_and_query: &str) -> String {
        Transport::url_for(self, path_and_query)
    }
    fn auth_headers(&self) -> Result<Vec<(String, Secret)>> {
        Transport::auth_headers(self)
    }
    fn refresh_after_unauthorized(&self) -> Result<bool> {
        Ok(Transport::refresh_after_unauthorized(self))
    }
}

impl Dialer for Client {
    fn connect(&self) -> Result<Box<dyn WsTransport>> {
        Dialer::connect(&**self.transport())
    }
    fn url_for(&self, path_and_query: &str) -> String {
        Transport::url_for(self.transport(), path_and_query)
    }
    fn auth_headers(&self) -> Result<Vec<(String, Secret)>> {
        Transport::auth_headers(self.transport())
    }
    fn refresh_after_unauthorized(&self) -> Result<bool> {
        Ok(Transport::refresh_after_unauthorized(self.transport()))
    }
}
