//! The server side of HTTP Digest (RFC 2617, as Atlas's legacy API keys use it), written for the
//! simulator on its own: a fake that shared the client's parser could not catch the client's
//! bugs (issue 8). It parses the `auth-param` list of RFC 7235 (`token = token / quoted-string`,
//! comma separated) byte by byte and checks `response` for `qop=auth` and for no `qop`.
//! Must not: import the client (`atlas_archiver_engine::atlas`).

use md5::{Digest as _, Md5};

/// The parameters of a `Digest` credentials header, names lower-cased; `None` when the header
/// is not a Digest one or breaks the grammar (an unterminated quote, a parameter without `=`).
pub(super) fn params(header: &str) -> Option<Vec<(String, String)>> {
    let rest = header.trim_start();
    let scheme_end = rest
        .find(|c: char| c.is_ascii_whitespace())
        .unwrap_or(rest.len());
    if !rest[..scheme_end].eq_ignore_ascii_case("digest") {
        return None;
    }
    let bytes = &rest.as_bytes()[scheme_end..];
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        while i < bytes.len() && (bytes[i] == b',' || bytes[i].is_ascii_whitespace()) {
            i += 1;
        }
        if i == bytes.len() {
            return Some(out);
        }
        let name_start = i;
        while i < bytes.len() && bytes[i] != b'=' && !bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let name = std::str::from_utf8(&bytes[name_start..i])
            .ok()?
            .to_ascii_lowercase();
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if bytes.get(i) != Some(&b'=') || name.is_empty() {
            return None;
        }
        i += 1;
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let mut value = Vec::new();
        if bytes.get(i) == Some(&b'"') {
            i += 1;
            loop {
                match bytes.get(i)? {
                    b'"' => break,
                    b'\\' => {
                        i += 1;
                        value.push(*bytes.get(i)?);
                    }
                    b => value.push(*b),
                }
                i += 1;
            }
            i += 1;
        } else {
            while i < bytes.len() && bytes[i] != b',' && !bytes[i].is_ascii_whitespace() {
                value.push(bytes[i]);
                i += 1;
            }
        }
        out.push((name, String::from_utf8(value).ok()?));
    }
}

/// One parameter's value.
pub(super) fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// Whether the credentials prove the password of `username` for this method.
pub(super) fn verifies(
    params: &[(String, String)],
    method: &str,
    username: &str,
    password: &str,
) -> bool {
    let get = |name| param(params, name);
    let (Some(user), Some(realm), Some(nonce), Some(uri), Some(response)) = (
        get("username"),
        get("realm"),
        get("nonce"),
        get("uri"),
        get("response"),
    ) else {
        return false;
    };
    if user != username {
        return false;
    }
    let ha1 = md5_of(&[user, realm, password]);
    let ha2 = md5_of(&[method, uri]);
    let expected = match get("qop") {
        Some("auth") => match (get("nc"), get("cnonce")) {
            (Some(nc), Some(cnonce)) => md5_of(&[&ha1, nonce, nc, cnonce, "auth", &ha2]),
            _ => return false,
        },
        Some(_) => return false,
        None => md5_of(&[&ha1, nonce, &ha2]),
    };
    expected.eq_ignore_ascii_case(response)
}

/// Lower-case hex MD5 of the fields joined by `:`.
fn md5_of(fields: &[&str]) -> String {
    let mut hasher = Md5::new();
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            hasher.update(b":");
        }
        hasher.update(field.as_bytes());
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{param, params, verifies};

    /// RFC 2617, section 3.5: the example request, checked with the password "Circle Of Life".
    #[test]
    fn rfc_2617_example_verifies() {
        let header = r#"Digest username="Mufasa", realm="testrealm@host.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="/dir/index.html", qop=auth, nc=00000001, cnonce="0a4f113b", response="6629fae49393a05397450978507c4ef1", opaque="5ccc069c403ebaf9f0171e9517f40e41""#;
        let p = params(header).unwrap();
        assert_eq!(param(&p, "nc"), Some("00000001"));
        assert!(verifies(&p, "GET", "Mufasa", "Circle Of Life"));
        assert!(!verifies(&p, "GET", "Mufasa", "wrong"));
        assert!(!verifies(&p, "POST", "Mufasa", "Circle Of Life"));
    }

    #[test]
    fn malformed_headers_are_refused() {
        assert!(params("Basic abc").is_none());
        assert!(params(r#"Digest username="unterminated"#).is_none());
        assert!(params("Digest username").is_none());
        assert_eq!(
            params(r#"Digest a="x\"y", b=z"#).unwrap(),
            [("a".into(), "x\"y".into()), ("b".into(), "z".into())]
        );
    }
}
