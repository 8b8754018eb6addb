//! The browser side of `openshell gateway login` (docs/cli.md, "How the
//! CLI authenticates"). The CLI listens on a loopback port and opens
//! `/auth/connect?callback_port=P&code=C`; this page shows the code, takes
//! the user token an admin issued (`openshell-gateway --issue-token`), and
//! hands it back to the CLI by redirecting the browser's POST (307: the
//! form is sent again, so the token never appears in a URL or the
//! browser's history) to `http://127.0.0.1:P/callback`. Behind a reverse
//! proxy that signs users in, this is the page the proxy protects.
//!
//! The redirect only ever goes to the loopback address, so the page cannot
//! be used to send a token anywhere else, and only a genuine, unexpired
//! token is handed over.

use axum::extract::{Form, Query};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;

use crate::auth::Tokens;

/// What the CLI puts in the URL.
#[derive(Debug, Deserialize)]
pub struct Connect {
    callback_port: u16,
    code: String,
}

/// What the page's form sends.
#[derive(Debug, Deserialize)]
pub struct Submit {
    callback_port: u16,
    code: String,
    token: String,
}

/// A confirmation code: 4–32 of `A-Z 0-9 -` (the CLI makes `XXXX-XXXX`).
fn valid_code(code: &str) -> bool {
    (4..=32).contains(&code.len())
        && code
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-')
}

fn bad_request(message: &str) -> Response {
    (StatusCode::BAD_REQUEST, format!("{message}\n")).into_response()
}

/// `GET /auth/connect`: the form.
pub async fn page(Query(connect): Query<Connect>) -> Response {
    if connect.callback_port == 0 || !valid_code(&connect.code) {
        return bad_request("callback_port and code (A-Z 0-9 -) are required");
    }
    Html(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>OpenShell login</title></head>\
<body><h1>Log in to this OpenShell gateway</h1>\
<p>Check that your terminal shows the confirmation code <b>{code}</b>.</p>\
<form method=\"post\" action=\"/auth/connect\">\
<input type=\"hidden\" name=\"callback_port\" value=\"{port}\">\
<input type=\"hidden\" name=\"code\" value=\"{code}\">\
<label>Your user token: <input type=\"password\" name=\"token\" autocomplete=\"off\"></label>\
<button type=\"submit\">Log in</button></form></body></html>",
        code = connect.code,
        port = connect.callback_port
    ))
    .into_response()
}

/// `POST /auth/connect`: a genuine token goes back to the CLI on loopback
/// (the form, posted again by the browser).
pub async fn submit(tokens: Tokens, Form(submit): Form<Submit>) -> Response {
    if submit.callback_port == 0 || !valid_code(&submit.code) {
        return bad_request("callback_port and code (A-Z 0-9 -) are required");
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let token = submit.token.trim();
    let Some(caller) = tokens.verify_user(token, now) else {
        return (
            StatusCode::UNAUTHORIZED,
            Html("<p>That token is not valid for this gateway, or it has expired. Ask an admin for a new one.</p>"),
        )
            .into_response();
    };
    tracing::info!(subject = %caller.subject, "browser login handed a token to the CLI");
    let location = format!("http://127.0.0.1:{}/callback", submit.callback_port);
    (
        StatusCode::TEMPORARY_REDIRECT,
        [
            (header::LOCATION, location),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_plain() {
        assert!(valid_code("AB12-CD34"));
        for bad in ["", "ab12", "A", "AB12&x=1", "AB12 CD34", &"A".repeat(33)] {
            assert!(!valid_code(bad), "{bad:?}");
        }
    }
}
