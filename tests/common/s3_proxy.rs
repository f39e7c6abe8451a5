//! A fault-injecting proxy in front of the real S3 server, for failures the server itself cannot
//! be made to produce: 500 and SlowDown on UploadPart and CompleteMultipartUpload, a Complete that
//! answers 200 with an error body, a Complete whose response is lost (so the retry meets
//! NoSuchUpload), a store that refuses checksum headers, and ranged GETs that fail, are cut
//! short or are never answered (for `restore`). Requests are forwarded unchanged
//! (Host included, so SigV4 signatures still verify).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, Method, StatusCode};
use axum::response::{IntoResponse, Response};

/// What to break, counted down as requests consume it.
#[derive(Debug, Clone, Default)]
pub struct StoreFaults {
    /// UploadPart answers 500 InternalError this many times.
    pub upload_part_500: u32,
    /// UploadPart answers 503 SlowDown this many times.
    pub upload_part_slowdown: u32,
    /// CompleteMultipartUpload answers 500 InternalError this many times.
    pub complete_500: u32,
    /// CompleteMultipartUpload answers 503 SlowDown this many times.
    pub complete_slowdown: u32,
    /// CompleteMultipartUpload answers 200 with an `<Error>` body this many times.
    pub complete_200_error: u32,
    /// CompleteMultipartUpload is forwarded, but the client gets a 500 instead of the answer.
    pub complete_lost_response: u32,
    /// Any request with checksum headers gets 400 InvalidRequest.
    pub reject_checksums: bool,
    /// UploadPart is read in full and never answered, the connection held open (a black hole).
    pub black_hole_upload_part: u32,
    /// CompleteMultipartUpload is read and never answered.
    pub black_hole_complete: u32,
    /// HeadObject is read and never answered.
    pub black_hole_head: u32,
    /// UploadPart answers 400 BadDigest (the store found the part's checksum wrong).
    pub upload_part_bad_digest: u32,
    /// AbortMultipartUpload of an archive (a `.tar.gz` key) answers 500 InternalError this
    /// many times.
    pub abort_500: u32,
    /// HeadObject answers 404 this many times once a CompleteMultipartUpload has been
    /// forwarded (a store whose metadata lags behind Complete, audit S6).
    pub head_404_after_complete: u32,
    /// A ranged GetObject answers 500 InternalError this many times.
    pub ranged_get_500: u32,
    /// A ranged GetObject is forwarded, and its body cut after half (the connection dropped).
    pub ranged_get_cut: u32,
    /// A ranged GetObject is read and never answered.
    pub black_hole_ranged_get: u32,
    /// ListParts answers carry each ETag bare and upper-case (UploadPart's stay quoted):
    /// stores differ in how they write one ETag in the two calls (audit S5).
    pub list_parts_bare_etags: bool,
    /// Set by the proxy when it forwarded a CompleteMultipartUpload.
    pub completed: bool,
}

/// Counters of what the proxy did.
#[derive(Debug, Clone, Default)]
pub struct ProxySeen {
    /// Faults injected.
    pub injected: u32,
    /// Requests forwarded.
    pub forwarded: u32,
    /// UploadPart requests that carried an `x-amz-checksum-*` header.
    pub parts_with_checksum: u32,
    /// UploadPart requests without one.
    pub parts_without_checksum: u32,
}

#[derive(Clone)]
struct ProxyState {
    upstream: String,
    client: reqwest::Client,
    faults: Arc<Mutex<StoreFaults>>,
    seen: Arc<Mutex<ProxySeen>>,
}

/// A running proxy.
pub struct S3Proxy {
    pub endpoint: String,
    faults: Arc<Mutex<StoreFaults>>,
    seen: Arc<Mutex<ProxySeen>>,
}

impl S3Proxy {
    pub async fn start(upstream: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let faults = Arc::new(Mutex::new(StoreFaults::default()));
        let seen = Arc::new(Mutex::new(ProxySeen::default()));
        let state = ProxyState {
            upstream: upstream.trim_end_matches('/').to_owned(),
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            faults: Arc::clone(&faults),
            seen: Arc::clone(&seen),
        };
        let app = axum::Router::new().fallback(forward).with_state(state);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            endpoint: format!("http://{addr}"),
            faults,
            seen,
        }
    }

    pub fn set(&self, f: impl FnOnce(&mut StoreFaults)) {
        f(&mut self
            .faults
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner));
    }

    pub fn seen(&self) -> ProxySeen {
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

fn s3_error(status: StatusCode, code: &str) -> Response {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>injected by the test proxy</Message><RequestId>proxy</RequestId></Error>"
    );
    (status, [("content-type", "application/xml")], body).into_response()
}

fn take(counter: &mut u32) -> bool {
    if *counter > 0 {
        *counter -= 1;
        true
    } else {
        false
    }
}

