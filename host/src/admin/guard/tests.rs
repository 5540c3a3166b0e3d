use axum::http::{HeaderMap, HeaderValue, header};

use super::{Sessions, cross_origin, host_name, is_loopback, session_cookie};

fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(*name, HeaderValue::from_static(value));
    }
    map
}

#[test]
fn only_loopback_names_count_as_local() {
    for local in [
        "localhost:9090",
        "127.0.0.1:9090",
        "127.1.2.3",
        "[::1]:9090",
        "app.localhost",
        "LOCALHOST.",
    ] {
        assert!(is_loopback(host_name(local)), "{local}");
    }
    for remote in [
        "evil.example:9090",
        "10.0.0.1:9090",
        "localhost.evil.example",
        "[::2]:80",
        "",
    ] {
        assert!(!is_loopback(host_name(remote)), "{remote}");
    }
}

#[test]
fn a_request_from_another_site_is_cross_origin() {
    let host = "127.0.0.1:9090";
    assert!(cross_origin(&headers(&[("sec-fetch-site", "cross-site")]), host));
    assert!(cross_origin(&headers(&[("sec-fetch-site", "same-site")]), host));
    assert!(!cross_origin(&headers(&[("sec-fetch-site", "same-origin")]), host));
    assert!(cross_origin(&headers(&[("origin", "http://evil.example")]), host));
    assert!(cross_origin(&headers(&[("origin", "null")]), host));
    assert!(!cross_origin(&headers(&[("origin", "http://127.0.0.1:9090")]), host));
    // curl sends neither.
    assert!(!cross_origin(&HeaderMap::new(), host));
}

#[test]
fn the_session_cookie_is_found_among_others() {
    let mut map = headers(&[("cookie", "a=1; sagahost-console=abc; b=2")]);
    assert_eq!(session_cookie(&map), Some("abc"));
    map.insert(header::COOKIE, HeaderValue::from_static("sagahost-consoleX=1"));
    assert_eq!(session_cookie(&map), None);
}

#[test]
fn a_session_ends_on_sign_out_and_ids_are_not_reused() {
    let sessions = Sessions::default();
    let (id, csrf) = sessions.start();
    let (other, _) = sessions.start();
    assert_ne!(id, other);
    assert_eq!(id.len(), 64);
    assert_eq!(sessions.csrf(&id).as_deref(), Some(csrf.as_str()));
    sessions.end(&id);
    assert_eq!(sessions.csrf(&id), None);
    assert!(sessions.csrf(&other).is_some());
}
