//! HTTP Digest access authentication, client side (RFC 7616, RFC 2617):
//! SHA-256, SHA-256-sess, MD5 and MD5-sess with `qop=auth`, or the RFC 2069
//! form when the server offers no qop. This is what Hikvision (ISAPI), Dahua
//! and many other IP cameras require for their snapshot URLs; newer firmware
//! offers SHA-256 first and MD5 after it (RFC 7616 section 3.7).
//!
//! The client keeps the last challenge and counts its uses (`nc`), so each
//! request after the first is answered without a 401 round trip; a 401 with
//! a fresh challenge (a stale nonce) replaces it.

use anyhow::{anyhow, bail, Result};
use md5::{Digest as _, Md5};
use sha2::Sha256;

/// The hash a challenge asks for (RFC 7616 section 3.3). The `-sess`
/// variants hash the nonces into HA1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    Md5,
    Md5Sess,
    Sha256,
    Sha256Sess,
}

impl Algorithm {
    /// The supported algorithm `name` denotes (case-insensitive), if any.
    pub fn from_name(name: &str) -> Option<Algorithm> {
        match name.to_ascii_uppercase().as_str() {
            "MD5" => Some(Algorithm::Md5),
            "MD5-SESS" => Some(Algorithm::Md5Sess),
            "SHA-256" => Some(Algorithm::Sha256),
            "SHA-256-SESS" => Some(Algorithm::Sha256Sess),
            _ => None,
        }
    }

    /// The name as the `Authorization` header spells it.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Md5Sess => "MD5-sess",
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Sha256Sess => "SHA-256-sess",
        }
    }

    fn is_session(self) -> bool {
        matches!(self, Algorithm::Md5Sess | Algorithm::Sha256Sess)
    }

    /// `H(data)` in lowercase hex.
    fn hash(self, data: &str) -> String {
        let hex = |digest: &[u8]| digest.iter().map(|b| format!("{b:02x}")).collect();
        match self {
            Algorithm::Md5 | Algorithm::Md5Sess => hex(&Md5::digest(data.as_bytes())),
            Algorithm::Sha256 | Algorithm::Sha256Sess => hex(&Sha256::digest(data.as_bytes())),
        }
    }
}

/// One `WWW-Authenticate: Digest ...` challenge.
#[derive(Clone, Debug, PartialEq)]
pub struct Challenge {
    pub realm: String,
    pub nonce: String,
    pub opaque: Option<String>,
    pub algorithm: Algorithm,
    /// The server offered `qop=auth`.
    pub qop_auth: bool,
    /// `stale=true`: the last answer's nonce had expired, its credentials
    /// were right; answer this challenge instead.
    pub stale: bool,
}

impl Challenge {
    /// Parses one Digest challenge; errors say what the camera asked for
    /// that is not supported.
    pub fn parse(challenge: &str) -> Result<Challenge> {
        let challenge = challenge.trim();
        let (scheme, rest) = challenge
            .split_once(char::is_whitespace)
            .unwrap_or((challenge, ""));
        if !scheme.eq_ignore_ascii_case("digest") {
            bail!("the camera asks for {challenge:?}, not Digest authentication: set auth = \"basic\" if it wants Basic");
        }
        let params = parse_params(rest);
        let get = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        let algorithm_name = get("algorithm").unwrap_or_else(|| "MD5".into());
        let Some(algorithm) = Algorithm::from_name(&algorithm_name) else {
            bail!(
                "the camera asks for digest algorithm {algorithm_name}; only SHA-256, SHA-256-sess, MD5 and MD5-sess are supported"
            );
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
            bail!("the camera's digest challenge has no realm or nonce: {challenge:?}");
        };
        Ok(Challenge {
            realm,
            nonce,
            opaque: get("opaque"),
            algorithm,
            qop_auth,
            stale: get("stale").is_some_and(|s| s.eq_ignore_ascii_case("true")),
        })
    }