/// A ListParts body with each `<ETag>` unquoted and upper-cased.
fn bare_etags_in(xml: &str) -> String {
    let mut out = String::with_capacity(xml.len());
    let mut rest = xml;
    while let Some(start) = rest.find("<ETag>") {
        let (before, after) = rest.split_at(start + "<ETag>".len());
        out.push_str(before);
        let end = after.find("</ETag>").unwrap_or(after.len());
        let etag = after[..end].replace("&quot;", "").replace('"', "");
        out.push_str(&etag.to_uppercase());
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

async fn forward(State(state): State<ProxyState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let query = parts.uri.query().unwrap_or("");
    let is_upload_part =
        parts.method == Method::PUT && query.contains("partNumber=") && query.contains("uploadId=");
    let is_complete = parts.method == Method::POST && query.contains("uploadId=");
    let is_abort = parts.method == Method::DELETE && query.contains("uploadId=");
    let is_head = parts.method == Method::HEAD;
    let is_list_parts = parts.method == Method::GET && query.contains("uploadId=");
    let is_ranged_get = parts.method == Method::GET && parts.headers.contains_key("range");
    let has_checksum = parts.headers.keys().any(|k| {
        k.as_str().starts_with("x-amz-checksum-") || k.as_str() == "x-amz-sdk-checksum-algorithm"
    });
    if is_upload_part {
        let mut seen = state
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if has_checksum {
            seen.parts_with_checksum += 1;
        } else {
            seen.parts_without_checksum += 1;
        }
    }
    let mut lose_response = false;
    let mut cut_body = false;
    let mut bare_etags = false;
    let black_hole = {
        let mut f = state
            .faults
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (is_upload_part && take(&mut f.black_hole_upload_part))
            || (is_complete && take(&mut f.black_hole_complete))
            || (is_head && take(&mut f.black_hole_head))
            || (is_ranged_get && take(&mut f.black_hole_ranged_get))
    };
    if black_hole {
        state
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .injected += 1;
        // Read what was sent, then never answer and never close.
        let _ = to_bytes(body, 64 << 20).await;
        return std::future::pending::<Response>().await;
    }
    {
        let mut f = state
            .faults
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let injected = if f.reject_checksums && has_checksum {
            Some(s3_error(StatusCode::BAD_REQUEST, "InvalidRequest"))
        } else if is_upload_part && take(&mut f.upload_part_bad_digest) {
            Some(s3_error(StatusCode::BAD_REQUEST, "BadDigest"))
        } else if (is_abort && parts.uri.path().ends_with(".tar.gz") && take(&mut f.abort_500))
            || (is_upload_part && take(&mut f.upload_part_500))
            || (is_ranged_get && take(&mut f.ranged_get_500))
        {
            Some(s3_error(StatusCode::INTERNAL_SERVER_ERROR, "InternalError"))
        } else if is_upload_part && take(&mut f.upload_part_slowdown) {
            Some(s3_error(StatusCode::SERVICE_UNAVAILABLE, "SlowDown"))
        } else if is_complete && take(&mut f.complete_500) {
            Some(s3_error(StatusCode::INTERNAL_SERVER_ERROR, "InternalError"))
        } else if is_complete && take(&mut f.complete_slowdown) {
            Some(s3_error(StatusCode::SERVICE_UNAVAILABLE, "SlowDown"))
        } else if is_complete && take(&mut f.complete_200_error) {
            Some(s3_error(StatusCode::OK, "InternalError"))
        } else if is_head && f.completed && take(&mut f.head_404_after_complete) {
            Some(StatusCode::NOT_FOUND.into_response())
        } else {
            f.completed |= is_complete;
            lose_response = is_complete && take(&mut f.complete_lost_response);
            cut_body = is_ranged_get && take(&mut f.ranged_get_cut);
            bare_etags = is_list_parts && f.list_parts_bare_etags;
            None
        };
        if let Some(r) = injected {
            state
                .seen
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .injected += 1;
            return r;
        }
    }
    let Ok(bytes) = to_bytes(body, 64 << 20).await else {
        return (StatusCode::BAD_REQUEST, "body too large for the test proxy").into_response();
    };
    let url = format!(
        "{}{}",
        state.upstream,
        parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
    );
    let mut headers = HeaderMap::new();
    for (k, v) in &parts.headers {
        if !matches!(
            k.as_str(),
            "content-length" | "transfer-encoding" | "connection"
        ) {
            headers.append(k.clone(), v.clone());
        }
    }
    let result = state
        .client
        .request(parts.method.clone(), url)
        .headers(headers)
        .body(bytes)
        .send()
        .await;
    state
        .seen
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .forwarded += 1;
    let upstream = match result {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    if lose_response {
        state
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .injected += 1;
        return s3_error(StatusCode::INTERNAL_SERVER_ERROR, "InternalError");
    }
    let status = upstream.status();
    let mut out = HeaderMap::new();
    for (k, v) in upstream.headers() {
        // A HEAD answer's Content-Length is the object's size: keep it; for bodies axum sets it.
        let hop = matches!(k.as_str(), "transfer-encoding" | "connection")
            || (k.as_str() == "content-length" && !is_head);
        if !hop {
            out.append(
                HeaderName::from_bytes(k.as_str().as_bytes()).unwrap(),
                v.clone(),
            );
        }
    }
    let mut body = upstream.bytes().await.unwrap_or_default();
    if bare_etags {
        state
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .injected += 1;
        body = bare_etags_in(&String::from_utf8_lossy(&body)).into();
    }
    let body = if cut_body {
        state
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .injected += 1;
        // Half the body, then the connection breaks: the client sees a body cut short.
        let half = body.slice(..body.len() / 2);
        let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = vec![
            Ok(half),
            Err(std::io::Error::other(
                "connection dropped by the test proxy",
            )),
        ];
        Body::from_stream(futures_util::stream::iter(chunks))
    } else {
        Body::from(body)
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = out;
    response
}
