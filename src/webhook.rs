//! Webhook signatures, as specified by Standard Webhooks
//! (<https://www.standardwebhooks.com/>): signing on the device, verifying in
//! the reference receiver.
//!
//! Each request carries three headers:
//!
//! - `webhook-id`: the event's stable id (the same on every redelivery);
//! - `webhook-timestamp`: unix seconds when this attempt was signed;
//! - `webhook-signature`: `v1,<base64 HMAC-SHA256(secret, "{id}.{timestamp}.{body}")>`,
//!   one per secret, separated by spaces.
//!
//! A secret written as `whsec_<base64>` (the Standard Webhooks form) is the
//! base64-decoded bytes; any other secret is used as its raw UTF-8 bytes.
//! Surrounding whitespace (a trailing newline in a secret file) is ignored.

use std::path::Path;

use anyhow::{bail, Context, Result};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

pub const HEADER_ID: &str = "webhook-id";
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
pub const HEADER_SIGNATURE: &str = "webhook-signature";

/// How far a message's timestamp may be from the receiver's clock, either way.
pub const TOLERANCE_S: i64 = 5 * 60;

type HmacSha256 = Hmac<Sha256>;

/// A signing key. Its bytes never appear in `Debug` output.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    /// Parses a secret as written in a secret file (see the module docs).
    pub fn parse(text: &str) -> Result<Secret> {
        let text = text.trim();
        let bytes = match text.strip_prefix("whsec_") {
            Some(b64) => BASE64
                .decode(b64)
                .context("a secret starting with whsec_ must continue with standard base64")?,
            None => text.as_bytes().to_vec(),
        };
        if bytes.len() < 16 {
            bail!("the secret is shorter than 16 bytes: generate one with `echo whsec_$(head -c 32 /dev/urandom | base64)`");
        }
        Ok(Secret(bytes))
    }

    /// Reads one secret from a file.
    pub fn read(path: &Path) -> Result<Secret> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the webhook secret {}", path.display()))?;
        Secret::parse(&text).with_context(|| format!("bad webhook secret in {}", path.display()))
    }

    fn mac(&self, id: &str, timestamp: i64, body: &[u8]) -> HmacSha256 {
        // HMAC accepts keys of any length; new_from_slice cannot fail for it.
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }
}

