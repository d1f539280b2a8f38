//! Edge Client API handlers (spec `edge-client-api.md`).

pub mod current;
pub mod enrollment;
pub mod ext_jwt_signers;
pub mod mfa;
pub mod own_authenticators;
pub mod posture;
pub mod services;
pub mod session_certs;
pub mod sessions;
pub mod version;

use super::endpoint::{ApiBuilder, Data, Endpoint, QueryParam};

const AUTH_QUERY: &[QueryParam] = &[QueryParam {
    name: "method",
    required: true,
    values: &["cert", "password", "ext-jwt"],
    description: "`cert`: the TLS client certificate; `password`: `{username, password}`; `ext-jwt`: an `Authorization: Bearer` JWT of an enabled external JWT signer.",
}];

const ENROLL_QUERY: &[QueryParam] = &[
    QueryParam {
        name: "method",
        required: true,
        values: &["ott", "updb", "erott", "ottca", "ca"],
        description: "`ott`: identity, PEM CSR body; `updb`: identity, `{password}`; `erott`: edge router, JSON body; `ottca`: the TLS client certificate of the enrollment's CA; `ca`: the TLS client certificate of an auto-enrolling CA, optional `{name}`, no token.",
    },
    QueryParam {
        name: "token",
        required: false,
        values: &[],
        description: "The enrollment JWT's `jti`.",
    },
];

/// What `POST /enroll` consumes (openziti/edge-api `source/client/enroll.yml`): a PEM
/// CSR as `application/x-pem-file` or `text/plain` (the C SDK 0.29.3 sends `text/plain`),
/// JSON, or PKCS#7.
const ENROLL_CONSUMES: &[&str] = &[
    "application/pkcs7",
    "application/json",
    "application/x-pem-file",
    "text/plain",
];

const TOKEN_QUERY: &[QueryParam] = &[QueryParam {
    name: "token",
    required: true,
    values: &[],
    description: "The enrollment JWT's `jti`.",
}];

const VERSION: Data = Data::Object("Controller version and API base paths.");
const API_SESSION: Data = Data::Object("API session detail with its `token`.");
const SERVICE: Data =
    Data::Object("Service with `permissions`, `config` (by config type) and `postureQueries`.");
const SESSION: Data = Data::Object("Session detail with its `token` and `edgeRouters`.");

