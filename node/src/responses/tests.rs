//! Tests of tagging: ids, request bodies, plain answers, and the errors.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;

/// An id as a node without the response-id secret hands it out.
fn tag(upstream: &str, id: &str) -> String {
    Owner::unbound().tag(upstream, id)
}

/// An id as a node without the response-id secret reads it.
fn untag(id: &str) -> Option<(&str, &str)> {
    Owner::unbound().untag(id).ok()
}

#[test]
fn tags_round_trip() {
    let tagged = tag("openai-eu", "resp_67ccd2bed1ec8190b14f964abc054267");
    assert_eq!(tagged, "openai-eu~resp_67ccd2bed1ec8190b14f964abc054267");
    assert_eq!(
        untag(&tagged),
        Some(("openai-eu", "resp_67ccd2bed1ec8190b14f964abc054267"))
    );
    assert_eq!(untag("a.b_c-1~x"), Some(("a.b_c-1", "x")));
    let longest = format!("{}~{}", "u".repeat(64), "i".repeat(256));
    assert!(untag(&longest).is_some());
}

#[test]
fn hostile_ids_are_refused() {
    let ten_kb = format!("up~{}", "a".repeat(10 * 1024));
    let long_upstream = format!("{}~id", "u".repeat(65));
    let long_id = format!("up~{}", "i".repeat(257));
    for id in [
        "",
        "~",
        "up~",
        "~resp_1",
        "resp_1",
        "up~..",
        "up~.",
        "up~a..b",
        "up~../admin",
        "up~..%2Fadmin",
        "up~resp%2F..",
        "up~resp/cancel",
        "up~resp?x=1",
        "up~resp#frag",
        "up~resp&limit=1",
        "up~resp%00",
        "up~resp\0",
        "up~resp\n",
        "up~resp\r\nHost: evil",
        "up~resp\u{7f}",
        "up~résp",
        "up~resp\u{202e}",
        "úp~resp",
        "up/x~resp",
        "up x~resp",
        "up~re sp",
        "up~~resp",
        "a~b~c",
        "~~~~",
        "up~resp~",
        "up~resp\\x",
        &ten_kb,
        &long_upstream,
        &long_id,
    ] {
        assert_eq!(untag(id), None, "{id:?}");
    }
}

fn previous(body: &str) -> Result<Option<(String, String)>, ResponsesError> {
    previous_response(body.as_bytes(), Owner::unbound()).map(|found| {
        found.map(|(upstream, body)| (upstream, String::from_utf8(body.to_vec()).unwrap()))
    })
}

#[test]
fn previous_response_is_untagged_in_place() {
    let body = r#"{"model":"fast", "previous_response_id" : "eu~resp_1", "input":"previous_response_id eu~resp_1"}"#;
    let (upstream, out) = previous(body).unwrap().unwrap();
    assert_eq!(upstream, "eu");
    assert_eq!(
        out,
        r#"{"model":"fast", "previous_response_id" : "resp_1", "input":"previous_response_id eu~resp_1"}"#
    );
}

#[test]
fn an_escaped_previous_response_is_read_as_any_parser_would() {
    let body = r#"{"previous_response_\u0069d":"eu\u007eresp_\u0031"}"#;
    let (upstream, out) = previous(body).unwrap().unwrap();
    assert_eq!(upstream, "eu");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["previous_response_id"], "resp_1");
}

