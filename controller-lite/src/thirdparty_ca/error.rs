//! The errors of 3rd-party CA management, enrollment and verification, with the codes
//! and statuses OpenZiti answers them with (openziti/ziti `controller/apierror/messages.go`).

/// A refusal of the CA endpoints or of CA enrollment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CaError {
    /// `certPem` is not a PEM CA certificate (400 `CERTIFICATE_IS_NOT_CA`, or
    /// `INVALID_CERT_PEM` when it is no certificate at all).
    #[error("certPem: {0}")]
    NotCa(String),
    /// `certPem` holds no parsable certificate (400 `INVALID_CERT_PEM`).
    #[error("certPem: {0}")]
    BadCertPem(String),
    /// The CA is verified already (409 `CA_ALREADY_VERIFIED`).
    #[error("the CA is already verified")]
    AlreadyVerified,
    /// The verification body is empty or not PEM (400 `COULD_NOT_PARSE_BODY`).
    #[error("the body must be one PEM certificate: {0}")]
    CouldNotParseBody(String),
    /// The PEM block is not a `CERTIFICATE` (400 `EXPECTED_PEM_CERTIFICATE`).
    #[error("expected a PEM CERTIFICATE block, found {0:?}")]
    ExpectedPemCertificate(String),
    /// The PEM certificate's DER does not parse (400 `COULD_NOT_PARSE_DER_BLOCK`).
    #[error("the certificate does not parse: {0}")]
    CouldNotParseDer(String),
    /// The verification certificate's common name is not the verification token (400
    /// `INVALID_COMMON_NAME`).
    #[error("the common name {found:?} is not the CA's verification token")]
    InvalidCommonName {
        /// The common name found (empty when none).
        found: String,
    },
    /// A certificate does not verify against the CA (400 `CERTIFICATE_FAILED_VALIDATION`).
    #[error("the certificate failed validation: {0}")]
    CertificateFailedValidation(String),
    /// `ottca` enrollment with a CA that does not allow it (400 `ENROLLMENT_CA_NOT_VALID`).
    #[error("the enrollment's CA does not allow ottca enrollment")]
    EnrollmentCaNotValid,
    /// `ca` enrollment without any CA that allows it (400 `ENROLLMENT_NO_VALID_CAS`).
    #[error("no verified CA allows auto enrollment")]
    NoValidCas,
    /// `ca` enrollment with a certificate no such CA issued (400 `CERT_FAILED_VALIDATION`).
    #[error("the certificate was not issued by a verified CA that allows auto enrollment")]
    CertFailedValidation,
    /// The CA's `externalIdClaim` finds no value in the certificate (400
    /// `MISSING_CERT_CLAIM`).
    #[error("the certificate has no external id claim: {0}")]
    MissingCertClaim(String),
    /// The certificate is already bound to an authenticator (409 `CERT_IN_USE`).
    #[error("the certificate with fingerprint {fingerprint} is already in use")]
    CertInUse {
        /// Its SHA-1 fingerprint.
        fingerprint: String,
    },
    /// The request presented no TLS client certificate (400 `CERT_FAILED_VALIDATION` for
    /// `ca`, `CERTIFICATE_FAILED_VALIDATION` for `ottca`).
    #[error("no client certificate was presented in the TLS handshake")]
    NoClientCert {
        /// Whether the request was an `ottca` enrollment.
        ottca: bool,
    },
    /// A method other than the token's (400 `INVALID_ENROLL_METHOD`).
    #[error("the enrollment method {0:?} is not the token's")]
    InvalidEnrollMethod(String),
    /// An enrollment of that method exists already (409 `ENROLLMENT_EXISTS`).
    #[error("{0}")]
    EnrollmentExists(String),
    /// The controller holds its most CAs already (400 `COULD_NOT_VALIDATE`).
    #[error("at most {0} CAs can be created")]
    TooManyCas(usize),
}

impl CaError {
    /// OpenZiti's error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotCa(_) => "CERTIFICATE_IS_NOT_CA",
            Self::BadCertPem(_) => "INVALID_CERT_PEM",
            Self::AlreadyVerified => "CA_ALREADY_VERIFIED",
            Self::CouldNotParseBody(_) => "COULD_NOT_PARSE_BODY",
            Self::ExpectedPemCertificate(_) => "EXPECTED_PEM_CERTIFICATE",
            Self::CouldNotParseDer(_) => "COULD_NOT_PARSE_DER_BLOCK",
            Self::InvalidCommonName { .. } => "INVALID_COMMON_NAME",
            Self::CertificateFailedValidation(_) | Self::NoClientCert { ottca: true } => {
                "CERTIFICATE_FAILED_VALIDATION"
            }
            Self::EnrollmentCaNotValid => "ENROLLMENT_CA_NOT_VALID",
            Self::NoValidCas => "ENROLLMENT_NO_VALID_CAS",
            Self::CertFailedValidation | Self::NoClientCert { ottca: false } => {
                "CERT_FAILED_VALIDATION"
            }
            Self::MissingCertClaim(_) => "MISSING_CERT_CLAIM",
            Self::CertInUse { .. } => "CERT_IN_USE",
            Self::InvalidEnrollMethod(_) => "INVALID_ENROLL_METHOD",
            Self::EnrollmentExists(_) => "ENROLLMENT_EXISTS",
            Self::TooManyCas(_) => "COULD_NOT_VALIDATE",
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            Self::AlreadyVerified | Self::CertInUse { .. } | Self::EnrollmentExists(_) => 409,
            _ => 400,
        }
    }
}
