//! What differs between the client and the server side of a [`super::Session`]: the
//! rustls connection that runs the handshake, and the handshake messages the peer may
//! send once it is over.
//!
//! After the handshake (RFC 8446 §4.6, RFC 5246 §7.4.1):
//! - a **server** may receive a KeyUpdate (TLS 1.3) and, in TLS 1.2, a ClientHello
//!   asking to renegotiate (refused);
//! - a **client** may receive a KeyUpdate and NewSessionTickets (TLS 1.3), which go to
//!   rustls' resumption store, and, in TLS 1.2, a HelloRequest (refused). rustls never
//!   offers post-handshake authentication, so a CertificateRequest is unexpected.

use rustls::client::{ClientConnectionData, UnbufferedClientConnection};
use rustls::kernel::KernelConnection;
use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{AppDataRecord, ReadEarlyData, UnbufferedStatus};
use rustls::{CommonState, Error, ExtractedSecrets, HandshakeType};

mod sealed {
    pub trait Sealed {}
}

/// One side of a TLS session: [`Server`] or [`Client`].
pub trait Side: sealed::Sealed + 'static {
    /// rustls' per-side connection data.
    type Data: 'static;
    /// rustls' unbuffered connection of this side, which runs the handshake.
    type Conn;

    /// The peer's request to renegotiate, refused once with a warning in TLS 1.2.
    const RENEGOTIATION: HandshakeType;
    /// How logs name the peer.
    const PEER: &'static str;

    /// Runs rustls' state machine over `incoming`.
    fn process<'c, 'i>(
        conn: &'c mut Self::Conn,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, Self::Data>;

    /// The connection's common state (handshake progress, the peer's certificates).
    fn common(conn: &Self::Conn) -> &CommonState;

    /// Hands the keys over once the handshake is complete.
    fn into_kernel(
        conn: Self::Conn,
    ) -> Result<(ExtractedSecrets, KernelConnection<Self::Data>), Error>;

    /// The next record of early data (a server's only; a client receives none).
    fn next_early_data<'a>(
        records: &'a mut ReadEarlyData<'_, '_, Self::Data>,
    ) -> Option<Result<AppDataRecord<'a>, Error>>;

    /// Whether this side takes a TLS 1.3 handshake message of type `typ` (other than a
    /// KeyUpdate) after the handshake; any other is unexpected.
    fn takes(typ: HandshakeType) -> bool;

    /// Handles a message [`Self::takes`] (its body, without type and length).
    fn post_handshake(
        kernel: &mut KernelConnection<Self::Data>,
        typ: HandshakeType,
        body: &[u8],
    ) -> Result<(), Error>;
}

/// The server side: the router's edge and link listeners.
#[derive(Debug)]
pub enum Server {}

/// The client side: the router's link dialers.
#[derive(Debug)]
pub enum Client {}

impl sealed::Sealed for Server {}
impl sealed::Sealed for Client {}

/// The methods both sides implement alike: rustls' client and server connections have
/// the same inherent methods, with no trait over them.
macro_rules! connection_methods {
    () => {
        fn process<'c, 'i>(
            conn: &'c mut Self::Conn,
            incoming: &'i mut [u8],
        ) -> UnbufferedStatus<'c, 'i, Self::Data> {
            conn.process_tls_records(incoming)
        }

        fn common(conn: &Self::Conn) -> &CommonState {
            conn
        }

        fn into_kernel(
            conn: Self::Conn,
        ) -> Result<(ExtractedSecrets, KernelConnection<Self::Data>), Error> {
            conn.dangerous_into_kernel_connection()
        }
    };
}

impl Side for Server {
    type Data = ServerConnectionData;
    type Conn = UnbufferedServerConnection;

    const RENEGOTIATION: HandshakeType = HandshakeType::ClientHello;
    const PEER: &'static str = "client";

    connection_methods!();

    fn next_early_data<'a>(
        records: &'a mut ReadEarlyData<'_, '_, Self::Data>,
    ) -> Option<Result<AppDataRecord<'a>, Error>> {
        records.next_record()
    }

    fn takes(_: HandshakeType) -> bool {
        false
    }

    fn post_handshake(
        _: &mut KernelConnection<Self::Data>,
        typ: HandshakeType,
        _: &[u8],
    ) -> Result<(), Error> {
        Err(Error::InappropriateHandshakeMessage {
            expect_types: Vec::new(),
            got_type: typ,
        })
    }
}

impl Side for Client {
    type Data = ClientConnectionData;
    type Conn = UnbufferedClientConnection;

    const RENEGOTIATION: HandshakeType = HandshakeType::HelloRequest;
    const PEER: &'static str = "server";

    connection_methods!();

    fn next_early_data<'a>(
        _: &'a mut ReadEarlyData<'_, '_, Self::Data>,
    ) -> Option<Result<AppDataRecord<'a>, Error>> {
        Some(Err(Error::General(
            "early data reached the client side".into(),
        )))
    }

    fn takes(typ: HandshakeType) -> bool {
        typ == HandshakeType::NewSessionTicket
    }

    fn post_handshake(
        kernel: &mut KernelConnection<Self::Data>,
        typ: HandshakeType,
        body: &[u8],
    ) -> Result<(), Error> {
        match typ {
            HandshakeType::NewSessionTicket => kernel.handle_new_session_ticket(body),
            other => Err(Error::InappropriateHandshakeMessage {
                expect_types: Vec::new(),
                got_type: other,
            }),
        }
    }
}
