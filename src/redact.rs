//! URLs as messages show them: camera and webhook addresses reach the
//! journal, `/healthz`, `/metrics`, `camera.offline` webhooks and the
//! output of `deliver` and `test-alert`, and either kind can carry a
//! secret (a camera's `admin:pass@`, Reolink's `&password=`, a receiver's
//! `?token=`, Azure's `?code=`). The URL itself stays as configured wherever
//! it is used. A token in the path (Slack's and Discord's webhooks) cannot be
//! told from a route and is shown: give such a receiver a path without one,
//! or keep `/metrics` on loopback (its default).

/// `url` without a user name and password, and with the value of every query
/// parameter that names a secret replaced by `***`.
pub fn shown_url(url: &reqwest::Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    if url.query().is_some() {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| {
                let lower = k.to_ascii_lowercase();
                let secret = [
                    "pass", "pwd", "token", "key", "secret", "auth", "sig", "code",
                ]
                .iter()
                .any(|s| lower.contains(s));
                (
                    k.into_owned(),
                    if secret { "***".into() } else { v.into_owned() },
                )
            })
            .collect();
        shown.query_pairs_mut().clear().extend_pairs(pairs);
    }
    shown.to_string()
}

/// [`shown_url`] of a URL held as text; one that does not parse (config
/// checks make that rare) is shown as `what`, never as its text.
pub fn shown_url_text(url: &str, what: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => shown_url(&u),
        Err(_) => what.to_string(),
    }
}

/// A webhook's URL as messages show it ([`shown_url_text`]).
pub fn shown_webhook(url: &str) -> String {
    shown_url_text(url, "a webhook url")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_in_a_message_shows_no_secret() {
        let url = reqwest::Url::parse(
            "http://admin:S3cret@10.0.0.8/cgi-bin/api.cgi?cmd=Snap&channel=0&user=admin&password=S3cretPw&token=abc",
        )
        .unwrap();
        let shown = shown_url(&url);
        assert!(
            !shown.contains("S3cret") && !shown.contains("abc"),
            "{shown}"
        );
        assert_eq!(
            shown,
            "http://10.0.0.8/cgi-bin/api.cgi?cmd=Snap&channel=0&user=admin&password=***&token=***"
        );
        let plain =
            reqwest::Url::parse("http://10.0.0.8/ISAPI/Streaming/channels/101/picture").unwrap();
        assert_eq!(shown_url(&plain), plain.as_str());
    }

    #[test]
    fn a_webhook_token_is_hidden_and_text_that_does_not_parse_is_not_shown() {
        assert_eq!(
            shown_url_text(
                "https://cr.example/hook?token=T0k&site=hadong",
                "the webhook"
            ),
            "https://cr.example/hook?token=***&site=hadong"
        );
        assert_eq!(
            shown_url_text(
                "https://f.azurewebsites.net/api/hook?code=K3y",
                "the webhook"
            ),
            "https://f.azurewebsites.net/api/hook?code=***"
        );
        assert_eq!(
            shown_url_text("not a url s3cret", "the webhook"),
            "the webhook"
        );
    }
}