/// The `webhook-signature` header value: one `v1,<base64>` per secret.
pub fn sign(secrets: &[Secret], id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets
        .iter()
        .map(|s| {
            format!(
                "v1,{}",
                BASE64.encode(s.mac(id, timestamp, body).finalize().into_bytes())
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Why a message was not accepted.
#[derive(Debug, PartialEq, Eq)]
pub enum VerifyError {
    MissingHeader(&'static str),
    BadTimestamp,
    /// The timestamp is more than [`TOLERANCE_S`] away from now.
    Stale {
        skew_s: i64,
    },
    NoMatchingSignature,
}

impl std::fmt::Display for VerifyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VerifyError::MissingHeader(h) => write!(f, "missing header {h}"),
            VerifyError::BadTimestamp => write!(f, "{HEADER_TIMESTAMP} is not unix seconds"),
            VerifyError::Stale { skew_s } => write!(
                f,
                "{HEADER_TIMESTAMP} is {skew_s} s from the receiver's clock (tolerance {TOLERANCE_S} s): check both clocks"
            ),
            VerifyError::NoMatchingSignature => {
                write!(f, "no signature matches any configured secret")
            }
        }
    }
}

impl std::error::Error for VerifyError {}

/// Checks a message against the receiver's secrets at time `now` (unix
/// seconds). Signatures are compared in constant time; any one valid `v1`
/// signature for any one secret accepts the message.
pub fn verify(
    secrets: &[Secret],
    id: Option<&str>,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: i64,
) -> Result<(), VerifyError> {
    let id = id.ok_or(VerifyError::MissingHeader(HEADER_ID))?;
    let timestamp = timestamp.ok_or(VerifyError::MissingHeader(HEADER_TIMESTAMP))?;
    let signature = signature.ok_or(VerifyError::MissingHeader(HEADER_SIGNATURE))?;
    let timestamp: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| VerifyError::BadTimestamp)?;
    let skew_s = timestamp.saturating_sub(now);
    if skew_s.saturating_abs() > TOLERANCE_S {
        return Err(VerifyError::Stale { skew_s });
    }
    for candidate in signature.split_whitespace() {
        let Some(b64) = candidate.strip_prefix("v1,") else {
            continue;
        };
        let Ok(given) = BASE64.decode(b64) else {
            continue;
        };
        for secret in secrets {
            if secret.mac(id, timestamp, body).verify_slice(&given).is_ok() {
                return Ok(());
            }
        }
    }
    Err(VerifyError::NoMatchingSignature)
}

#[cfg(test)]
mod tests {
    use super::*;

    // The Standard Webhooks specification's example, checked independently:
    //   python3 -c "import hmac,hashlib,base64; k=base64.b64decode('MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw');
    //   print(base64.b64encode(hmac.new(k, b'msg_p5jXN8AQM9LWM0D4loKWxJek.1614265330.{\"test\": 2432232314}',
    //   hashlib.sha256).digest()).decode())"
    //   -> g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=
    const SPEC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SPEC_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SPEC_TS: i64 = 1_614_265_330;
    const SPEC_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SPEC_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn signs_the_spec_example() {
        let secret = Secret::parse(SPEC_SECRET).unwrap();
        assert_eq!(sign(&[secret], SPEC_ID, SPEC_TS, SPEC_BODY), SPEC_SIGNATURE);
    }

    #[test]
    fn raw_secrets_are_their_bytes() {
        // python3 -c "import hmac,hashlib,base64; print(base64.b64encode(hmac.new(
        //   b'raw secret not b64', b'tower-7-test.1700000000.{}', hashlib.sha256).digest()).decode())"
        //   -> 5fdFNEtW5hdThOL4DwmX9xh+bkhrUn3Gw3CkaukBJos=
        let secret = Secret::parse("raw secret not b64\n").unwrap();
        assert_eq!(
            sign(&[secret], "tower-7-test", 1_700_000_000, b"{}"),
            "v1,5fdFNEtW5hdThOL4DwmX9xh+bkhrUn3Gw3CkaukBJos="
        );
    }

    #[test]
    fn several_secrets_give_several_signatures() {
        let a = Secret::parse(SPEC_SECRET).unwrap();
        let b = Secret::parse("another secret of 16+ bytes").unwrap();
        let header = sign(&[b.clone(), a.clone()], SPEC_ID, SPEC_TS, SPEC_BODY);
        assert_eq!(header.split(' ').count(), 2);
        assert!(header.ends_with(SPEC_SIGNATURE));
        // A receiver that knows only the old secret still accepts.
        let ok = verify(
            &[a],
            Some(SPEC_ID),
            Some("1614265330"),
            Some(&header),
            SPEC_BODY,
            SPEC_TS,
        );
        assert_eq!(ok, Ok(()));
    }

    #[test]
    fn verification_rejects_tampering_and_stale_messages() {
        let s = [Secret::parse(SPEC_SECRET).unwrap()];
        let check = |id: &str, ts: &str, sig: &str, body: &[u8], now: i64| {
            verify(&s, Some(id), Some(ts), Some(sig), body, now)
        };
        assert_eq!(
            check(
                SPEC_ID,
                "1614265330",
                SPEC_SIGNATURE,
                SPEC_BODY,
                SPEC_TS + 299
            ),
            Ok(())
        );
        assert_eq!(
            check(
                SPEC_ID,
                "1614265330",
                SPEC_SIGNATURE,
                SPEC_BODY,
                SPEC_TS + 301
            ),
            Err(VerifyError::Stale { skew_s: -301 })
        );
        assert_eq!(
            check(
                SPEC_ID,
                "1614265330",
                SPEC_SIGNATURE,
                b"{\"test\": 1}",
                SPEC_TS
            ),
            Err(VerifyError::NoMatchingSignature)
        );
        assert_eq!(
            check(
                "msg_other",
                "1614265330",
                SPEC_SIGNATURE,
                SPEC_BODY,
                SPEC_TS
            ),
            Err(VerifyError::NoMatchingSignature)
        );
        assert_eq!(
            check(SPEC_ID, "1614265331", SPEC_SIGNATURE, SPEC_BODY, SPEC_TS),
            Err(VerifyError::NoMatchingSignature)
        );
        assert_eq!(
            check(SPEC_ID, "soon", SPEC_SIGNATURE, SPEC_BODY, SPEC_TS),
            Err(VerifyError::BadTimestamp)
        );
        assert_eq!(
            check(SPEC_ID, "1614265330", "v2,abc v1,!!!", SPEC_BODY, SPEC_TS),
            Err(VerifyError::NoMatchingSignature)
        );
        assert_eq!(
            verify(
                &s,
                Some(SPEC_ID),
                None,
                Some(SPEC_SIGNATURE),
                SPEC_BODY,
                SPEC_TS
            ),
            Err(VerifyError::MissingHeader(HEADER_TIMESTAMP))
        );
    }

    #[test]
    fn short_or_malformed_secrets_are_refused() {
        assert!(Secret::parse("short").is_err());
        assert!(Secret::parse("whsec_not*base64").is_err());
    }
}