/// Routes served both under `/edge/client/v1` and at the root (spec §2).
pub fn routes() -> ApiBuilder {
    super::controllers::client_routes(session_certs::routes(common_routes(ApiBuilder::default())))
        .add(
            Endpoint::post("/authenticate", "authenticate")
                .doc("Authentication", "Creates an API session")
                .query(AUTH_QUERY)
                .request(Data::Object(
                    "`cert`: optional `{configTypes, sdkInfo, envInfo}`; `password`: `{username, password}`.",
                ))
                .returns(200, API_SESSION),
            current::authenticate,
        )
        .add(
            Endpoint::get("/external-jwt-signers", "listExternalJwtSigners")
                .doc(
                    "External JWT Signer",
                    "Enabled external JWT signers (no authentication)",
                )
                .lists(Data::Schema(|g| {
                    g.subschema_for::<ext_jwt_signers::ClientExternalJwtSigner>()
                })),
            ext_jwt_signers::list,
        )
        .add(
            Endpoint::get("/current-api-session/service-updates", "listServiceUpdates")
                .doc("Current API Session", "When the caller's services last changed")
                .session()
                .returns(200, Data::Object("`{lastChangeAt}`")),
            current::service_updates,
        )
        .add(
            Endpoint::get("/current-identity/edge-routers", "getCurrentIdentityEdgeRouters")
                .doc("Current Identity", "Edge routers the caller may connect to")
                .session()
                .lists(Data::Object("Edge router with `supportedProtocols`.")),
            current::edge_routers,
        )
        .add(
            Endpoint::get("/services", "listServices")
                .doc("Service", "Services the caller may dial or bind")
                .session()
                .lists(SERVICE),
            services::list,
        )
        .add(
            Endpoint::get("/services/{id}", "detailService")
                .doc("Service", "One service the caller may dial or bind")
                .session()
                .returns(200, SERVICE),
            services::detail,
        )
        .add(
            Endpoint::get("/services/{id}/edge-routers", "listServiceEdgeRouters")
                .doc(
                    "Service",
                    "The edge routers the caller may reach a service it may dial or bind through",
                )
                .session()
                .returns(200, Data::Object("`{edgeRouters}`: edge routers with `supportedProtocols`.")),
            services::edge_routers,
        )
        .add(
            Endpoint::get("/services/{id}/terminators", "listServiceTerminators")
                .doc("Service", "Where a service the caller may dial or bind is hosted")
                .session()
                .lists(Data::Object(
                    "Terminator with `serviceId`, `service`, `routerId` and `identity`.",
                )),
            services::terminators,
        )
        .add(
            Endpoint::get("/sessions", "listSessions")
                .doc("Session", "Sessions of the caller's API session")
                .session()
                .lists(SESSION),
            sessions::list,
        )
        .add(
            Endpoint::post("/sessions", "createSession")
                .doc("Session", "Creates a Dial or Bind session")
                .session()
                .request(Data::Schema(|g| g.subschema_for::<sessions::SessionCreate>()))
                .returns(201, SESSION),
            sessions::create,
        )
        .add(
            Endpoint::get("/sessions/{id}", "detailSession")
                .doc("Session", "One of the caller's sessions")
                .session()
                .returns(200, SESSION),
            sessions::detail,
        )
        .add(
            Endpoint::delete("/sessions/{id}", "deleteSession")
                .doc("Session", "Ends one of the caller's sessions")
                .session(),
            sessions::delete,
        )
        .add(
            Endpoint::post("/posture-response", "createPostureResponse")
                .doc("Posture Checks", "Accepts a posture response")
                .session()
                .request(Data::Object(
                    "A posture response: `id` and `typeId` (`OS`, `MAC`, `DOMAIN`, `PROCESS`, `ENDPOINT_STATE`) and the type's fields.",
                ))
                .returns(201, Data::Object("`{services}`: services whose MFA checks ask for a new TOTP answer.")),
            posture::posture_response,
        )
        .add(
            Endpoint::post("/posture-response-bulk", "createPostureResponseBulk")
                .doc("Posture Checks", "Accepts posture responses")
                .session()
                .request(Data::Object("An array of at most 64 posture responses."))
                .returns(200, Data::Object("`{services}`: services whose MFA checks ask for a new TOTP answer.")),
            posture::posture_response_bulk,
        )
        .add(
            Endpoint::get("/protocols", "listProtocols")
                .doc("Informational", "The address of the HTTPS API listener")
                .returns(200, Data::Object("`{https: {address}}`.")),
            version::protocols,
        )
        .add(
            Endpoint::post("/enroll", "enroll")
                .doc("Enroll", "Redeems a one-time enrollment token")
                .query(ENROLL_QUERY)
                .consumes(ENROLL_CONSUMES)
                .request(Data::Raw(
                    "text/plain",
                    "`ott`: a PEM CSR; `updb`: `{password}`; `erott`: `{serverCertCsr, certCsr}` as JSON.",
                ))
                .returns(200, Data::Object("`{cert}` (`ott`), `{username}` (`updb`) or `{serverCert, cert, ca}` (`erott`), PEM.")),
            enrollment::enroll,
        )
        .add(
            Endpoint::post("/enroll/ott", "enrollOtt")
                .doc("Enroll", "Enrolls an identity with its one-time token and a CSR (as `/enroll?method=ott`)")
                .request(Data::Schema(|g| g.subschema_for::<enrollment::OttEnroll>()))
                .returns(200, Data::Object("`{cert}`, PEM.")),
            enrollment::enroll_ott_route,
        )
        .add(
            Endpoint::post("/enroll/erott", "enrollErOtt")
                .doc("Enroll", "Enrolls an edge router")
                .query(TOKEN_QUERY)
                .request(Data::Schema(|g| g.subschema_for::<crate::enroll::ErottRequest>()))
                .returns(200, Data::Object("`{serverCert, cert, ca}`, PEM.")),
            enrollment::enroll_erott_route,
        )
        .add(
            Endpoint::post("/enroll/updb", "enrollUpdb")
                .doc("Enroll", "Sets the first password of a user name an administrator enrolled")
                .query(TOKEN_QUERY)
                .request(Data::Schema(|g| g.subschema_for::<enrollment::UpdbEnroll>()))
                .returns(200, Data::Object("`{username}`.")),
            enrollment::enroll_updb_route,
        )
        .add(
            Endpoint::post("/enroll/ottca", "enrollOttCa")
                .doc("Enroll", "Redeems an ottca token with the TLS client certificate of the enrollment's CA")
                .request(Data::Schema(|g| g.subschema_for::<enrollment::OttCaEnroll>())),
            enrollment::enroll_ottca_route,
        )
        .add(
            Endpoint::post("/enroll/ca", "enrollCa")
                .doc("Enroll", "Enrolls the TLS client certificate of a verified 3rd-party CA that allows auto enrollment")
                .request(Data::Schema(|g| g.subschema_for::<enrollment::CaEnroll>())),
            enrollment::enroll_ca_route,
        )
}

