//! HTTP Digest access authentication, client side (RFC 7616, RFC 2617): MD5
//! and MD5-sess with `qop=auth`, or the RFC 2069 form when the server offers
//! no qop. This is what Hikvision (ISAPI), Dahua and many other IP cameras
//! require for their snapshot URLs.
//!
//! The client keeps the last challenge and counts its uses (`nc`), so each
//! request after the first is answered without a 401 round trip; a 401 with
//! a fresh challenge (a stale nonce) replaces it.

use anyhow::{bail, Result};
use md5::{Digest as _, Md5};

/// One `WWW-Authenticate: Digest ...` challenge.
#[derive(Clone, Debug, PartialEq)]
pub struct Challenge {
    pub realm: String,
    pub nonce: String,
    pub opaque: Option<String>,
    /// `true` for MD5-sess.
    pub session: bool,
    /// The server offered `qop=auth`.
    pub qop_auth: bool,
}

impl Challenge {
    /// Parses a `WWW-Authenticate` value; errors say what the camera asked
    /// for that is not supported.
    pub fn parse(header: &str) -> Result<Challenge> {
        let header = header.trim();
        let Some(rest) = header
            .get(..7)
            .filter(|s| s.eq_ignore_ascii_case("digest "))
            .map(|_| &header[7..])
        else {
            bail!("the camera asks for {header:?}, not Digest authentication: set auth = \"basic\" if it wants Basic");
        };
        let params = parse_params(rest);
        let get = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        let algorithm = get("algorithm").unwrap_or_else(|| "MD5".into());
        let session = match algorithm.to_ascii_uppercase().as_str() {
            "MD5" => false,
            "MD5-SESS" => true,
            other => bail!(
                "the camera asks for digest algorithm {other}; only MD5 and MD5-sess are supported"
            ),
        };
        let qop = get("qop");
        let qop_auth = qop
            .as_deref()
            .is_some_and(|q| q.split(',').any(|q| q.trim().eq_ignore_ascii_case("auth")));
        if qop.is_some() && !qop_auth {
            bail!(
                "the camera offers digest qop={:?}; only qop=auth is supported",
                qop.unwrap_or_default()
            );
        }
        let (Some(realm), Some(nonce)) = (get("realm"), get("nonce")) else {
            bail!("the camera's digest challenge has no realm or nonce: {header:?}");
        };
        Ok(Challenge {
            realm,
            nonce,
            opaque: get("opaque"),
            session,
            qop_auth,
        })
    }
}

/// `name=value` and `name="quoted value"` pairs, comma separated.
fn parse_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s;
    loop {
        rest = rest.trim_start_matches(|c: char| c == ',' || c.is_whitespace());
        let Some(eq) = rest.find('=') else { break };
        let name = rest[..eq].trim().to_string();
        rest = rest[eq + 1..].trim_start();
        let value;
        if let Some(quoted) = rest.strip_prefix('"') {
            let mut v = String::new();
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, next)) = chars.next() {
                            v.push(next);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => v.push(c),
                }
            }
            value = v;
            rest = &quoted[end.min(quoted.len())..];
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            value = rest[..end].trim().to_string();
            rest = &rest[end..];
        }
        out.push((name, value));
    }
    out
}

fn md5_hex(s: &str) -> String {
    let digest = Md5::digest(s.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The `response` value (RFC 7616 section 3.4.1).
pub fn response(
    challenge: &Challenge,
    username: &str,
    password: &str,
    method: &str,
    uri: &str,
    nc: u32,
    cnonce: &str,
) -> String {
    let mut ha1 = md5_hex(&format!("{username}:{}:{password}", challenge.realm));
    if challenge.session {
        ha1 = md5_hex(&format!("{ha1}:{}:{cnonce}", challenge.nonce));
    }
    let ha2 = md5_hex(&format!("{method}:{uri}"));
    if challenge.qop_auth {
        md5_hex(&format!(
            "{ha1}:{}:{nc:08x}:{cnonce}:auth:{ha2}",
            challenge.nonce
        ))
    } else {
        md5_hex(&format!("{ha1}:{}:{ha2}", challenge.nonce))
    }
}

/// The `Authorization` header value for request number `nc` under `challenge`.
pub fn authorization(
    challenge: &Challenge,
    username: &str,
    password: &str,
    method: &str,
    uri: &str,
    nc: u32,
    cnonce: &str,
) -> String {
    let response = response(challenge, username, password, method, uri, nc, cnonce);
    let quote = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
    let mut h = format!(
        "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{}\", algorithm={}, response=\"{response}\"",
        quote(username),
        quote(&challenge.realm),
        quote(&challenge.nonce),
        quote(uri),
        if challenge.session { "MD5-sess" } else { "MD5" },
    );
    if challenge.qop_auth {
        h.push_str(&format!(", qop=auth, nc={nc:08x}, cnonce=\"{cnonce}\""));
    }
    if let Some(opaque) = &challenge.opaque {
        h.push_str(&format!(", opaque=\"{}\"", quote(opaque)));
    }
    h
}

/// The field values of an `Authorization: Digest ...` header (for servers,
/// such as the tests' fake camera).
pub fn parse_authorization(header: &str) -> Option<Vec<(String, String)>> {
    let rest = header.trim().strip_prefix("Digest ")?;
    Some(parse_params(rest))
}

/// A fresh client nonce.
pub fn cnonce() -> String {
    format!("{:016x}", fastrand::u64(..))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_rfc_2617_example() {
        let c = Challenge::parse(
            r#"Digest realm="testrealm@host.com", qop="auth,auth-int", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41""#,
        )
        .unwrap();
        assert!(c.qop_auth && !c.session);
        assert_eq!(
            c.opaque.as_deref(),
            Some("5ccc069c403ebaf9f0171e9517f40e41")
        );
        let r = response(
            &c,
            "Mufasa",
            "Circle Of Life",
            "GET",
            "/dir/index.html",
            1,
            "0a4f113b",
        );
        assert_eq!(r, "6629fae49393a05397450978507c4ef1");
        let h = authorization(
            &c,
            "Mufasa",
            "Circle Of Life",
            "GET",
            "/dir/index.html",
            1,
            "0a4f113b",
        );
        let fields = parse_authorization(&h).unwrap();
        let get = |k: &str| fields.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("response"), Some("6629fae49393a05397450978507c4ef1"));
        assert_eq!(get("nc"), Some("00000001"));
        assert_eq!(get("uri"), Some("/dir/index.html"));
    }

    #[test]
    fn unsupported_challenges_say_what_is_wrong() {
        let e = Challenge::parse(r#"Basic realm="cam""#).unwrap_err();
        assert!(e.to_string().contains("auth = \"basic\""), "{e}");
        let e = Challenge::parse(r#"Digest realm="r", nonce="n", algorithm=SHA-256"#).unwrap_err();
        assert!(e.to_string().contains("SHA-256"), "{e}");
        assert!(Challenge::parse("Digest garbage").is_err());
    }
}