    /// The first challenge this client can answer, from the
    /// `WWW-Authenticate` values of one 401 in the order they came: a
    /// server lists the algorithm it prefers first (RFC 7616 section 3.7),
    /// in separate headers or comma-separated in one. The error names every
    /// Digest challenge it could not answer, or says there was none.
    pub fn pick<'a>(values: impl IntoIterator<Item = &'a str>) -> Result<Challenge> {
        let mut refused = Vec::new();
        let mut schemes = Vec::new();
        for challenge in values.into_iter().flat_map(split_challenges) {
            let scheme = challenge.split(char::is_whitespace).next().unwrap_or("");
            if !scheme.eq_ignore_ascii_case("digest") {
                schemes.push(scheme.to_string());
                continue;
            }
            match Challenge::parse(challenge) {
                Ok(c) => return Ok(c),
                Err(e) => refused.push(format!("{e:#}")),
            }
        }
        match refused.len() {
            0 if schemes.is_empty() => Err(anyhow!(
                "the camera answered 401 without a challenge: check the snapshot url"
            )),
            0 => Err(anyhow!(
                "the camera asks for {}, not Digest authentication: set auth = \"basic\" if it wants Basic",
                schemes.join(" or ")
            )),
            1 => Err(anyhow!("{}", refused[0])),
            _ => Err(anyhow!(
                "none of the camera's digest challenges can be answered: {}",
                refused.join("; ")
            )),
        }
    }
}