/// The routes both APIs serve alike: version information, the caller's API session
/// (refresh, logout) and identity, and TOTP MFA ([`mfa`]).
pub(crate) fn common_routes(api: ApiBuilder) -> ApiBuilder {
    own_authenticators::routes(mfa::routes(api))
        .add(
            Endpoint::get("/", "listRoot")
                .doc("Informational", "Returns version information")
                .returns(200, VERSION),
            version::version,
        )
        .add(
            Endpoint::get("/version", "listVersion")
                .doc("Informational", "Returns version information")
                .returns(200, VERSION),
            version::version,
        )
        .add(
            Endpoint::get("/.well-known/est/cacerts", "listWellKnownCas")
                .doc(
                    "Well Known",
                    "The CA certificates (certs-only PKCS#7, base64)",
                )
                .returns(
                    200,
                    Data::Raw("application/pkcs7-mime", "Base64 certs-only PKCS#7."),
                ),
            enrollment::cacerts,
        )
        .add(
            Endpoint::get("/network-jwts", "listNetworkJWTs")
                .doc(
                    "Enroll",
                    "The network JWT: the controller's URL, signed with its enrollment key",
                )
                .returns(200, Data::Object("`[{name: \"default\", token}]`.")),
            enrollment::network_jwts,
        )
        .add(
            Endpoint::get("/enumerated-capabilities", "listEnumeratedCapabilities")
                .doc(
                    "Informational",
                    "Optional capabilities of this controller (none: no OIDC, no raft cluster)",
                )
                .returns(200, Data::Object("An array of capability names.")),
            version::capabilities,
        )
        .add(
            Endpoint::get("/current-api-session", "getCurrentAPISession")
                .doc(
                    "Current API Session",
                    "The caller's API session (refreshes its expiry)",
                )
                .session()
                .returns(200, API_SESSION),
            current::get_api_session,
        )
        .add(
            Endpoint::delete("/current-api-session", "deleteCurrentApiSession")
                .doc("Current API Session", "Logs out")
                .session(),
            current::delete_api_session,
        )
        .add(
            Endpoint::get("/current-identity", "getCurrentIdentity")
                .doc("Current Identity", "The caller's identity")
                .session()
                .returns(200, Data::Object("Identity detail.")),
            current::current_identity,
        )
}
