#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;

fn head(text: &str) -> Result<Parsed, H1Error> {
    parse_head(&mut BytesMut::from(text), false)
}

fn final_head(text: &str) -> Head {
    let mut buf = BytesMut::from(text);
    match parse_head(&mut buf, false).unwrap() {
        Parsed::Final(head) => {
            assert!(buf.is_empty(), "the head is taken off the buffer");
            head
        }
        other => panic!("{other:?}"),
    }
}

fn bad(text: &str) -> String {
    match head(text) {
        Err(e) => e.to_string(),
        Ok(parsed) => panic!("accepted {text:?}: {parsed:?}"),
    }
}

#[test]
fn a_request_head_is_origin_form_with_host_and_the_bodys_own_length() {
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    // A length that lies, and a framing the body does not have: neither
    // is written.
    headers.insert(CONTENT_LENGTH, HeaderValue::from_static("999"));
    headers.insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
    headers.insert(http::header::HOST, HeaderValue::from_static("evil.example"));
    let mut out = Vec::new();
    let host = HeaderValue::from_static("up:8080");
    encode_head(&Method::POST, "/v1/chat?x=1", &host, &headers, 13, &mut out);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "POST /v1/chat?x=1 HTTP/1.1\r\nhost: up:8080\r\ncontent-type: application/json\r\n\
         content-length: 13\r\n\r\n"
    );

    let mut out = Vec::new();
    encode_head(&Method::GET, "", &host, &HeaderMap::new(), 0, &mut out);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "GET / HTTP/1.1\r\nhost: up:8080\r\n\r\n"
    );
    let mut out = Vec::new();
    encode_head(&Method::POST, "/", &host, &HeaderMap::new(), 0, &mut out);
    assert!(
        String::from_utf8(out)
            .unwrap()
            .contains("content-length: 0\r\n")
    );
}

#[test]
fn a_plain_answer_has_its_length_and_keeps_the_connection() {
    let h = final_head(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\ncontent-length: 2\r\n\r\n",
    );
    assert_eq!(h.status, StatusCode::OK);
    assert_eq!(h.framing, Framing::Length(2));
    assert!(h.reusable);
    assert_eq!(h.headers["content-type"], "application/json");
    // A head split anywhere is not a head yet.
    let text = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n";
    for cut in 0..text.len() {
        assert!(matches!(
            parse_head(&mut BytesMut::from(&text[..cut]), false).unwrap(),
            Parsed::Partial
        ));
    }
}

#[test]
fn answers_without_a_body_have_length_zero_whatever_they_say() {
    for text in [
        "HTTP/1.1 204 No Content\r\ncontent-length: 10\r\n\r\n",
        "HTTP/1.1 304 Not Modified\r\ntransfer-encoding: chunked\r\n\r\n",
    ] {
        assert_eq!(final_head(text).framing, Framing::Length(0), "{text}");
    }
    let mut buf = BytesMut::from("HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n");
    let Parsed::Final(h) = parse_head(&mut buf, true).unwrap() else {
        panic!()
    };
    assert_eq!(h.framing, Framing::Length(0));
}

#[test]
fn chunked_wins_over_a_length_and_the_connection_is_then_closed() {
    let h = final_head("HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, Chunked\r\n\r\n");
    assert_eq!(h.framing, Framing::Chunked);
    assert!(h.reusable);
    let h =
        final_head("HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n");
    assert_eq!(h.framing, Framing::Chunked);
    assert!(!h.reusable, "both fields: never reused");
    let h = final_head("HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n");
    assert_eq!(h.framing, Framing::UntilClose);
    assert!(!h.reusable);
}

#[test]
fn no_length_means_until_close_and_close_or_http10_means_no_reuse() {
    let h = final_head("HTTP/1.1 200 OK\r\n\r\n");
    assert_eq!(h.framing, Framing::UntilClose);
    assert!(!h.reusable);
    assert!(
        !final_head(
            "HTTP/1.1 200 OK\r\nConnection: keep-alive, CLOSE\r\ncontent-length: 0\r\n\r\n"
        )
        .reusable
    );
    assert!(!final_head("HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n").reusable);
}