/// Splits one `WWW-Authenticate` value into its challenges: a new one
/// starts at each comma-separated element that begins with a scheme name
/// rather than a `name=value` parameter. Commas inside quoted strings do
/// not separate.
fn split_challenges(value: &str) -> Vec<&str> {
    let mut elements = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in value.char_indices() {
        if quoted {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                quoted = false;
            }
        } else if c == '"' {
            quoted = true;
        } else if c == ',' {
            elements.push((start, i));
            start = i + 1;
        }
    }
    elements.push((start, value.len()));

    let begins_challenge = |element: &str| {
        let word_end = element
            .find(|c: char| c.is_whitespace() || c == '=')
            .unwrap_or(element.len());
        !element[word_end..].trim_start().starts_with('=')
    };
    let mut challenges: Vec<(usize, usize)> = Vec::new();
    for (s, e) in elements {
        let element = value[s..e].trim();
        if element.is_empty() {
            continue;
        }
        match challenges.last_mut() {
            Some(last) if !begins_challenge(element) => last.1 = e,
            // Parameters before any scheme name belong to no challenge.
            None if !begins_challenge(element) => {}
            _ => challenges.push((s, e)),
        }
    }
    challenges
        .into_iter()
        .map(|(s, e)| value[s..e].trim())
        .collect()
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
    let h = |data: String| challenge.algorithm.hash(&data);
    let mut ha1 = h(format!("{username}:{}:{password}", challenge.realm));
    if challenge.algorithm.is_session() {
        ha1 = h(format!("{ha1}:{}:{cnonce}", challenge.nonce));
    }
    let ha2 = h(format!("{method}:{uri}"));
    if challenge.qop_auth {
        h(format!(
            "{ha1}:{}:{nc:08x}:{cnonce}:auth:{ha2}",
            challenge.nonce
        ))
    } else {
        h(format!("{ha1}:{}:{ha2}", challenge.nonce))
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
        challenge.algorithm.name(),
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
        assert!(c.qop_auth && !c.stale);
        assert_eq!(c.algorithm, Algorithm::Md5);
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

    /// RFC 7616 section 3.9.1: the server's two challenges and the
    /// client's published answers.
    fn rfc_7616_challenge(algorithm: &str) -> String {
        format!(
            r#"Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm={algorithm}, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS""#
        )
    }
    const RFC_7616_CNONCE: &str = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";

    /// The RFC 7616 example's response under `algorithm`.
    fn rfc_7616_response(algorithm: &str) -> String {
        let c = Challenge::parse(&rfc_7616_challenge(algorithm)).unwrap();
        let h = authorization(
            &c,
            "Mufasa",
            "Circle of Life",
            "GET",
            "/dir/index.html",
            1,
            RFC_7616_CNONCE,
        );
        let fields = parse_authorization(&h).unwrap();
        let get = |k: &str| fields.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        assert_eq!(get("algorithm").as_deref(), Some(algorithm));
        assert_eq!(get("qop").as_deref(), Some("auth"));
        assert_eq!(
            get("opaque").as_deref(),
            Some("FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS")
        );
        get("response").unwrap()
    }

    #[test]
    fn matches_the_rfc_7616_md5_example() {
        assert_eq!(rfc_7616_response("MD5"), "8ca523f5e9506fed4657c9700eebdbec");
    }

    #[test]
    fn matches_the_rfc_7616_sha_256_example() {
        assert_eq!(
            rfc_7616_response("SHA-256"),
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
    }

    #[test]
    fn session_variants_hash_the_nonces_into_ha1() {
        // No published example: these were computed with Python's hashlib
        // from RFC 7616 section 3.4.2 (A1 = H(user:realm:password):nonce:cnonce)
        // on the example's values.
        assert_eq!(
            rfc_7616_response("MD5-sess"),
            "e783283f46242139c486a698fec7211d"
        );
        assert_eq!(
            rfc_7616_response("SHA-256-sess"),
            "2fd51b3a77ad75bad6afad6003e818d767133c46d9e2749e7f5232ae1ea3efd7"
        );
    }

    #[test]
    fn the_first_challenge_that_can_be_answered_is_picked() {
        // RFC 7616 section 3.9.1: SHA-256 first, then MD5, as two headers.
        let sha256 = rfc_7616_challenge("SHA-256");
        let md5 = rfc_7616_challenge("MD5");
        let c = Challenge::pick([sha256.as_str(), md5.as_str()]).unwrap();
        assert_eq!(c.algorithm, Algorithm::Sha256);
        assert_eq!(c.realm, "http-auth@example.org");
        assert_eq!(
            c.opaque.as_deref(),
            Some("FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS")
        );
        // One header listing Basic, an unsupported algorithm and MD5: the
        // quoted commas in qop split nothing.
        let sha512 = rfc_7616_challenge("SHA-512-256");
        let listed = format!(r#"Basic realm="cam", {sha512}, {md5}"#);
        let c = Challenge::pick([listed.as_str()]).unwrap();
        assert_eq!(c.algorithm, Algorithm::Md5);
        assert_eq!(c.nonce, "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v");
        assert!(c.qop_auth);
        // MD5 first is kept first.
        let c = Challenge::pick([md5.as_str(), sha256.as_str()]).unwrap();
        assert_eq!(c.algorithm, Algorithm::Md5);
    }

    #[test]
    fn a_stale_challenge_says_so() {
        let c =
            Challenge::parse(r#"Digest realm="r", nonce="n2", qop="auth", stale=TRUE"#).unwrap();
        assert!(c.stale);
        let c = Challenge::parse(r#"Digest realm="r", nonce="n2", stale="false""#).unwrap();
        assert!(!c.stale && !c.qop_auth);
    }

    #[test]
    fn unsupported_challenges_say_what_is_wrong() {
        let e = Challenge::parse(r#"Basic realm="cam""#).unwrap_err();
        assert!(e.to_string().contains("auth = \"basic\""), "{e}");
        let e = Challenge::pick([r#"Basic realm="cam""#]).unwrap_err();
        assert!(e.to_string().contains("auth = \"basic\""), "{e}");
        let e =
            Challenge::parse(r#"Digest realm="r", nonce="n", algorithm=SHA-512-256"#).unwrap_err();
        assert!(e.to_string().contains("SHA-512-256"), "{e}");
        let e = Challenge::pick([
            r#"Digest realm="r", nonce="n", algorithm=SHA-512-256"#,
            r#"Digest realm="r", nonce="n", qop="auth-int""#,
        ])
        .unwrap_err();
        assert!(
            e.to_string().contains("SHA-512-256") && e.to_string().contains("auth-int"),
            "{e}"
        );
        assert!(Challenge::parse("Digest garbage").is_err());
        assert!(Challenge::pick([]).is_err());
    }
}
