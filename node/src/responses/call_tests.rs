//! Tests of [`parse_call`]: every call, the doubled prefix, the refusals.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use http::StatusCode;

use super::*;

fn call(method: Method, path: &str, query: Option<&str>) -> ResponsesCall {
    match parse_call(&method, path, query, Owner::unbound()) {
        Ok(Some(call)) => call,
        other => panic!("{method} {path} {query:?}: {other:?}"),
    }
}

fn refused(method: Method, path: &str, query: Option<&str>) -> ResponsesError {
    match parse_call(&method, path, query, Owner::unbound()) {
        Err(e) => e,
        other => panic!("{method} {path} {query:?} passed: {other:?}"),
    }
}

fn eu(id: &str) -> StoredResponse {
    StoredResponse {
        upstream: "eu".into(),
        id: id.into(),
    }
}

#[test]
fn every_call_is_parsed_under_both_prefixes() {
    for prefix in ["/v1/responses", "/v1/v1/responses"] {
        assert_eq!(call(Method::POST, prefix, None), ResponsesCall::Create);
        let c = call(Method::POST, prefix, None);
        assert_eq!(
            (c.upstream(), c.upstream_path()),
            (None, "/responses".into())
        );

        let one = format!("{prefix}/eu~resp_1");
        let c = call(Method::GET, &one, None);
        assert_eq!(
            c,
            ResponsesCall::Get {
                response: eu("resp_1"),
                query: String::new(),
                stream: false
            }
        );
        assert_eq!(c.upstream(), Some("eu"));
        assert_eq!(c.upstream_path(), "/responses/resp_1");
        assert!(!c.streams());

        let c = call(Method::DELETE, &one, None);
        assert_eq!(c, ResponsesCall::Delete(eu("resp_1")));
        assert_eq!(c.upstream_path(), "/responses/resp_1");

        let c = call(Method::POST, &format!("{one}/cancel"), None);
        assert_eq!(c, ResponsesCall::Cancel(eu("resp_1")));
        assert_eq!(c.upstream_path(), "/responses/resp_1/cancel");

        let c = call(Method::GET, &format!("{one}/input_items"), None);
        assert_eq!(
            c,
            ResponsesCall::InputItems {
                response: eu("resp_1"),
                query: String::new()
            }
        );
        assert_eq!(c.upstream_path(), "/responses/resp_1/input_items");
    }
}

#[test]
fn a_trailing_slash_is_forgiven() {
    assert_eq!(
        call(Method::POST, "/v1/responses/", None),
        ResponsesCall::Create
    );
    let c = call(Method::POST, "/v1/responses/eu~r/cancel/", None);
    assert_eq!(c, ResponsesCall::Cancel(eu("r")));
}

#[test]
fn other_paths_are_not_responses_calls() {
    for path in [
        "/v1/chat/completions",
        "/v1/responsesX",
        "/v1/responses_x/1",
        "/v2/responses",
        "/responses",
        "/v1/v1/v1/responses",
    ] {
        assert_eq!(
            parse_call(&Method::POST, path, None, Owner::unbound()),
            Ok(None),
            "{path}"
        );
    }
}

#[test]
fn unknown_paths_under_responses_are_404() {
    for path in [
        "/v1/responses//cancel",
        "/v1/responses/eu~r//cancel",
        "/v1/responses/eu~r/items",
        "/v1/responses/eu~r/cancel/now",
        "/v1/responses/eu~r/input_items/x",
        "/v1/v1/responses/a/b/c",
    ] {
        let e = refused(Method::GET, path, None);
        assert_eq!(e.status(), StatusCode::NOT_FOUND, "{path}: {e}");
    }
}