#[test]
fn interim_answers_are_skipped_and_101_is_refused() {
    let text = "HTTP/1.1 100 Continue\r\n\r\n";
    assert!(matches!(head(text).unwrap(), Parsed::Interim(n) if n == text.len()));
    let hint = "HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n";
    assert!(matches!(
        head(&format!("{hint}HTTP/1.1 200")).unwrap(),
        Parsed::Interim(n) if n == hint.len()
    ));
    assert!(bad("HTTP/1.1 101 Switching Protocols\r\nupgrade: x\r\n\r\n").contains("101"));
}

#[test]
fn a_hostile_head_is_refused_with_its_reason() {
    let cases = [
        ("SSH-2.0-OpenSSH\r\n\r\n", "invalid"),
        ("HTTP/1.1 200 OK\r\ncontent-length: 2, 3\r\n\r\n", "differ"),
        (
            "HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\n",
            "differ",
        ),
        (
            "HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
            "content-length",
        ),
        (
            "HTTP/1.1 200 OK\r\ncontent-length: +2\r\n\r\n",
            "content-length",
        ),
        (
            "HTTP/1.1 200 OK\r\ncontent-length: 0x10\r\n\r\n",
            "content-length",
        ),
        (
            "HTTP/1.1 200 OK\r\ncontent-length: \r\n\r\n",
            "content-length",
        ),
        (
            "HTTP/1.1 200 OK\r\ncontent-length: 99999999999999999999999\r\n\r\n",
            "content-length",
        ),
        (
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, gzip\r\n\r\n",
            "chunked",
        ),
        (
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntransfer-encoding: chunked\r\n\r\n",
            "chunked",
        ),
        ("HTTP/1.1 200 OK\r\ntransfer-encoding: \r\n\r\n", "empty"),
        (
            "HTTP/1.0 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
            "HTTP/1.0",
        ),
        ("HTTP/1.1 200 OK\r\nbad header\r\n\r\n", "invalid"),
        ("HTTP/1.1 20 OK\r\n\r\n", "invalid"),
        ("HTTP/2 200 OK\r\n\r\n", "invalid"),
    ];
    for (text, why) in cases {
        let e = bad(text);
        assert!(e.contains(why), "{text:?}: {e}");
    }
    let many = format!(
        "HTTP/1.1 200 OK\r\n{}\r\n",
        (0..101)
            .map(|i| format!("x-{i}: v\r\n"))
            .collect::<String>()
    );
    assert!(bad(&many).contains("100 header fields"));
    let long = format!("HTTP/1.1 200 OK\r\nx: {}", "a".repeat(MAX_HEAD_BYTES));
    assert!(bad(&long).contains("over"));
}

#[test]
fn field_values_are_the_heads_own_bytes_and_the_body_stays_behind() {
    let text = b"HTTP/1.1 200 OK\r\nx-empty:\r\nx-obs: caf\xe9\tb\r\n\
        X-Twice: 1\r\nx-twice:   2  \r\ncontent-length: 4\r\n\r\nbody";
    let mut buf = BytesMut::from(&text[..]);
    let read = buf.as_ptr().addr()..buf.as_ptr().addr() + buf.len();
    let Parsed::Final(h) = parse_head(&mut buf, false).unwrap() else {
        panic!()
    };
    // Not copied: every non-empty value lies in the buffer the head was
    // read into.
    for value in h.headers.values().filter(|v| !v.is_empty()) {
        assert!(
            read.contains(&value.as_bytes().as_ptr().addr()),
            "{value:?}"
        );
    }
    assert_eq!(
        &buf[..],
        b"body",
        "what follows the head is left for the body"
    );
    assert_eq!(h.headers["x-empty"], "");
    assert_eq!(h.headers["x-obs"].as_bytes(), b"caf\xe9\tb");
    let twice: Vec<_> = h.headers.get_all("x-twice").iter().collect();
    assert_eq!(twice, ["1", "2"]);
    // The values outlive the buffer they were read into.
    drop(buf);
    assert_eq!(h.headers["x-obs"].as_bytes(), b"caf\xe9\tb");
}