#[test]
fn no_previous_response_leaves_the_body_alone() {
    assert_eq!(previous(r#"{"model":"m","input":"hi"}"#).unwrap(), None);
    assert_eq!(previous(r#"{"previous_response_id":null}"#).unwrap(), None);
    assert_eq!(
        previous(r#"{"x":{"previous_response_id":"not~checked here"}}"#).unwrap(),
        None
    );
}

#[test]
fn a_bad_previous_response_names_the_field() {
    for (body, want) in [
        (
            r#"{"previous_response_id":"resp_1"}"#,
            ResponsesError::BadId {
                field: "previous_response_id",
                reason: "it carries no upstream tag",
            },
        ),
        (
            r#"{"previous_response_id":"eu~../x"}"#,
            ResponsesError::BadId {
                field: "previous_response_id",
                reason: "it holds characters other than A-Z a-z 0-9 . _ -",
            },
        ),
        (
            r#"{"previous_response_id":42}"#,
            ResponsesError::NotString("previous_response_id"),
        ),
        (
            r#"{"previous_response_id":["eu~r"]}"#,
            ResponsesError::NotString("previous_response_id"),
        ),
        (
            r#"{"previous_response_id":"eu~a","previous_response_id":"eu~b"}"#,
            ResponsesError::Duplicate("previous_response_id"),
        ),
        (
            r#"{"previous_response_id":"eu~a","previous_response_\u0069d":null}"#,
            ResponsesError::Duplicate("previous_response_id"),
        ),
        ("[]", ResponsesError::NotObject),
        ("{", ResponsesError::NotObject),
    ] {
        let err = previous(body).unwrap_err();
        assert_eq!(err, want, "{body}");
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
    }
    let err = previous(r#"{"previous_response_id":"x"}"#).unwrap_err();
    assert_eq!(err.param(), Some("previous_response_id"));
    assert!(err.to_string().contains("previous_response_id"), "{err}");
}

fn answer(body: Value) -> Value {
    let out = tag_answer(
        Bytes::from(serde_json::to_vec(&body).unwrap()),
        "eu",
        Owner::unbound(),
    );
    serde_json::from_slice(&out).unwrap()
}

#[test]
fn a_response_answer_is_tagged() {
    let out = answer(json!({
        "id": "resp_2",
        "object": "response",
        "previous_response_id": "resp_1",
        "output": [{"id": "msg_1", "type": "message", "content": []}],
        "status": "completed"
    }));
    assert_eq!(out["id"], "eu~resp_2");
    assert_eq!(out["previous_response_id"], "eu~resp_1");
    assert_eq!(out["output"][0]["id"], "msg_1");
    let out = answer(json!({"object": "response", "id": "r", "previous_response_id": null}));
    assert_eq!(out["id"], "eu~r");
    assert_eq!(out["previous_response_id"], Value::Null);
}

#[test]
fn a_deleted_response_is_tagged_whichever_object_name_it_uses() {
    for object in ["response", "response.deleted"] {
        let out = answer(json!({"id": "resp_1", "object": object, "deleted": true}));
        assert_eq!(out["id"], "eu~resp_1", "{object}");
    }
}

#[test]
fn other_answers_pass_as_they_are() {
    for body in [
        &br#"{"object":"list","data":[{"id":"msg_1"}],"first_id":"msg_1","last_id":"msg_1","has_more":false}"#[..],
        br#"{"error":{"message":"No response found","type":"invalid_request_error","param":null,"code":null}}"#,
        br#"{"id":"chatcmpl-1","object":"chat.completion"}"#,
        br#"{"id":"resp_1"}"#,
        b"not json at all",
        b"",
    ] {
        let out = tag_answer(Bytes::copy_from_slice(body), "eu", Owner::unbound());
        assert_eq!(&out[..], body);
    }
}

#[test]
fn tagging_an_answer_changes_only_the_ids() {
    let body = br#"{ "id" : "resp_2",
  "object":"response", "text": "id \"resp_2\"" , "previous_response_id":"resp_1" }"#;
    let out = tag_answer(Bytes::from_static(body), "eu", Owner::unbound());
    assert_eq!(
        std::str::from_utf8(&out).unwrap(),
        r#"{ "id" : "eu~resp_2",
  "object":"response", "text": "id \"resp_2\"" , "previous_response_id":"eu~resp_1" }"#
    );
}

#[test]
fn errors_map_to_statuses_and_proxy_errors() {
    let unknown = ResponsesError::UnknownCall {
        method: "GET".into(),
        path: "/v1/responses/a/b/c".into(),
    };
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    assert_eq!(ProxyError::from(unknown).status(), StatusCode::NOT_FOUND);
    let wrong = ResponsesError::MethodNotAllowed {
        method: "PUT".into(),
        path: "/v1/responses".into(),
        allowed: "POST",
    };
    assert_eq!(wrong.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        ProxyError::from(wrong).status(),
        StatusCode::METHOD_NOT_ALLOWED
    );
    let query = ResponsesError::BadQuery {
        param: "limit".into(),
        reason: "must be a whole number from 1 to 100",
    };
    assert_eq!(query.param(), Some("limit"));
    match ProxyError::from(query) {
        ProxyError::BadRequest { message, param } => {
            assert_eq!(param, Some("limit"));
            assert!(message.contains("limit"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let odd = ResponsesError::BadQuery {
        param: "evil".into(),
        reason: "not a parameter of this call",
    };
    assert_eq!(odd.param(), None);
    assert!(odd.to_string().contains("evil"));
}

/// An upstream id, as proto's `check_name` allows.
fn upstream_id() -> impl Strategy<Value = String> {
    "[A-Za-z0-9._-]{1,64}"
}

/// An upstream's own id that may go into a path.
fn own_id() -> impl Strategy<Value = String> {
    "[A-Za-z0-9._-]{1,256}".prop_filter("no dot segment", |id| id != "." && !id.contains(".."))
}

proptest! {
    #[test]
    fn untag_undoes_tag(upstream in upstream_id(), id in own_id()) {
        let tagged = tag(&upstream, &id);
        prop_assert_eq!(untag(&tagged), Some((upstream.as_str(), id.as_str())));
    }

    #[test]
    fn near_valid_ids_untag_only_to_safe_parts(id in "[A-Za-z0-9._~/%?#é-]{0,80}") {
        if let Some((upstream, own)) = untag(&id) {
            prop_assert_eq!(tag(upstream, own), id.clone());
            prop_assert!(upstream.bytes().all(id_byte) && own.bytes().all(id_byte));
            prop_assert!(own != "." && !own.contains(".."));
        }
    }

    #[test]
    fn arbitrary_ids_never_panic_and_untag_only_to_safe_parts(id in any::<String>()) {
        if let Some((upstream, own)) = untag(&id) {
            prop_assert_eq!(tag(upstream, own), id.clone());
            prop_assert!(!own.contains('/') && !own.contains("..") && !own.contains('%'));
        }
        let body = serde_json::to_vec(&json!({"previous_response_id": id})).unwrap();
        let _ = previous_response(&body, Owner::unbound());
    }

    #[test]
    fn arbitrary_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = previous_response(&body, Owner::unbound());
        let _ = tag_answer(Bytes::from(body), "eu", Owner::unbound());
    }
}

#[test]
fn a_background_response_is_found_however_it_is_written() {
    for body in [
        r#"{"model":"m","background":true}"#,
        r#"{"model":"m", "background" :  true }"#,
        r#"{"model":"m","background":false,"background":true}"#,
        r#"{"model":"m","background":true,"background":false}"#,
        r#"{"model":"m","backgr\u006fund":true}"#,
    ] {
        assert_eq!(
            check_metered(body.as_bytes()),
            Err(ResponsesError::Background),
            "{body}"
        );
    }
    for body in [
        r#"{"model":"m"}"#,
        r#"{"model":"m","background":false}"#,
        r#"{"model":"m","background":null}"#,
        // Not a boolean: the upstream refuses it, as it would anyway.
        r#"{"model":"m","background":"true"}"#,
        r#"{"model":"m","metadata":{"background":true}}"#,
    ] {
        assert_eq!(check_metered(body.as_bytes()), Ok(()), "{body}");
    }
    assert_eq!(ResponsesError::Background.param(), Some("background"));
    assert_eq!(check_metered(b"[]"), Err(ResponsesError::NotObject));
}