#[test]
fn wrong_methods_are_405_naming_the_right_one() {
    for (method, path, allowed) in [
        (Method::GET, "/v1/responses", "POST"),
        (Method::PUT, "/v1/responses/eu~r", "GET or DELETE"),
        (Method::POST, "/v1/responses/eu~r", "GET or DELETE"),
        (Method::GET, "/v1/responses/eu~r/cancel", "POST"),
        (Method::POST, "/v1/responses/eu~r/input_items", "GET"),
    ] {
        let e = refused(method.clone(), path, None);
        assert_eq!(
            e.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        assert!(e.to_string().contains(allowed), "{e}");
    }
}

#[test]
fn hostile_path_ids_are_400() {
    let long = format!("/v1/responses/eu~{}", "a".repeat(10 * 1024));
    for path in [
        "/v1/responses/resp_1",
        "/v1/responses/eu~..",
        "/v1/responses/eu~.",
        "/v1/responses/eu~..%2Fadmin",
        "/v1/responses/eu~%2E%2E",
        "/v1/responses/eu~resp%2F1",
        "/v1/responses/eu~resp%3Fx",
        "/v1/responses/eu~resp%23x",
        "/v1/responses/eu~r%C3%A9sp",
        "/v1/responses/eu~résp",
        "/v1/responses/~resp",
        "/v1/responses/eu~",
        "/v1/responses/eu~a~b",
        "/v1/responses/eu%7E%7Eb",
        "/v1/responses/e%75~resp",
        &long,
    ] {
        let e = refused(Method::GET, path, None);
        assert_eq!(e.status(), StatusCode::BAD_REQUEST, "{path}: {e}");
        assert_eq!(e.param(), Some("response_id"), "{path}");
    }
}

#[test]
fn an_encoded_separator_is_accepted() {
    let c = call(Method::GET, "/v1/responses/eu%7Eresp_1", None);
    assert_eq!(c.upstream(), Some("eu"));
    assert_eq!(c.upstream_path(), "/responses/resp_1");
}

#[test]
fn known_input_items_parameters_are_passed_on() {
    let c = call(
        Method::GET,
        "/v1/responses/eu~r/input_items",
        Some(
            "after=msg_1&limit=20&order=asc&include%5B%5D=message.input_image.image_url&include[]=file_search_call.results",
        ),
    );
    assert_eq!(
        c.upstream_path(),
        "/responses/r/input_items?after=msg_1&limit=20&order=asc&include%5B%5D=message.input_image.image_url&include%5B%5D=file_search_call.results"
    );
    let c = call(Method::GET, "/v1/responses/eu~r/input_items", Some(""));
    assert_eq!(c.upstream_path(), "/responses/r/input_items");
}

#[test]
fn get_may_ask_for_a_stream() {
    let c = call(
        Method::GET,
        "/v1/responses/eu~r",
        Some("stream=true&starting_after=12&include_obfuscation=false"),
    );
    assert!(c.streams());
    assert_eq!(
        c.upstream_path(),
        "/responses/r?stream=true&starting_after=12&include_obfuscation=false"
    );
}

#[test]
fn bad_queries_are_400_naming_the_parameter() {
    let items = "/v1/responses/eu~r/input_items";
    for (query, param) in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=-1", "limit"),
        ("limit=%2B5", "limit"),
        ("limit=ten", "limit"),
        ("limit=1&limit=2", "limit"),
        ("order=random", "order"),
        ("order=asc%26x%3D1", "order"),
        ("after=../x", "after"),
        ("after=msg%2F1", "after"),
        ("after=", "after"),
        ("after", "after"),
        ("include[]=a%26b", "include[]"),
        ("include[]=", "include[]"),
        ("evil=1", "evil"),
        ("limit%00=1", "limit\0"),
        ("stream=true", "stream"),
    ] {
        let e = refused(Method::GET, items, Some(query));
        assert_eq!(e.status(), StatusCode::BAD_REQUEST, "{query}");
        match &e {
            ResponsesError::BadQuery { param: got, .. } => assert_eq!(got, param, "{query}"),
            other => panic!("{query}: {other:?}"),
        }
    }
    let many = vec!["include[]=a"; 17].join("&");
    assert!(parse_call(&Method::GET, items, Some(&many), Owner::unbound()).is_err());
    for query in [
        "stream=yes",
        "starting_after=-1",
        "after=msg_1",
        "include[]=a b",
    ] {
        let e = refused(Method::GET, "/v1/responses/eu~r", Some(query));
        assert_eq!(e.status(), StatusCode::BAD_REQUEST, "{query}");
    }
}

#[test]
fn calls_without_parameters_refuse_a_query() {
    for (method, path) in [
        (Method::POST, "/v1/responses"),
        (Method::DELETE, "/v1/responses/eu~r"),
        (Method::POST, "/v1/responses/eu~r/cancel"),
    ] {
        assert!(parse_call(&method, path, Some(""), Owner::unbound()).is_ok());
        let e = refused(method.clone(), path, Some("x=1"));
        assert_eq!(e.status(), StatusCode::BAD_REQUEST, "{method} {path}");
    }
}

#[test]
fn percent_decoding_is_strict() {
    assert_eq!(decode("a%5Bb%5d"), "a[b]");
    assert_eq!(decode("%+1%zz%4"), "%+1%zz%4");
    assert_eq!(decode("%FF"), "\u{fffd}");
}

proptest::proptest! {
    #[test]
    fn arbitrary_paths_and_queries_never_panic(
        tail in "[a-z0-9~%/._?&=\\[\\]-]{0,40}",
        query in proptest::option::of("[a-z0-9~%/._?&=\\[\\]+-]{0,40}"),
    ) {
        for method in [Method::GET, Method::POST, Method::DELETE] {
            let path = format!("/v1/responses{tail}");
            if let Ok(Some(call)) = parse_call(&method, &path, query.as_deref(), Owner::unbound()) {
                let upstream = call.upstream_path();
                let path_part = upstream.split('?').next().unwrap_or_default();
                proptest::prop_assert!(!path_part.contains(".."));
                proptest::prop_assert!(!path_part.contains('%'));
                proptest::prop_assert!(!upstream.contains('#'));
            }
        }
    }
}