#[test]
fn a_slice_from_elsewhere_is_never_taken_for_part_of_the_head() {
    let head = b"HTTP/1.1 200 OK\r\nx: abc\r\n\r\n";
    let other = b"abc".to_vec();
    assert!(within(head, &other).is_err());
    assert!(within(&head[..10], &head[8..12]).is_err(), "past the end");
    let at = within(head, &head[20..23]).unwrap();
    assert_eq!(&head[at.range()], b"abc");
    assert_eq!(within(head, &other[..0]).unwrap().range(), 0..0);
}

fn decode_all(body: &[u8], cut: usize) -> Result<(Vec<u8>, bool), H1Error> {
    let mut state = Chunked::default();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for piece in body.chunks(cut.max(1)) {
        buf.extend_from_slice(piece);
        loop {
            match state.decode(&mut buf)? {
                Decoded::Data(d) => out.extend_from_slice(&d),
                Decoded::NeedMore => break,
                Decoded::End => return Ok((out, buf.is_empty())),
            }
        }
    }
    Ok((out, false))
}

#[test]
fn a_chunked_body_decodes_the_same_however_it_arrives() {
    let body =
        b"5\r\nhello\r\n7;ext=\"a b\"\r\n, world\r\nA \r\n0123456789\r\n0\r\nx-trailer: 1\r\n\r\n";
    for cut in 1..body.len() + 1 {
        let (out, clean) = decode_all(body, cut).unwrap();
        assert_eq!(out, b"hello, world0123456789", "cut {cut}");
        assert!(clean, "cut {cut}");
    }
    // Bytes after the end stay in the buffer: the caller sees them.
    let (_, clean) = decode_all(b"0\r\n\r\nHTTP/1.1 200 OK\r\n", 100).unwrap();
    assert!(!clean);
}

#[test]
fn a_hostile_chunked_body_is_refused() {
    let cases: [(&[u8], &str); 8] = [
        (b"z\r\n", "no chunk size"),
        (b"5\nhello\r\n0\r\n\r\n", "bare LF"),
        (b"5\r\nhelloXX0\r\n\r\n", "no CRLF"),
        (b"5 x\r\nhello\r\n", "junk"),
        (b"fffffffffffffffff\r\n", "too large"),
        (b"-5\r\n", "no chunk size"),
        (b"5;a\0b\r\nhello\r\n", "control byte"),
        (b"0\r\nx: 1\n\r\n", "bare LF"),
    ];
    for (body, why) in cases {
        let e = decode_all(body, 100).unwrap_err().to_string();
        assert!(e.contains(why), "{:?}: {e}", String::from_utf8_lossy(body));
    }
    let long = format!("5;{}\r\n", "e".repeat(MAX_LINE_BYTES + 10));
    assert!(
        decode_all(long.as_bytes(), 100_000)
            .unwrap_err()
            .to_string()
            .contains("too long")
    );
    let trailers = format!(
        "0\r\n{}\r\n",
        "x: yyyyyyyyyyyyyyyyyyyyyyyyyyyyyy\r\n".repeat(1000)
    );
    assert!(
        decode_all(trailers.as_bytes(), 100_000)
            .unwrap_err()
            .to_string()
            .contains("trailer")
    );
    // The largest size that fits is a size, not an overflow.
    let mut state = Chunked::default();
    let mut buf = BytesMut::from(&b"ffffffffffffffff\r\nab"[..]);
    assert_eq!(
        state.decode(&mut buf).unwrap(),
        Decoded::Data(Bytes::from_static(b"ab"))
    );
    assert_eq!(state, Chunked::Data(u64::MAX - 2));
}
